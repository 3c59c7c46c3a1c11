"""What otel_tokencost adds to an LLM call: time per call, per stream chunk, memory and import time.

    python benchmarks/bench.py [--quick] [--json PATH] [--check]

Every case runs bare and instrumented in the same process, in interleaved rounds (bare, instrumented,
then instrumented, bare, ...): the package is instrumented and uninstrumented between rounds, and each
round starts with a warm-up and a gc.collect(). A round's figure is the median of its calls, each timed
with perf_counter (a call the host interrupted is an outlier, not a shift). A case reports the median
round of each variant and, as "added", the median of the per-round differences, so that drift on a noisy
machine hits both variants alike.

The async client's chat and stream run each call to its end on one event loop (`run_until_complete`),
so their bare figures include a turn of the loop.

Streams are also timed chunk by chunk as the for loop receives them: "per chunk" is the median step
between two chunks, instrumented minus bare, by the same rounds. It is what each further chunk costs; the
per-call part (span, metrics, pricing) is in "added" and in the non-streaming cases.

The floor is what the OpenTelemetry SDK itself charges for what one call emits (a span with 15
attributes and four histogram records with 6 attributes, 7 on token counts). It is timed two ways in
each round of a case, so that a machine whose speed drifts during the run does not skew the ratios:
- in place: a third variant runs the bare call followed by that SDK work, and the floor is its
  difference from the bare call. This is what the work costs where an instrumentation does it, after
  the SDK's own call has filled the caches with other things; "x floor" divides by it.
- hot: the same work alone in a tight loop, where everything stays cached. It is about half the floor
  in place; "x hot floor" divides by it. The first row is its median over all the cases.
Spans go through a SimpleSpanProcessor to an exporter that drops them; metrics go to an
InMemoryMetricReader.

"in-process chat, no-op providers" instruments with the API's no-op providers: what it adds is the
package's own code, in place. "Hooks alone, hot" times the same code without the SDK's call around it,
best of tight loops: the openai patch's path for one call around a stand-in that returns a parsed
completion (with no-op providers, then with the SDK's, in hot floors), the stream hook per chunk, and
what watching a raw `requests` stream's SSE body adds per event, fed one event per piece.

Then: whether responses and streams are released once the app drops them (weak references), RSS over
many instrumented calls (tracemalloc off; then a short traced run for the Python heap), and the import
time of otel_tokencost (`-X importtime` in fresh interpreters, alone and after openai), what
`instrument()` takes in a fresh interpreter (which must import neither openai nor requests), and how
much longer a process's first instrumented call takes than the next ones (the SDK's own first call
made before instrumenting).

"requests wrapper alone" calls `Session.post` on a session whose transport adapter answers from memory
and which prepares each request once: what remains is the two patched methods, so their cost stands out
of the noise. Its embeddings case answers a batch of 32 vectors of 1536 floats (316 KB), which the
package reads from the body's tail; its image case sends a chat request with a 1 MB base64 image as
`data=` bytes, whose model and parameters the package reads without decoding the image. Every LLM call
measured is priced (checked before the rounds): the stub and the local server through a prices file
that gives them OpenAI's rates.

--check exits 1 when a regression guard fails. The guards are deliberately generous: they are there to
catch a tenfold regression on a noisy CI machine, not a few percent.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

# Reproducible settings; an internal error of the instrumentation raises instead of being logged away.
for _name in (
    "OTEL_TOKENCOST_PRICES",
    "OTEL_TOKENCOST_STREAM_USAGE",
    "OTEL_TOKENCOST_REQUESTS_PATHS",
    "OTEL_TOKENCOST_TRACKING_BAGGAGE_KEY",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
):
    os.environ.pop(_name, None)
os.environ["OTEL_TOKENCOST_STRICT"] = "1"

import openai  # noqa: E402
import requests  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.metrics import NoOpMeterProvider  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.trace import NoOpTracerProvider, SpanKind  # noqa: E402

import otel_tokencost  # noqa: E402
from otel_tokencost.server import LocalServer  # noqa: E402

OPENAI_MAJOR = int(openai.__version__.split(".")[0])
if OPENAI_MAJOR >= 3:
    import httpx2 as httpx_module
else:
    import httpx as httpx_module

API_KEY = "sk-bench-0123456789"
MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = "text-embedding-3-small"
MESSAGES = [{"role": "user", "content": "How much does this cost?"}]
STREAM_OPTIONS = {"include_usage": True}  # asked by the caller: bare and instrumented read the same chunks
CONTENT_CHUNKS = 50
STREAM_CHUNKS = CONTENT_CHUNKS + 3  # role, 50 contents, finish, usage-only ([DONE] is not a chunk)
IN_PROCESS_BASE_URL = "https://api.openai.com/v1"  # priced by provider; the mock transport answers
STUB_BASE_URL = "http://stub.bench.invalid/v1"

# Regression guards (see --check): generous on purpose.
GUARD_ADDED_X_FLOOR = 8.0
GUARD_US_PER_CHUNK = 15.0
GUARD_NON_LLM_US = 20.0
GUARD_MEMORY_MB = 30.0
GUARD_IMPORT_MS = 150.0
GUARD_INSTRUMENT_MS = 600.0
GUARD_FIRST_CALL_MS = 20.0


# ---------------------------------------------------------------------------------------------
# Canned responses


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# As api.openai.com answers: the usage's details at 0, the tier and a fingerprint.
USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": CONTENT_CHUNKS,
    "total_tokens": 12 + CONTENT_CHUNKS,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
RESPONSE_META = {"service_tier": "default", "system_fingerprint": "fp_bench"}
CHAT_BODY = _dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "It costs very little.",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
        **RESPONSE_META,
    }
)


def _sse_body() -> bytes:
    """A chat completion streamed as OpenAI streams it: role, CONTENT_CHUNKS words, finish, usage."""
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        **RESPONSE_META,
    }

    def chunk(delta: dict, finish: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice], "usage": None}

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": f"word{index} "}) for index in range(CONTENT_CHUNKS)]
    events.append(chunk({}, "stop"))
    events.append({**base, "choices": [], "usage": USAGE})
    return b"".join(b"data: " + _dumps(event) + b"\n\n" for event in events) + b"data: [DONE]\n\n"


SSE_BODY = _sse_body()
VECTOR = [(byte - 128) / 128 for byte in range(0, 256, 32)]  # 8 floats, exact in float32


def _embedding_body(as_base64: bool) -> bytes:
    vector: Any = VECTOR
    if as_base64:
        vector = base64.b64encode(struct.pack(f"<{len(VECTOR)}f", *VECTOR)).decode()
    data = [{"object": "embedding", "index": 0, "embedding": vector}]
    usage = {"prompt_tokens": 4, "total_tokens": 4}
    return _dumps({"object": "list", "data": data, "model": EMBEDDING_MODEL, "usage": usage})


EMBEDDING_BODY = _embedding_body(False)
EMBEDDING_BODY_BASE64 = _embedding_body(True)
BATCH_INPUTS, BATCH_DIMENSIONS = 32, 1536
BATCH_CASE = f"requests wrapper alone, embeddings {BATCH_INPUTS}x{BATCH_DIMENSIONS}"


def _embedding_batch_body() -> bytes:
    """A batch of long float vectors (~0.3 MB of JSON): what a raw `requests` user gets back."""
    vector = [round((index % 251 - 125) / 1000, 6) for index in range(BATCH_DIMENSIONS)]
    data = [{"object": "embedding", "index": index, "embedding": vector} for index in range(BATCH_INPUTS)]
    usage = {"prompt_tokens": 4 * BATCH_INPUTS, "total_tokens": 4 * BATCH_INPUTS}
    return _dumps({"object": "list", "data": data, "model": EMBEDDING_MODEL, "usage": usage})


EMBEDDING_BATCH_BODY = _embedding_batch_body()
IMAGE_BYTES = 750_000
IMAGE_CASE = "requests wrapper alone, chat with a 1 MB image as data="


def _image_request_body() -> bytes:
    """A chat request with an image as a base64 data URL (1 MB of JSON), encoded by the app itself."""
    image = base64.b64encode(bytes(range(256)) * (IMAGE_BYTES // 256)).decode()
    parts = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
    ]
    return _dumps({"model": MODEL, "messages": [{"role": "user", "content": parts}], "max_tokens": 300})


IMAGE_REQUEST_BODY = _image_request_body()
NOT_FOUND_BODY = _dumps({"error": {"message": "Unknown request URL", "type": "invalid_request_error"}})
JSON_HEADERS = {"content-type": "application/json"}
SSE_HEADERS = {"content-type": "text/event-stream"}


def _mock_handler(request: Any) -> Any:
    """The in-process transport: a canned answer for each endpoint, nothing parsed."""
    path = request.url.path
    content = request.content.replace(b": ", b":")  # openai 1.x and 2.x put a space after the colon
    if path.endswith("/chat/completions"):
        if b'"stream":true' in content:
            return httpx_module.Response(200, content=SSE_BODY, headers=SSE_HEADERS)
        return httpx_module.Response(200, content=CHAT_BODY, headers=JSON_HEADERS)
    if path.endswith("/embeddings"):
        body = EMBEDDING_BODY_BASE64 if b'"encoding_format":"base64"' in content else EMBEDDING_BODY
        return httpx_module.Response(200, content=body, headers=JSON_HEADERS)
    return httpx_module.Response(404, content=NOT_FOUND_BODY, headers=JSON_HEADERS)


class StubAdapter(requests.adapters.BaseAdapter):
    """A requests transport adapter that answers from memory: chat completions, a batch of embeddings,
    else 404."""

    def send(self, request: Any, stream: bool = False, **kwargs: Any) -> requests.Response:
        url = request.url
        content = (
            CHAT_BODY
            if url.endswith("/chat/completions")
            else EMBEDDING_BATCH_BODY
            if url.endswith("/embeddings")
            else None
        )
        response = requests.Response()
        response.status_code = 404 if content is None else 200
        response.reason = "Not Found" if content is None else "OK"
        response._content = NOT_FOUND_BODY if content is None else content
        response.headers = requests.structures.CaseInsensitiveDict(JSON_HEADERS)
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


class StubSession(requests.Session):
    """The stub adapter for STUB_BASE_URL, no environment lookups, each (method, URL, body) prepared once.

    `Session.request` and `Session.send` themselves (the patched methods) run unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.mount(STUB_BASE_URL, StubAdapter())
        self._prepared: dict[tuple[str, str, int, int], requests.PreparedRequest] = {}

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        key = (request.method, request.url, id(request.data or None), id(request.json))
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = super().prepare_request(request)
        return prepared


