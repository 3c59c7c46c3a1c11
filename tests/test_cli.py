"""The otel-tokencost command line: price, check-prices, report, and the console spend table."""

from __future__ import annotations

import http.server
import io
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_tokencost.cli import main
from otel_tokencost.instruments import DURATION_BUCKETS
from otel_tokencost.prometheus_report import GROUP_LABELS
from otel_tokencost.tables import money

from conftest import API_KEY, genai_cost
from prometheus_server import ONE_OFF, UNPRICED_MODEL, backfilled


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        code = main(list(argv), out=out, err=err)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    return code, out.getvalue(), err.getvalue()


RESELLER = """
[[providers]]
match = "api.holysheep.ai"

[providers.models."gpt-4o-mini"]
input_mtok = 0.10
output_mtok = 0.40
"""


def test_price_compares_models_as_json() -> None:
    code, out, _ = run(
        "price",
        "gpt-4o",
        "gpt-4o-mini",
        "--input",
        "10000",
        "--output",
        "2000",
        "--cached",
        "8000",
        "--base-url",
        "https://api.openai.com/v1",
        "--json",
    )
    assert code == 0
    rows = json.loads(out)
    assert [row["model"] for row in rows] == ["gpt-4o", "gpt-4o-mini"]
    for row in rows:
        assert (row["provider"], row["currency"], row["source"]) == ("openai", "USD", "genai-prices")
        assert row["cost"] == float(genai_cost(row["model"], 10000, 2000, cached=8000, provider="openai"))


def test_price_of_audio_tokens() -> None:
    argv = ["price", "gpt-audio", "--input", "1000", "--output", "500", "--json"]
    _, text_only, _ = run(*argv)
    code, out, _ = run(*argv, "--input-audio", "800", "--output-audio", "450")
    assert code == 0
    (row,) = json.loads(out)
    assert row["cost"] == float(genai_cost("gpt-audio", 1000, 500, input_audio=800, output_audio=450))
    assert row["cost"] > 5 * json.loads(text_only)[0]["cost"]


def test_price_shows_a_reseller_beside_the_public_price(tmp_path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(RESELLER)
    _, public, _ = run("price", "gpt-4o-mini", "--input", "1000000", "--output", "1000000", "--json")
    code, out, _ = run(
        "price",
        "gpt-4o-mini",
        "--input",
        "1000000",
        "--output",
        "1000000",
        "--base-url",
        "https://api.holysheep.ai/v1",
        "--prices",
        str(prices),
    )
    assert code == 0
    header, rule, row = out.splitlines()
    assert set(rule) == {"-"}
    assert header.split() == ["model", "provider", "cost", "(USD)", "source"]
    assert row.split() == ["gpt-4o-mini", "openai", "0.500000", "prices-file"]  # as its spans name it
    assert json.loads(public)[0]["cost"] == float(genai_cost("gpt-4o-mini", 1000000, 1000000))


SELF_HOSTED = """
[[providers]]
match = "localhost:8000"
provider = "vllm"

[providers.models."llama"]
input_mtok = 1
output_mtok = 2
"""


@pytest.mark.parametrize(
    ("base_url", "provider"),
    [
        ("http://localhost:8000/v1", "vllm"),  # the prices file's `provider`
        ("https://generativelanguage.googleapis.com/v1beta/openai/", "gcp.gemini"),
        ("http://localhost:9000/v1", "openai"),  # any other OpenAI-compatible host
        ("", "openai"),  # no base URL: the provider genai-prices finds for the name
    ],
)
def test_price_names_the_provider_as_the_calls_spans_do(tmp_path, base_url: str, provider: str) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(SELF_HOSTED)
    argv = [
        "price",
        "llama",
        "gpt-4o",
        "--input",
        "1000",
        "--output",
        "100",
        "--prices",
        str(prices),
        "--json",
    ]
    code, out, _ = run(*argv, "--base-url", base_url)
    llama, gpt = json.loads(out)
    assert gpt["provider"] == provider
    if base_url == "http://localhost:8000/v1":
        assert (code, llama["provider"], llama["source"], llama["cost"]) == (0, "vllm", "prices-file", 0.0012)


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [("http://h:99999/v1", "Port out of range 0-65535"), ("http://[::1", "Invalid IPv6 URL")],
)
def test_price_rejects_a_malformed_base_url_in_one_line(base_url: str, problem: str) -> None:
    code, out, err = run("price", "gpt-4o", "--input", "1", "--output", "1", "--base-url", base_url)
    assert (code, out, err) == (2, "", f"otel-tokencost price: --base-url {base_url}: {problem}\n")


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["price", "gpt-4o", "no-such-model-x", "--input", "1", "--output", "1"],
            1,
            "no price known for no-such-model-x",
        ),
        (["price", "gpt-4o", "--input", "-5", "--output", "1"], 2, "expected a whole number of tokens"),
        (["price", "gpt-4o", "--input", "1e3", "--output", "1"], 2, "--input: expected a whole number"),
        (["report", "--at", "nan"], 2, "--at: expected a Unix time in seconds, got 'nan'"),
        (
            ["price", "gpt-4o", "--input", "5", "--output", "1", "--cached", "9"],
            2,
            "--cached and --input-audio cannot exceed --input",
        ),
        (
            ["price", "gpt-audio", "--input", "5", "--output", "9", "--cached", "3", "--input-audio", "3"],
            2,
            "--cached and --input-audio cannot exceed --input",
        ),
        (
            ["price", "gpt-audio", "--input", "5", "--output", "9", "--output-audio", "10"],
            2,
            "--output-audio cannot exceed --output",
        ),
        (["price", "gpt-4o", "--output", "1"], 2, "--input"),
        (
            ["price", "gpt-4o", "--input", "1", "--output", "1", "--prices", "/nonexistent.toml"],
            2,
            "cannot read",
        ),
        (
            ["report", "--prometheus", "http://127.0.0.1:9"],
            2,
            "cannot reach Prometheus at http://127.0.0.1:9",
        ),
    ],
)
def test_bad_input_gets_a_clear_message_and_exit_code(argv, code, message, capsys) -> None:
    got, _, err = run(*argv)
    assert got == code
    assert message in err + capsys.readouterr().err


