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


def run_app(tmp_path: Path, server, **env: str) -> subprocess.CompletedProcess:
    app = tmp_path / "app.py"
    app.write_text(APP)
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


def test_disabled_instrumentations_switches_it_off(tmp_path, server) -> None:
    result = run_app(tmp_path, server, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="tokencost_openai")
    assert "APP-RESULT 2000" in result.stdout
    assert console_spans(result.stdout) == []