# ---------------------------------------------------------------------------------------------
# Telemetry


class DroppingExporter(SpanExporter):
    """Counts spans and keeps the last one; drops everything else."""

    def __init__(self) -> None:
        self.count = 0
        self.last: Any = None

    def export(self, spans: Any) -> SpanExportResult:
        self.count += len(spans)
        self.last = spans[-1]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


exporter = DroppingExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
metric_reader = InMemoryMetricReader()
meter_provider = MeterProvider(metric_readers=[metric_reader])


# The stub's and the local server's calls priced at OpenAI's rates, like a gateway in a prices file.
_PRICES_DIR = tempfile.TemporaryDirectory(prefix="otel-tokencost-bench-")  # removed at exit
PRICES_PATH = Path(_PRICES_DIR.name) / "prices.json"


def write_prices(*base_urls: str) -> None:
    entries = [{"match": url, "prices_from": "openai"} for url in (STUB_BASE_URL, *base_urls)]
    PRICES_PATH.write_text(json.dumps({"providers": entries}))


def tokencost_on() -> None:
    otel_tokencost.instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider, prices=str(PRICES_PATH)
    )


def own_code_on() -> None:
    otel_tokencost.instrument(
        tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider(), prices=str(PRICES_PATH)
    )


def tokencost_off() -> None:
    otel_tokencost.uninstrument()