def test_check_prices_good_file(tmp_path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(RESELLER)
    assert run("check-prices", str(prices)) == (0, f"{prices}: OK (1 providers, 1 models)\n", "")


def test_check_prices_rejects_a_match_that_can_never_match_and_usd_at_another_rate(tmp_path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        "[[providers]]\nmatch = 'api.holysheep.ai/v1'\nprices_from = 'openai'\n"
        "[[providers]]\nmatch = 'h:99999'\nprices_from = 'openai'\n"
        "[[providers]]\nmatch = 'h'\nusd_per_unit = 0.5\nprices_from = 'openai'\n"
    )
    code, out, err = run("check-prices", str(prices))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{prices}: providers[0].match: expected a host, host:port or URL prefix, got 'api.holysheep.ai/v1' "
        "(a URL prefix starts with http:// or https://)",
        f"{prices}: providers[1].match: expected a host, host:port or URL prefix, got 'h:99999' "
        "(a port is a number from 1 to 65535)",
        f"{prices}: providers[2].usd_per_unit: must be 1 (or left out) when currency is USD",
        f"{prices}: 3 problem(s)",
    ]


def test_check_prices_lists_every_problem_with_its_location(tmp_path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {
                "providers": [
                    {"match": "a.example", "models": {"m1": {"input_mtok": -1, "output_mtok": "x"}}},
                    {"currency": "EUR", "prices_from": "openai"},
                ]
            }
        )
    )
    code, out, err = run("check-prices", str(prices))
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines == [
        f'{prices}: providers[0].models."m1".input_mtok: expected a non-negative number, got -1',
        f"{prices}: providers[0].models.\"m1\".output_mtok: expected a non-negative number, got 'x'",
        f"{prices}: providers[1].match: expected a host, host:port or URL prefix",
        f"{prices}: providers[1].usd_per_unit: required when currency is EUR",
        f"{prices}: 4 problem(s)",
    ]


def report(prometheus, *argv: str, at: float | None = None) -> tuple[int, str, str]:
    """`report` against this Prometheus, at `at` (now by default)."""
    base = f"http://127.0.0.1:{prometheus.port}"
    return run("report", "--prometheus", base, "--at", str(time.time() if at is None else at), *argv)


