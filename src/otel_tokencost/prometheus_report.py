"""`otel-tokencost report`: spend, tokens, calls and p95 latency over a window, from Prometheus."""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, TextIO

from .tables import money, render

GROUP_LABELS = {
    "model": "gen_ai_request_model",
    "tracking_id": "tokencost_tracking_id",
    "provider": "gen_ai_provider_name",
    "service": "service_name",
    "operation": "gen_ai_operation_name",
}
# What Prometheus takes as a range: units from the largest down, each at most once (30d, 1h30m).
DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
COST = "gen_ai_client_operation_cost_USD"
TOKENS = "gen_ai_client_token_usage"
CALLS = "gen_ai_client_operation_duration_seconds"
# This package's series only: another instrumentation (openai-v2) records the same standard metrics of the
# same calls. The exporters label each series with its meter's scope; a pipeline that drops the label
# leaves the series unlabelled, and they count.
SCOPE = 'otel_scope_name=~"otel_tokencost|"'
# How far before a window's start a series' last value still counts as its value at the start: a
# collector or Prometheus outage (its stale markers) at that moment must not make an old series look new.
START_LOOKBACK = "15m"


class ReportError(Exception):
    """A problem worth one line to the user (bad argument, unreachable or failing Prometheus)."""


def window_increase(selector: str, window: str, by: Sequence[str] = ()) -> str:
    """PromQL for how much the cumulative `selector` grew over `window`, summed by the labels `by`.

    Unlike increase(), a series that first appears inside the window (a new process, a new label
    combination) counts from zero, its first sample included, and nothing is extrapolated: each series'
    last value in the window less its last value before it. A series is one process's lifetime where
    the SDK's random service.instance.id is a label, so it does not reset; one that does (a process
    restarted under the same labels) is counted by increase(), which counts across a reset.
    """
    last = f"last_over_time({selector}[{window}])"
    start = f"last_over_time({selector}[{START_LOOKBACK}] offset {window})"
    reset = f"resets({selector}[{window}]) > 0"
    per_series = (
        f"(({last} - {start}) >= 0 unless {reset}) or (increase({selector}[{window}]) and {reset}) or {last}"
    )
    return f"sum by ({', '.join(by)}) ({per_series})" if by else f"sum({per_series})"


def queries(labels: list[str], window: str) -> dict[str, str]:
    """The PromQL behind each column, summed by the report's group labels (calls first)."""

    def grown(selector: str, *extra: str) -> str:
        return window_increase(selector, window, [*labels, *extra])

    buckets, by = f"{CALLS}_bucket", ", ".join(labels)
    total = grown(f'{buckets}{{le="+Inf", {SCOPE}}}')
    finite = grown(f'{buckets}{{le!="+Inf", {SCOPE}}}', "le")
    return {
        "calls": grown(f"{CALLS}_count{{{SCOPE}}}"),
        "tokens": grown(f"{TOKENS}_sum{{{SCOPE}}}", "gen_ai_token_type"),
        # Only where a priced call happened in the window: otherwise the group is unpriced, not free.
        "cost": f"{grown(f'{COST}_sum{{{SCOPE}}}')} and ({grown(f'{COST}_count{{{SCOPE}}}')} > 0)",
        "p95": f"histogram_quantile(0.95, {grown(f'{buckets}{{{SCOPE}}}', 'le')})",
        # Where the p95's rank is past the last finite bucket (its count is the largest finite one),
        # histogram_quantile answers that bucket's bound.
        "p95_past_buckets": f"{total} * 0.95 > max by ({by}) ({finite})",
    }