def _floor_call() -> Callable[[], None]:
    """One call's worth of SDK work, without the instrumentation: 15 span attributes, 4 records."""
    tracer = tracer_provider.get_tracer("bench.floor")
    meter = meter_provider.get_meter("bench.floor")
    duration = meter.create_histogram("bench.floor.duration", unit="s")
    tokens = meter.create_histogram("bench.floor.token.usage", unit="{token}")
    cost = meter.create_histogram("bench.floor.cost", unit="USD")
    request_attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "server.address": "api.openai.com",
        "server.port": 443,
        "gen_ai.request.model": MODEL,
        "gen_ai.request.max_tokens": 500,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.top_p": 0.9,
    }
    response_attributes = {
        "gen_ai.response.model": MODEL,
        "gen_ai.response.id": "chatcmpl-bench",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 50,
        "gen_ai.usage.cost.amount": 0.0000318,
        "gen_ai.usage.cost.currency": "USD",
    }
    metric_attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "server.address": "api.openai.com",
        "server.port": 443,
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
    }
    input_attributes = {**metric_attributes, "gen_ai.token.type": "input"}
    output_attributes = {**metric_attributes, "gen_ai.token.type": "output"}
    start_span, client_kind, set_span_in_context = (
        tracer.start_span,
        SpanKind.CLIENT,
        trace.set_span_in_context,
    )

    def call() -> None:
        span = start_span("chat " + MODEL, kind=client_kind, attributes=request_attributes)
        context = set_span_in_context(span)
        duration.record(0.5, metric_attributes, context=context)
        tokens.record(12, input_attributes, context=context)
        tokens.record(50, output_attributes, context=context)
        cost.record(0.0000318, metric_attributes, context=context)
        span.set_attributes(response_attributes)
        span.end()

    return call


# ---------------------------------------------------------------------------------------------
# The measured calls


class Steps(list):
    """Where a stream case puts the time between consecutive chunks, as the for loop receives them."""


def openai_calls(
    client: openai.OpenAI, steps: Steps, extra_headers: dict[str, str] | None = None
) -> dict[str, Callable[[], None]]:
    # Methods are looked up at each call: an instrumentation may patch the SDK's resource classes.
    clock = time.perf_counter

    def chat() -> None:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers=extra_headers)

    def stream() -> None:
        last = None
        append = steps.append
        for _chunk in client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options=STREAM_OPTIONS,
            extra_headers=extra_headers,
        ):
            now = clock()
            if last is not None:
                append(now - last)
            last = now

    def embeddings() -> None:
        client.embeddings.create(model=EMBEDDING_MODEL, input="a few words to embed")

    return {"chat": chat, "stream": stream, "embeddings": embeddings}


def in_process_client() -> openai.OpenAI:
    http_client = httpx_module.Client(transport=httpx_module.MockTransport(_mock_handler))
    return openai.OpenAI(
        api_key=API_KEY, base_url=IN_PROCESS_BASE_URL, max_retries=0, http_client=http_client
    )


def openai_async_calls(
    client: openai.AsyncOpenAI, steps: Steps, loop: asyncio.AbstractEventLoop
) -> dict[str, Callable[[], None]]:
    """The async client's chat and stream, each call run to its end on `loop` (bare and instrumented
    alike pay for the loop's turn)."""
    run = loop.run_until_complete
    clock = time.perf_counter

    async def chat() -> None:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)

    async def stream() -> None:
        last = None
        append = steps.append
        chunks = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options=STREAM_OPTIONS
        )
        async for _chunk in chunks:
            now = clock()
            if last is not None:
                append(now - last)
            last = now

    return {"chat": lambda: run(chat()), "stream": lambda: run(stream())}


def in_process_async_client() -> openai.AsyncOpenAI:
    http_client = httpx_module.AsyncClient(transport=httpx_module.MockTransport(_mock_handler))
    return openai.AsyncOpenAI(
        api_key=API_KEY, base_url=IN_PROCESS_BASE_URL, max_retries=0, http_client=http_client
    )


@dataclass
class Case:
    name: str
    call: Callable[[], None]
    on: Callable[[], None]
    off: Callable[[], None]
    spans_per_call: int = 1
    llm_call: bool = True  # compared with the floor (a non-LLM call emits nothing)
    chunks: int = 0
    steps: Steps | None = None  # streams: the chunk steps of the calls


@dataclass
class Result:
    name: str
    bare_us: float
    instrumented_us: float
    added_us: float
    rounds: int
    calls_per_round: int
    chunks: int = 0
    chunk_bare_us: float | None = None
    chunk_instrumented_us: float | None = None
    added_per_chunk_us: float | None = None
    added_over_chunks_us: float | None = None  # added / chunks: the per-call part spread over the chunks
    floor_us: float | None = None  # the hot floor: the floor alone in a loop, timed in the same rounds
    added_x_floor: float | None = None  # added / hot floor
    floor_in_place_us: float | None = None  # the floor's SDK work right after a bare call
    added_x_floor_in_place: float | None = None  # added / floor in place
    bare_rounds_us: list[float] = field(default_factory=list)
    instrumented_rounds_us: list[float] = field(default_factory=list)


BARE, INSTRUMENTED, BARE_THEN_FLOOR = "bare", "instrumented", "bare then floor"


def _timed(call: Callable[[], None], calls: int) -> float:
    """The median µs of the calls of one perf_counter loop."""
    clock = time.perf_counter
    durations = []
    append = durations.append
    for _ in repeat(None, calls):
        start = clock()
        call()
        append(clock() - start)
    return statistics.median(durations) * 1e6


def _paired(bare: list[float], instrumented: list[float]) -> float:
    return statistics.median(i - b for b, i in zip(bare, instrumented, strict=True))


