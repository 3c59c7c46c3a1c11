"""A spend report built from finished spans: calls, tokens, cost and p95 latency by model."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from . import names

COST = "cost (USD)"


@dataclass(slots=True)
class Row:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    unpriced: int = 0
    errors: int = 0
    durations: list[float] = field(default_factory=list)

    def p95(self) -> float:
        ordered = sorted(self.durations)
        return ordered[max(0, -(-95 * len(ordered) // 100) - 1)] if ordered else 0.0


class SpendReport(SpanProcessor):
    """Collects the spans of priced operations and prints them as a table."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = defaultdict(Row)
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        attributes: Any = span.attributes or {}
        if names.OPERATION_NAME not in attributes:
            return
        model = attributes.get(names.RESPONSE_MODEL) or attributes.get(names.REQUEST_MODEL) or "(unknown)"
        with self._lock:
            row = self.rows[str(model)]
            row.calls += 1
            row.input_tokens += int(attributes.get(names.USAGE_INPUT_TOKENS, 0))
            row.output_tokens += int(attributes.get(names.USAGE_OUTPUT_TOKENS, 0))
            if names.USAGE_COST_AMOUNT in attributes:
                row.cost += Decimal(repr(attributes[names.USAGE_COST_AMOUNT]))
            else:
                row.unpriced += 1
            if names.ERROR_TYPE in attributes:
                row.errors += 1
            row.durations.append((span.end_time - span.start_time) / 1e9)

    def table(self) -> str:
        header = (
            f"{'model':<28} {'calls':>5} {'errors':>6} {'input':>8} {'output':>8} {COST:>12} {'p95 s':>7}"
        )
        lines = [header, "-" * len(header)]
        total = Row()
        for model, row in sorted(self.rows.items()):
            cost = f"{row.cost:.6f}" if row.calls > row.unpriced else "unpriced"
            lines.append(
                f"{model:<28} {row.calls:>5} {row.errors:>6} {row.input_tokens:>8} {row.output_tokens:>8}"
                f" {cost:>12} {row.p95():>7.3f}"
            )
            total.calls += row.calls
            total.errors += row.errors
            total.input_tokens += row.input_tokens
            total.output_tokens += row.output_tokens
            total.cost += row.cost
            total.durations += row.durations
        lines.append("-" * len(header))
        lines.append(
            f"{'total':<28} {total.calls:>5} {total.errors:>6} {total.input_tokens:>8}"
            f" {total.output_tokens:>8} {total.cost:>12.6f} {total.p95():>7.3f}"
        )
        return "\n".join(lines)
