"""`otel-tokencost demo`: traffic to a local server through the openai SDK and `requests`, then the bill.

The traffic is attributed with `track()` to three made-up services, and a free tier's budget stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from . import Budget, BudgetExceededError, instrument, track, uninstrument
from .report import SpendReport
from .server import LocalServer

FREE_TIER_BUDGET = 0.0002  # USD
QUESTIONS = (
    "What does a span measure in OpenTelemetry?",
    "Name three reasons an LLM bill grows without explanation.",
    "Explain prompt caching in one sentence.",
)


def _providers(report: SpendReport) -> tuple[TracerProvider, MeterProvider, bool]:
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "otel-tokencost-demo")})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(report)
    readers = []
    exporting = bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if exporting:
        span_exporter, metric_exporter = _otlp_exporters()
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        readers.append(PeriodicExportingMetricReader(metric_exporter))
    return tracer_provider, MeterProvider(resource=resource, metric_readers=readers), exporting


def _otlp_exporters() -> tuple[Any, Any]:
    """OTLP exporters for the protocol the standard variable names (gRPC unless it says http)."""
    if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(), OTLPMetricExporter()


def _sync_traffic(openai, base_url: str) -> None:
    with openai.OpenAI(base_url=base_url, api_key="demo-key") as client:
        for model in ("gpt-4o-mini", "gpt-4.1", "deepseek-chat"):
            for question in QUESTIONS:
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}])
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": QUESTIONS[0]}], stream=True
        )
        for _ in stream:
            pass
        client.embeddings.create(model="text-embedding-3-small", input=list(QUESTIONS))
        if hasattr(client, "responses"):  # openai 1.66 and later
            client.responses.create(model="gpt-4.1", input=QUESTIONS[1])
        client.chat.completions.create(model="my-finetune-v7", messages=[{"role": "user", "content": "hi"}])
        with contextlib.suppress(
            openai.InternalServerError
        ):  # a failed call: a span with error.type, no cost
            client.with_options(max_retries=0).chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "fail"}],
                extra_headers={"x-mock-status": "500"},
            )


def _requests_traffic(base_url: str) -> None:
    """The same API called with plain `requests`, as many services do, streaming and not."""
    import requests

    with requests.Session() as session:
        for question in QUESTIONS:
            session.post(
                f"{base_url}/chat/completions",
                json={"model": "deepseek-chat", "messages": [{"role": "user", "content": question}]},
                headers={"Authorization": "Bearer demo-key"},
                timeout=10,
            )
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": QUESTIONS[1]}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with session.post(f"{base_url}/chat/completions", json=body, stream=True, timeout=10) as response:
            for _ in response.iter_lines():
                pass


def _free_tier(openai, base_url: str, out: TextIO) -> None:
    """Calls inside a tracking id with a small budget, until the budget refuses one."""
    with (
        openai.OpenAI(base_url=base_url, api_key="demo-key") as client,
        track(tracking_id="free-tier") as spend,
    ):
        for attempt in range(1, 100):
            try:
                client.chat.completions.create(
                    model="gpt-4.1", messages=[{"role": "user", "content": QUESTIONS[0]}]
                )
            except BudgetExceededError as refused:
                print(
                    f"Budget stopped call {attempt} of the free tier before it was sent: {refused}", file=out
                )
                break
    print(f"The free tier spent {spend.cost} USD in {spend.calls - 1} calls.", file=out)


async def _async_traffic(openai, base_url: str) -> None:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="demo-key") as client:
        calls = [
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": q}])
            for q in QUESTIONS
        ]
        await asyncio.gather(*calls)
        stream = await client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": QUESTIONS[2]}], stream=True
        )
        async for _ in stream:
            pass


def _take_over_instrumentation(out: TextIO) -> None:
    """Under `opentelemetry-instrument`, the demo's calls would go to the agent's providers and not to
    its report: it takes the instrumentation over, with its own providers (which export over OTLP as
    the agent's would, where OTEL_EXPORTER_OTLP_ENDPOINT is set)."""
    from . import OpenAIInstrumentor, RequestsInstrumentor

    instrumentors = (OpenAIInstrumentor(), RequestsInstrumentor())
    taken = [instrumentor for instrumentor in instrumentors if instrumentor.is_instrumented_by_opentelemetry]
    for instrumentor in taken:
        instrumentor.uninstrument()
    if taken:
        print(
            "Already instrumented (by opentelemetry-instrument): the demo instruments with its own providers",
            file=out,
        )


def run(out: TextIO = sys.stdout) -> int:
    """Run the demo; returns the process exit code."""
    try:
        import openai
    except ImportError:
        print('The demo needs the openai SDK: pip install "otel-tokencost[openai]"', file=out)
        return 1
    report = SpendReport()
    tracer_provider, meter_provider, exporting = _providers(report)
    budget = Budget(limit=FREE_TIER_BUDGET, tracking_id="free-tier")
    try:
        with LocalServer() as server, tempfile.TemporaryDirectory() as folder:
            # The server stands for a company gateway in front of OpenAI: a prices file says so (models
            # OpenAI does not sell, deepseek-chat say, are still priced by their name).
            prices = Path(folder) / "prices.toml"
            prices.write_text(f'[[providers]]\nmatch = "{server.base_url}"\nprices_from = "openai"\n')
            _take_over_instrumentation(out)
            instrument(
                tracer_provider=tracer_provider,
                meter_provider=meter_provider,
                prices=str(prices),
                budgets=[budget],
            )
            print(
                f"Local OpenAI-compatible server on {server.base_url}, priced as an OpenAI gateway "
                "by a prices file",
                file=out,
            )
            with track(tracking_id="checkout", attributes={"app.feature": "assistant"}):
                _sync_traffic(openai, server.base_url)
            with track(tracking_id="search"):
                _requests_traffic(server.base_url)
            with track(tracking_id="support-bot"):
                asyncio.run(_async_traffic(openai, server.base_url))
            _free_tier(openai, server.base_url, out)
    finally:
        uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()
    for group in ("model", "tracking id"):
        print(f"\nSpend by {group}:", file=out)
        print(report.table(group), file=out)
    print(file=out)
    target = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    print(
        f"Spans and metrics sent over OTLP to {target} (a failure to deliver them is logged above)."
        if exporting
        else "Set OTEL_EXPORTER_OTLP_ENDPOINT to export the spans and metrics over OTLP.",
        file=out,
    )
    return 0
