"""Under load, faults and hostile input the app keeps working, sees what it would see uninstrumented,
and the numbers add up."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable
from decimal import Decimal

import openai
import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_tokencost import OpenAIInstrumentor, RequestsInstrumentor, names, track

from conftest import API_KEY

MESSAGES = [{"role": "user", "content": "load test"}]


@pytest.fixture
def both(telemetry):
    """Both instrumentors on the test's providers."""
    for instrumentor in (OpenAIInstrumentor(), RequestsInstrumentor()):
        instrumentor.instrument(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )
    yield telemetry
    OpenAIInstrumentor().uninstrument()
    RequestsInstrumentor().uninstrument()


def usage_header(prompt: int, completion: int) -> dict:
    return {"x-mock-usage": json.dumps({"prompt_tokens": prompt, "completion_tokens": completion})}


# Load ------------------------------------------------------------------------------------------


def test_threads_and_tasks_at_once_every_call_one_span_and_the_sums_add_up(both, server) -> None:
    clients = [openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) for _ in range(2)]
    errors: list[BaseException] = []

    def sync_worker(index: int) -> None:
        client = clients[index % 2]
        try:
            with track(tracking_id=f"worker-{index % 3}"):
                for n in range(60):
                    headers = usage_header(100 + n, 10 + index)
                    if n % 3 == 0:
                        stream = client.chat.completions.create(
                            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=headers
                        )
                        for _ in stream:
                            pass
                    elif n % 3 == 1:
                        client.chat.completions.create(
                            model="gpt-4.1", messages=MESSAGES, extra_headers=headers
                        )
                    else:
                        requests.post(
                            f"{server.base_url}/chat/completions",
                            json={"model": "gpt-4o-mini", "messages": MESSAGES},
                            headers=headers,
                            timeout=30,
                        )
        except BaseException as error:
            errors.append(error)

    async def async_load() -> None:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as client:

            async def one(n: int) -> None:
                if n % 2:
                    stream = await client.chat.completions.create(
                        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=usage_header(n, 5)
                    )
                    async for _ in stream:
                        pass
                else:
                    await client.embeddings.create(model="text-embedding-3-small", input="x")

            await asyncio.gather(*(one(n) for n in range(240)))

    threads = [threading.Thread(target=sync_worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    asyncio.run(async_load())
    for thread in threads:
        thread.join()
    assert errors == []
    spans = both.spans()
    assert len(spans) == 6 * 60 + 240
    assert len({span.context.span_id for span in spans}) == len(spans)
    assert all(span.end_time is not None and span.end_time >= span.start_time for span in spans)
    span_costs = [
        span.attributes[names.USAGE_COST_AMOUNT]
        for span in spans
        if names.USAGE_COST_AMOUNT in span.attributes
    ]
    points = both.points(names.METRIC_COST)
    assert sum(point.count for point in points) == len(span_costs) == 6 * 60 + 120
    metric_sum = sum(Decimal(repr(point.sum)) for point in points)
    assert round(metric_sum, 12) == round(sum(Decimal(repr(cost)) for cost in span_costs), 12)
    durations = both.points(names.METRIC_DURATION)
    assert sum(point.count for point in durations) == len(spans)


def test_batch_processor_loses_no_span_at_shutdown(server) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_export_batch_size=50, schedule_delay_millis=60_000)
    )
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
        threads = [
            threading.Thread(
                target=lambda: [
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES) for _ in range(75)
                ]
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        OpenAIInstrumentor().uninstrument()
    provider.shutdown()
    assert len(exporter.get_finished_spans()) == 300


# Faults: the app sees exactly what it would see uninstrumented ---------------------------------


def outcome(action: Callable[[], object]) -> tuple:
    """What the app observed: its result, or the type and message of what it raised."""
    try:
        return ("returned", action())
    except BaseException as error:
        return ("raised", type(error), str(error).split(" (request id")[0])


def same_outcome(telemetry, action: Callable[[], object], spans: int | None = 1) -> tuple:
    bare = outcome(action)
    for instrumentor in (OpenAIInstrumentor(), RequestsInstrumentor()):
        instrumentor.instrument(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )
    try:
        instrumented = outcome(action)
    finally:
        OpenAIInstrumentor().uninstrument()
        RequestsInstrumentor().uninstrument()
    assert instrumented == bare
    if spans is not None:
        assert len(telemetry.spans()) == spans
    return instrumented


def sdk_chat(server, headers: dict, stream: bool = False, timeout: float = 10) -> Callable[[], object]:
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=timeout)

    def action() -> object:
        result = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=stream, extra_headers=headers
        )
        if stream:
            return [(chunk.choices[0].delta.content if chunk.choices else None) for chunk in result]
        return (result.choices[0].message.content, result.usage and result.usage.model_dump())

    return action