def measure(case: Case, rounds: int, round_seconds: float, floor_call: Callable[[], None]) -> Result:
    """Interleaved rounds of bare and instrumented calls; medians of rounds and of paired differences.

    Each round also times the floor alone in a loop of its own (the hot floor) and, for an LLM call, a
    third variant, the bare call followed by the floor's SDK work (the floor in place), so that "x floor"
    compares figures taken side by side even when the machine's speed drifts during the run.
    """
    floor_calls = max(5, round(round_seconds / 10 / (_timed(floor_call, 20) / 1e6)))

    def bare_then_floor() -> None:
        case.call()
        floor_call()

    case.on()
    for _ in range(5):
        case.call()  # imports, caches and the pricing lookup
    per_call = _timed(case.call, 10)
    calls = max(1, round(round_seconds / (per_call / 1e6)))
    warmup = max(1, calls // 10)
    case.off()
    variants = [BARE, INSTRUMENTED, BARE_THEN_FLOOR] if case.llm_call else [BARE, INSTRUMENTED]
    timings: dict[str, list[float]] = {variant: [] for variant in variants}
    steps: dict[str, list[float]] = {variant: [] for variant in variants}
    floors = []
    state = False
    for index in range(rounds):
        shift = index % len(variants)
        order = variants[shift:] + variants[:shift]
        if index % 2:
            order.reverse()
        for variant in order:
            on = variant == INSTRUMENTED
            if on != state:
                (case.on if on else case.off)()
                state = on
            call = case.call if variant != BARE_THEN_FLOOR else bare_then_floor
            for _ in range(warmup):
                call()
            gc.collect()
            if case.steps is not None:
                case.steps.clear()
            spans_before = exporter.count
            timings[variant].append(_timed(call, calls))
            spans = exporter.count - spans_before
            if case.steps is not None:
                steps[variant].append(statistics.median(case.steps) * 1e6)
            expected = calls * case.spans_per_call if on else calls if variant == BARE_THEN_FLOOR else 0
            if spans != expected:
                case.off()
                raise SystemExit(
                    f"{case.name}: {spans} spans in a round of {calls} calls ({variant}), expected {expected}"
                )
        floors.append(_timed(floor_call, floor_calls))
    if state:
        case.off()
    bare, instrumented = timings[BARE], timings[INSTRUMENTED]
    result = Result(
        name=case.name,
        bare_us=statistics.median(bare),
        instrumented_us=statistics.median(instrumented),
        added_us=_paired(bare, instrumented),
        rounds=rounds,
        calls_per_round=calls,
        chunks=case.chunks,
        bare_rounds_us=[round(value, 3) for value in bare],
        instrumented_rounds_us=[round(value, 3) for value in instrumented],
    )
    result.floor_us = statistics.median(floors)
    if case.llm_call:
        result.added_x_floor = result.added_us / result.floor_us
        result.floor_in_place_us = _paired(bare, timings[BARE_THEN_FLOOR])
        result.added_x_floor_in_place = result.added_us / result.floor_in_place_us
    if case.steps is not None:
        result.chunk_bare_us = statistics.median(steps[BARE])
        result.chunk_instrumented_us = statistics.median(steps[INSTRUMENTED])
        result.added_per_chunk_us = _paired(steps[BARE], steps[INSTRUMENTED])
        result.added_over_chunks_us = result.added_us / case.chunks
    return result


def hot_floor(results: list[Result]) -> Result:
    """The first row: the hot floor the ratios divide by, the median of the cases' own timings of it."""
    floor_us = statistics.median(result.floor_us for result in results if result.floor_us is not None)
    return Result(
        name="hot floor: SDK span + 4 records",
        bare_us=0.0,
        instrumented_us=floor_us,
        added_us=floor_us,
        rounds=sum(result.rounds for result in results),
        calls_per_round=0,
        floor_us=floor_us,
        added_x_floor=1.0,
    )


def check_priced(case: Case) -> None:
    """One instrumented call must give a priced span: the benchmark measures the whole path."""
    case.on()
    try:
        case.call()
    finally:
        case.off()
    attributes = dict(exporter.last.attributes or {}) if exporter.last is not None else {}
    if "gen_ai.usage.cost.amount" not in attributes:
        raise SystemExit(f"{case.name}: the instrumented call's span has no cost: {attributes}")


def openai_v2() -> tuple[Any, str | None]:
    """The contrib OpenAI instrumentor, or None and why not."""
    try:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    except ModuleNotFoundError as error:
        if error.name and error.name.startswith("opentelemetry.instrumentation.openai_v2"):
            return None, "opentelemetry-instrumentation-openai-v2 is not installed"
        return None, f"opentelemetry-instrumentation-openai-v2 is installed but not importable: {error}"
    except Exception as error:
        return None, f"opentelemetry-instrumentation-openai-v2 is installed but not importable: {error}"
    return OpenAIInstrumentor, None


def build_cases(
    server: LocalServer, loop: asyncio.AbstractEventLoop
) -> tuple[list[Case], list[Case], str | None]:
    steps, async_steps, loopback_steps = Steps(), Steps(), Steps()
    in_process = openai_calls(in_process_client(), steps)
    in_process_async = openai_async_calls(in_process_async_client(), async_steps, loop)
    loopback_client = openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0)
    loopback = openai_calls(loopback_client, loopback_steps, {"x-mock-chunks": str(CONTENT_CHUNKS)})
    session = StubSession()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    chat_body = {"model": MODEL, "messages": MESSAGES}
    files_body = {"purpose": "batch"}
    batch_body = {"model": EMBEDDING_MODEL, "input": ["four words of text"] * BATCH_INPUTS}

    def requests_chat() -> None:
        requests.post(f"{server.base_url}/chat/completions", json=chat_body, headers=headers)

    def requests_files() -> None:
        requests.post(f"{server.base_url}/files", json=files_body, headers=headers)

    def stub_chat() -> None:
        session.post(f"{STUB_BASE_URL}/chat/completions", json=chat_body, headers=headers)

    def stub_files() -> None:
        session.post(f"{STUB_BASE_URL}/files", json=files_body, headers=headers)

    def stub_embeddings_batch() -> None:
        session.post(f"{STUB_BASE_URL}/embeddings", json=batch_body, headers=headers)

    def stub_image_chat() -> None:
        session.post(f"{STUB_BASE_URL}/chat/completions", data=IMAGE_REQUEST_BODY, headers=headers)

    on, off = tokencost_on, tokencost_off
    cases = [
        Case("in-process chat", in_process["chat"], on, off),
        Case("in-process stream", in_process["stream"], on, off, chunks=STREAM_CHUNKS, steps=steps),
        Case("in-process embeddings", in_process["embeddings"], on, off),
        Case("in-process async chat", in_process_async["chat"], on, off),
        Case(
            "in-process async stream",
            in_process_async["stream"],
            on,
            off,
            chunks=STREAM_CHUNKS,
            steps=async_steps,
        ),
        Case("loopback chat", loopback["chat"], on, off),
        Case("loopback stream", loopback["stream"], on, off, chunks=STREAM_CHUNKS, steps=loopback_steps),
        Case("loopback embeddings", loopback["embeddings"], on, off),
        Case("requests.post loopback chat", requests_chat, on, off),
        Case("requests.post loopback non-LLM", requests_files, on, off, spans_per_call=0, llm_call=False),
        Case("requests wrapper alone, chat", stub_chat, on, off),
        Case("requests wrapper alone, non-LLM", stub_files, on, off, spans_per_call=0, llm_call=False),
        Case(BATCH_CASE, stub_embeddings_batch, on, off),
        Case(IMAGE_CASE, stub_image_chat, on, off),
        # The API's no-op providers: what is left is the package's own code.
        Case("in-process chat, no-op providers", in_process["chat"], own_code_on, off, spans_per_call=0),
    ]
    instrumentor, reason = openai_v2()
    v2_cases = []
    if instrumentor is not None:

        def v2_on() -> None:
            instrumentor().instrument(
                tracer_provider=tracer_provider, meter_provider=meter_provider, skip_dep_check=True
            )

        def v2_off() -> None:
            instrumentor().uninstrument()

        v2_cases = [
            Case("openai-v2 in-process chat", in_process["chat"], v2_on, v2_off),
            Case(
                "openai-v2 in-process stream",
                in_process["stream"],
                v2_on,
                v2_off,
                chunks=STREAM_CHUNKS,
                steps=steps,
            ),
            Case("openai-v2 in-process async chat", in_process_async["chat"], v2_on, v2_off),
        ]
    return cases, v2_cases, reason


