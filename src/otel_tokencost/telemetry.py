"""Telemetry: what `instrument()` builds once and every call shares (tracer, instruments, pricer,
budgets, settings), and where a transport starts a call."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.metrics import Meter, get_meter
from opentelemetry.trace import Tracer

from . import names
from .budgets import Budget, Budgets
from .engine import IN_CALL, SUPPRESS_KEY, SUPPRESS_KEY_PLAIN, Call, report_internal_error
from .instruments import Instruments
from .locks import fork_safe_lock
from .operations import Operation
from .pricing import Pricer, PricesFileError, load
from .providers import Endpoint, endpoint_for
from .put_off import run_waiting, waiting
from .tracking import current
from .version import __version__

logger = logging.getLogger(__name__)
BAGGAGE_KEY_ENV = "OTEL_TOKENCOST_TRACKING_BAGGAGE_KEY"
MAX_TRACKING_IDS_ENV = "OTEL_TOKENCOST_MAX_TRACKING_IDS"
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
OTHER_TRACKING_ID = "_other"


class Telemetry:
    """Tracer, instruments, pricer, budgets and settings, built once by `instrument()`."""

    def __init__(
        self,
        tracer: Tracer,
        meter: Meter,
        pricer: Pricer,
        capture_content: bool = False,
        budgets: Budgets | None = None,
        baggage_key: str | None = None,
        max_tracking_ids: int = 1000,
        prices: str | None = None,
    ) -> None:
        self.tracer = tracer
        self.prices = prices  # the prices file `pricer` was given, as named
        self.instruments = Instruments.create(meter)
        self.pricer = pricer
        self.capture_content = capture_content
        self.budgets = budgets or Budgets()
        self.has_budgets = bool(self.budgets)
        self.baggage_key = baggage_key
        self.max_tracking_ids = max_tracking_ids
        self._tracking_ids: set[str] = set()
        self.metric_attribute_sets: dict[tuple, tuple[dict, dict, dict]] = {}

    @classmethod
    def from_config(
        cls,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        prices: str | None = None,
        budgets: Sequence[Budget] = (),
    ) -> Telemetry:
        tracer = trace.get_tracer(names.SCOPE, __version__, tracer_provider)
        meter = get_meter(names.SCOPE, __version__, meter_provider)
        capture = _true_or_false_from_environment(CAPTURE_CONTENT_ENV, False)
        return cls(
            tracer,
            meter,
            Pricer(_load_prices(prices)),
            capture,
            Budgets(budgets),
            os.environ.get(BAGGAGE_KEY_ENV) or None,
            _positive_int_from_environment(MAX_TRACKING_IDS_ENV, 1000),
            prices,
        )

    @classmethod
    def for_instrumentor(cls, kwargs: Mapping[str, Any]) -> Telemetry:
        """The engine an instrumentor's `instrument(**kwargs)` asks for: given, or built from its options.

        Instrumentors given no option (`opentelemetry-instrument` passes none) share one, built once from
        the environment, as the instrumentors of `instrument()` share theirs: one prices file read and
        reported, one cap on tracking ids, one ledger per budget."""
        telemetry = kwargs.get("telemetry")
        if telemetry is not None:
            return telemetry
        options = (kwargs.get(name) for name in ("tracer_provider", "meter_provider", "prices", "budgets"))
        if not any(options):
            global _from_environment
            with _from_environment_lock:
                if _from_environment is None:
                    _from_environment = cls.from_config()
                return _from_environment
        return cls.from_config(
            kwargs.get("tracer_provider"),
            kwargs.get("meter_provider"),
            kwargs.get("prices"),
            kwargs.get("budgets", ()),
        )

    def configure(self, prices: str | None, budgets: Sequence[Budget]) -> None:
        """Price and cap the calls from now on with this prices file and these budgets, where given and
        not in force already (a budget given again keeps what it has counted)."""
        if prices is not None and prices != self.prices:
            self.pricer, self.prices = Pricer(_load_prices(prices)), prices
        budgets = tuple(budgets)  # once: a generator given is read once
        if budgets and budgets != self.budgets.budgets:
            self.budgets = self.budgets.replaced(budgets)
            self.has_budgets = True

    def preload_prices(self) -> None:
        """Load genai-prices now rather than in the first call priced; a failure is logged and left
        for that call to meet again."""
        try:
            self.pricer.preload()
        except Exception:
            report_internal_error("loading genai-prices")

    def endpoint(self, base_url: str) -> Endpoint:
        """What a base URL tells (provider name, server address), the prices file included."""
        return endpoint_for(base_url, self.pricer.provider_name(base_url))

    def start(self, endpoint: Endpoint, operation: Operation, body: Mapping[str, Any]) -> Call | None:
        """Start the span of one call; None when suppressed, or inside a call already being measured.

        Raises BudgetExceededError (after ending the call's span) when a budget refuses the call.
        """
        context = context_api.get_current()
        if context.get(IN_CALL) is not None or context.get(SUPPRESS_KEY) or context.get(SUPPRESS_KEY_PLAIN):
            return None  # (an exporter's own request is made suppressed, inside the SDK)
        if waiting:  # calls dropped inside OpenTelemetry's SDK are ended here, outside it
            run_waiting()
        call = Call(self, endpoint, operation, body, current(self.baggage_key, context), context)
        if self.has_budgets:
            call.check_budgets()
        return call

    def metric_tracking_id(self, tracking_id: str) -> str:
        """The tracking id as a metric attribute: past the cap of distinct ids, `_other`."""
        ids = self._tracking_ids
        if tracking_id in ids:
            return tracking_id
        if len(ids) < self.max_tracking_ids:
            ids.add(tracking_id)
            return tracking_id
        if OTHER_TRACKING_ID not in ids:
            ids.add(OTHER_TRACKING_ID)
            logger.warning(
                "otel_tokencost: more than %d tracking ids; metrics count the rest as %r (spans keep them)",
                self.max_tracking_ids,
                OTHER_TRACKING_ID,
            )
        return OTHER_TRACKING_ID


_from_environment: Telemetry | None = None  # what instrumentors given no option share
_from_environment_lock = fork_safe_lock()


def _positive_int_from_environment(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if value.isdigit() and int(value) > 0:
        return int(value)
    logger.warning("otel_tokencost: %s=%r is not a positive whole number; using %d", name, value, default)
    return default


def _true_or_false_from_environment(name: str, default: bool) -> bool:
    """`true` or `false` in any case and spacing; anything else is reported, and the default kept."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("true", "false"):
        return value == "true"
    if value:
        logger.warning(
            "otel_tokencost: %s=%r is not true or false; using %s", name, value, str(default).lower()
        )
    return default


def _load_prices(path: str | None) -> list:
    path = path or os.environ.get("OTEL_TOKENCOST_PRICES")
    if not path:
        return []
    try:
        return load(path)
    except PricesFileError as error:
        logger.error("otel_tokencost: prices file ignored: %s", error)
        return []