def expected_rows(spans, *attributes: str) -> dict[tuple, dict]:
    """What the report must show for these spans, by the values of `attributes`."""
    rows: dict[tuple, dict] = {}
    for span in spans:
        key = tuple(span.attributes.get(attribute) for attribute in attributes)
        row = rows.setdefault(key, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": None})
        row["calls"] += 1
        row["input_tokens"] += span.attributes.get("gen_ai.usage.input_tokens", 0)
        row["output_tokens"] += span.attributes.get("gen_ai.usage.output_tokens", 0)
        if "gen_ai.usage.cost.amount" in span.attributes:
            row["cost"] = (row["cost"] or 0.0) + span.attributes["gen_ai.usage.cost.amount"]
    return rows


def shown(rows: list[dict], *groups: str) -> dict[tuple, dict]:
    """The report's JSON rows by group, with the columns expected_rows gives."""
    columns = ("calls", "input_tokens", "output_tokens", "cost")
    return {
        tuple(row[group] for group in groups): {column: row[column] for column in columns} for row in rows
    }


def exactly(rows: dict[tuple, dict]) -> dict[tuple, dict]:
    """`rows` with each cost to float precision (a sum of per-series differences)."""
    return {
        key: {**row, "cost": None if row["cost"] is None else pytest.approx(row["cost"], rel=1e-12)}
        for key, row in rows.items()
    }


def test_report_counts_every_call_of_series_that_appear_already_non_zero(scraped) -> None:
    """All the traffic reached Prometheus as series already non-zero (one of them a one-off call)."""
    code, out, err = report(scraped.prometheus, "--since", "1h", "--by", "model,tracking_id", "--json")
    assert (code, err) == (0, ""), err
    rows = json.loads(out)
    wanted = expected_rows(scraped.spans, "gen_ai.request.model", "tokencost.tracking_id")
    assert shown(rows, "model", "tracking_id") == exactly(wanted)
    assert wanted[(UNPRICED_MODEL, None)]["cost"] is None  # unpriced, not free
    for row in rows:
        assert 0 < row["p95_seconds"] <= 81.92 and row["p95_above_seconds"] is None
    code, table, _ = report(scraped.prometheus, "--since", "1h", "--by", "tracking_id")
    assert code == 0 and table.splitlines()[1].split()[:2] == ["tracking_id", "calls"]
    assert {line.split()[0] for line in table.splitlines()[3:]} == {"checkout", "search", ONE_OFF, "(none)"}
    code, table, _ = report(scraped.prometheus, "--since", "1h0m30s", "--by", "model")
    by_model = {line.split()[0]: line.split()[-2] for line in table.splitlines()[3:]}
    assert code == 0 and by_model[UNPRICED_MODEL] == "unpriced" and list(by_model)[-1] == UNPRICED_MODEL


def test_report_over_a_window_that_starts_between_two_calls_of_a_series(scraped) -> None:
    """Only the second half: what grew since, a one-off call's new series, a tracking id whose only
    call since was unpriced (unpriced, though it had priced calls before), and no row for the untracked
    calls, all in the first half."""
    now = time.time()
    since = f"{int(now - scraped.middle)}s"
    code, out, err = report(scraped.prometheus, "--since", since, "--by", "tracking_id", "--json", at=now)
    assert (code, err) == (0, ""), err
    wanted = expected_rows(scraped.second_half, "tokencost.tracking_id")
    assert set(wanted) == {("search",), ("checkout",), (ONE_OFF,)} and wanted[("checkout",)]["cost"] is None
    assert shown(json.loads(out), "tracking_id") == exactly(wanted)


def test_report_without_calls_in_the_window_says_so(scraped) -> None:
    """A window after the traffic, with samples of every series in it (scraped every second)."""
    at = scraped.done + 3
    time.sleep(max(0.0, at + 1 - time.time()))
    code, out, err = report(scraped.prometheus, "--since", "3s", "--by", "model,tracking_id", at=at)
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == ["No LLM calls recorded in that window."]
    code, out, _ = report(scraped.prometheus, "--since", "3s", "--json", at=at)
    assert (code, json.loads(out)) == (0, [])


T0 = 1_700_000_000  # the known history's start; the report looks at its second hour, at T0 + 2 h


@dataclass
class Call:
    at: int  # seconds after T0
    model: str
    seconds: float
    cost: float | None
    input_tokens: int = 100
    output_tokens: int = 10


@dataclass
class Process:
    """One process: scraped every 15 s from `first` to `last` (seconds after T0), its calls in order."""

    instance: str
    tracking_id: str
    first: int
    last: int
    calls: list[Call]


HISTORY = [
    # Running all along, a call every 10 minutes: 6 in the second hour.
    Process("steady", "app", 0, 7200, [Call(300 + 600 * k, "gpt-4o", 0.5, 0.01) for k in range(12)]),
    # One call, made before the process's only export: a single sample, already non-zero.
    Process("one-off", "batch", 5000, 5000, [Call(4990, "gpt-4o", 0.5, 2.0, 1000, 100)]),
    # Gone 10 minutes before the second hour.
    Process("gone", "app", 0, 3000, [Call(60 * k, "gpt-4o", 0.5, 0.01) for k in range(1, 50)]),
    # Priced calls in the first hour, only unpriced ones (a new series) in the second.
    Process(
        "mixed",
        "mixed",
        0,
        7200,
        [Call(600, "gpt-4o", 0.5, 0.01), *(Call(4000 + 600 * k, "my-finetune", 0.5, None) for k in range(3))],
    ),
    # No call in the second hour.
    Process("quiet", "idle", 0, 7200, [Call(100, "gpt-4o-mini", 0.5, 0.001)]),
    # Half of its calls slower than the last finite bucket (81.92 s): 8 in the second hour.
    Process(
        "slow",
        "research",
        3000,
        7200,
        [Call(3000 + 300 * k, "o3", 100.0 if k % 2 else 1.0, 0.1) for k in range(1, 11)],
    ),
]


def openmetrics(processes: list[Process]) -> str:
    """The processes' metrics as the collector exposes them, with the time of each scrape."""
    lines = []
    for process in processes:
        for model in dict.fromkeys(call.model for call in process.calls):
            labels = {
                "service_name": "svc",
                "service_instance_id": process.instance,
                "gen_ai_operation_name": "chat",
                "gen_ai_provider_name": "openai",
                "gen_ai_request_model": model,
                "tokencost_tracking_id": process.tracking_id,
            }
            for second in range(process.first, process.last + 1, 15):
                done = [call for call in process.calls if call.model == model and call.at <= second]
                if done:
                    lines += scrape(labels, done, T0 + second)
    return "".join(lines)


def scrape(labels: dict[str, str], calls: list[Call], at: int) -> list[str]:
    """One scrape of one series' histograms, after `calls`."""

    def line(name: str, value: float, **extra: str) -> str:
        text = ",".join(f'{key}="{label}"' for key, label in {**labels, **extra}.items())
        return f"{name}{{{text}}} {value!r} {at}\n"

    duration, tokens, cost = (
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_client_token_usage",
        "gen_ai_client_operation_cost_USD",
    )
    lines = [line(f"{duration}_count", len(calls))]
    for bound in (*DURATION_BUCKETS, math.inf):
        le = "+Inf" if bound == math.inf else repr(bound)
        lines.append(line(f"{duration}_bucket", sum(call.seconds <= bound for call in calls), le=le))
    for kind in ("input", "output"):
        count = sum(getattr(call, f"{kind}_tokens") for call in calls)
        lines.append(line(f"{tokens}_sum", count, gen_ai_token_type=kind))
    priced = [call.cost for call in calls if call.cost is not None]
    if priced:
        lines += [line(f"{cost}_sum", sum(priced)), line(f"{cost}_count", len(priced))]
    return lines


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    prometheus = backfilled(tmp_path_factory.mktemp("history"), openmetrics(HISTORY))
    yield prometheus
    prometheus.stop()


def quantile_in_bucket(lower: float, upper: float, count: int) -> float:
    """histogram_quantile's p95 when all `count` calls are in the bucket (lower, upper]."""
    return lower + (upper - lower) * (0.95 * count / count)


def test_report_on_a_known_history(history) -> None:
    at = str(T0 + 7200)
    code, out, err = report(history, "--since", "1h", "--by", "model", "--json", at=float(at))
    assert (code, err) == (0, ""), err
    half_second = quantile_in_bucket(DURATION_BUCKETS[5], DURATION_BUCKETS[6], 7)
    assert json.loads(out) == [
        {
            "model": "gpt-4o",
            "calls": 7,
            "input_tokens": 1600,
            "output_tokens": 160,
            "cost": pytest.approx(2.06, rel=1e-12),
            "p95_seconds": pytest.approx(half_second, rel=1e-12),
            "p95_above_seconds": None,
        },
        {
            "model": "o3",
            "calls": 8,
            "input_tokens": 800,
            "output_tokens": 80,
            "cost": pytest.approx(0.8, rel=1e-12),
            "p95_seconds": None,
            "p95_above_seconds": DURATION_BUCKETS[-1],
        },
        {
            "model": "my-finetune",
            "calls": 3,
            "input_tokens": 300,
            "output_tokens": 30,
            "cost": None,
            "p95_seconds": pytest.approx(half_second, rel=1e-12),
            "p95_above_seconds": None,
        },
    ]
    code, table, _ = report(history, "--since", "1h", "--by", "tracking_id", at=float(at))
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[3:]}
    assert code == 0 and list(rows) == ["batch", "research", "app", "mixed"]
    assert rows["batch"] == ["1", "1000", "100", "2.000000", "0.624"]
    assert rows["research"] == ["8", "800", "80", "0.800000", ">81.92"]
    assert rows["app"] == ["6", "600", "60", "0.060000", "0.624"]
    assert rows["mixed"] == ["3", "300", "30", "unpriced", "0.624"]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--since", "thirty days", "--since takes"),
        ("--since", "1.5h", "--since takes"),
        ("--since", "30m1h", "--since takes"),  # Prometheus wants the largest unit first
        ("--since", "0s", "--since takes"),
        ("--by", "colour", "--by takes model, tracking_id, provider, service, operation; got 'colour'"),
        (
            "--prometheus",
            "localhost:9090",
            "--prometheus takes an http:// or https:// URL; got 'localhost:9090'",
        ),
    ],
)
def test_report_rejects_bad_arguments(flag, value, message) -> None:
    code, out, err = run("report", "--prometheus", "http://127.0.0.1:9", flag, value)
    assert (code, out) == (2, "") and message in err and err.count("\n") == 1, err