# ---------------------------------------------------------------------------------------------
# Memory


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, in KB on Linux


def memory(calls: int, traced_calls: int) -> dict[str, Any]:
    """RSS growth over many instrumented calls (tracemalloc off), then the traced Python heap's."""
    chat = openai_calls(in_process_client(), Steps())["chat"]
    tokencost_on()
    try:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        spans_before = exporter.count
        first = max(1, calls // 10)
        for _ in repeat(None, first):
            chat()
        gc.collect()
        rss_start = rss_mb()
        for _ in repeat(None, calls - first):
            chat()
        gc.collect()
        rss_end = rss_mb()
        if exporter.count - spans_before != calls:
            raise SystemExit(f"memory: {exporter.count - spans_before} spans for {calls} calls")
        tracemalloc.start()
        for _ in repeat(None, max(1, traced_calls // 10)):
            chat()
        gc.collect()
        traced_start = tracemalloc.get_traced_memory()[0]
        for _ in repeat(None, traced_calls - max(1, traced_calls // 10)):
            chat()
        gc.collect()
        traced_end = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    finally:
        tokencost_off()
    return {
        "calls": calls,
        "rss_after_10_percent_mb": round(rss_start, 2),
        "rss_end_mb": round(rss_end, 2),
        "rss_growth_mb": round(rss_end - rss_start, 2),
        "traced_calls": traced_calls,
        "traced_growth_kb": round((traced_end - traced_start) / 1024, 1),
    }


def _hold_and_drop() -> list[weakref.ref]:
    """Weak references to what a few instrumented calls returned, after the calls returned."""
    client = in_process_client()
    session = StubSession()
    held: list[weakref.ref] = []
    for _ in range(5):
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        held.append(weakref.ref(completion))
        embedding = client.embeddings.create(model=EMBEDDING_MODEL, input="a few words to embed")
        held.append(weakref.ref(embedding))
        response = session.post(
            f"{STUB_BASE_URL}/chat/completions", json={"model": MODEL, "messages": MESSAGES}
        )
        held.append(weakref.ref(response))
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options=STREAM_OPTIONS
        )
        held.append(weakref.ref(stream))
        held.append(weakref.ref(stream.response))
        held.append(weakref.ref(getattr(stream, "__wrapped__", stream)))
        for _chunk in stream:
            pass
        # Dropped unfinished: the span must end and nothing may stay behind.
        abandoned = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options=STREAM_OPTIONS
        )
        next(iter(abandoned))
        held.append(weakref.ref(abandoned))
        held.append(weakref.ref(abandoned.response))
        del completion, embedding, response, stream, abandoned, _chunk
    return held


def released() -> dict[str, Any]:
    """Whether responses and streams die once the app drops them; bare first, for comparison."""
    gc.collect()
    bare_held = _hold_and_drop()
    bare_alive = sum(ref() is not None for ref in bare_held)
    gc.collect()
    tokencost_on()
    try:
        spans_before = exporter.count
        held = _hold_and_drop()
        alive_without_gc = sum(ref() is not None for ref in held)
        gc.collect()
        alive = sum(ref() is not None for ref in held)
        spans = exporter.count - spans_before
    finally:
        tokencost_off()
    return {
        "objects": len(held),
        "alive_after_return": alive_without_gc,
        "alive_after_return_bare": bare_alive,
        "alive_after_gc": alive,
        "spans": spans,
        "expected_spans": 25,
    }


# ---------------------------------------------------------------------------------------------
# The hooks alone, hot


def _best_us(loops: list[tuple[Callable[[], None], int]], repeats: int) -> list[float]:
    """Per call, the fastest of `repeats` loops of each (call, calls): the cost with everything cached.
    The loops take turns in every repeat, so that a change of the machine's speed meets all of them."""
    clock = time.perf_counter
    best = [float("inf")] * len(loops)
    for _ in range(repeats):
        for index, (call, calls) in enumerate(loops):
            start = clock()
            for _ in repeat(None, calls):
                call()
            best[index] = min(best[index], (clock() - start) / calls)
    return [seconds * 1e6 for seconds in best]


def _stream_split(
    stream: Callable[[list, bool], Callable[[], None]], streams: tuple[list, list], repeats: int
) -> tuple[float, float]:
    """What the stream hook adds per chunk and per stream, from bare and proxied iterations of a short
    and a long stream."""
    short, long = streams
    bare_short, proxied_short, bare_long, proxied_long = _best_us(
        [(stream(chunks, proxied), 15000 // len(chunks)) for chunks in streams for proxied in (False, True)],
        repeats,
    )
    added_short = proxied_short - bare_short
    per_chunk = (proxied_long - bare_long - added_short) / (len(long) - len(short))
    return per_chunk, added_short - per_chunk * len(short)


def parsed_sdk_stream(stream_type: type, parsed_chunks: Any) -> Any:
    """What `create(stream=True)` returns, its chunks already parsed: the SDK's iteration, no HTTP."""
    stream = stream_type.__new__(stream_type)
    stream._iterator = parsed_chunks
    return stream


def parsed_streams(client: openai.OpenAI) -> tuple[list, list]:
    """A stream's parsed chunks, and the same with ten times its content chunks: what the longer adds
    over the shorter is per chunk, the rest of what a stream adds is per stream (the proxy, its
    generator and the call's start and end)."""
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options=STREAM_OPTIONS
        )
    )
    return chunks, chunks[:1] + chunks[1:-2] * 10 + chunks[-2:]


def stream_hook(chunks: list, follow: Callable[[Any], Any] | None) -> Callable[[], None]:
    """Iterate an SDK stream of parsed `chunks`, through what `follow` returns for it when given (the
    proxy the patch returns)."""
    from openai import Stream

    def iterate() -> None:
        stream = parsed_sdk_stream(Stream, iter(chunks))
        if follow is not None:
            stream = follow(stream)
        for _chunk in stream:
            pass

    return iterate


def stream_proxy_of(telemetry: Any) -> Callable[[Any], Any]:
    """What the openai patch returns for an SDK stream of a chat call it started, with `telemetry`: as by
    default, the package asked for the usage (the chunks carry `usage: null`), so the proxy hides the
    usage chunk and takes `usage` out of the others' set fields."""
    from otel_tokencost.instrumentation.openai import _Patch
    from otel_tokencost.operations import CHAT_COMPLETIONS

    patch, endpoint = _Patch(telemetry, True), telemetry.endpoint(IN_PROCESS_BASE_URL)
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}

    def follow(stream: Any) -> Any:
        return patch._returned(telemetry.start(endpoint, CHAT_COMPLETIONS, body), stream, True)

    return follow


def hooks_hot(repeats: int) -> dict[str, Any]:
    """The package's hooks timed in tight loops, without the SDK's call around them.

    What the openai patch does for one call (start, read the parsed response, price, end) around a
    stand-in for the SDK's request method that returns a parsed completion: with the API's no-op
    providers (the package's own code) and with the SDK's (the hot floor's terms). And the stream hooks,
    sync and async: an SDK stream of parsed chunks iterated through the proxy the patch returns for it,
    less the same stream iterated bare, split into what each chunk adds and what each stream does.
    """
    from openai import AsyncStream
    from openai._models import FinalRequestOptions
    from openai.types.chat import ChatCompletion

    from otel_tokencost.instrumentation.openai import _Patch
    from otel_tokencost.operations import CHAT_COMPLETIONS
    from otel_tokencost.sse import SSEObserver
    from otel_tokencost.telemetry import Telemetry

    client = in_process_client()
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    streams = parsed_streams(client)
    chunks = streams[0]
    options = FinalRequestOptions.construct(method="post", url="/chat/completions", json_data={})
    request_args = (ChatCompletion, options)
    body = {"model": MODEL, "messages": MESSAGES}

    def sdk_request(*args: Any, **kwargs: Any) -> Any:
        return completion

    def wrapper_call(patch: _Patch) -> Callable[[], None]:
        def call() -> None:
            options.json_data = {**body}  # the SDK builds it afresh for each call
            patch.sync_request(sdk_request, client, request_args, {})

        return call

    def bare_call() -> None:
        options.json_data = {**body}
        sdk_request(*request_args)

    calls = 2000
    own = Telemetry.from_config(NoOpTracerProvider(), NoOpMeterProvider())
    full = Telemetry.from_config(tracer_provider, meter_provider)
    bare_us, own_call_us, full_call_us, floor_us = _best_us(
        [
            (bare_call, calls),
            (wrapper_call(_Patch(own, True)), calls),
            (wrapper_call(_Patch(full, True)), calls),
            (_floor_call(), calls),
        ],
        repeats,
    )
    own_us, full_us = own_call_us - bare_us, full_call_us - bare_us

    endpoint = own.endpoint(IN_PROCESS_BASE_URL)
    stream_body = {**body, "stream": True}
    own_proxy = stream_proxy_of(own)

    def sync_stream(stream_chunks: list, proxied: bool) -> Callable[[], None]:
        return stream_hook(stream_chunks, own_proxy if proxied else None)

    def async_stream(stream_chunks: list, proxied: bool) -> Callable[[], None]:
        async def parsed() -> AsyncIterator[Any]:
            for chunk in stream_chunks:
                yield chunk

        async def iterate() -> None:
            stream = parsed_sdk_stream(AsyncStream, parsed())
            if proxied:
                stream = own_proxy(stream)
            async for _chunk in stream:
                pass

        return lambda: run(iterate())

    # A raw `requests` stream: its SSE body watched as it passes, one event per piece read. The short
    # stream has 3 content events, so that its per-stream part is not lost among its events' cost.
    events = [event + b"\n\n" for event in SSE_BODY.split(b"\n\n") if event]
    sse_streams = (events[:4] + events[-3:], events[:1] + events[1:-3] * 10 + events[-3:])

    def sse_stream(pieces: list, observed: bool) -> Callable[[], None]:
        def read() -> None:
            for _piece in pieces:
                pass

        def read_observed() -> None:
            call = own.start(endpoint, CHAT_COMPLETIONS, stream_body)
            observer = SSEObserver(call)
            for piece in pieces:
                observer.feed(piece)
            observer.finish()
            call.end()

        return read_observed if observed else read

    loop = asyncio.new_event_loop()
    run = loop.run_until_complete
    try:
        per_chunk_us, per_stream_us = _stream_split(sync_stream, streams, repeats)
        async_per_chunk_us, async_per_stream_us = _stream_split(async_stream, streams, repeats)
        sse_per_event_us, sse_per_stream_us = _stream_split(sse_stream, sse_streams, repeats)
    finally:
        loop.close()
    return {
        "own_code_us": own_us,
        "with_sdk_us": full_us,
        "hot_floor_us": floor_us,
        "with_sdk_x_hot_floor": full_us / floor_us,
        "per_chunk_us": per_chunk_us,
        "per_stream_us": per_stream_us,
        "async_per_chunk_us": async_per_chunk_us,
        "async_per_stream_us": async_per_stream_us,
        "requests_per_event_us": sse_per_event_us,
        "requests_per_stream_us": sse_per_stream_us,
        "chunks": len(chunks),
    }


# ---------------------------------------------------------------------------------------------
# Import time


def _import_ms(code: str, env: dict[str, str]) -> float:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True, check=True
    )
    for line in reversed(done.stderr.splitlines()):
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() == "otel_tokencost":
            return int(parts[1].strip()) / 1000
    raise SystemExit(f"no import time for otel_tokencost in:\n{done.stderr[-2000:]}")


INSTRUMENT_CODE = """
import sys, time
import otel_tokencost
start = time.perf_counter()
otel_tokencost.instrument()
print((time.perf_counter() - start) * 1e3, *(name in sys.modules for name in ("openai", "requests")))
"""


def _instrument_ms(env: dict[str, str]) -> float:
    """`instrument()` in a fresh interpreter that has imported neither library (it must not either)."""
    done = subprocess.run([sys.executable, "-c", INSTRUMENT_CODE], env=env, capture_output=True, text=True)
    fields = done.stdout.split()
    if done.returncode != 0 or fields[1:] != ["False", "False"]:
        raise SystemExit(f"instrument() imported openai or requests, or failed:\n{done.stdout}{done.stderr}")
    return float(fields[0])


FIRST_CALL_CODE = """
import sys, time
sys.path.insert(0, {directory!r})
import bench, otel_tokencost

client = bench.in_process_client()
call = lambda: client.chat.completions.create(model=bench.MODEL, messages=bench.MESSAGES)
call()  # the SDK's own first call
otel_tokencost.instrument(tracer_provider=bench.tracer_provider, meter_provider=bench.meter_provider)
times = []
for _ in range(4):
    start = time.perf_counter()
    call()
    times.append((time.perf_counter() - start) * 1e3)
print(times[0] - min(times[1:]), bench.exporter.last.attributes["gen_ai.usage.cost.amount"])
"""


def _first_call_ms(env: dict[str, str]) -> float:
    """What the first instrumented call of a process adds to the next ones: the SDK imported, then
    instrumented, as under `opentelemetry-instrument`."""
    code = FIRST_CALL_CODE.format(directory=os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the first-call script failed:\n{done.stdout}{done.stderr}")
    return float(done.stdout.split()[0])


def import_time(runs: int) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        [sys.executable, "-c", "import openai, otel_tokencost, otel_tokencost.instrumentation.openai"],
        env=env,
        check=True,
    )  # writes the .pyc files
    alone = [_import_ms("import otel_tokencost", env) for _ in range(runs)]
    after_openai = [_import_ms("import openai; import otel_tokencost", env) for _ in range(runs)]
    instrument = [_instrument_ms(env) for _ in range(runs)]
    first_call = [_first_call_ms(env) for _ in range(runs)]
    return {
        "runs": runs,
        "first_call_extra_ms": round(statistics.median(first_call), 2),
        "first_call_extra_runs_ms": first_call,
        "instrument_ms": round(statistics.median(instrument), 1),
        "instrument_runs_ms": instrument,
        "otel_tokencost_ms": round(statistics.median(alone), 2),
        "otel_tokencost_after_openai_ms": round(statistics.median(after_openai), 2),
        "otel_tokencost_runs_ms": alone,
        "otel_tokencost_after_openai_runs_ms": after_openai,
    }


# ---------------------------------------------------------------------------------------------
# Report


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "openai": openai.__version__,
        "opentelemetry_sdk": importlib.metadata.version("opentelemetry-sdk"),
        "otel_tokencost": otel_tokencost.__version__,
    }