def raw_requests(server, headers: dict, stream: bool = False, timeout: float = 10) -> Callable[[], object]:
    def action() -> object:
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream}
        response = requests.post(
            f"{server.base_url}/chat/completions", json=body, headers=headers, stream=stream, timeout=timeout
        )
        return (response.status_code, [_without_ids(line) for line in response.iter_lines()])

    return action


def _without_ids(line: bytes) -> object:
    """A body line with the server's per-response id and timestamp taken out, for comparing runs."""
    text = line.decode(errors="replace").removeprefix("data: ")
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return (
        {k: v for k, v in value.items() if k not in ("id", "created")} if isinstance(value, dict) else value
    )


SSE_FAULTS = {
    "bad json in a data line": 'data: {"id": "c", "choices": [}\\n\\ndata: [DONE]\\n\\n',
    "missing [DONE]": 'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    '"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\\n\\n',
    "comments and keep-alives": ": keep-alive\\n\\n: ping\\n\\n"
    'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    '"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\\n\\n'
    "data: [DONE]\\n\\n",
}
USAGE_FAULTS = {
    "missing": {"total_tokens": 5},
    "null": {"prompt_tokens": None, "completion_tokens": None},
    "negative": {"prompt_tokens": -1, "completion_tokens": 5},
    "strings": {"prompt_tokens": "12", "completion_tokens": "3"},
    "huge": {"prompt_tokens": 10**30, "completion_tokens": 10**30},
    "not an object": "lots",
}
TRANSPORT_FAULTS = {
    "server error": {"x-mock-status": "500"},
    "rate limit": {"x-mock-status": "429"},
    "stream cut mid-event": {"x-mock-cut-after": "2"},
}


@pytest.mark.parametrize("transport", [sdk_chat, raw_requests], ids=["sdk", "requests"])
@pytest.mark.parametrize("fault", list(SSE_FAULTS))
def test_malformed_sse(telemetry, server, transport, fault) -> None:
    headers = {"x-mock-raw-body": SSE_FAULTS[fault], "x-mock-content-type": "text/event-stream"}
    same_outcome(telemetry, transport(server, headers, stream=True))


@pytest.mark.parametrize("transport", [sdk_chat, raw_requests], ids=["sdk", "requests"])
@pytest.mark.parametrize("fault", list(USAGE_FAULTS))
def test_garbled_usage(telemetry, server, transport, fault) -> None:
    same_outcome(telemetry, transport(server, {"x-mock-usage": json.dumps(USAGE_FAULTS[fault])}))
    span = telemetry.span()
    assert names.USAGE_INPUT_TOKENS not in span.attributes and names.USAGE_COST_AMOUNT not in span.attributes


@pytest.mark.parametrize("transport", [sdk_chat, raw_requests], ids=["sdk", "requests"])
@pytest.mark.parametrize(
    ("fault", "stream"),
    [
        (fault, stream)
        for fault in TRANSPORT_FAULTS
        for stream in (False, True)
        if stream or "cut" not in fault
    ],
)
def test_transport_faults(telemetry, server, transport, fault, stream) -> None:
    result = same_outcome(telemetry, transport(server, TRANSPORT_FAULTS[fault], stream=stream))
    span = telemetry.span()
    if result[0] == "raised" or fault != "stream cut mid-event":
        assert names.ERROR_TYPE in span.attributes


