"""Per-process spend budgets: refuse (or warn about) calls once a period's spend reached its limit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from .locks import fork_safe_lock
from .money import MONEY

logger = logging.getLogger(__name__)
PERIODS = (None, "day", "month")
ACTIONS = ("raise", "warn")


@dataclass(frozen=True)
class Budget:
    """A spend limit in USD over the process lifetime (`period=None`), a UTC day or a UTC month.

    `tracking_id=None` counts every call; a string counts only calls inside `track(tracking_id=...)`
    (however deeply nested in other blocks), or a request whose tracking baggage names it.
    """

    limit: float
    period: Literal["day", "month"] | None = None
    tracking_id: str | None = None
    action: Literal["raise", "warn"] = "raise"

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ValueError(f"Budget period must be None, 'day' or 'month', not {self.period!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"Budget action must be 'raise' or 'warn', not {self.action!r}")
        limit = self.limit
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int | float | Decimal)
            or limit != limit  # NaN: no spend compares with it
            or limit < 0
        ):
            raise ValueError(f"Budget limit must be a non-negative number of USD, not {limit!r}")

    def describe(self) -> str:
        scope = f" for tracking id {self.tracking_id!r}" if self.tracking_id else ""
        return f"{self.period or 'lifetime'} budget of {usd(Decimal(str(self.limit)))} USD{scope}"


class BudgetExceededError(RuntimeError):
    """Raised before a call is sent when a budget with `action="raise"` is used up."""

    def __init__(self, budget: Budget, spent: Decimal) -> None:
        self.budget = budget
        self.spent = spent
        self.limit = Decimal(str(budget.limit))
        super().__init__(f"{budget.describe()} exceeded: spent {usd(spent)} USD of {usd(self.limit)} USD")

    def __reduce__(self) -> tuple:  # pickled as it was made: a process pool hands it to its parent
        return type(self), (self.budget, self.spent)


def usd(amount: Decimal) -> str:
    """An amount as plain digits (`0.0000001`, `100`), never in exponent notation."""
    return format(amount.normalize(MONEY), "f")


def _period_key(period: str | None, now: float) -> int:
    if period is None:
        return 0
    day = int(now // 86400)
    return day if period == "day" else _month_of(day)


@lru_cache(maxsize=4)
def _month_of(day: int) -> int:
    """The UTC month of a day since the epoch (cached: a check and a spend per call ask for it)."""
    moment = datetime.fromtimestamp(day * 86400, tz=UTC)
    return moment.year * 12 + moment.month


class _Ledger:
    __slots__ = ("budget", "limit", "period_key", "spent", "warned")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.limit = Decimal(str(budget.limit))
        self.period_key = -1
        self.spent = Decimal(0)
        self.warned = False

    def roll(self, key: int) -> None:
        """Start the period `key` if it is a later one (a clock set back counts in the current one)."""
        if key > self.period_key:
            self.period_key, self.spent, self.warned = key, Decimal(0), False


class Budgets:
    """The budgets of one process: the check before a call and the spend after it."""

    def __init__(self, budgets: Sequence[Budget] = (), clock: Callable[[], float] = time.time) -> None:
        self.budgets = tuple(budgets)
        self._ledgers = [_Ledger(budget) for budget in self.budgets]
        self._clock = clock
        self._lock = fork_safe_lock(reentrant=True)  # a finalizer ending a dropped stream may spend

    def replaced(self, budgets: Sequence[Budget]) -> Budgets:
        """These budgets instead, each one also here keeping what it counted."""
        new = Budgets(budgets, self._clock)
        with self._lock:
            kept = {ledger.budget: ledger for ledger in self._ledgers}
            new._ledgers = [kept.get(budget) or _Ledger(budget) for budget in new.budgets]
        return new

    def __bool__(self) -> bool:
        return bool(self._ledgers)

    def check(self, tracking_ids: tuple[str, ...]) -> list[Budget]:
        """Raise for a used-up `raise` budget of a call inside `tracking_ids`; return the used-up `warn`
        budgets to report."""
        now = self._clock()
        warnings, first_warnings = [], []
        with self._lock:  # read, not reported, under it: the error and the log are made once it is free
            for ledger in self._ledgers:
                budget = ledger.budget
                if budget.tracking_id is not None and budget.tracking_id not in tracking_ids:
                    continue
                ledger.roll(_period_key(budget.period, now))
                if ledger.spent < ledger.limit:
                    continue
                if budget.action == "raise":
                    refused = (budget, ledger.spent)
                    break
                warnings.append(budget)
                if not ledger.warned:
                    ledger.warned = True
                    first_warnings.append((budget, ledger.spent))
            else:
                refused = None
        for budget, spent in first_warnings:
            logger.warning("otel_tokencost: %s exceeded: spent %s USD", budget.describe(), usd(spent))
        if refused is not None:
            raise BudgetExceededError(*refused)
        return warnings

    def spend(self, tracking_ids: tuple[str, ...], cost: Decimal) -> None:
        """Count the cost of a priced call inside `tracking_ids` in every budget it falls under."""
        now = self._clock()
        with self._lock:
            for ledger in self._ledgers:
                budget = ledger.budget
                if budget.tracking_id is None or budget.tracking_id in tracking_ids:
                    ledger.roll(_period_key(budget.period, now))
                    ledger.spent = MONEY.add(ledger.spent, cost)