SPEED_CHANGE = 1.2  # hot floors this far apart across the cases: the machine changed speed in the run


def speed_note(results: list[Result]) -> str:
    """How far the hot floor moved from case to case: a machine that slows down for a spell moves every
    microsecond of the cases it catches, not the ratios taken within their rounds."""
    floors = [result.floor_us for result in results if result.floor_us is not None]
    low, high = min(floors), max(floors)
    note = f"machine speed: the hot floor ranged {low:.0f}-{high:.0f} µs across the cases"
    if high / low > SPEED_CHANGE:
        note += "; the machine changed speed during the run: compare ratios, not microseconds across rows"
    return note


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(floor: Result, results: list[Result]) -> str:
    rows = [
        ("case", "bare µs", "instr µs", "added µs", "per chunk", "floor in place", "x floor", "x hot floor")
    ]
    for result in [floor, *results]:
        rows.append(
            (
                result.name,
                _cell(result.bare_us),
                _cell(result.instrumented_us),
                _cell(result.added_us),
                _cell(result.added_per_chunk_us, 2),
                _cell(result.floor_in_place_us),
                _cell(result.added_x_floor_in_place, 2),
                _cell(result.added_x_floor, 2),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


@dataclass
class Guard:
    name: str
    value: float
    limit: float

    @property
    def ok(self) -> bool:
        return self.value <= self.limit


def print_guards(checks: list[Guard]) -> None:
    print("guards:")
    for guard in checks:
        print(
            f"  {'ok  ' if guard.ok else 'FAIL'} {guard.name}: {guard.value:,.2f} (limit {guard.limit:,.2f})"
        )


def conclude(document: dict[str, Any], checks: list[Guard], json_path: str | None, check: bool) -> int:
    """Write the report (with the guards) to `json_path` when given; 1 when `check` and a guard failed."""
    if json_path:
        document = {**document, "guards": [{**asdict(guard), "ok": guard.ok} for guard in checks]}
        Path(json_path).write_text(json.dumps(document, indent=2) + "\n")
    if check and not all(guard.ok for guard in checks):
        print("regression guard failed", file=sys.stderr)
        return 1
    return 0


def guards(
    by_name: dict[str, Result], mem: dict[str, Any], imports: dict[str, Any], refs: dict, hot: dict
) -> list[Guard]:
    chat, embeddings = by_name["in-process chat"], by_name["in-process embeddings"]
    async_chat = by_name["in-process async chat"]
    return [
        Guard("in-process chat added, in hot floors", chat.added_x_floor or 0.0, GUARD_ADDED_X_FLOOR),
        Guard(
            "in-process async chat added, in hot floors", async_chat.added_x_floor or 0.0, GUARD_ADDED_X_FLOOR
        ),
        Guard(
            "in-process embeddings added, in hot floors", embeddings.added_x_floor or 0.0, GUARD_ADDED_X_FLOOR
        ),
        Guard(
            "requests embeddings batch added, in hot floors",
            by_name[BATCH_CASE].added_x_floor or 0.0,
            GUARD_ADDED_X_FLOOR,
        ),
        Guard(
            "requests chat with an image as data= added, in hot floors",
            by_name[IMAGE_CASE].added_x_floor or 0.0,
            GUARD_ADDED_X_FLOOR,
        ),
        Guard(
            "in-process stream added µs per chunk",
            by_name["in-process stream"].added_per_chunk_us or 0.0,
            GUARD_US_PER_CHUNK,
        ),
        Guard(
            "in-process async stream added µs per chunk",
            by_name["in-process async stream"].added_per_chunk_us or 0.0,
            GUARD_US_PER_CHUNK,
        ),
        Guard(
            "raw requests stream added µs per SSE event, hot",
            hot["requests_per_event_us"],
            GUARD_US_PER_CHUNK,
        ),
        Guard(
            "requests non-LLM wrapper added µs",
            by_name["requests wrapper alone, non-LLM"].added_us,
            GUARD_NON_LLM_US,
        ),
        Guard("RSS growth MB", mem["rss_growth_mb"], GUARD_MEMORY_MB),
        Guard("import otel_tokencost ms", imports["otel_tokencost_ms"], GUARD_IMPORT_MS),
        Guard("instrument() in an empty interpreter ms", imports["instrument_ms"], GUARD_INSTRUMENT_MS),
        Guard("first instrumented call, extra ms", imports["first_call_extra_ms"], GUARD_FIRST_CALL_MS),
        Guard("responses alive after return and gc", refs["alive_after_gc"], 0),
        Guard("missing spans of the released calls", refs["expected_spans"] - refs["spans"], 0),
    ]


def benchmark_parser(description: str, quick: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: --quick (what it does: `quick`), --json, --check."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    parser.add_argument("--check", action="store_true", help="exit 1 when a regression guard fails")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = benchmark_parser(__doc__, "fewer rounds and calls (CI)").parse_args(argv)
    rounds, round_seconds = (21, 0.03) if options.quick else (41, 0.08)
    memory_calls, traced_calls = (20_000, 1_000) if options.quick else (100_000, 3_000)
    import_runs = 5 if options.quick else 9
    started = time.perf_counter()

    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, openai {info['openai']}, "
        f"opentelemetry-sdk {info['opentelemetry_sdk']}, otel_tokencost {info['otel_tokencost']}",
        flush=True,
    )
    loop = asyncio.new_event_loop()
    with LocalServer() as server:
        write_prices(server.base_url)
        cases, v2_cases, v2_reason = build_cases(server, loop)
        floor_call = _floor_call()
        for case in cases:
            if case.llm_call and case.spans_per_call:
                check_priced(case)
        gc.collect()
        gc.freeze()  # the modules' objects: each round's gc.collect() then only walks what the calls made
        results = []
        for case in cases + v2_cases:
            results.append(measure(case, rounds, round_seconds, floor_call))
            print(f"  measured {case.name}", file=sys.stderr, flush=True)
        floor = hot_floor(results)
    loop.run_until_complete(loop.shutdown_asyncgens())  # the SDK's unfinished byte iterators
    loop.close()
    print()
    print(table(floor, results))
    print(
        "per chunk: median step between two chunks, instrumented minus bare "
        f"({STREAM_CHUNKS} chunks per stream; the per-call part is in 'added');\n"
        "floor in place: the floor's SDK work timed right after a bare call of the case, as an "
        "instrumentation does it;\nx floor: added / floor in place; x hot floor: added / the floor alone "
        "in a tight loop (as in the first row); both floors timed in the case's own rounds"
    )
    print(speed_note(results))
    if v2_reason:
        print(f"openai-v2 comparison skipped: {v2_reason}")

    hot = hooks_hot(repeats=5 if options.quick else 15)
    print(
        f"\nhooks alone, hot (best of tight loops): {hot['own_code_us']:.1f} µs of the package's own code "
        f"per call (no-op providers), {hot['with_sdk_us']:.1f} µs with the SDK's providers = "
        f"{hot['with_sdk_x_hot_floor']:.2f} hot floors of {hot['hot_floor_us']:.1f} µs; "
        f"stream hooks {hot['per_chunk_us']:.2f} µs per chunk and {hot['per_stream_us']:.1f} µs per stream "
        f"(async: {hot['async_per_chunk_us']:.2f} and {hot['async_per_stream_us']:.1f}; a raw requests "
        f"stream's SSE events: {hot['requests_per_event_us']:.2f} and {hot['requests_per_stream_us']:.1f}), "
        "the call's start and end included"
    )
    refs = released()
    print(
        f"\nreferences: {refs['alive_after_gc']} of {refs['objects']} responses/streams alive after gc "
        f"({refs['alive_after_return']} before gc, {refs['alive_after_return_bare']} uninstrumented), "
        f"{refs['spans']}/{refs['expected_spans']} spans"
    )
    mem = memory(memory_calls, traced_calls)
    print(
        f"memory: {mem['calls']} instrumented in-process chat calls (tracemalloc off): RSS "
        f"{mem['rss_after_10_percent_mb']:.1f} MB after 10%, {mem['rss_end_mb']:.1f} MB at the end, "
        f"growth {mem['rss_growth_mb']:.2f} MB; traced heap growth over {mem['traced_calls']} calls "
        f"{mem['traced_growth_kb']:.1f} KB"
    )
    imports = import_time(import_runs)
    print(
        f"import otel_tokencost: {imports['otel_tokencost_ms']:.1f} ms alone, "
        f"{imports['otel_tokencost_after_openai_ms']:.1f} ms after openai (median of {imports['runs']}); "
        f"instrument() in an empty interpreter {imports['instrument_ms']:.0f} ms, importing neither library; "
        f"a process's first instrumented call {imports['first_call_extra_ms']:.1f} ms more than the next"
    )

    by_name = {result.name: result for result in results}
    checks = guards(by_name, mem, imports, refs, hot)
    print()
    print_guards(checks)
    elapsed = time.perf_counter() - started
    print(f"\n{'quick' if options.quick else 'full'} run: {elapsed:.0f} s")

    document = {
        "machine": info,
        "quick": options.quick,
        "floor": asdict(floor),
        "cases": {result.name: asdict(result) for result in results},
        "openai_v2": {"available": v2_reason is None, "reason": v2_reason},
        "hooks_hot": hot,
        "references": refs,
        "memory": mem,
        "import": imports,
        "seconds": round(elapsed, 1),
    }
    return conclude(document, checks, options.json, options.check)


if __name__ == "__main__":
    sys.exit(main())
