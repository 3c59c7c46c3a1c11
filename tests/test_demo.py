"""`otel-tokencost demo`, the main job, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import genai_cost
from otlp_receiver import OTLPReceiver


def run_demo(agent: bool = False, **env: str) -> str:
    command = [str(Path(sys.executable).parent / "otel-tokencost"), "demo"]
    if agent:  # under opentelemetry-instrument, which instruments before the demo runs
        command.insert(0, str(Path(sys.executable).parent / "opentelemetry-instrument"))
        env = {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            **env,
        }
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_EXPORTER_OTLP")}
    environment.update(env)
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, check=True)
    return result.stdout


def table_rows(stdout: str, group: str = "model") -> dict[str, list[str]]:
    """The rows of the report's table by `group` (name -> calls, errors, input, output, cost, p95)."""
    section = stdout.split(f"Spend by {group}:\n", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in section.splitlines()[2:]:
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def test_demo_prints_the_cost_report_by_model_and_tracking_id() -> None:
    stdout = run_demo()
    assert "Local OpenAI-compatible server on http://127.0.0.1:" in stdout
    rows = table_rows(stdout)
    assert set(rows) == {
        "gpt-4o-mini",
        "gpt-4.1",
        "deepseek-chat",
        "text-embedding-3-small",
        "my-finetune-v7",
        "total",
    }
    # gpt-4o-mini: 3 sync calls, 1 sync stream, 3 async calls, 1 failed call, 1 requests stream.
    calls, errors, input_tokens, output_tokens, cost, _p95 = rows["gpt-4o-mini"]
    assert (calls, errors) == ("9", "1")
    assert rows["deepseek-chat"][0] == "6"  # 3 through the SDK, 3 through requests
    assert Decimal(cost) == round(genai_cost("gpt-4o-mini", int(input_tokens), int(output_tokens)), 6)
    assert rows["my-finetune-v7"][4] == "unpriced"
    # Through the prices file's gateway entry: OpenAI's embeddings price (its name alone finds none).
    embeddings_input = int(rows["text-embedding-3-small"][2])
    embeddings_cost = genai_cost("text-embedding-3-small", embeddings_input, 0, provider="openai")
    assert embeddings_cost > 0 and Decimal(rows["text-embedding-3-small"][4]) == embeddings_cost
    total = rows["total"]
    assert int(total[0]) == sum(int(row[0]) for name, row in rows.items() if name != "total")
    priced = [Decimal(row[4]) for name, row in rows.items() if name != "total" and row[4] != "unpriced"]
    assert abs(Decimal(total[4]) - sum(priced)) <= Decimal("0.000003")
    by_id = table_rows(stdout, "tracking id")
    assert set(by_id) == {"checkout", "search", "support-bot", "free-tier", "total"}
    assert by_id["total"] == total
    assert by_id["search"][0] == "4"  # 3 calls and a stream through requests
    assert "Set OTEL_EXPORTER_OTLP_ENDPOINT" in stdout


def test_demo_under_opentelemetry_instrument_reports_the_same_calls() -> None:
    """The agent has instrumented before the demo runs: the demo takes the instrumentation over, so that
    its report sees its calls."""
    stdout = run_demo(agent=True)
    assert "Already instrumented (by opentelemetry-instrument)" in stdout
    plain = run_demo()
    for group in ("model", "tracking id"):
        rows, expected = table_rows(stdout, group), table_rows(plain, group)
        assert {name: row[:5] for name, row in rows.items()} == {
            name: row[:5] for name, row in expected.items()
        }


def test_demo_shows_a_budget_stopping_a_call() -> None:
    stdout = run_demo()
    stopped = next(line for line in stdout.splitlines() if line.startswith("Budget stopped call"))
    attempt = int(stopped.split()[3])
    free_tier = table_rows(stdout, "tracking id")["free-tier"]
    assert free_tier[:2] == [str(attempt), "1"]  # the refused call has a span, with its error
    spent = Decimal(stopped.split("spent ")[1].split(" USD")[0])
    assert spent >= Decimal("0.0002") and Decimal(free_tier[4]) == round(spent, 6)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_demo_exports_over_otlp(protocol: str) -> None:
    with OTLPReceiver() as receiver:
        port = receiver.grpc_port if protocol == "grpc" else receiver.http_port
        stdout = run_demo(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_SERVICE_NAME="demo-under-test",
        )
    assert f"sent over OTLP to http://127.0.0.1:{port}" in stdout
    rows = table_rows(stdout)
    spans = [span for span in receiver.spans if span["scope"] == "otel_tokencost"]
    assert {span["attributes"].get("tokencost.tracking_id") for span in spans} == {
        "checkout",
        "search",
        "support-bot",
        "free-tier",
    }
    assert {span["attributes"].get("app.feature") for span in spans} == {"assistant", None}
    assert len(spans) == int(rows["total"][0])
    assert {span["resource"]["service.name"] for span in spans} == {"demo-under-test"}
    priced = [
        span["attributes"]["gen_ai.usage.cost.amount"]
        for span in spans
        if "gen_ai.usage.cost.amount" in span["attributes"]
    ]
    assert abs(Decimal(repr(sum(priced))) - Decimal(rows["total"][4])) <= Decimal("0.000001")
    cost_points = receiver.metrics["gen_ai.client.operation.cost"]
    assert sum(point.count for point in cost_points) == len(priced)
    assert sum(point.sum for point in cost_points) == pytest.approx(sum(priced), rel=1e-12)
