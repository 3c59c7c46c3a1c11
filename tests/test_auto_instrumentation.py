"""`opentelemetry-instrument python app.py` picks the instrumentor up from its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from otel_tokencost import names

from conftest import API_KEY, genai_cost

APP = textwrap.dedent(
    """
    import json, openai
    client = openai.OpenAI(max_retries=0)
    usage = json.dumps({"prompt_tokens": 2000, "completion_tokens": 150, "total_tokens": 2150})
    messages = [{"role": "user", "content": "hi"}]
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, extra_headers={"x-mock-usage": usage}
    )
    print("APP-RESULT", reply.usage.prompt_tokens)
    """
)


def console_spans(stdout: str) -> list[dict]:
    """The JSON objects the console span exporter printed, one per span."""
    decoder, spans, index = json.JSONDecoder(), [], 0
    while (index := stdout.find("{", index)) != -1:
        try:
            item, end = decoder.raw_decode(stdout, index)
        except ValueError:
            index += 1
            continue
        if isinstance(item, dict) and "context" in item:
            spans.append(item)
        index = end
    return spans


def run_app(tmp_path: Path, server, app_code: str = APP, **env: str) -> subprocess.CompletedProcess:
    app = tmp_path / "app.py"
    app.write_text(app_code)
    command = [str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, str(app)]
    environment = {
        **os.environ,
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, check=True)


def test_opentelemetry_instrument_console_output(tmp_path, server) -> None:
    result = run_app(tmp_path, server)
    assert "APP-RESULT 2000" in result.stdout
    (span,) = console_spans(result.stdout)
    assert (span["name"], span["kind"]) == ("chat gpt-4o-mini", "SpanKind.CLIENT")
    attributes = span["attributes"]
    assert attributes[names.USAGE_INPUT_TOKENS] == 2000
    assert attributes[names.USAGE_OUTPUT_TOKENS] == 150
    assert attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 2000, 150))
    assert API_KEY not in result.stdout


def test_the_package_alone_gives_opentelemetry_instrument_its_sdk_configurator() -> None:
    """Without a configurator, `opentelemetry-instrument` sets no SDK providers up and nothing is
    exported: the one install has to bring one, not an extra."""
    from importlib.metadata import entry_points, requires

    from packaging.requirements import Requirement

    required = {Requirement(line).name for line in requires("otel-tokencost") if "extra ==" not in line}
    providers = {point.dist.name for point in entry_points(group="opentelemetry_configurator")}
    assert providers & required


def test_disabled_instrumentations_switches_it_off(tmp_path, server) -> None:
    result = run_app(tmp_path, server, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="tokencost_openai")
    assert "APP-RESULT 2000" in result.stdout
    assert console_spans(result.stdout) == []


def test_budgets_given_to_instrument_apply_under_opentelemetry_instrument(tmp_path, server) -> None:
    """The agent has instrumented openai already: instrument()'s budget caps its calls all the same."""
    app = textwrap.dedent(
        """
        import openai, otel_tokencost
        otel_tokencost.instrument(budgets=[otel_tokencost.Budget(limit=0.0)])
        try:
            openai.OpenAI(max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            print("APP-RESULT sent")
        except otel_tokencost.BudgetExceededError:
            print("APP-RESULT refused")
        """
    )
    server.reset()  # the server keeps the newest 100 bodies: count from none
    result = run_app(tmp_path, server, app)
    assert "APP-RESULT refused" in result.stdout and server.requests_seen == 0
    (span,) = console_spans(result.stdout)
    assert span["attributes"][names.ERROR_TYPE] == "BudgetExceededError"


def test_a_bad_prices_file_is_reported_once_under_opentelemetry_instrument(tmp_path, server) -> None:
    """Its instrumentors (openai's and requests') share what they are configured with."""
    bad = tmp_path / "prices.toml"
    bad.write_text("[[providers]]\nmatch = 'x'\n")
    result = run_app(
        tmp_path,
        server,
        APP.replace("import json, openai", "import json, openai, requests"),
        OTEL_TOKENCOST_PRICES=str(bad),
    )
    assert "APP-RESULT 2000" in result.stdout
    assert result.stderr.count("prices file ignored") == 1, result.stderr


def run_script(script: str, server) -> dict:
    """Run `script` in a fresh interpreter (nothing imported yet); what it printed last, as JSON."""
    preamble = textwrap.dedent(
        f"""
        import json, sys
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import otel_tokencost

        BASE_URL, API_KEY = {server.base_url!r}, {API_KEY!r}
        USAGE = json.dumps({{"prompt_tokens": 2000, "completion_tokens": 150, "total_tokens": 2150}})
        MESSAGES = [{{"role": "user", "content": "hi"}}]
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))

        def calls():
            import openai, requests

            client = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0)
            headers = {{"x-mock-usage": USAGE}}
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
            requests.post(BASE_URL + "/chat/completions", json={{"model": "gpt-4o", "messages": MESSAGES}},
                          headers={{**headers, "Authorization": "Bearer " + API_KEY}})
            spans = exporter.get_finished_spans()
            exporter.clear()
            return [[span.name, span.attributes["gen_ai.usage.cost.amount"]] for span in spans]
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", preamble + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_instrumenting_imports_neither_library_and_patches_each_when_the_app_does(server) -> None:
    result = run_script(
        """
        def imported():
            return sorted(name for name in ("openai", "requests", "genai_prices") if name in sys.modules)

        otel_tokencost.instrument(tracer_provider=provider)
        by_instrument = imported()
        import requests
        with_requests = imported()
        import openai
        print(json.dumps({"imported by instrument()": by_instrument, "with requests": with_requests,
                          "with openai": imported(), "spans": calls()}))
        """,
        server,
    )
    assert result["imported by instrument()"] == []
    # The prices load with the openai SDK, not in its first call; `requests` alone does not load them.
    assert result["with requests"] == ["requests"]
    assert result["with openai"] == ["genai_prices", "openai", "requests"]
    assert result["spans"] == [
        ["chat gpt-4o-mini", float(genai_cost("gpt-4o-mini", 2000, 150))],
        ["chat gpt-4o", float(genai_cost("gpt-4o", 2000, 150))],
    ]


def test_uninstrumenting_before_the_import_patches_nothing_and_instrumenting_again_does(server) -> None:
    result = run_script(
        """
        otel_tokencost.instrument(tracer_provider=provider)
        otel_tokencost.uninstrument()
        import openai, requests

        patched = [hasattr(openai._base_client.SyncAPIClient.request, "__wrapped__"),
                   hasattr(requests.Session.send, "__wrapped__")]
        uninstrumented = calls()
        otel_tokencost.instrument(tracer_provider=provider)
        print(json.dumps({"patched": patched, "uninstrumented": uninstrumented, "again": calls()}))
        """,
        server,
    )
    assert result["patched"] == [False, False] and result["uninstrumented"] == []
    assert [name for name, _ in result["again"]] == ["chat gpt-4o-mini", "chat gpt-4o"]