def test_report_help_lists_every_group(capsys) -> None:
    assert run("report", "--help")[0] == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"comma-separated: {', '.join(GROUP_LABELS)}" in help_text


class OddServer(http.server.BaseHTTPRequestHandler):
    """Answers 200 with the body its path names, as a server that is not Prometheus might."""

    BODIES = {
        "/list/": b"[1, 2]",
        "/no-data/": b'{"status": "success"}',
        "/html/": b"<html>Grafana</html>",
        "/bad-sample/": b'{"status": "success", "data": {"result": [{"value": [1]}]}}',
    }

    def do_GET(self) -> None:
        body = next(body for prefix, body in self.BODIES.items() if self.path.startswith(prefix))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def odd_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OddServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("list", "no query result"),
        ("no-data", "no query result"),
        ("html", "not JSON"),
        ("bad-sample", "no query result"),
    ],
)
def test_report_on_an_answer_that_is_not_prometheus_s_is_one_line(
    odd_server, path: str, problem: str
) -> None:
    base = f"{odd_server}/{path}"
    code, out, err = run("report", "--prometheus", base)
    assert (code, out) == (2, "")
    assert err == f"otel-tokencost report: {base} did not answer as Prometheus does ({problem})\n"


APP = textwrap.dedent(
    """
    import json, openai
    client = openai.OpenAI(max_retries=0)
    calls = (("gpt-4o-mini", 1000, 200), ("gpt-4.1", 300, 30), ("gpt-4o-mini", 50, 5))
    for model, prompt, completion in calls:
        usage = json.dumps({"prompt_tokens": prompt, "completion_tokens": completion})
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], extra_headers={"x-mock-usage": usage}
        )
    """
)


