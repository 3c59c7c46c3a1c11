"""`OTEL_METRICS_EXPORTER=tokencost_console`: the spend table printed when the process exits.

For `opentelemetry-instrument` users who want the bill of one run without a backend. The exporter keeps
the latest cumulative points of this package's metrics and prints them by model on shutdown.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any, TextIO

from opentelemetry.sdk.metrics import Histogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from . import names
from .tables import money, render

_METRICS = (names.METRIC_COST, names.METRIC_TOKEN_USAGE, names.METRIC_DURATION)


class ConsoleSpendExporter(MetricExporter):
    """Prints calls, tokens, cost and p95 latency by model when the meter provider shuts down."""

    def __init__(self, out: TextIO | None = None, **kwargs: Any) -> None:
        super().__init__(preferred_temporality={Histogram: AggregationTemporality.CUMULATIVE}, **kwargs)
        self._out = out
        self._latest: dict[str, list[Any]] = {}

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        for resource_metrics in metrics_data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                if scope_metrics.scope.name != names.SCOPE:
                    continue
                for metric in scope_metrics.metrics:
                    if metric.name in _METRICS:
                        self._latest[metric.name] = list(metric.data.data_points)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        print(self.table(), file=self._out or sys.stdout, flush=True)

    def table(self) -> str:
        rows: dict[str, dict[str, Any]] = {}

        def row(point: Any) -> dict[str, Any]:
            model = str(point.attributes.get(names.REQUEST_MODEL, "(unknown)"))
            return rows.setdefault(
                model, {"calls": 0, "input": 0, "output": 0, "cost": Decimal(0), "priced": 0, "buckets": None}
            )

        for point in self._latest.get(names.METRIC_DURATION, ()):
            target = row(point)
            target["calls"] += point.count
            target["buckets"] = _merge(target["buckets"], point)
        for point in self._latest.get(names.METRIC_TOKEN_USAGE, ()):
            kind = point.attributes.get(names.TOKEN_TYPE)
            if kind in ("input", "output"):
                row(point)[kind] += round(point.sum)
        for point in self._latest.get(names.METRIC_COST, ()):
            target = row(point)
            target["cost"] += Decimal(repr(point.sum))
            target["priced"] += point.count
        lines = [
            [
                model,
                item["calls"],
                item["input"],
                item["output"],
                money(item["cost"] if item["priced"] else None),
                _p95(item["buckets"]),
            ]
            for model, item in sorted(rows.items())
        ]
        priced = any(item["priced"] for item in rows.values())
        total = sum((item["cost"] for item in rows.values()), Decimal(0)) if priced else None
        lines.append(["total", sum(item["calls"] for item in rows.values()), "", "", money(total), ""])
        return "LLM spend of this run (otel-tokencost)\n" + render(
            ("model", "calls", "input", "output", "cost (USD)", "p95 s <="), lines
        )


def _merge(buckets: tuple[list[float], list[int]] | None, point: Any) -> tuple[list[float], list[int]]:
    counts = list(point.bucket_counts)
    if buckets is None:
        return list(point.explicit_bounds), counts
    return buckets[0], [a + b for a, b in zip(buckets[1], counts, strict=True)]


def _p95(buckets: tuple[list[float], list[int]] | None) -> str:
    """The upper bound of the bucket holding the 95th percentile (histograms keep no finer detail)."""
    if buckets is None:
        return "-"
    bounds, counts = buckets
    total = sum(counts)
    if not total:
        return "-"
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= 0.95 * total:
            return f"{bounds[index]:g}" if index < len(bounds) else "inf"
    return "inf"
