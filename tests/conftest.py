"""Fixtures: the package's local server, the SDK's in-memory exporters, instrumented clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import openai
import pytest
from hypothesis import HealthCheck, settings
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_tokencost import OpenAIInstrumentor
from otel_tokencost.server import LocalServer

# Internal errors of the instrumentation fail the test instead of being logged away.
os.environ["OTEL_TOKENCOST_STRICT"] = "1"
os.environ.pop("OTEL_TOKENCOST_PRICES", None)
os.environ.pop("OTEL_TOKENCOST_STREAM_USAGE", None)

# Property tests judge inputs, not the machine's speed: a fresh machine builds Hypothesis' character
# tables on its first text draw (seconds), and a busy one runs any example late.
settings.register_profile("machine-independent", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("machine-independent")

API_KEY = "sk-test-secret-key-0123456789"
pytest_plugins = ["prometheus_server"]  # the `scraped` fixture: a real Prometheus and an app it scrapes


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


class Telemetry:
    """The in-memory span exporter and metric reader, with helpers to read them."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self):
        return self.exporter.get_finished_spans()

    def span(self):
        spans = self.spans()
        assert len(spans) == 1, [span.name for span in spans]
        return spans[0]

    def points(self, name: str) -> list:
        data = self.reader.get_metrics_data()
        found = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def metric_units(self) -> dict[str, str]:
        data = self.reader.get_metrics_data()
        return {
            metric.name: metric.unit
            for resource_metrics in data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        }


SECRETS = (API_KEY, "Bearer ", "user:pw@")


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}"


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """The exporters; afterwards every attribute and event of every span is swept for the test key."""
    recorded = Telemetry()
    yield recorded
    for span in recorded.spans():
        assert_no_secret(repr(dict(span.attributes or {})), f"span {span.name}")
        for event in span.events:
            assert_no_secret(f"{event.name} {dict(event.attributes or {})}", f"an event of {span.name}")


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog) -> Iterator[None]:
    """Every log line of every test is swept for the test key and credentials."""
    caplog.set_level("DEBUG", logger="otel_tokencost")
    yield
    assert_no_secret(caplog.text, "the log")


@pytest.fixture
def instrumented(telemetry: Telemetry) -> Iterator[Telemetry]:
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        skip_dep_check=True,
    )
    yield telemetry
    instrumentor.uninstrument()


@pytest.fixture
def capturing(monkeypatch, telemetry: Telemetry) -> Iterator[Telemetry]:
    """Instrumented with message content captured."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    yield telemetry
    instrumentor.uninstrument()


@pytest.fixture
def client(server: LocalServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def async_client(server: LocalServer):
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as sdk:
        yield sdk


def genai_cost(
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached: int = 0,
    provider: str | None = None,
    input_audio: int = 0,
    output_audio: int = 0,
    tier: str | None = None,
):
    """The cost genai-prices itself computes for this usage (model-only lookup unless a provider is named),
    at the rates of the service `tier` that served the call when one is named."""
    usage = genai_prices.Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cached,
        input_audio_tokens=input_audio,
        output_audio_tokens=output_audio,
    )
    kwargs: dict = {} if provider is None else {"provider_id": provider}
    if tier is not None:
        kwargs["price_context"] = {"service_tier": tier}
    return genai_prices.calc_price(usage, model, **kwargs).total_price


def as_float(amount: Decimal) -> float:
    return float(amount)


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_benchmark(script: str, report: Path, timeout: float) -> tuple[dict[str, Any], str]:
    """Run `benchmarks/<script> --quick --check`; its JSON report and what it printed, once it passed."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--check", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads(report.read_text()), done.stdout
