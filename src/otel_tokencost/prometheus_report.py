"""`otel-tokencost report`: spend, tokens, calls and p95 latency over a window, from Prometheus."""

from __future__ import annotations

import argparse
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

from .tables import money, render

GROUP_LABELS = {
    "model": "gen_ai_request_model",
    "tracking_id": "tokencost_tracking_id",
    "provider": "gen_ai_provider_name",
    "service": "service_name",
    "operation": "gen_ai_operation_name",
}
DURATION = re.compile(r"^(\d+(ms|[smhdwy]))+$")  # 30d, 1h30m: what Prometheus takes in a range


class ReportError(Exception):
    """A problem worth one line to the user (bad argument, unreachable or failing Prometheus)."""


def queries(labels: list[str], window: str) -> dict[str, str]:
    """The PromQL behind each column, summed by the report's group labels."""
    by = ", ".join(labels)
    return {
        "cost": f"sum by ({by}) (increase(gen_ai_client_operation_cost_USD_sum[{window}]))",
        "tokens": f"sum by ({by}, gen_ai_token_type) (increase(gen_ai_client_token_usage_sum[{window}]))",
        "calls": f"sum by ({by}) (increase(gen_ai_client_operation_duration_seconds_count[{window}]))",
        "p95": f"histogram_quantile(0.95, sum by ({by}, le) "
        f"(increase(gen_ai_client_operation_duration_seconds_bucket[{window}])))",
    }


def _query(base_url: str, expr: str, at: float) -> list[dict[str, Any]]:
    url = f"{base_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expr, "time": f"{at:.3f}"}
    )
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            reply = json.load(response)
    except urllib.error.HTTPError as error:
        try:
            message = json.load(error).get("error", error.reason)
        except ValueError:
            message = error.reason
        raise ReportError(f"Prometheus at {base_url} refused the query: {message}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ReportError(f"cannot reach Prometheus at {base_url}: {reason}") from None
    if reply.get("status") != "success":
        raise ReportError(f"Prometheus at {base_url} answered: {reply.get('error', reply)}")
    return reply["data"]["result"]


def collect(base_url: str, groups: list[str], window: str, at: float) -> list[dict[str, Any]]:
    """One row per group: calls, input and output tokens, cost and p95 latency."""
    labels = [GROUP_LABELS[group] for group in groups]
    rows: dict[tuple[str, ...], dict[str, Any]] = {}

    def row(metric: dict[str, str]) -> dict[str, Any]:
        key = tuple(metric.get(label, "") for label in labels)
        if key not in rows:
            rows[key] = {
                **{group: value or None for group, value in zip(groups, key, strict=True)},
                "calls": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost": None,  # no priced call in the group: unpriced, not free
                "p95_seconds": None,
            }
        return rows[key]

    for column, expr in queries(labels, window).items():
        for item in _query(base_url, expr, at):
            value = float(item["value"][1])
            if not math.isfinite(value):  # no data in the window, or a p95 past the last bucket
                continue
            target = row(item["metric"])
            if column == "tokens":
                kind = item["metric"].get("gen_ai_token_type")
                if kind in ("input", "output"):
                    target[f"{kind}_tokens"] = round(value)
            elif column == "calls":
                target["calls"] = round(value)
            elif column == "cost":
                target["cost"] = value
            else:
                target["p95_seconds"] = value
    return sorted(rows.values(), key=lambda item: (item["cost"] is not None, item["cost"] or 0), reverse=True)


def run_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    groups = [group.strip() for group in args.by.split(",") if group.strip()]
    try:
        unknown = [group for group in groups if group not in GROUP_LABELS]
        if unknown or not groups:
            raise ReportError(f"--by takes {', '.join(GROUP_LABELS)}; got {args.by!r}")
        if not DURATION.match(args.since):
            raise ReportError(f"--since takes a duration such as 24h or 30d; got {args.since!r}")
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
            "-" if row["p95_seconds"] is None else f"{row['p95_seconds']:.3f}",
        ]
        for row in rows
    ]
    headers = (*groups, "calls", "input", "output", "cost (USD)", "p95 s")
    print(f"LLM spend over the last {args.since}, from {args.prometheus}", file=out)
    print(render(headers, table) if table else "No LLM calls recorded in that window.", file=out)
    return 0
