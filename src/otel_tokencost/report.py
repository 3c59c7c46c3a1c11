"""A spend report built from finished spans: calls, tokens, cost and p95 latency by model or tracking id."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from . import names
from .locks import fork_safe_lock
from .tables import money, render

HEADERS = ("calls", "errors", "input", "output", "cost (USD)", "p95 s")
GROUPS = {"model": (names.RESPONSE_MODEL, names.REQUEST_MODEL), "tracking id": (names.TRACKING_ID,)}


@dataclass(slots=True)
class Row:
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    priced: int = 0
    durations: list[float] = field(default_factory=list)

    def add(self, other: Row) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost += other.cost
        self.priced += other.priced
        self.durations += other.durations

    def p95(self) -> float:
        ordered = sorted(self.durations)
        return ordered[max(0, -(-95 * len(ordered) // 100) - 1)] if ordered else 0.0

    def cells(self, name: str) -> list[object]:
        cost = money(self.cost) if self.priced else money(None)
        return [
            name,
            self.calls,
            self.errors,
            self.input_tokens,
            self.output_tokens,
            cost,
            f"{self.p95():.3f}",
        ]


def _row(span: ReadableSpan, attributes: Any) -> Row:
    cost = attributes.get(names.USAGE_COST_AMOUNT)
    return Row(
        calls=1,
        errors=int(names.ERROR_TYPE in attributes),
        input_tokens=int(attributes.get(names.USAGE_INPUT_TOKENS, 0)),
        output_tokens=int(attributes.get(names.USAGE_OUTPUT_TOKENS, 0)),
        cost=Decimal(repr(cost)) if cost is not None else Decimal(0),
        priced=int(cost is not None),
        durations=[(span.end_time - span.start_time) / 1e9],
    )


class SpendReport(SpanProcessor):
    """Collects the spans of LLM calls and prints them as tables."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Row]] = {group: defaultdict(Row) for group in GROUPS}
        self._lock = fork_safe_lock()

    def on_end(self, span: ReadableSpan) -> None:
        attributes: Any = span.attributes or {}
        if names.OPERATION_NAME not in attributes:
            return
        row = _row(span, attributes)
        with self._lock:
            for group, keys in GROUPS.items():
                key = next((attributes[k] for k in keys if attributes.get(k)), "(none)")
                self.rows[group][str(key)].add(row)

    def table(self, group: str = "model") -> str:
        total = Row()
        lines = []
        for name, row in sorted(self.rows[group].items()):
            lines.append(row.cells(name))
            total.add(row)
        lines.append(total.cells("total"))
        return render((group, *HEADERS), lines)