@pytest.mark.parametrize("transport", [sdk_chat, raw_requests], ids=["sdk", "requests"])
def test_timeout(telemetry, server, transport) -> None:
    result = same_outcome(telemetry, transport(server, {"x-mock-delay-ms": "300"}, timeout=0.05))
    assert result[0] == "raised"
    assert "Timeout" in telemetry.span().attributes[names.ERROR_TYPE]


@pytest.mark.parametrize("transport", [sdk_chat, raw_requests], ids=["sdk", "requests"])
def test_connection_refused(telemetry, transport) -> None:
    class Nowhere:
        base_url = "http://127.0.0.1:9/v1"

    result = same_outcome(telemetry, transport(Nowhere, {}))
    assert result[0] == "raised"


class Boom(Exception):
    pass


def test_users_own_exception_inside_the_stream_loop(telemetry, server) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)

    def action() -> None:
        for index, _ in enumerate(client.chat.completions.create(model="m", messages=MESSAGES, stream=True)):
            if index == 2:
                raise Boom("the app's own bug")

    result = same_outcome(telemetry, action)
    assert result == ("raised", Boom, "the app's own bug")
    assert telemetry.span().end_time is not None


def test_users_own_exception_inside_a_requests_stream_loop(telemetry, server) -> None:
    def action() -> None:
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
        with requests.post(
            f"{server.base_url}/chat/completions", json=body, stream=True, timeout=10
        ) as response:
            for index, _ in enumerate(response.iter_lines()):
                if index == 2:
                    raise Boom("the app's own bug")

    assert same_outcome(telemetry, action) == ("raised", Boom, "the app's own bug")
    span = telemetry.span()
    assert (
        span.end_time is not None and names.ERROR_TYPE not in span.attributes
    )  # the app's bug, not the call's


@pytest.mark.parametrize("where", ["mid-stream", "before the response", "between the app's awaits"])
def test_asyncio_cancellation_mid_stream(telemetry, server, where: str) -> None:
    """A cancelled call raises CancelledError as it would, and its span ends, not as an error of the call
    (as OpenTelemetry's `use_span` has it): wherever the cancel lands, the span says the same."""

    async def consume() -> int:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as client:
            delay = {"x-mock-delay-ms": "1000"} if where == "before the response" else {}
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                extra_headers={"x-mock-chunk-delay-ms": "50", **delay},
            )
            seen = 0
            async for _ in stream:
                seen += 1
                if where == "between the app's awaits":
                    await asyncio.sleep(1)
            return seen

    async def cancel_midway() -> str:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.12)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "finished"

    assert same_outcome(telemetry, lambda: asyncio.run(cancel_midway())) == ("returned", "cancelled")
    span = telemetry.span()
    assert span.end_time is not None and span.status.status_code == StatusCode.UNSET
    assert names.ERROR_TYPE not in span.attributes
    (duration,) = telemetry.points(names.METRIC_DURATION)
    assert names.ERROR_TYPE not in duration.attributes


def test_instrument_and_uninstrument_while_calls_are_in_flight(telemetry, server) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
    stop = threading.Event()
    failures: list[BaseException] = []
    completed = [0]

    def caller() -> None:
        while not stop.is_set():
            try:
                stream = client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=MESSAGES,
                    stream=True,
                    extra_headers={"x-mock-chunk-delay-ms": "1"},
                )
                chunks = list(stream)
                assert chunks and all(chunk.choices for chunk in chunks)  # the usage chunk never leaks
                requests.post(
                    f"{server.base_url}/chat/completions", json={"model": "m", "messages": []}, timeout=10
                )
                completed[0] += 1
            except BaseException as error:
                failures.append(error)
                return

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(15):
        for instrumentor in (OpenAIInstrumentor(), RequestsInstrumentor()):
            instrumentor.instrument(
                tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
            )
        threading.Event().wait(0.02)
        OpenAIInstrumentor().uninstrument()
        RequestsInstrumentor().uninstrument()
        threading.Event().wait(0.01)
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == [] and completed[0] > 0
    assert all(span.end_time is not None for span in telemetry.spans())
    assert len({span.context.span_id for span in telemetry.spans()}) == len(telemetry.spans())