def console_table(tmp_path, server, app_code: str) -> tuple[list[str], str]:
    """What an app run under `opentelemetry-instrument` with the console spend exporter prints: its lines,
    and everything it wrote."""
    app = tmp_path / "app.py"
    app.write_text(app_code)
    environment = {
        **os.environ,
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "tokencost_console",
    }
    command = [str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, str(app)]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, check=True)
    return result.stdout.splitlines(), result.stdout + result.stderr


def test_console_spend_table_at_exit(tmp_path, server) -> None:
    lines, output = console_table(tmp_path, server, APP)
    assert lines[0] == "LLM spend of this run (otel-tokencost)"
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    mini = genai_cost("gpt-4o-mini", 1000, 200) + genai_cost("gpt-4o-mini", 50, 5)
    assert rows["gpt-4o-mini"][:4] == ["2", "1050", "205", f"{mini:.6f}"]
    assert rows["gpt-4.1"][:4] == ["1", "300", "30", f"{genai_cost('gpt-4.1', 300, 30):.6f}"]
    assert rows["total"] == ["3", f"{mini + genai_cost('gpt-4.1', 300, 30):.6f}"]
    assert API_KEY not in output


def test_console_spend_table_of_unpriced_calls_only_totals_unpriced(tmp_path, server) -> None:
    lines, _ = console_table(
        tmp_path,
        server,
        APP.replace('"gpt-4o-mini"', '"my-finetune-v7"').replace('("gpt-4.1", 300, 30), ', ""),
    )
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert rows["my-finetune-v7"][:4] == ["2", "1050", "205", "unpriced"]
    assert rows["total"] == ["2", "unpriced"]


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (None, "unpriced"),
        (0, "0.000000"),
        (0.000036, "0.000036"),
        (12.5, "12.500000"),
        (0.0000005, "0.00000050"),
        (4.4e-07, "0.00000044"),
        (1.234e-09, "0.0000000012"),
    ],
)
def test_tables_show_a_cost_below_a_micro_dollar_by_its_significant_digits(amount, shown) -> None:
    assert money(amount) == shown