def _get(base_url: str, expr: str, at: float) -> bytes:
    url = f"{base_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expr, "time": f"{at:.3f}"}
    )
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        raise ReportError(f"Prometheus at {base_url} refused the query: {_http_error(error)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise ReportError(f"cannot reach Prometheus at {base_url}: {reason}") from None


def _http_error(error: urllib.error.HTTPError) -> str:
    """Prometheus's own message for a refused query, else the HTTP reason."""
    try:
        message = json.loads(error.read()).get("error")
    except (ValueError, AttributeError, OSError):
        message = None
    return str(message or error.reason)


def _samples(reply: Any) -> list[tuple[dict[str, str], float]]:
    """The (labels, value) pairs of an instant-vector answer; LookupError, ValueError or TypeError if the
    answer is not one."""
    if reply["status"] != "success" or not isinstance(reply["data"]["result"], list):
        raise ValueError(reply)
    return [(dict(item["metric"]), float(item["value"][1])) for item in reply["data"]["result"]]


def _query(base_url: str, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
    """The finite samples Prometheus answers for `expr` at `at`."""
    body = _get(base_url, expr, at)
    try:
        reply = json.loads(body)
    except ValueError:
        raise ReportError(f"{base_url} did not answer as Prometheus does (not JSON)") from None
    if isinstance(reply, dict) and reply.get("status") == "error":
        raise ReportError(f"Prometheus at {base_url} answered: {reply.get('error')}")
    try:
        samples = _samples(reply)
    except (LookupError, ValueError, TypeError):
        raise ReportError(f"{base_url} did not answer as Prometheus does (no query result)") from None
    return [(metric, value) for metric, value in samples if math.isfinite(value)]


def _new_row(groups: list[str], key: tuple[str, ...], calls: int) -> dict[str, Any]:
    return {
        **{group: value or None for group, value in zip(groups, key, strict=True)},
        "calls": calls,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost": None,  # no priced call in the group: unpriced, not free
        "p95_seconds": None,  # None too when the p95 is past the last bucket: see p95_above_seconds
        "p95_above_seconds": None,  # the last bucket's bound, when the p95 lies past it
    }


def _fill(row: dict[str, Any], column: str, metric: dict[str, str], value: float) -> None:
    """Put one sample of a column's query into its row."""
    if column == "tokens":
        kind = metric.get("gen_ai_token_type")
        if kind in ("input", "output"):
            row[f"{kind}_tokens"] = round(value)
    elif column == "cost":
        row["cost"] = value
    elif column == "p95":
        row["p95_seconds"] = value
    elif column == "p95_past_buckets":  # comes after "p95", which answered the last finite bound
        row["p95_above_seconds"], row["p95_seconds"] = row["p95_seconds"], None


def collect(base_url: str, groups: list[str], window: str, at: float) -> list[dict[str, Any]]:
    """One row per group with calls in the window: calls, input and output tokens, cost and p95 latency."""
    labels = [GROUP_LABELS[group] for group in groups]
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for column, expr in queries(labels, window).items():  # calls first: they decide the rows
        for metric, value in _query(base_url, expr, at):
            key = tuple(metric.get(label, "") for label in labels)
            if column == "calls" and round(value) > 0:
                rows[key] = _new_row(groups, key, round(value))
            elif key in rows:
                _fill(rows[key], column, metric, value)
    return sorted(rows.values(), key=lambda item: (item["cost"] is not None, item["cost"] or 0), reverse=True)


def _p95(row: dict[str, Any]) -> str:
    if row["p95_above_seconds"] is not None:
        return f">{row['p95_above_seconds']:g}"
    return "-" if row["p95_seconds"] is None else f"{row['p95_seconds']:.3f}"


def _groups(by: str) -> list[str]:
    """The --by groups, in order, once each; ReportError for an unknown one."""
    groups = list(dict.fromkeys(group.strip() for group in by.split(",") if group.strip()))
    if not groups or any(group not in GROUP_LABELS for group in groups):
        raise ReportError(f"--by takes {', '.join(GROUP_LABELS)}; got {by!r}")
    return groups


def _check(args: argparse.Namespace) -> None:
    if not DURATION.match(args.since) or not re.search(r"[1-9]", args.since):
        raise ReportError(f"--since takes a duration such as 24h or 30d; got {args.since!r}")
    if urllib.parse.urlsplit(args.prometheus).scheme not in ("http", "https"):
        raise ReportError(f"--prometheus takes an http:// or https:// URL; got {args.prometheus!r}")


def run_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        groups = _groups(args.by)
        _check(args)
        rows = collect(args.prometheus, groups, args.since, args.at if args.at is not None else time.time())
    except ReportError as error:
        print(f"otel-tokencost report: {error}", file=err)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return 0
    table = [
        [
            *(row[group] or "(none)" for group in groups),
            row["calls"],
            row["input_tokens"],
            row["output_tokens"],
            money(row["cost"]),
            _p95(row),
        ]
        for row in rows
    ]
    headers = (*groups, "calls", "input", "output", "cost (USD)", "p95 s")
    print(f"LLM spend over the last {args.since}, from {args.prometheus}", file=out)
    print(render(headers, table) if table else "No LLM calls recorded in that window.", file=out)
    return 0