# Memory ----------------------------------------------------------------------------------------


def test_no_reference_to_responses_or_streams_is_kept(both, client) -> None:
    import gc
    import weakref

    response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = list(stream)
    abandoned = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(iter(abandoned))
    url = f"{client.base_url}chat/completions"
    raw = requests.post(url, json={"model": "m", "messages": []}, stream=True, timeout=10)
    with client.chat.completions.with_streaming_response.create(model="m", messages=MESSAGES) as watched_body:
        watched_body.json()
    watched = [weakref.ref(item) for item in (response, stream, chunks[0], abandoned, raw)]
    gc.collect()
    gc.disable()  # the body the package watched is released as soon as it is dropped, in no cycle
    try:
        body_ref = weakref.ref(watched_body.http_response)
        del watched_body
        assert body_ref() is None
    finally:
        gc.enable()
    del response, stream, chunks, abandoned, raw
    gc.collect()
    assert [ref() for ref in watched] == [None] * len(watched)
    assert len(both.spans()) == 5  # the abandoned stream and the unread response ended their spans too


@pytest.mark.parametrize("transport", ["openai", "requests"])
def test_a_stream_collected_inside_the_sdk_ends_at_the_next_call(server, transport) -> None:
    """A stream dropped unfinished in a reference cycle ends when the garbage collector's pass finalizes
    it, and that pass may run anywhere: here inside the metrics SDK while it holds a histogram's lock to
    add an attribute set (as an allocation there may start one). Ending the call there would take that
    lock again and hang the app; the call ends at the next call's start instead, as of its drop."""
    import gc

    from opentelemetry.sdk.metrics import AlignedHistogramBucketExemplarReservoir, MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import View
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    collect_in_the_sdk: list[bool] = []

    def reservoirs(aggregation_type: type) -> type:  # the SDK asks, holding the instrument's lock
        if collect_in_the_sdk:
            collect_in_the_sdk.clear()
            gc.collect()
        return AlignedHistogramBucketExemplarReservoir

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    view = View(instrument_name="gen_ai.client.operation.duration", exemplar_reservoir_factory=reservoirs)
    meter_provider = MeterProvider(metric_readers=[reader], views=[view])
    for instrumentor in (OpenAIInstrumentor(), RequestsInstrumentor()):
        instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)

    def call(model: str) -> None:
        client.chat.completions.create(model=model, messages=MESSAGES)

    gc.collect()
    gc.disable()  # the one pass is the SDK's
    try:
        call("gpt-4.1")  # the histograms' first records: what the SDK makes once for each is made
        headers = {"x-mock-chunks": "5"}
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
        if transport == "openai":
            stream = client.chat.completions.create(**body, extra_headers=headers)
            next(stream)
        else:
            url = f"{server.base_url}/chat/completions"
            stream = requests.post(url, json=body, headers=headers, stream=True, timeout=10)
            next(stream.iter_lines())
        cycle: list = [stream]
        cycle.append(cycle)
        del stream, cycle  # dropped unfinished, freed by the collector's next pass alone

        collect_in_the_sdk.append(True)  # the duration recorded next is a new attribute set
        made = threading.Thread(target=call, args=("gpt-4o",), daemon=True)
        made.start()
        made.join(timeout=30)
        assert not made.is_alive(), "the app hung ending the dropped stream inside the SDK"
        assert not collect_in_the_sdk  # the pass ran where it was meant to
        ended = [span.attributes["gen_ai.request.model"] for span in exporter.get_finished_spans()]
        assert ended == ["gpt-4.1", "gpt-4o"]

        call("o3-mini")
    finally:
        gc.enable()
        OpenAIInstrumentor().uninstrument()
        RequestsInstrumentor().uninstrument()
    _, first, dropped, _ = exporter.get_finished_spans()  # in the order they ended
    assert dropped.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert dropped.end_time <= first.end_time  # as of its drop, in the first call's end
    assert dropped.status.status_code != StatusCode.ERROR
    durations = {
        point.attributes["gen_ai.request.model"]: point.count
        for metric in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
        if metric.name == "gen_ai.client.operation.duration"
        for point in metric.data.data_points
    }
    assert durations == {"gpt-4.1": 1, "gpt-4o-mini": 1, "gpt-4o": 1, "o3-mini": 1}


