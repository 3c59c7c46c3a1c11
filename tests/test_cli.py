"""The otel-tokencost command line: price, check-prices, report, and the console spend table."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_tokencost.cli import main
from otel_tokencost.tables import money

from conftest import API_KEY, genai_cost
from prometheus_server import UNPRICED_MODEL


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
        (["price", "gpt-4o", "--input", "-5", "--output", "1"], 2, "non-negative token count"),
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


def test_report_against_a_real_prometheus(scraped) -> None:
    prometheus, spans = scraped
    now = float(prometheus.api("query", query="time()")["data"]["result"][0])
    base = f"http://127.0.0.1:{prometheus.port}"
    code, out, err = run(
        "report",
        "--prometheus",
        base,
        "--since",
        "1h",
        "--by",
        "model,tracking_id",
        "--at",
        str(now),
        "--json",
    )
    assert (code, err) == (0, ""), err
    rows = {(row["model"], row["tracking_id"]): row for row in json.loads(out)}
    # Exactly what Prometheus computes for the same window and instant...
    direct = prometheus.api(
        "query",
        query="sum by (gen_ai_request_model, tokencost_tracking_id) "
        "(increase(gen_ai_client_operation_cost_USD_sum[1h]))",
        time=str(now),
    )
    for item in direct["data"]["result"]:
        key = (item["metric"]["gen_ai_request_model"], item["metric"].get("tokencost_tracking_id"))
        assert rows[key]["cost"] == float(item["value"][1])
    # ...and that is the app's spend, give or take Prometheus's extrapolation at the window's edges.
    spent: dict[tuple, float] = {}
    calls: dict[tuple, int] = {}
    for span in spans:
        key = (span.attributes["gen_ai.request.model"], span.attributes.get("tokencost.tracking_id"))
        calls[key] = calls.get(key, 0) + 1
        spent[key] = spent.get(key, 0.0) + span.attributes.get("gen_ai.usage.cost.amount", 0.0)
    assert set(rows) == set(calls)
    for key, row in rows.items():
        assert row["calls"] >= calls[key] // 2 and row["p95_seconds"] is not None
        assert 0 < row["p95_seconds"] <= 81.92
        if key[0] == UNPRICED_MODEL:
            assert row["cost"] is None  # unpriced, not free
        else:
            assert row["cost"] == pytest.approx(spent[key], rel=0.6)
    code, table, _ = run(
        "report", "--prometheus", base, "--since", "1h", "--by", "tracking_id", "--at", str(now)
    )
    assert code == 0 and table.splitlines()[1].split()[:2] == ["tracking_id", "calls"]
    assert {line.split()[0] for line in table.splitlines()[3:]} == {"checkout", "search", "(none)"}
    code, table, _ = run(
        "report", "--prometheus", base, "--since", "1h0m30s", "--by", "model", "--at", str(now)
    )
    by_model = {line.split()[0]: line.split()[-2] for line in table.splitlines()[3:]}
    assert code == 0 and by_model[UNPRICED_MODEL] == "unpriced" and list(by_model)[-1] == UNPRICED_MODEL


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--since", "thirty days", "--since takes"),
        ("--since", "1.5h", "--since takes"),
        ("--by", "colour", "--by takes"),
    ],
)
def test_report_rejects_bad_arguments(flag, value, message) -> None:
    code, _, err = run("report", "--prometheus", "http://127.0.0.1:9", flag, value)
    assert code == 2 and message in err


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


def test_console_spend_table_at_exit(tmp_path, server) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
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
    lines = result.stdout.splitlines()
    assert lines[0] == "LLM spend of this run (otel-tokencost)"
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    mini = genai_cost("gpt-4o-mini", 1000, 200) + genai_cost("gpt-4o-mini", 50, 5)
    assert rows["gpt-4o-mini"][:4] == ["2", "1050", "205", f"{mini:.6f}"]
    assert rows["gpt-4.1"][:4] == ["1", "300", "30", f"{genai_cost('gpt-4.1', 300, 30):.6f}"]
    assert rows["total"] == ["3", f"{mini + genai_cost('gpt-4.1', 300, 30):.6f}"]
    assert API_KEY not in result.stdout + result.stderr


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
