"""A real Prometheus (Debian's package) for the tests, and an instrumented app it scrapes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CONFIG = Path(__file__).parent.parent / "collector-config"


def require_tool(name: str, package: str = "prometheus") -> str:
    """The tool's path; a missing tool fails in CI and skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed: .ci/run installs Debian's {package} package")
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    """A Prometheus server with the project's alert rules, scraping one target every second (if given)."""

    def __init__(self, target_port: int | None, workdir: Path) -> None:
        self.port = free_port()
        shutil.copy(CONFIG / "prometheus/alerts.yml", workdir / "alerts.yml")
        config = "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\n"
        if target_port is not None:
            config += (
                "scrape_configs:\n  - job_name: app\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{target_port}']\n"
            )
        (workdir / "prometheus.yml").write_text(config)
        self.process = subprocess.Popen(
            [
                require_tool("prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)

    def query(self, expr: str) -> list:
        reply = self.api("query", query=expr)
        assert reply["status"] == "success", (expr, reply)
        return reply["data"]["result"]

    def wait_for(self, expr: str, predicate, timeout: float = 60) -> list:
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.query(expr)
                if predicate(result):
                    return result
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expr}")
            time.sleep(0.5)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list:
        reply = self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))
        assert reply["status"] == "success", (expr, reply)
        return reply["data"]["result"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def backfilled(workdir: Path, openmetrics: str) -> Prometheus:
    """A Prometheus holding only the timestamped samples of `openmetrics` (OpenMetrics text without
    its `# EOF`), written with promtool's backfill: any history, exactly as given."""
    source = workdir / "samples.om"
    source.write_text(openmetrics + "# EOF\n")
    backfill = [require_tool("promtool"), "tsdb", "create-blocks-from", "openmetrics"]
    result = subprocess.run([*backfill, source, workdir / "data"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    prometheus = Prometheus(None, workdir)
    try:
        prometheus.wait_for("vector(1)", bool, timeout=30)
    except BaseException:
        prometheus.stop()
        raise
    return prometheus


@dataclass
class Scraped:
    """A Prometheus that scraped an instrumented app, the app's spans (and those of the second half of
    its traffic), a Unix time between the two halves, and one after Prometheus held all of it."""

    prometheus: Prometheus
    spans: list
    second_half: list
    middle: float
    done: float


@pytest.fixture(scope="session")
def scraped(server, tmp_path_factory) -> Iterator[Scraped]:
    """An instrumented app exposing its metrics, its traffic, and a Prometheus that scraped it all.

    The first half of the traffic is over before Prometheus first scrapes, so every series reaches it
    already non-zero, as a new process's series do behind the collector; the second half adds to some of them
    and starts a one-off series with its only call. One per session: the app's exposition uses
    prometheus_client's global registry.
    """
    require_tool("prometheus")
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import start_http_server

    import otel_tokencost

    app_port = free_port()
    start_http_server(app_port, addr="127.0.0.1")
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    otel_tokencost.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        client = _client(server.base_url)
        send_traffic(client, server.base_url)
        record_as_another_instrumentation(meter_provider, spans.get_finished_spans())
        first_half = len(spans.get_finished_spans())
        prometheus = Prometheus(app_port, tmp_path_factory.mktemp("prometheus"))
        try:
            middle = _between_halves(prometheus, first_half)
            send_more_traffic(client)
            finished = spans.get_finished_spans()
            _wait_for_calls(prometheus, len(finished))
            done = time.time()
        except BaseException:
            prometheus.stop()
            raise
    finally:
        otel_tokencost.uninstrument()  # the rest of the suite instruments with its own providers
    yield Scraped(prometheus, list(finished), list(finished[first_half:]), middle, done)
    prometheus.stop()


def _client(base_url: str):
    import openai

    return openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)


def record_as_another_instrumentation(meter_provider, spans) -> None:
    """What openai-v2, instrumenting the same calls, records: the same standard metrics, under its own
    scope. The package's report and dashboard count only the package's."""
    meter = meter_provider.get_meter("opentelemetry.instrumentation.openai_v2")
    duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    keys = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "server.address")
    for span in spans:
        attributes = {key: span.attributes[key] for key in keys if key in span.attributes}
        duration.record(0.5, attributes)
        tokens.record(1000, {**attributes, "gen_ai.token.type": "input"})


def _wait_for_calls(prometheus: Prometheus, calls: int) -> None:
    prometheus.wait_for(
        'sum(gen_ai_client_operation_duration_seconds_count{otel_scope_name="otel_tokencost"})',
        lambda r: bool(r) and float(r[0]["value"][1]) == calls,
    )


def _between_halves(prometheus: Prometheus, first_half: int) -> float:
    """Once Prometheus holds the first half: a moment with its samples before and none of the second
    half's within a second after (the second half starts 2.5 s later)."""
    _wait_for_calls(prometheus, first_half)
    time.sleep(1.5)
    middle = time.time()
    time.sleep(2.5)
    return middle


UNPRICED_MODEL = "my-finetune-v7"  # no price anywhere: its calls record tokens, not cost


def send_traffic(client, base_url: str) -> None:
    import openai
    import requests

    from otel_tokencost import track

    for model, tracking_id in (("gpt-4o-mini", "checkout"), ("gpt-4.1", "search"), ("gpt-4o-mini", "search")):
        with track(tracking_id=tracking_id):
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "one two three"}]
            )
    client.chat.completions.create(model=UNPRICED_MODEL, messages=[{"role": "user", "content": "hi"}])
    stream = client.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    for _ in stream:
        pass
    requests.post(f"{base_url}/chat/completions", json={"model": "gpt-4o-mini", "messages": []}, timeout=5)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4.1", messages=[], extra_headers={"x-mock-status": "500"})


ONE_OFF = "one-off"  # a tracking id whose only call is in the second half: its series appears once


def send_more_traffic(client) -> None:
    """The second half: more of one series, only an unpriced call for a tracking id that had priced
    ones, and a one-off call that starts a series; no untracked call."""
    from otel_tokencost import track

    for model, tracking_id in (("gpt-4o-mini", "search"), (UNPRICED_MODEL, "checkout"), ("gpt-4.1", ONE_OFF)):
        with track(tracking_id=tracking_id):
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "one two three"}]
            )