def test_a_call_leaves_no_reference_cycle_for_the_garbage_collector(both, server) -> None:
    """A call's span, context and readings are freed by reference counting when the call is over, as
    the uninstrumented call's objects are: none waits in a cycle for the collector's next pass (20
    objects a call did, the span among them, and every pass paid for them)."""
    import gc
    import weakref

    from openai import _base_client
    from opentelemetry import context as context_api

    httpx_module = getattr(_base_client, "httpx2", None) or _base_client.httpx
    contexts = []  # the context each call's HTTP request ran in: the one the call made

    def remember_context(*_args: object, **_kwargs: object) -> None:
        contexts.append(weakref.ref(context_api.get_current()))

    async def remember_context_async(*_args: object) -> None:
        remember_context()

    hooks = {"request": [remember_context]}
    client = openai.OpenAI(
        base_url=server.base_url,
        api_key=API_KEY,
        max_retries=0,
        http_client=httpx_module.Client(event_hooks=hooks),
    )
    url = f"{server.base_url}/chat/completions"

    async def async_chat() -> None:
        async with openai.AsyncOpenAI(
            base_url=server.base_url,
            api_key=API_KEY,
            max_retries=0,
            http_client=httpx_module.AsyncClient(event_hooks={"request": [remember_context_async]}),
        ) as async_client:
            await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    gc.collect()
    gc.disable()
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        for _chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass
        abandoned = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        next(iter(abandoned))
        del abandoned, _chunk
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-mock-status": "404"}
            )
        asyncio.run(async_chat())
        requests.post(
            url, json={"model": "gpt-4o-mini", "messages": MESSAGES}, hooks={"response": remember_context}
        )
        assert len(contexts) == 6 and len(both.spans()) == 6
        assert [ref() for ref in contexts] == [None] * 6
    finally:
        gc.enable()
        client.close()


def test_a_patch_that_fails_while_the_app_imports_its_library_never_fails_the_import(
    tmp_path, monkeypatch, caplog, request
) -> None:
    from otel_tokencost.instrumentation.on_import import PatchOnImport

    monkeypatch.setenv("OTEL_TOKENCOST_STRICT", "0")
    (tmp_path / "tokencost_sample_library.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    request.addfinalizer(lambda: sys.modules.pop("tokencost_sample_library", None))

    def apply() -> None:
        raise AttributeError("this version has no such method")

    patching = PatchOnImport("tokencost_sample_library", apply)
    import tokencost_sample_library  # the hook runs inside this import

    assert tokencost_sample_library.VALUE == 42
    assert "patching tokencost_sample_library failed" in caplog.text
    assert patching.cancel() is True  # it ran: uninstrument() undoes whatever part of it took


def held_while_forking(lock, child: Callable[[], None]) -> int:
    """Fork while another thread holds `lock`; the child's exit code once `child` ran (1 if it raised, -9 if
    it was still waiting after 20 s)."""
    import os
    import time

    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            done.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:  # the child: the holding thread does not exist here
        code = 1
        try:
            child()
            code = 0
        finally:
            os._exit(code)
    done.set()
    holder.join()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return -9


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_a_child_forked_while_a_lock_was_held_makes_its_calls(telemetry, server) -> None:
    """A budgeted call, in a `track()` block, in a child forked while another thread held the budgets'
    lock (a web server's preforking worker, say): it is made and counted, not left waiting forever."""
    from otel_tokencost import Budget, instrument, uninstrument
    from otel_tokencost.telemetry import Telemetry

    instrument(telemetry.tracer_provider, telemetry.meter_provider, budgets=[Budget(limit=10.0)])
    engine: Telemetry = OpenAIInstrumentor().telemetry

    def call_in_the_child() -> None:
        client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
        with client, track(tracking_id="worker") as spend:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert spend.calls == 1

    try:
        assert held_while_forking(engine.budgets._lock, call_in_the_child) == 0
    finally:
        uninstrument()
