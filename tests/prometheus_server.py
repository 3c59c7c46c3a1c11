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
    """A Prometheus server scraping one target every second, with the project's alert rules."""

    def __init__(self, target_port: int, workdir: Path) -> None:
        self.port = free_port()
        shutil.copy(CONFIG / "prometheus/alerts.yml", workdir / "alerts.yml")
        (workdir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\n"
            "scrape_configs:\n  - job_name: app\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
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

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="session")
def scraped(server, tmp_path_factory):
    """An instrumented app exposing its metrics, some traffic, and a Prometheus that scraped it all.

    One per session: the app's exposition uses prometheus_client's global registry.
    """
    require_tool("prometheus")
    import openai
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
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    prometheus = Prometheus(app_port, tmp_path_factory.mktemp("prometheus"))
    try:
        # Traffic before and after Prometheus first sees the series, as for an app that keeps running:
        # increase() over a range needs the counters to move while they are scraped.
        send_traffic(client, server.base_url)
        prometheus.wait_for("sum(gen_ai_client_operation_duration_seconds_count)", lambda r: bool(r))
        time.sleep(1.5)
        send_traffic(client, server.base_url)
        finished = spans.get_finished_spans()
        prometheus.wait_for(
            "sum(gen_ai_client_operation_duration_seconds_count)",
            lambda r: bool(r) and float(r[0]["value"][1]) == len(finished),
        )
    except BaseException:
        prometheus.stop()
        raise
    finally:
        otel_tokencost.uninstrument()  # the rest of the suite instruments with its own providers
    yield prometheus, finished
    prometheus.stop()


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
