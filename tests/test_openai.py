"""The openai SDK instrumented: one priced span per call on every endpoint and entry path."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import inspect
import json
import re
import sys
from collections.abc import Iterator
from decimal import Decimal

import openai
import pydantic
import pytest
import requests
import wrapt
from opentelemetry import context
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

import otel_tokencost
from otel_tokencost import OpenAIInstrumentor, RequestsInstrumentor, names

from conftest import API_KEY, genai_cost

MESSAGES = [{"role": "user", "content": "How much does this cost?"}]
OPENAI_MAJOR = int(openai.__version__.split(".")[0])
HAS_RESPONSES = hasattr(openai.OpenAI(api_key="x", base_url="http://127.0.0.1:1"), "responses")
HAS_COMPACT = HAS_RESPONSES and hasattr(openai.resources.responses.Responses, "compact")


def usage_header(
    prompt: int, completion: int, cached: int | None = None, reasoning: int | None = None
) -> dict:
    usage: dict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return {"x-mock-usage": json.dumps(usage)}


def assert_priced(span, model: str, input_tokens: int, output_tokens: int, cached: int = 0) -> None:
    attributes = span.attributes
    assert attributes[names.USAGE_INPUT_TOKENS] == input_tokens
    assert attributes[names.USAGE_OUTPUT_TOKENS] == output_tokens
    assert attributes[names.USAGE_COST_AMOUNT] == float(
        genai_cost(model, input_tokens, output_tokens, cached)
    )
    assert attributes[names.USAGE_COST_CURRENCY] == "USD"
    assert attributes[names.PRICING_SOURCE] == "genai-prices:model-only"


def test_chat_completion_span_and_metrics(instrumented, client, server) -> None:
    headers = usage_header(1200, 300, cached=1000, reasoning=120)
    result = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_tokens=500,
        temperature=0.2,
        top_p=0.9,
        extra_headers=headers,
    )
    span = instrumented.span()
    assert (span.name, span.kind, span.status.status_code) == (
        "chat gpt-4o-mini",
        SpanKind.CLIENT,
        StatusCode.UNSET,
    )
    assert dict(span.attributes) == {
        names.OPERATION_NAME: "chat",
        names.PROVIDER_NAME: "openai",
        names.SERVER_ADDRESS: "127.0.0.1",
        names.SERVER_PORT: server.port,
        names.REQUEST_MODEL: "gpt-4o-mini",
        names.REQUEST_MAX_TOKENS: 500,
        names.REQUEST_TEMPERATURE: 0.2,
        names.REQUEST_TOP_P: 0.9,
        names.RESPONSE_MODEL: "gpt-4o-mini",
        names.RESPONSE_ID: result.id,
        names.RESPONSE_FINISH_REASONS: ("stop",),
        names.USAGE_INPUT_TOKENS: 1200,
        names.USAGE_OUTPUT_TOKENS: 300,
        names.USAGE_CACHE_READ_INPUT_TOKENS: 1000,
        names.USAGE_REASONING_OUTPUT_TOKENS: 120,
        names.USAGE_COST_AMOUNT: float(genai_cost("gpt-4o-mini", 1200, 300, cached=1000)),
        names.USAGE_COST_CURRENCY: "USD",
        names.PRICING_SOURCE: "genai-prices:model-only",
    }
    expected_metric_attributes = {
        names.OPERATION_NAME: "chat",
        names.PROVIDER_NAME: "openai",
        names.SERVER_ADDRESS: "127.0.0.1",
        names.SERVER_PORT: server.port,
        names.REQUEST_MODEL: "gpt-4o-mini",
        names.RESPONSE_MODEL: "gpt-4o-mini",
    }
    tokens = {p.attributes[names.TOKEN_TYPE]: p for p in instrumented.points(names.METRIC_TOKEN_USAGE)}
    assert (tokens["input"].sum, tokens["output"].sum, tokens["input"].count) == (1200, 300, 1)
    assert dict(tokens["output"].attributes) == {**expected_metric_attributes, names.TOKEN_TYPE: "output"}
    (cost,) = instrumented.points(names.METRIC_COST)
    assert (cost.sum, cost.count) == (span.attributes[names.USAGE_COST_AMOUNT], 1)
    assert dict(cost.attributes) == expected_metric_attributes
    assert list(cost.explicit_bounds) == [1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0]
    (duration,) = instrumented.points(names.METRIC_DURATION)
    assert duration.count == 1
    assert 0 < duration.sum < (span.end_time - span.start_time) / 1e9 + 0.001
    assert duration.explicit_bounds[0] == 0.01 and duration.explicit_bounds[-1] == 81.92
    assert instrumented.points(names.METRIC_TIME_TO_FIRST_CHUNK) == []
    assert instrumented.metric_units() == {
        names.METRIC_TOKEN_USAGE: "{token}",
        names.METRIC_DURATION: "s",
        names.METRIC_COST: "USD",
    }


AUDIO_USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 330,
    "total_tokens": 450,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 80},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 300},
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_audio_tokens_are_priced_at_audio_rates(instrumented, client, stream: bool) -> None:
    """gpt-audio bills audio in at 12.8 times and audio out at 6.4 times its text rates."""
    result = client.chat.completions.create(
        model="gpt-audio",
        messages=MESSAGES,
        stream=stream,
        extra_headers={"x-mock-usage": json.dumps(AUDIO_USAGE)},
    )
    if stream:
        assert [chunk.usage for chunk in result if chunk.usage] == []  # the usage chunk stays hidden
    attributes = instrumented.span().attributes
    cost = genai_cost("gpt-audio", 120, 330, input_audio=80, output_audio=300)
    assert cost > 4 * genai_cost("gpt-audio", 120, 330)
    assert attributes[names.USAGE_COST_AMOUNT] == float(cost)
    assert (attributes[names.USAGE_INPUT_TOKENS], attributes[names.USAGE_OUTPUT_TOKENS]) == (120, 330)


@pytest.mark.skipif(
    "modalities" not in inspect.signature(openai.resources.chat.Completions.create).parameters,
    reason="this openai cannot ask for audio",
)
def test_audio_asked_for_is_speech_output(instrumented, client) -> None:
    client.chat.completions.create(
        model="gpt-audio",
        messages=MESSAGES,
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "pcm16"},
    )
    assert instrumented.span().attributes[names.OUTPUT_TYPE] == "speech"


def call_endpoint(client, endpoint: str, headers: dict):
    if endpoint == "chat":
        return client.chat.completions.create(model="gpt-4.1", messages=MESSAGES, extra_headers=headers)
    if endpoint == "completions":
        return client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say hi", extra_headers=headers
        )
    if endpoint == "embeddings":
        return client.embeddings.create(
            model="text-embedding-3-small", input=["a b", "c"], extra_headers=headers
        )
    if endpoint == "compact":
        return client.responses.compact(model="gpt-4.1", input=COMPACTED, extra_headers=headers)
    return client.responses.create(model="gpt-4.1", input="Say hi", extra_headers=headers)


COMPACTED = [
    {"role": "user", "content": "Say hi"},
    {"role": "assistant", "content": "Hi there, how can I help"},
    {"role": "user", "content": "Tell me about the weather"},
]
ENDPOINTS = [
    ("chat", "chat gpt-4.1", "gpt-4.1", ("stop",)),
    ("completions", "text_completion gpt-3.5-turbo-instruct", "gpt-3.5-turbo-instruct", ("stop",)),
    ("embeddings", "embeddings text-embedding-3-small", None, None),
    pytest.param(
        "responses",
        "chat gpt-4.1",
        "gpt-4.1",
        ("completed",),
        marks=pytest.mark.skipif(not HAS_RESPONSES, reason="this openai has no Responses API"),
    ),
    pytest.param(  # a compaction pass: billed as a Responses call, with no model or status in its reply
        "compact",
        "chat gpt-4.1",
        "gpt-4.1",
        None,
        marks=pytest.mark.skipif(not HAS_COMPACT, reason="this openai cannot compact a response"),
    ),
]


@pytest.mark.parametrize(("endpoint", "span_name", "priced_model", "finish"), ENDPOINTS)
def test_each_endpoint_sync(instrumented, client, endpoint, span_name, priced_model, finish) -> None:
    headers = {
        "x-mock-usage": json.dumps(
            {"input_tokens": 700, "output_tokens": 90, "total_tokens": 790}
            if endpoint in ("responses", "compact")
            else {"prompt_tokens": 700, "completion_tokens": 90, "total_tokens": 790}
        )
    }
    call_endpoint(client, endpoint, headers)
    span = instrumented.span()
    assert span.name == span_name
    assert span.attributes[names.USAGE_INPUT_TOKENS] == 700
    assert span.attributes.get(names.RESPONSE_FINISH_REASONS) == finish
    if priced_model is None:  # genai-prices knows embedding models only by provider, not by name alone
        assert names.USAGE_COST_AMOUNT not in span.attributes
    else:
        assert_priced(span, priced_model, 700, 90)


async def call_endpoint_async(client, endpoint: str, headers: dict):
    if endpoint == "chat":
        return await client.chat.completions.create(model="gpt-4.1", messages=MESSAGES, extra_headers=headers)
    if endpoint == "completions":
        return await client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Hi", extra_headers=headers
        )
    if endpoint == "embeddings":
        return await client.embeddings.create(
            model="text-embedding-3-small", input="a", extra_headers=headers
        )
    if endpoint == "compact":
        return await client.responses.compact(model="gpt-4.1", input=COMPACTED, extra_headers=headers)
    return await client.responses.create(model="gpt-4.1", input="Say hi", extra_headers=headers)


@pytest.mark.parametrize(("endpoint", "span_name", "priced_model", "finish"), ENDPOINTS)
async def test_each_endpoint_async(
    instrumented, async_client, endpoint, span_name, priced_model, finish
) -> None:
    await call_endpoint_async(async_client, endpoint, {})
    span = instrumented.span()
    assert span.name == span_name
    input_tokens = span.attributes[names.USAGE_INPUT_TOKENS]
    assert input_tokens > 0
    token_types = [
        point.attributes[names.TOKEN_TYPE] for point in instrumented.points(names.METRIC_TOKEN_USAGE)
    ]
    if endpoint == "embeddings":  # its usage counts input tokens alone: no output is recorded
        assert names.USAGE_OUTPUT_TOKENS not in span.attributes and token_types == ["input"]
    else:
        assert sorted(token_types) == ["input", "output"]
    if priced_model is not None:
        assert_priced(span, priced_model, input_tokens, span.attributes[names.USAGE_OUTPUT_TOKENS])


def test_openai_host_sets_api_type_and_provider(instrumented, server, monkeypatch) -> None:
    from otel_tokencost import providers

    endpoint = providers.endpoint_for("https://api.openai.com/v1")
    assert (endpoint.provider, endpoint.address, endpoint.port, endpoint.is_openai) == (
        "openai",
        "api.openai.com",
        443,
        True,
    )
    assert providers.endpoint_for("https://api.deepseek.com").provider == "deepseek"
    for url, provider in (
        ("https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us", "gcp.vertex_ai"),
        ("https://aiplatform.googleapis.com/v1/projects/p/locations/global", "gcp.vertex_ai"),
        ("https://bedrock-runtime.us-west-2.amazonaws.com/openai/v1", "aws.bedrock"),
        ("https://codestral.mistral.ai/v1", "mistral_ai"),
        ("https://us-central1-aiplatform.googleapis.com.example.net/v1", "openai"),  # not Google's
    ):
        assert providers.endpoint_for(url).provider == provider, url
    assert (
        providers.endpoint_for("https://x.openai.azure.com/openai/deployments/d").provider
        == "azure.ai.openai"
    )
    assert (
        providers.endpoint_for("http://user:pw@gw.internal:8080/v1?key=abc").base_url
        == "http://gw.internal:8080/v1"
    )


def openai_own_api(server, host: str = "api.openai.com"):
    """A client of api.openai.com (or a data-residency region's host) whose requests the local server
    answers, as a proxy would."""
    proxied = openai.DefaultHttpxClient(proxy=server.base_url.removesuffix("/v1"))
    return openai.OpenAI(base_url=f"http://{host}/v1", api_key=API_KEY, max_retries=0, http_client=proxied)


JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("host", ["api.openai.com", "eu.api.openai.com"], ids=["global", "eu"])
def test_request_parameters_and_service_tiers_on_openai_own_api(instrumented, server, stream, host) -> None:
    """The semantic conventions' conditionally required attributes: seed, choice count, output type, and
    on OpenAI's own API (a data-residency region's host too) the service tier asked for and the one that
    served the call."""
    with openai_own_api(server, host) as own_api:
        result = own_api.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            seed=42,
            n=2,
            response_format=JSON_FORMAT,
            service_tier="flex",
            stream=stream,
        )
        if stream:
            list(result)
    attributes = instrumented.span().attributes
    assert (attributes[names.SERVER_ADDRESS], attributes[names.OPENAI_API_TYPE]) == (host, "chat_completions")
    assert server.last_bodies[-1]["service_tier"] == "flex"
    assert {key: attributes.get(key) for key in REQUEST_PARAMETERS} == {
        names.REQUEST_SEED: 42,
        names.REQUEST_CHOICE_COUNT: 2,
        names.OUTPUT_TYPE: "json",
        names.CONVERSATION_ID: None,
        names.OPENAI_REQUEST_SERVICE_TIER: "flex",
        names.OPENAI_RESPONSE_SERVICE_TIER: "flex",
    }
    standard = genai_cost(
        "gpt-4o-mini",
        attributes[names.USAGE_INPUT_TOKENS],
        attributes[names.USAGE_OUTPUT_TOKENS],
        provider="openai",
    )
    assert attributes[names.USAGE_COST_AMOUNT] == float(standard / 2)  # OpenAI bills a flex call at half


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_priority_call_costs_the_priority_rates(instrumented, server, stream) -> None:
    with openai_own_api(server) as own_api:
        result = own_api.chat.completions.create(
            model="gpt-4.1", messages=MESSAGES, service_tier="priority", stream=stream
        )
        if stream:
            list(result)
    attributes = instrumented.span().attributes
    assert attributes[names.OPENAI_RESPONSE_SERVICE_TIER] == "priority"
    usage = attributes[names.USAGE_INPUT_TOKENS], attributes[names.USAGE_OUTPUT_TOKENS]
    priority = genai_cost("gpt-4.1", *usage, provider="openai", tier="priority")
    assert priority > genai_cost("gpt-4.1", *usage, provider="openai")  # OpenAI bills priority above
    assert attributes[names.USAGE_COST_AMOUNT] == float(priority)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("own_api", [True, False], ids=["openai", "other host"])
def test_openai_own_api_records_the_system_fingerprint(instrumented, client, server, stream, own_api) -> None:
    meta = {"id": "chatcmpl-1", "created": 1, "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb"}
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    if stream:
        reply = [
            {
                **meta,
                "object": "chat.completion.chunk",
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
                ],
            },
            {**meta, "object": "chat.completion.chunk", "choices": [], "usage": usage},
        ]
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
        reply = {**meta, "object": "chat.completion", "choices": [choice], "usage": usage}
    with openai_own_api(server) if own_api else contextlib.nullcontext(client) as sdk:
        result = sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=stream, extra_headers=raw_reply(reply)
        )
        if stream:
            list(result)
    attributes = instrumented.span().attributes
    fingerprint = attributes.get(names.OPENAI_RESPONSE_SYSTEM_FINGERPRINT)
    assert fingerprint == ("fp_44709d6fcb" if own_api else None)  # an `openai.*` attribute: OpenAI's own
    assert attributes[names.USAGE_OUTPUT_TOKENS] == 1


REQUEST_PARAMETERS = (
    names.REQUEST_SEED,
    names.REQUEST_CHOICE_COUNT,
    names.OUTPUT_TYPE,
    names.CONVERSATION_ID,
    names.OPENAI_REQUEST_SERVICE_TIER,
    names.OPENAI_RESPONSE_SERVICE_TIER,
)


@pytest.mark.skipif(not hasattr(openai.OpenAI, "responses"), reason="this openai has no Responses API")
def test_responses_parameters_on_openai_own_api(instrumented, server) -> None:
    """`auto` is no tier asked for; the response names the one that served it. A conversation's id."""
    with openai_own_api(server) as own_api:
        own_api.responses.create(
            model="gpt-4.1",
            input="a b c",
            text={"format": {"type": "json_object"}},
            conversation="conv_0123",
            service_tier="auto",
        )
    attributes = instrumented.span().attributes
    assert {key: attributes.get(key) for key in REQUEST_PARAMETERS} == {
        names.REQUEST_SEED: None,
        names.REQUEST_CHOICE_COUNT: None,
        names.OUTPUT_TYPE: "json",
        names.CONVERSATION_ID: "conv_0123",
        names.OPENAI_REQUEST_SERVICE_TIER: None,
        names.OPENAI_RESPONSE_SERVICE_TIER: "default",
    }


def test_other_hosts_get_no_openai_attributes(instrumented, client, server) -> None:
    """An OpenAI-compatible host's service tier is no `openai.*` attribute; one choice is no count."""
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        n=1,
        seed=7,
        service_tier="priority",
        frequency_penalty=0.5,
        presence_penalty=-0.25,
        stop=["END", "STOP"],
    )
    attributes = instrumented.span().attributes
    assert attributes[names.REQUEST_FREQUENCY_PENALTY] == 0.5
    assert attributes[names.REQUEST_PRESENCE_PENALTY] == -0.25
    assert attributes[names.REQUEST_STOP_SEQUENCES] == ("END", "STOP")
    assert {key: attributes.get(key) for key in REQUEST_PARAMETERS} == {
        names.REQUEST_SEED: 7,
        names.REQUEST_CHOICE_COUNT: None,
        names.OUTPUT_TYPE: None,
        names.CONVERSATION_ID: None,
        names.OPENAI_REQUEST_SERVICE_TIER: None,
        names.OPENAI_RESPONSE_SERVICE_TIER: None,
    }


def test_embeddings_request_attributes(instrumented, client) -> None:
    client.embeddings.create(
        model="text-embedding-3-small", input="a b c", dimensions=256, encoding_format="float"
    )
    attributes = instrumented.span().attributes
    assert attributes[names.EMBEDDINGS_DIMENSION_COUNT] == 256
    assert attributes[names.REQUEST_ENCODING_FORMATS] == ("float",)


# Streams ---------------------------------------------------------------------------------------


def stream_chat(client, **kwargs):
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **kwargs)


def test_stream_injects_usage_and_hides_the_usage_chunk(instrumented, client, server) -> None:
    chunks = list(stream_chat(client, extra_headers={"x-mock-chunks": "7"}))
    assert (
        len(chunks) == 9
    )  # role chunk, 7 content chunks, finish chunk: exactly what an uninstrumented app sees
    assert all(chunk.choices for chunk in chunks)
    assert server.last_bodies[-1]["stream_options"] == {"include_usage": True}
    span = instrumented.span()
    assert span.attributes[names.REQUEST_STREAM] is True
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert span.attributes[names.USAGE_OUTPUT_TOKENS] == 7
    assert_priced(span, "gpt-4o-mini", span.attributes[names.USAGE_INPUT_TOKENS], 7)
    ttfc = span.attributes[names.RESPONSE_TIME_TO_FIRST_CHUNK]
    assert 0 < ttfc <= (span.end_time - span.start_time) / 1e9
    (point,) = instrumented.points(names.METRIC_TIME_TO_FIRST_CHUNK)
    assert (point.count, point.sum) == (1, ttfc)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_stream_matches_the_uninstrumented_chunks(telemetry, client, async_client, is_async) -> None:
    """The chunks' values and the fields set in them: the `usage: null` the provider adds to each chunk
    once usage is asked for is not among them, as uninstrumented (`to_dict()` leaves unset fields out)."""
    from otel_tokencost import OpenAIInstrumentor

    async def chunks() -> list:
        request = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
        request["extra_headers"] = {"x-mock-chunks": "5"}
        if is_async:
            read = [chunk async for chunk in await async_client.chat.completions.create(**request)]
        else:
            read = list(client.chat.completions.create(**request))
        return [
            ({k: v for k, v in chunk.to_dict().items() if k not in ("id", "created")}, chunk.model_fields_set)
            for chunk in read
        ]

    bare = await chunks()
    OpenAIInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        seen = await chunks()
    finally:
        OpenAIInstrumentor().uninstrument()
    assert seen == bare and len(bare) == 7  # role, 5 words, finish
    assert telemetry.span().attributes[names.USAGE_OUTPUT_TOKENS] == 5


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_stream_whose_loop_was_closed_reads_on_in_the_next(
    instrumented, client, async_client, is_async: bool
) -> None:
    """Closing a loop's iterator (a generator that `yield from`s the stream, closed early, say) leaves the
    stream readable, as the SDK's does: the next loop reads on, and the usage chunk stays hidden."""
    request = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    request["extra_headers"] = {"x-mock-chunks": "4"}

    def seen(chunks: list) -> list:
        return [
            (c.choices[0].delta.content, c.choices[0].finish_reason) if c.choices else c.usage for c in chunks
        ]

    async def read() -> tuple[list, list]:
        if is_async:
            stream = await async_client.chat.completions.create(**request)
            loop = stream.__aiter__()
            first = [await loop.__anext__() for _ in range(2)]
            await loop.aclose()
            rest = [chunk async for chunk in stream]
        else:
            stream = client.chat.completions.create(**request)

            def chunks_of(stream: openai.Stream) -> Iterator:
                yield from stream

            loop = chunks_of(stream)
            first = [next(loop) for _ in range(2)]
            loop.close()
            rest = list(stream)
        return seen(first), seen(rest)

    with suppress_instrumentation():
        bare = await read()
    assert await read() == bare and len(bare[1]) == 4  # role and a word, then 3 words and the finish
    assert instrumented.span().status.status_code == StatusCode.UNSET


def test_options_the_app_sends_itself_are_left_as_it_made_them(instrumented, client, server) -> None:
    """Usage is asked for in the request sent, not in the options the app passed to `client.request`:
    sent again, they ask for none again, and the usage chunk stays hidden."""
    from openai._models import FinalRequestOptions
    from openai.types.chat import ChatCompletionChunk

    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    headers = {"x-mock-chunks": "2"}
    options = FinalRequestOptions.construct(
        method="post", url="/chat/completions", json_data=body, headers=headers
    )
    for _ in range(2):
        stream_class = openai.Stream[ChatCompletionChunk]
        chunks = list(client.request(ChatCompletionChunk, options, stream=True, stream_cls=stream_class))
        assert len(chunks) == 4 and all(chunk.choices for chunk in chunks)  # role, 2 words, finish
        assert options.json_data == body and "stream_options" not in body
        assert server.last_bodies[-1]["stream_options"] == {"include_usage": True}
    assert [span.attributes[names.USAGE_OUTPUT_TOKENS] for span in instrumented.spans()] == [2, 2]


def chunk_stream(*choices_and_usage: tuple[list, dict | None]) -> dict:
    """Headers making the local server answer with these chat chunks (choices, usage), then [DONE]."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    events = [{**base, "choices": choices, "usage": usage} for choices, usage in choices_and_usage]
    body = "".join(f"data: {json.dumps(event)}\\n\\n" for event in events) + "data: [DONE]\\n\\n"
    return {"x-mock-raw-body": body, "x-mock-content-type": "text/event-stream"}


def test_the_usage_chunk_asked_for_is_hidden_even_from_a_stream_that_never_finishes(
    instrumented, client
) -> None:
    """A provider that sends no finish reason still sends the usage chunk asked for: the app, which did
    not ask, never gets a chunk without choices."""
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    headers = chunk_stream(
        ([{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}], None),
        ([{"index": 0, "delta": {"content": "!"}, "finish_reason": None}], None),
        ([], usage),
    )
    chunks = list(stream_chat(client, extra_headers=headers))
    assert [chunk.choices[0].delta.content for chunk in chunks] == ["Hi", "!"]
    assert_priced(instrumented.span(), "gpt-4o-mini", 9, 2)


def test_finish_reasons_are_one_per_choice_in_their_order(instrumented, client) -> None:
    """Choice 1 finishes first, and choice 0's reason comes again with the usage: (0's, 1's), once each."""
    first, second = {"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {}}
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    headers = chunk_stream(
        ([{**first, "finish_reason": None}, {**second, "finish_reason": "length"}], None),
        ([{**first, "finish_reason": "stop"}], None),
        ([{**first, "finish_reason": "stop"}], usage),
    )
    list(stream_chat(client, n=2, extra_headers=headers))
    assert instrumented.span().attributes[names.RESPONSE_FINISH_REASONS] == ("stop", "length")


def test_stream_the_user_asked_usage_for_keeps_its_usage_chunk(instrumented, client, server) -> None:
    chunks = list(
        stream_chat(client, stream_options={"include_usage": True}, extra_headers={"x-mock-chunks": "3"})
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert instrumented.span().attributes[names.USAGE_OUTPUT_TOKENS] == 3


def test_stream_the_user_asked_usage_for_in_extra_body_keeps_its_usage_chunk(instrumented, client) -> None:
    """`extra_body` is sent merged over the body: usage asked for there is the app's, not hidden."""
    asked = {
        "extra_body": {"stream_options": {"include_usage": True}},
        "extra_headers": {"x-mock-chunks": "3"},
    }
    with suppress_instrumentation():
        bare = list(stream_chat(client, **asked))
    chunks = list(stream_chat(client, **asked))
    assert len(chunks) == len(bare) == 6  # role, 3 words, finish, usage
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert instrumented.span().attributes[names.USAGE_OUTPUT_TOKENS] == 3


def test_stream_options_that_are_not_an_object_are_sent_as_the_app_made_them(
    instrumented, client, server
) -> None:
    """Nothing can be added to stream options that are not an object: the request goes as made, and its
    span ends with the stream."""
    chunks = list(
        stream_chat(client, extra_body={"stream_options": "yes"}, extra_headers={"x-mock-chunks": "3"})
    )
    assert len(chunks) == 5 and server.last_bodies[-1]["stream_options"] == "yes"
    span = instrumented.span()
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert names.USAGE_INPUT_TOKENS not in span.attributes  # none asked, none sent


def test_stream_options_of_extra_body_keep_the_usage_asked_for(instrumented, client, server) -> None:
    """Stream options the app sends in `extra_body` (vLLM's, say) go as sent, with usage asked for too."""
    chunks = list(
        stream_chat(
            client,
            extra_body={"stream_options": {"continuous_usage_stats": True}, "seed": 9, "top_k": 40},
            extra_headers={"x-mock-chunks": "3"},
        )
    )
    assert len(chunks) == 5 and all(chunk.choices for chunk in chunks)  # the usage chunk hidden
    assert server.last_bodies[-1]["stream_options"] == {"continuous_usage_stats": True, "include_usage": True}
    attributes = instrumented.span().attributes
    assert (attributes[names.USAGE_OUTPUT_TOKENS], attributes[names.REQUEST_SEED]) == (3, 9)
    assert attributes[names.REQUEST_TOP_K] == 40 and type(attributes[names.REQUEST_TOP_K]) is float  # double


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_provider_refusing_stream_options_gets_the_stream_as_the_app_made_it(
    instrumented, client, async_client, server, is_async, caplog
) -> None:
    """A host that answers the usage asked for with a 422 (as Mistral does) gets the request again as the
    app made it, once; the app sees its stream as uninstrumented, and the host is not asked again."""
    refusing = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    refusing["extra_headers"] = {"x-mock-reject-members": "stream_options", "x-mock-chunks": "3"}

    async def stream() -> list:
        if is_async:
            chunks = await async_client.chat.completions.create(**refusing)
            return [chunk.model_dump() async for chunk in chunks]
        return [chunk.model_dump() for chunk in client.chat.completions.create(**refusing)]

    with suppress_instrumentation():
        bare = await stream()
    server.reset()  # the server keeps the newest 100 bodies: count from none
    strip = lambda chunks: [{k: v for k, v in c.items() if k not in ("id", "created")} for c in chunks]  # noqa: E731
    assert strip(await stream()) == strip(bare) and len(bare) == 5
    assert strip(await stream()) == strip(bare)
    asked_for_usage = ["stream_options" in body for body in server.last_bodies]
    assert asked_for_usage == [True, False, False]  # refused once, then sent as made, and not asked again
    spans = instrumented.spans()
    assert [span.status.status_code for span in spans] == [StatusCode.UNSET] * 2
    assert all(names.USAGE_INPUT_TOKENS not in span.attributes for span in spans)  # no usage was sent
    assert any("refuses stream_options" in record.getMessage() for record in caplog.records)


def test_a_bad_request_that_is_not_about_stream_options_is_not_sent_again(
    instrumented, client, server
) -> None:
    server.reset()  # the server keeps the newest 100 bodies: count from none
    with pytest.raises(openai.BadRequestError):
        stream_chat(client, extra_headers={"x-mock-status": "400"})
    assert len(server.last_bodies) == 1
    span = instrumented.span()
    assert (span.status.status_code, span.attributes[names.ERROR_TYPE]) == (StatusCode.ERROR, "400")


@pytest.mark.parametrize("setting", ["off", " OFF ", "inject", "", "false"])
def test_stream_usage_injection_setting(instrumented, client, server, monkeypatch, caplog, setting) -> None:
    """`off`, in any case and spacing, turns the injection off; anything but `inject` or nothing is
    reported, and the default kept."""
    from otel_tokencost import OpenAIInstrumentor

    OpenAIInstrumentor().uninstrument()
    monkeypatch.setenv("OTEL_TOKENCOST_STREAM_USAGE", setting)
    OpenAIInstrumentor().instrument(
        tracer_provider=instrumented.tracer_provider, meter_provider=instrumented.meter_provider
    )
    assert len(list(stream_chat(client, extra_headers={"x-mock-chunks": "2"}))) == 4
    off = setting.strip().lower() == "off"
    assert ("stream_options" in server.last_bodies[-1]) is not off
    assert (names.USAGE_INPUT_TOKENS in instrumented.span().attributes) is not off
    assert ("OTEL_TOKENCOST_STREAM_USAGE='false' is not inject or off" in caplog.text) is (setting == "false")


def test_stream_context_manager_and_break(instrumented, client) -> None:
    with stream_chat(client, extra_headers={"x-mock-chunks": "20"}) as stream:
        for index, _ in enumerate(stream):
            if index == 3:
                break
        assert instrumented.spans() == ()
    span = instrumented.span()
    assert span.status.status_code == StatusCode.UNSET
    assert names.USAGE_INPUT_TOKENS not in span.attributes  # the usage chunk was never read
    assert span.attributes[names.RESPONSE_TIME_TO_FIRST_CHUNK] > 0


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_stream_left_at_its_finish_reason_is_priced(
    instrumented, client, async_client, is_async
) -> None:
    """The app stops reading at the chunk that finishes the answer: the usage chunk the package asked for
    comes after it, and is read before that chunk is handed over."""
    headers = {"x-mock-chunks": "4", **usage_header(15, 7)}
    with otel_tokencost.track(tracking_id="finish") as spend:
        if is_async:
            async with await async_client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=headers
            ) as stream:
                async for chunk in stream:
                    if chunk.choices[0].finish_reason:
                        break
        else:
            with stream_chat(client, extra_headers=headers) as stream:
                for chunk in stream:
                    if chunk.choices[0].finish_reason:
                        break
    assert chunk.choices[0].finish_reason == "stop"
    assert (spend.input_tokens, spend.output_tokens, spend.unpriced_calls) == (15, 7, 0)
    assert_priced(instrumented.span(), "gpt-4o-mini", 15, 7)


def test_a_stream_of_two_choices_left_once_both_finished_is_priced(instrumented, client) -> None:
    """With `n=2`, nothing is held until the second choice finishes; then its chunk waits for the usage."""
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    usage = {"prompt_tokens": 15, "completion_tokens": 7, "total_tokens": 22}
    headers = sse_headers(
        {**base, "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]},
        {**base, "choices": [{"index": 1, "delta": {"content": "b"}, "finish_reason": None}]},
        {**base, "choices": [{"index": 1, "delta": {}, "finish_reason": "length"}]},
        {**base, "choices": [], "usage": usage},
    )
    finished = 0
    with stream_chat(client, n=2, extra_headers=headers) as stream:
        for chunk in stream:
            finished += bool(chunk.choices[0].finish_reason)
            if finished == 2:
                break
    span = instrumented.span()
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop", "length")
    assert_priced(span, "gpt-4o-mini", 15, 7)


def test_a_stream_helper_left_when_its_content_is_done_is_priced(instrumented, client) -> None:
    with chat_stream_helper(client)(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(15, 7)
    ) as stream:
        for event in stream:
            if event.type == "content.done":
                break
    assert_priced(instrumented.span(), "gpt-4o-mini", 15, 7)


def test_a_stream_cut_after_its_finish_hands_over_the_finish_then_the_error(instrumented, client) -> None:
    """The chunk that finishes the answer reaches the app before the error that follows it, as it would
    uninstrumented (the server drops the connection before the usage chunk, asked for here or not)."""

    def read(**options) -> tuple[list, type]:
        seen = []
        headers = {"x-mock-chunks": "2", "x-mock-cut-before-usage": "1"}
        try:
            for chunk in stream_chat(client, extra_headers=headers, **options):
                seen.append(chunk.choices[0].finish_reason)
        except Exception as error:
            return seen, type(error)
        return seen, type(None)

    with suppress_instrumentation():
        bare = read(stream_options={"include_usage": True})
    assert read() == bare
    assert bare[0] == [None, None, None, "stop"] and bare[1] is not type(None)
    span = instrumented.span()
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert span.attributes[names.ERROR_TYPE] == f"{bare[1].__module__}.{bare[1].__qualname__}"


def sse_headers(*events: dict) -> dict:
    """Headers making the local server answer with these events as SSE, then [DONE]."""
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    return {
        "x-mock-raw-body-b64": base64.b64encode(body.encode()).decode(),
        "x-mock-content-type": "text/event-stream",
    }


def test_a_chunk_between_the_finish_and_the_usage_is_held_as_well(instrumented, client) -> None:
    """Azure's content filter may annotate the answer after its finish: the usage chunk still comes
    before the app gets the chunks it could stop at."""
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    choice = {"index": 0, "delta": {}, "finish_reason": None}
    usage = {"prompt_tokens": 15, "completion_tokens": 7, "total_tokens": 22}
    headers = sse_headers(
        {**base, "choices": [{**choice, "delta": {"content": "Hi"}}]},
        {**base, "choices": [{**choice, "finish_reason": "stop"}]},
        {**base, "choices": [{**choice, "content_filter_results": {}}]},
        {**base, "choices": [], "usage": usage},
    )

    def read(read_on: bool) -> list:
        seen = []
        with stream_chat(client, extra_headers=headers) as stream:
            for chunk in stream:
                seen.append(chunk.choices[0].finish_reason)
                if chunk.choices[0].finish_reason:
                    break
            if read_on:
                seen += [chunk.choices[0].finish_reason for chunk in stream]
        return seen

    assert read(read_on=False) == [None, "stop"]
    assert_priced(instrumented.span(), "gpt-4o-mini", 15, 7)
    assert read(read_on=True) == [None, "stop", None]  # the annotation, in the app's next loop


async def test_a_stream_cancelled_while_its_usage_is_read_ahead_hands_the_finish_to_the_next_loop(
    instrumented, async_client
) -> None:
    """The chunk that finishes the answer waits for the usage chunk: a cancel in that wait leaves it to
    the app's next loop over the stream, so the app gets every chunk it would have uninstrumented."""

    async def read() -> list:
        stream = await async_client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-mock-chunks": "1", "x-mock-chunk-delay-ms": "600"},
        )
        seen = []

        async def first_loop() -> None:
            async for chunk in stream:
                seen.append(chunk.choices[0].finish_reason)

        task = asyncio.create_task(first_loop())
        while len(seen) < 2:  # the role and the word: the finish comes 0.6 s later, the usage 1.2 s
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.9)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async for chunk in stream:
            seen.append(chunk.choices[0].finish_reason)
        return seen

    with suppress_instrumentation():
        bare = await read()
    assert await read() == bare == [None, None, "stop"]
    span = instrumented.span()
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert names.ERROR_TYPE not in span.attributes


def test_a_stream_without_the_usage_asked_for_ends_as_it_would(instrumented, client) -> None:
    """A provider that ignores the usage asked for: the finish is followed by the end, and the app gets
    every chunk."""
    chunks = list(stream_chat(client, extra_headers={"x-mock-chunks": "2", "x-mock-usage": "none"}))
    assert [chunk.choices[0].finish_reason for chunk in chunks] == [None, None, None, "stop"]
    span = instrumented.span()
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert names.USAGE_INPUT_TOKENS not in span.attributes


def test_stream_close_ends_once(instrumented, client) -> None:
    stream = stream_chat(client)
    next(stream)
    stream.close()
    stream.close()
    assert len(instrumented.spans()) == 1


def test_abandoned_stream_ends_its_span_when_collected(instrumented, client) -> None:
    stream = stream_chat(client, extra_headers={"x-mock-chunks": "10"})
    next(stream)
    assert instrumented.spans() == ()
    del stream  # no reference cycle: the span ends as soon as the last reference goes
    assert len(instrumented.spans()) == 1


@pytest.mark.parametrize("closing", ["aclose", "aclosing"])
async def test_async_stream_aclose_ends_the_span(instrumented, async_client, closing) -> None:
    """`aclose()`, the SDK's alias of `close()`, and `contextlib.aclosing` end the call at once."""
    stream = await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert hasattr(stream, "aclose") == hasattr(openai.AsyncStream, "aclose")  # none added where none is
    if not hasattr(openai.AsyncStream, "aclose"):
        await stream.close()
        pytest.skip("this openai's AsyncStream has no aclose()")
    if closing == "aclose":
        await stream.__anext__()
        await stream.aclose()
    else:
        async with contextlib.aclosing(stream):
            await stream.__anext__()
    span = instrumented.span()
    assert names.USAGE_INPUT_TOKENS not in span.attributes  # closed before the usage chunk
    assert stream.response.is_closed


async def test_abandoned_async_stream_ends_its_span(instrumented, async_client) -> None:
    stream = await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    async for _ in stream:
        break
    del stream
    gc.collect()
    assert len(instrumented.spans()) == 1


def test_for_loop_straight_over_create(instrumented, client) -> None:
    seen = 0
    for _ in stream_chat(client, extra_headers={"x-mock-chunks": "4"}):  # the proxy is dropped at once
        seen += 1
        assert instrumented.spans() == ()
    assert seen == 6
    assert instrumented.span().attributes[names.USAGE_OUTPUT_TOKENS] == 4


def test_break_out_of_for_loop_ends_the_span_at_once(instrumented, client) -> None:
    for _ in stream_chat(client, extra_headers={"x-mock-chunks": "30"}):
        break
    span = instrumented.span()
    assert span.status.status_code == StatusCode.UNSET and names.USAGE_INPUT_TOKENS not in span.attributes


def test_iterator_dropped_before_its_first_chunk(instrumented, client) -> None:
    iterator = iter(stream_chat(client))
    assert instrumented.spans() == ()
    del iterator
    assert len(instrumented.spans()) == 1


def test_stream_exhausted_through_next(instrumented, client) -> None:
    stream = stream_chat(client, extra_headers={"x-mock-chunks": "2"})
    seen = []
    with pytest.raises(StopIteration):
        while True:
            seen.append(next(stream))
    assert len(seen) == 4
    assert instrumented.span().attributes[names.USAGE_OUTPUT_TOKENS] == 2


def test_stream_cut_midway_records_the_error(instrumented, client) -> None:
    seen = []
    try:  # openai 1.x lets the transport's error through; 2.x and later wrap it in APIError
        for chunk in stream_chat(client, extra_headers={"x-mock-cut-after": "2"}):
            seen.append(chunk)
    except Exception as error:
        raised = error
    assert len(seen) == 3
    span = instrumented.span()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[names.ERROR_TYPE] == f"{type(raised).__module__}.{type(raised).__qualname__}"


def test_captured_content_of_a_stream_cut_midway_finishes_with_error(capturing, client) -> None:
    """The output message of a stream the server broke off has what came, and `error` for the finish
    reason the conventions require (none came)."""
    seen = []
    with pytest.raises(Exception):  # noqa: B017 - openai 1.x lets the transport's error through
        for chunk in stream_chat(client, extra_headers={"x-mock-cut-after": "2"}):
            seen.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    (message,) = json.loads(capturing.span().attributes[names.OUTPUT_MESSAGES])
    assert message["finish_reason"] == "error"
    assert message["parts"] == [{"type": "text", "content": "".join(seen)}] and "".join(seen)


async def test_async_stream(instrumented, async_client) -> None:
    stream = await async_client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-mock-chunks": "4"}
    )
    chunks = [chunk async for chunk in stream]
    assert len(chunks) == 6
    span = instrumented.span()
    assert span.attributes[names.USAGE_OUTPUT_TOKENS] == 4
    assert_priced(span, "gpt-4o-mini", span.attributes[names.USAGE_INPUT_TOKENS], 4)


async def test_async_stream_context_manager_break(instrumented, async_client) -> None:
    stream = await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    async with stream:
        async for _ in stream:
            break
    assert len(instrumented.spans()) == 1


async def read_stream(client, async_client, is_async: bool) -> list:
    kwargs = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "extra_headers": {"x-mock-chunks": "4"},
    }
    if is_async:
        return [chunk async for chunk in await async_client.chat.completions.create(**kwargs)]
    return list(client.chat.completions.create(**kwargs))


def stream_iteration(is_async: bool) -> tuple[type, str]:
    return (openai.AsyncStream, "__aiter__") if is_async else (openai.Stream, "__iter__")


def passing_on(passed: list, is_async: bool):
    """What another tool puts around a stream's items: a generator (or an async one) that passes them
    on and notes each in `passed`."""

    def follow(items):
        for item in items:
            passed.append(item)
            yield item

    async def follow_async(items):
        async for item in items:
            passed.append(item)
            yield item

    return follow_async if is_async else follow


def assert_seen_by_both(chunks: list, passed: list, span) -> None:
    """The user got exactly their chunks; the other tool saw them and the usage chunk hidden from the
    user; the call is priced."""
    assert len(chunks) == 6
    assert passed[:6] == chunks and len(passed) == 7
    assert_priced(span, "gpt-4o-mini", span.attributes[names.USAGE_INPUT_TOKENS], 4)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_an_sdk_stream_is_read_from_its_iterator_not_through_its_pass_through(
    instrumented, client, async_client, is_async
) -> None:
    """The SDK stream's own `__iter__` (`__aiter__`) only passes on what its `_iterator` yields: the proxy
    takes the chunks from that iterator itself, one generator step less a chunk, and the user gets the
    same chunks."""
    stream_type, name = stream_iteration(is_async)
    pass_through = getattr(stream_type, name).__code__
    ran = []

    def note(frame, event, arg):
        if event == "call" and frame.f_code is pass_through:
            ran.append(frame)

    sys.setprofile(note)
    try:
        chunks = await read_stream(client, async_client, is_async)
    finally:
        sys.setprofile(None)
    assert len(chunks) == 6 and all(chunk.choices for chunk in chunks)  # the usage chunk hidden
    assert ran == []
    span = instrumented.span()
    assert_priced(span, "gpt-4o-mini", span.attributes[names.USAGE_INPUT_TOKENS], 4)
    with suppress_instrumentation():
        bare = await read_stream(client, async_client, is_async)
    assert [chunk.model_dump(exclude={"id", "created"}) for chunk in bare] == [
        chunk.model_dump(exclude={"id", "created"}) for chunk in chunks
    ]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("how", ["replaced", "wrapped"])
async def test_a_tool_that_patches_the_stream_classes_iteration_sees_every_chunk(
    telemetry, client, async_client, monkeypatch, is_async, how
) -> None:
    """Another tool's `__iter__` (or `__aiter__`) on the SDK's stream class, set before or after
    instrumenting: the proxy iterates the stream through it."""
    from otel_tokencost import OpenAIInstrumentor

    stream_type, name = stream_iteration(is_async)
    passed = []
    follow = passing_on(passed, is_async)

    def note_the_stream(wrapped, stream, args, kwargs):
        passed.append(stream)
        return wrapped(*args, **kwargs)

    if how == "replaced":
        monkeypatch.setattr(stream_type, name, lambda stream: follow(stream._iterator))
    OpenAIInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    if how == "wrapped":
        monkeypatch.setattr(
            stream_type, name, wrapt.FunctionWrapper(getattr(stream_type, name), note_the_stream)
        )
    try:
        chunks = await read_stream(client, async_client, is_async)
    finally:
        OpenAIInstrumentor().uninstrument()
    if how == "replaced":
        assert_seen_by_both(chunks, passed, telemetry.span())
    else:
        assert len(chunks) == 6 and len(passed) == 1 and isinstance(passed[0], stream_type)
        span = telemetry.span()
        assert_priced(span, "gpt-4o-mini", span.attributes[names.USAGE_INPUT_TOKENS], 4)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_tool_that_replaces_the_streams_iterator_sees_every_chunk(
    instrumented, client, async_client, monkeypatch, is_async
) -> None:
    """Sentry's OpenAI integration wraps `create` and replaces the returned stream's `_iterator` with its
    own generator over it."""
    completions = async_client.chat.completions if is_async else client.chat.completions
    create = completions.create
    passed = []
    follow = passing_on(passed, is_async)

    def create_and_follow(*args, **kwargs):
        stream = create(*args, **kwargs)
        stream._iterator = follow(stream._iterator)
        return stream

    async def create_and_follow_async(*args, **kwargs):
        stream = await create(*args, **kwargs)
        stream._iterator = follow(stream._iterator)
        return stream

    monkeypatch.setattr(completions, "create", create_and_follow_async if is_async else create_and_follow)
    chunks = await read_stream(client, async_client, is_async)
    assert_seen_by_both(chunks, passed, instrumented.span())


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_tool_that_subclasses_the_stream_class_sees_every_chunk(
    instrumented, client, async_client, monkeypatch, is_async
) -> None:
    """Logfire's OpenAI instrumentation wraps the client's `request` and passes a new subclass of the
    SDK's stream as `stream_cls`, overriding `__stream__`: the call is still followed and priced, and
    the user still sees exactly their chunks."""
    sdk = async_client if is_async else client
    request = sdk.request
    passed = []
    follow = passing_on(passed, is_async)

    def with_own_stream_class(*args, **kwargs):
        if kwargs.get("stream"):

            class SeenStream(kwargs["stream_cls"]):
                def __stream__(self):
                    return follow(super().__stream__())

            kwargs["stream_cls"] = SeenStream
        return request(*args, **kwargs)

    monkeypatch.setattr(sdk, "request", with_own_stream_class)
    chunks = await read_stream(client, async_client, is_async)
    assert_seen_by_both(chunks, passed, instrumented.span())


def test_legacy_completions_stream(instrumented, client) -> None:
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="one two",
            stream=True,
            extra_headers={"x-mock-chunks": "3"},
        )
    )
    assert all(chunk.choices for chunk in chunks)
    span = instrumented.span()
    assert span.name == "text_completion gpt-3.5-turbo-instruct"
    assert_priced(span, "gpt-3.5-turbo-instruct", span.attributes[names.USAGE_INPUT_TOKENS], 3)


@pytest.mark.skipif(not HAS_RESPONSES, reason="this openai has no Responses API")
def test_responses_stream_and_helper(instrumented, client, server) -> None:
    events = list(client.responses.create(model="gpt-4.1", input="a b c", stream=True))
    assert events[-1].type == "response.completed"
    assert "stream_options" not in server.last_bodies[-1]
    with client.responses.stream(model="gpt-4.1", input="a b c") as stream:
        final = stream.get_final_response()
    first, second = instrumented.spans()
    for span in (first, second):
        assert span.name == "chat gpt-4.1"
        assert span.attributes[names.USAGE_OUTPUT_TOKENS] == final.usage.output_tokens
        assert_priced(span, "gpt-4.1", final.usage.input_tokens, final.usage.output_tokens)
        assert span.attributes[names.RESPONSE_ID] in (events[-1].response.id, final.id)


HAS_BETA_RESPONSES = HAS_RESPONSES and hasattr(openai.resources.beta.Beta, "responses")


@pytest.mark.skipif(not HAS_BETA_RESPONSES, reason="this openai has no beta Responses API")
def test_beta_responses(instrumented, client) -> None:
    """The SDK's beta Responses go to `/responses?beta=true` and `/responses/compact?beta=true`."""
    headers = {"x-mock-usage": json.dumps({"input_tokens": 700, "output_tokens": 90, "total_tokens": 790})}
    client.beta.responses.create(model="gpt-4.1", input="Say hi", extra_headers=headers)
    client.beta.responses.compact(model="gpt-4.1", input=COMPACTED, extra_headers=headers)
    spans = instrumented.spans()
    assert len(spans) == 2
    for span in spans:
        assert span.name == "chat gpt-4.1"
        assert_priced(span, "gpt-4.1", 700, 90)


@contextlib.contextmanager
def priced_on_the_local_server(telemetry, server, tmp_path, model: str, rates: str) -> Iterator[None]:
    """Instrumented with a prices file that gives `model` on the local server its `rates` (TOML)."""
    prices = tmp_path / "prices.toml"
    match = f'[[providers]]\nmatch = "127.0.0.1:{server.port}"\n'
    prices.write_text(f'{match}[providers.models."{model}"]\n{rates}')
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider, prices=str(prices)
    )
    try:
        yield
    finally:
        instrumentor.uninstrument()


LUNA_RATES = "input_mtok = 0.5\noutput_mtok = 4\ncache_read_mtok = 0.05\n"
HAS_DECISIONS = hasattr(openai.OpenAI(api_key="x", base_url="http://127.0.0.1:1"), "decisions")


@pytest.mark.skipif(not HAS_DECISIONS, reason="this openai has no Decisions API")
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_decisions(telemetry, server, tmp_path, is_async) -> None:
    """`decisions.create` is a model call billed by its tokens, reported in the Responses usage shape."""
    usage = {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 0}}
    usage |= {"output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 1240}
    question = {"type": "predicate", "name": "spam", "question": "Is this spam?"}
    sdk = (openai.AsyncOpenAI if is_async else openai.OpenAI)(base_url=server.base_url, api_key=API_KEY)
    with priced_on_the_local_server(telemetry, server, tmp_path, "gpt-6-luna", LUNA_RATES):
        decided = sdk.decisions.create(
            model="gpt-6-luna",
            input="Buy cheap pills now",
            questions=[question],
            extra_headers={"x-mock-usage": json.dumps(usage)},
        )
        decision = await decided if is_async else decided
    assert decision.answers[0].type == "predicate" and decision.usage.total_tokens == 1240
    span = telemetry.span()
    assert (span.name, span.attributes[names.OPERATION_NAME]) == ("chat gpt-6-luna", "chat")
    assert span.attributes[names.RESPONSE_MODEL] == "gpt-6-luna"
    assert (span.attributes[names.USAGE_INPUT_TOKENS], span.attributes[names.USAGE_OUTPUT_TOKENS]) == (
        1200,
        40,
    )
    expected = (Decimal("0.5") * 200 + Decimal("0.05") * 1000 + Decimal(4) * 40) / 1_000_000
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(expected)


def parse_owner(client):
    """The resource with the chat `parse()` helper: out of beta in later SDKs."""
    completions = client.chat.completions
    return completions if hasattr(completions, "parse") else client.beta.chat.completions


# Later SDKs parse inside the call (a post-parser, which a raw response runs when parsed), and so refuse a
# response there; earlier ones, without a raw `parse()`, after the call returned.
REFUSES_IN_THE_CALL = hasattr(
    parse_owner(openai.OpenAI(api_key="x", base_url="http://127.0.0.1:1")), "with_raw_response"
)


class Answer(pydantic.BaseModel):
    words: list[str]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("limit", "refusal"),
    [(2, "openai.LengthFinishReasonError"), (None, "pydantic_core._pydantic_core.ValidationError")],
    ids=["cut short", "not the format asked"],
)
async def test_a_parse_helper_that_refuses_the_response_keeps_its_usage(
    instrumented, client, async_client, is_async, limit, refusal
) -> None:
    """The helper raises once the call was billed: the span has its usage and cost, and the error."""
    parse = parse_owner(async_client if is_async else client).parse
    kwargs = {"max_tokens": limit} if limit else {}
    with pytest.raises(Exception) as raised:
        parsed = parse(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "one two three"}],
            response_format=Answer,
            extra_headers=usage_header(40, 8),
            **kwargs,
        )
        await parsed if is_async else parsed
    assert f"{type(raised.value).__module__}.{type(raised.value).__qualname__}" == refusal
    span = instrumented.span()
    if REFUSES_IN_THE_CALL:
        assert (span.status.status_code, span.attributes[names.ERROR_TYPE]) == (StatusCode.ERROR, refusal)
    else:  # the call was over, a success, when the helper refused its response
        assert span.status.status_code == StatusCode.UNSET and names.ERROR_TYPE not in span.attributes
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("length" if limit else "stop",)
    assert_priced(span, "gpt-4o-mini", 40, 8)


@pytest.mark.skipif(not REFUSES_IN_THE_CALL, reason="this openai's parse helper has no raw response")
def test_a_raw_parse_the_helper_will_refuse_is_priced(instrumented, client) -> None:
    """`with_raw_response` of a parse helper: the app gets the response; its `parse()` raises later."""
    raw = parse_owner(client).with_raw_response.parse(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three"}],
        response_format=Answer,
        max_tokens=2,
        extra_headers=usage_header(40, 8),
    )
    span = instrumented.span()
    assert span.status.status_code == StatusCode.UNSET
    assert_priced(span, "gpt-4o-mini", 40, 8)
    with pytest.raises(openai.LengthFinishReasonError):
        raw.parse()
    assert len(instrumented.spans()) == 1


def sse(*events: dict) -> str:
    """SSE events as the local server's `x-mock-raw-body` takes them (newlines escaped)."""
    return "".join(f"event: {event['type']}\\ndata: {json.dumps(event)}\\n\\n" for event in events)


def response_body(status: str, usage: dict | None = None) -> dict:
    body = {"id": "resp_1", "object": "response", "created_at": 1, "status": status, "model": "gpt-4.1"}
    return {
        **body,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


@pytest.mark.skipif(not HAS_RESPONSES, reason="this openai has no Responses API")
def test_a_responses_stream_that_ends_in_an_error_event_failed(instrumented, client) -> None:
    created = {"type": "response.created", "sequence_number": 0, "response": response_body("in_progress")}
    error = {
        "type": "error",
        "sequence_number": 1,
        "code": "server_error",
        "message": "An error",
        "param": None,
    }
    headers = {"x-mock-raw-body": sse(created, error), "x-mock-content-type": "text/event-stream"}
    events = list(client.responses.create(model="gpt-4.1", input="Hi", stream=True, extra_headers=headers))
    assert [event.type for event in events] == ["response.created", "error"]
    span = instrumented.span()
    assert (span.status.status_code, span.attributes[names.ERROR_TYPE]) == (StatusCode.ERROR, "server_error")


@pytest.mark.skipif(not HAS_RESPONSES, reason="this openai has no Responses API")
def test_a_responses_stream_error_event_with_its_error_nested_keeps_the_code(instrumented, client) -> None:
    """The API may nest the error (`{"type": "error", "error": {...}}`): the SDK raises it as an APIError
    in the app's loop, and the span's error.type is still its code."""
    created = {"type": "response.created", "sequence_number": 0, "response": response_body("in_progress")}
    error = {
        "type": "error",
        "sequence_number": 1,
        "error": {"code": "rate_limit_exceeded", "message": "Slow"},
    }
    headers = {"x-mock-raw-body": sse(created, error), "x-mock-content-type": "text/event-stream"}
    with pytest.raises(openai.APIError):
        list(client.responses.create(model="gpt-4.1", input="Hi", stream=True, extra_headers=headers))
    span = instrumented.span()
    assert (span.status.status_code, span.attributes[names.ERROR_TYPE]) == (
        StatusCode.ERROR,
        "rate_limit_exceeded",
    )


@pytest.mark.skipif(not HAS_RESPONSES, reason="this openai has no Responses API")
def test_a_background_response_queued_has_no_finish_reason(instrumented, client) -> None:
    """A background response is answered `queued`, unfinished: it has not stopped for any reason."""
    headers = {
        "x-mock-raw-body": json.dumps(response_body("queued")),
        "x-mock-content-type": "application/json",
    }
    queued = client.responses.create(model="gpt-4.1", input="Hi", background=True, extra_headers=headers)
    assert queued.status == "queued"
    span = instrumented.span()
    assert span.attributes[names.RESPONSE_ID] == "resp_1"
    assert names.RESPONSE_FINISH_REASONS not in span.attributes and names.ERROR_TYPE not in span.attributes


def chat_stream_helper(client):
    completions = client.chat.completions
    return completions.stream if hasattr(completions, "stream") else client.beta.chat.completions.stream


def test_chat_stream_helper(instrumented, client) -> None:
    with chat_stream_helper(client)(model="gpt-4o-mini", messages=MESSAGES) as stream:
        text = "".join(event.delta for event in stream if event.type == "content.delta")
        completion = stream.get_final_completion()
    assert completion.choices[0].message.content == text
    span = instrumented.span()
    assert_priced(
        span,
        "gpt-4o-mini",
        span.attributes[names.USAGE_INPUT_TOKENS],
        span.attributes[names.USAGE_OUTPUT_TOKENS],
    )


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_chat_stream_helper_left_early_ends_its_span_with_the_block(
    instrumented, client, async_client, is_async: bool
) -> None:
    """The helper's block closes the stream's HTTP response, not the stream: the span ends there, not when
    the garbage collector frees the helper (its stream holds itself in a reference cycle)."""
    request = {"model": "gpt-4o-mini", "messages": MESSAGES, "extra_headers": {"x-mock-chunks": "30"}}
    gc.disable()
    try:
        if is_async:
            async with chat_stream_helper(async_client)(**request) as stream:
                event = await stream.__anext__()
        else:
            with chat_stream_helper(client)(**request) as stream:
                event = next(stream)
        span = instrumented.span()
    finally:
        gc.enable()
    assert event.type == "chunk"
    assert span.attributes[names.RESPONSE_MODEL] == "gpt-4o-mini"
    assert span.status.status_code == StatusCode.UNSET


def test_a_streams_http_response_is_the_sdks(instrumented, client) -> None:
    stream = stream_chat(client, extra_headers={"x-mock-chunks": "2"})
    assert stream.response is stream.response
    assert isinstance(stream.response, type(stream.__wrapped__.response))
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert len(list(stream)) == 4 and instrumented.span().attributes[names.USAGE_OUTPUT_TOKENS] == 2


def test_parse_helper(instrumented, client) -> None:
    parse_owner(client).parse(model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(40, 8))
    assert_priced(instrumented.span(), "gpt-4o-mini", 40, 8)


# Raw responses ---------------------------------------------------------------------------------


def test_with_raw_response(instrumented, client) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(11, 22)
    )
    assert raw.headers["content-type"].startswith("application/json")
    assert_priced(instrumented.span(), "gpt-4o-mini", 11, 22)
    assert raw.parse().usage.prompt_tokens == 11
    assert len(instrumented.spans()) == 1


def test_with_raw_response_stream(instrumented, client) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-mock-chunks": "3"}
    )
    assert len(list(raw.parse())) == 5
    assert instrumented.span().attributes[names.USAGE_OUTPUT_TOKENS] == 3


def test_with_streaming_response(instrumented, client) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(5, 6)
    ) as response:
        assert instrumented.spans() == ()
        assert response.parse().usage.completion_tokens == 6
    assert_priced(instrumented.span(), "gpt-4o-mini", 5, 6)


def test_with_streaming_response_closed_unparsed(instrumented, client) -> None:
    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MESSAGES):
        pass
    span = instrumented.span()
    assert names.USAGE_INPUT_TOKENS not in span.attributes and span.status.status_code == StatusCode.UNSET


async def test_async_with_streaming_response(instrumented, async_client) -> None:
    async with async_client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(5, 6)
    ) as response:
        parsed = await response.parse()
    assert parsed.usage.prompt_tokens == 5
    assert_priced(instrumented.span(), "gpt-4o-mini", 5, 6)


RAW_READS = {
    "json": lambda response: response.json(),
    "text": lambda response: response.text(),
    "read": lambda response: response.read(),
    "iter_bytes": lambda response: list(response.iter_bytes(7)),
    "iter_lines": lambda response: list(response.iter_lines()),
    "httpx iter_text": lambda response: list(response.http_response.iter_text()),
    "parse to str": lambda response: response.parse(to=str),
    "parse to bytes": lambda response: response.parse(to=bytes),
    "parse to the httpx response": lambda response: response.parse(to=type(response.http_response)).read(),
}


@pytest.mark.parametrize(
    ("read", "stream"),
    [
        *((read, False) for read in RAW_READS),
        # A stream is not JSON, and the SDK parses it to nothing but a stream
        *((read, True) for read in RAW_READS if read != "json" and not read.startswith("parse")),
    ],
)
def test_with_streaming_response_read_raw(instrumented, client, read: str, stream: bool) -> None:
    """A body the app reads itself, however it does, is priced as it ends; a stream that asks for usage."""
    options = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(15, 7), **options
    ) as response:
        assert instrumented.spans() == ()
        RAW_READS[read](response)
        span = instrumented.span()  # ended with the body, before the block closes the response
    assert_priced(span, "gpt-4o-mini", 15, 7)
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    (cost,) = instrumented.points(names.METRIC_COST)
    assert cost.count == 1


def test_with_streaming_response_stream_is_handed_over_as_sent(instrumented, client) -> None:
    """No usage is asked for on the app's behalf: the app reads the body as the provider sent it."""

    def lines() -> list[str]:
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-mock-chunks": "4"}
        ) as response:
            return [re.sub(r'"(id|created)":("[^"]*"|[0-9]+)', "", line) for line in response.iter_lines()]

    with suppress_instrumentation():
        bare = lines()
    assert lines() == bare and len(bare) == 2 * (4 + 3)  # role, 4 words, finish, [DONE]
    span = instrumented.span()
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert names.USAGE_INPUT_TOKENS not in span.attributes  # the app asked for none


def test_with_streaming_response_read_in_part_then_closed(instrumented, client) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-mock-chunks": "30"}
    ) as response:
        first = next(response.iter_lines())
    assert first.startswith("data: ")
    span = instrumented.span()
    assert span.attributes[names.RESPONSE_MODEL] == "gpt-4o-mini"  # from the first event, read
    assert span.status.status_code == StatusCode.UNSET


def test_a_body_an_event_hook_read_first_is_priced(instrumented, server) -> None:
    """An HTTP client whose response hook reads the body (logging, say) hands the SDK a body read already:
    it is priced all the same, however the app then reads it."""
    http_client = openai.DefaultHttpxClient(event_hooks={"response": [lambda response: response.read()]})
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, http_client=http_client)
    with (
        client,
        client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(15, 7)
        ) as response,
    ):
        assert response.json()["usage"]["prompt_tokens"] == 15
    assert_priced(instrumented.span(), "gpt-4o-mini", 15, 7)


def test_a_stream_an_event_hook_read_first_is_read_once(capturing, server) -> None:
    """Read before the SDK hands it over, then parsed to a stream: the stream's chunks are read, not the
    body a second time (its text would be recorded twice)."""
    http_client = openai.DefaultHttpxClient(event_hooks={"response": [lambda response: response.read()]})
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, http_client=http_client)
    with client:
        response = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=usage_header(15, 7)
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices)
    span = capturing.span()
    (message,) = json.loads(span.attributes[names.OUTPUT_MESSAGES])
    assert message["parts"] == [{"type": "text", "content": text}]
    assert_priced(span, "gpt-4o-mini", 15, 7)


def _http_response_class() -> type:
    """The HTTP response class the SDK hands over for `cast_to`: httpx2's in openai 3, else httpx's."""
    try:
        from openai._httpx2 import http_response_types
    except ImportError:
        import httpx

        return httpx.Response
    return http_response_types()[0]


@pytest.mark.parametrize("usage_asked", [False, True])
def test_a_stream_asked_for_as_the_http_response_is_handed_over_as_sent(
    instrumented, client, usage_asked: bool
) -> None:
    """`client.post(..., cast_to=httpx.Response)`: the app reads the body as the provider sent it (no
    usage asked for on its behalf), and it is priced as it is read when the app asks for usage."""
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    if usage_asked:
        body["stream_options"] = {"include_usage": True}

    def lines() -> list[str]:
        response = client.post(
            "/chat/completions",
            body=body,
            cast_to=_http_response_class(),
            stream=True,
            options={"headers": {"x-mock-chunks": "3", **usage_header(15, 7)}},
        )
        return [re.sub(r'"(id|created)":("[^"]*"|[0-9]+)', "", line) for line in response.iter_lines()]

    with suppress_instrumentation():
        bare = lines()
    assert lines() == bare and len(bare) == 2 * (3 + 3 + usage_asked)  # role, words, finish, usage, [DONE]
    span = instrumented.span()  # ended with the body
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    if usage_asked:
        assert_priced(span, "gpt-4o-mini", 15, 7)
    else:
        assert names.USAGE_INPUT_TOKENS not in span.attributes


def test_a_response_asked_for_as_the_http_response_is_priced(instrumented, client) -> None:
    response = client.post(
        "/chat/completions",
        body={"model": "gpt-4o-mini", "messages": MESSAGES},
        cast_to=_http_response_class(),
        options={"headers": usage_header(15, 7)},
    )
    assert response.json()["usage"]["completion_tokens"] == 7
    assert_priced(instrumented.span(), "gpt-4o-mini", 15, 7)


def test_a_client_s_stored_base_url_is_read_without_its_property() -> None:
    """The SDK's clients return the base URL they store (read directly: openai 3's property imports a
    module on each access); only a class with a property of its own, the module client's, is asked."""
    from otel_tokencost.instrumentation.openai import _stores_base_url

    assert all(map(_stores_base_url, (openai.OpenAI, openai.AsyncOpenAI, openai.AzureOpenAI)))
    assert not _stores_base_url(openai._ModuleClient)


def test_the_module_level_client_is_measured_where_its_calls_go(instrumented, server, monkeypatch) -> None:
    """`openai.chat.completions.create` goes to `openai.base_url` as it is at each call, not as it was
    when the module-level client was made: so do its span's address and its price."""
    monkeypatch.setattr(openai, "_client", None)
    monkeypatch.setattr(openai, "api_key", API_KEY)
    monkeypatch.setattr(openai, "base_url", f"{server.base_url}/")  # read as it is: its slash too
    monkeypatch.setattr(openai, "max_retries", 0)
    openai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    elsewhere = f"{server.base_url}/".replace("127.0.0.1", "localhost")
    monkeypatch.setattr(openai, "base_url", elsewhere)
    openai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(15, 7))
    first, second = instrumented.spans()
    assert first.attributes[names.SERVER_ADDRESS] == "127.0.0.1"
    assert second.attributes[names.SERVER_ADDRESS] == "localhost"
    assert_priced(second, "gpt-4o-mini", 15, 7)


async def test_with_streaming_response_cut_mid_stream_records_the_error(
    instrumented, client, async_client
) -> None:
    """A stream the server cuts fails in the app's own read as it does uninstrumented, sync or async, and
    its span records the error."""
    create = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    cut = {"x-mock-chunks": "20", "x-mock-cut-after": "3"}

    def read_sync() -> None:
        with client.chat.completions.with_streaming_response.create(**create, extra_headers=cut) as response:
            list(response.iter_lines())

    async def read_async() -> None:
        async with async_client.chat.completions.with_streaming_response.create(
            **create, extra_headers=cut
        ) as response:
            [line async for line in response.iter_lines()]

    with suppress_instrumentation(), pytest.raises(Exception) as bare:
        read_sync()
    error = type(bare.value)
    with pytest.raises(error):
        read_sync()
    with pytest.raises(error):
        await read_async()
    spans = instrumented.spans()
    assert [span.status.status_code for span in spans] == [StatusCode.ERROR] * 2
    assert {span.attributes[names.ERROR_TYPE] for span in spans} == {
        f"{error.__module__}.{error.__qualname__}"
    }


@pytest.mark.parametrize("read", ["json", "iter_lines"])
async def test_async_with_streaming_response_read_raw(instrumented, async_client, read: str) -> None:
    async with async_client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(15, 7)
    ) as response:
        if read == "json":
            await response.json()
        else:
            assert [line async for line in response.iter_lines()]
        span = instrumented.span()
    assert_priced(span, "gpt-4o-mini", 15, 7)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_async_parse_again_hands_back_the_same_result(instrumented, async_client, stream: bool) -> None:
    """An async response's `parse()` is a coroutine function however often it is called, as the SDK's."""
    async with async_client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=stream, extra_headers=usage_header(5, 6)
    ) as response:
        first = await response.parse()
        assert await response.parse() is first
        if stream:
            assert [chunk.choices[0].finish_reason async for chunk in first][-1] == "stop"
    assert len(instrumented.spans()) == 1


def test_a_stream_parsed_to_a_class_of_the_apps_is_followed_to_its_end(instrumented, client) -> None:
    """`parse(to=...)` hands the call to the stream it returns: the raw response, dropped, does not end it."""
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-mock-chunks": "3"}
    ).parse(to=openai.Stream[openai.types.chat.ChatCompletionChunk])
    gc.collect()
    assert instrumented.spans() == ()
    assert len(list(stream)) == 5  # role, 3 words, finish: the usage chunk asked for stays hidden
    assert instrumented.span().attributes[names.USAGE_OUTPUT_TOKENS] == 3


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_parsed_stream_left_early_ends_its_span_with_the_response(
    instrumented, client, async_client, is_async: bool
) -> None:
    """Leaving `with_streaming_response`'s block closes the body: the stream parsed from it is over, and so
    is its span, though the app still holds the stream."""
    request = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    request["extra_headers"] = {"x-mock-chunks": "30"}
    if is_async:
        async with async_client.chat.completions.with_streaming_response.create(**request) as response:
            stream = await response.parse()
            await stream.__anext__()
    else:
        with client.chat.completions.with_streaming_response.create(**request) as response:
            stream = response.parse()
            next(stream)
    span = instrumented.span()  # while `stream` is still the app's
    assert span.attributes[names.RESPONSE_MODEL] == "gpt-4o-mini"
    assert span.status.status_code == StatusCode.UNSET


# Failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"), [(500, openai.InternalServerError), (429, openai.RateLimitError)]
)
def test_error_status(instrumented, client, status, error) -> None:
    with pytest.raises(error):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-mock-status": str(status)}
        )
    span = instrumented.span()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[names.ERROR_TYPE] == str(status)
    assert names.USAGE_COST_AMOUNT not in span.attributes
    (duration,) = instrumented.points(names.METRIC_DURATION)
    assert duration.attributes[names.ERROR_TYPE] == str(status)
    assert instrumented.points(names.METRIC_COST) == []


def test_retries_stay_inside_one_span(instrumented, client, server) -> None:
    before = server.requests_seen
    client.with_options(max_retries=2).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={
            "x-mock-status": "500",
            "x-mock-fail-times": "2",
            "Idempotency-Key": f"retry-{before}",
        },
    )
    assert server.requests_seen - before == 3
    span = instrumented.span()
    assert span.status.status_code == StatusCode.UNSET and names.USAGE_INPUT_TOKENS in span.attributes


def test_connection_error(instrumented) -> None:
    dead = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, max_retries=0)
    with dead, pytest.raises(openai.APIConnectionError):
        dead.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = instrumented.span()
    assert span.attributes[names.ERROR_TYPE].endswith("APIConnectionError")
    assert span.attributes[names.SERVER_PORT] == 9


def test_body_without_usage_has_no_tokens_and_no_cost(instrumented, client) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-mock-usage": "none"}
    )
    span = instrumented.span()
    assert span.attributes[names.RESPONSE_MODEL] == "gpt-4o-mini"
    for attribute in (names.USAGE_INPUT_TOKENS, names.USAGE_COST_AMOUNT, names.PRICING_SOURCE):
        assert attribute not in span.attributes
    assert instrumented.points(names.METRIC_TOKEN_USAGE) == []


def test_unknown_model_has_tokens_but_no_cost(instrumented, client) -> None:
    client.chat.completions.create(
        model="my-finetune-v7", messages=MESSAGES, extra_headers=usage_header(9, 4)
    )
    span = instrumented.span()
    assert (span.attributes[names.USAGE_INPUT_TOKENS], span.attributes[names.USAGE_OUTPUT_TOKENS]) == (9, 4)
    assert names.USAGE_COST_AMOUNT not in span.attributes
    assert instrumented.points(names.METRIC_COST) == []


def test_response_model_is_priced_before_request_model(instrumented, client) -> None:
    client.chat.completions.create(
        model="my-alias",
        messages=MESSAGES,
        extra_headers={**usage_header(100, 10), "x-mock-response-model": "gpt-4o"},
    )
    span = instrumented.span()
    assert span.name == "chat my-alias"
    assert_priced(span, "gpt-4o", 100, 10)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "x", "completion_tokens": None},
        {"prompt_tokens": -5, "completion_tokens": True},
        [],
        "n/a",
    ],
)
def test_malformed_usage_is_ignored(instrumented, client, usage) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-mock-usage": json.dumps(usage)}
    )
    span = instrumented.span()
    assert names.USAGE_INPUT_TOKENS not in span.attributes and names.USAGE_COST_AMOUNT not in span.attributes


# Safety ----------------------------------------------------------------------------------------


def test_no_content_and_no_secret_in_telemetry(instrumented, client) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "secret plan"}])
    text = json.dumps({key: str(value) for key, value in instrumented.span().attributes.items()})
    assert API_KEY not in text and "secret plan" not in text and "Bearer" not in text


def test_internal_failure_never_reaches_the_app(instrumented, client, monkeypatch, caplog) -> None:
    from otel_tokencost.pricing import Pricer

    monkeypatch.setenv("OTEL_TOKENCOST_STRICT", "0")
    monkeypatch.setattr(Pricer, "price", lambda *args, **kwargs: 1 / 0)
    result = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(3, 4)
    )
    assert result.usage.prompt_tokens == 3
    span = instrumented.span()
    assert span.attributes[names.USAGE_INPUT_TOKENS] == 3 and names.USAGE_COST_AMOUNT not in span.attributes
    assert "pricing failed" in caplog.text


def test_a_failure_loading_the_prices_never_reaches_the_app(telemetry, client, monkeypatch, caplog) -> None:
    from otel_tokencost import OpenAIInstrumentor
    from otel_tokencost.pricing import Pricer

    monkeypatch.setenv("OTEL_TOKENCOST_STRICT", "0")
    monkeypatch.setattr(Pricer, "preload", lambda self: 1 / 0)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        skip_dep_check=True,
    )
    try:
        result = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(3, 4)
        )
    finally:
        instrumentor.uninstrument()
    assert result.usage.completion_tokens == 4
    assert "loading genai-prices failed; the app is unaffected" in caplog.text
    assert "patching openai failed" not in caplog.text  # the patch is in place: the call is measured
    assert_priced(telemetry.span(), "gpt-4o-mini", 3, 4)  # by the lookup the call makes itself


def test_a_failure_asking_for_a_streams_usage_never_reaches_the_app(
    instrumented, client, server, monkeypatch, caplog
) -> None:
    from otel_tokencost.instrumentation.openai import _Patch

    monkeypatch.setenv("OTEL_TOKENCOST_STRICT", "0")
    monkeypatch.setattr(_Patch, "_inject_stream_usage", lambda *args: 1 / 0)
    chunks = list(stream_chat(client, extra_headers={"x-mock-chunks": "3"}))
    assert len(chunks) == 5 and "stream_options" not in server.last_bodies[-1]
    span = instrumented.span()  # started, and ended with the stream
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert "asking for a stream's usage failed; the app is unaffected" in caplog.text


@pytest.mark.parametrize("asked", [True, False], ids=["usage-asked", "usage-not-asked"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_failure_reading_a_stream_chunk_never_reaches_the_app(
    instrumented, client, async_client, monkeypatch, caplog, mode: str, asked: bool
) -> None:
    from otel_tokencost.engine import Call

    def failing_reader(outcome: object, chunk: object) -> bool:
        raise ValueError("no reading this chunk")

    monkeypatch.setenv("OTEL_TOKENCOST_STRICT", "0")
    monkeypatch.setattr(Call, "chunk_reader", lambda call: failing_reader)
    request = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "extra_headers": {"x-mock-chunks": "3"},
    }
    if asked:  # nothing asked on the app's behalf, nothing to hide
        request["stream_options"] = {"include_usage": True}

    async def read_stream() -> list:
        if mode == "sync":
            chunks = list(client.chat.completions.create(**request))
        else:
            chunks = [chunk async for chunk in await async_client.chat.completions.create(**request)]
        return [
            (chunk.choices[0].delta, chunk.choices[0].finish_reason) if chunk.choices else chunk.usage
            for chunk in chunks
        ]

    with suppress_instrumentation():
        uninstrumented = await read_stream()
    chunks = await read_stream()
    # role, 3 pieces of text, finish, and the usage chunk when the app asked for it: the one asked for
    # on its behalf stays hidden although the reader failed on it too
    assert chunks == uninstrumented and len(chunks) == (6 if asked else 5)
    span = instrumented.span()
    assert span.status.status_code == StatusCode.UNSET
    assert span.attributes[names.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert caplog.text.count("reading a stream chunk failed; the app is unaffected") == 6


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_failure_watching_a_raw_body_never_reaches_the_app(
    instrumented, client, monkeypatch, caplog, stream: bool
) -> None:
    from otel_tokencost.bodies import JSONObserver
    from otel_tokencost.sse import SSEObserver

    monkeypatch.setenv("OTEL_TOKENCOST_STRICT", "0")
    for observer in (JSONObserver, SSEObserver):
        monkeypatch.setattr(observer, "feed", lambda self, data: 1 / 0)
        monkeypatch.setattr(observer, "finish", lambda self: 1 / 0)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=stream, extra_headers={"x-mock-chunks": "3"}
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert len(lines) == (6 if stream else 1)  # role, 3 words, finish, [DONE]; or the one JSON body
    assert instrumented.span().status.status_code == StatusCode.UNSET
    assert "reading a response body failed; the app is unaffected" in caplog.text
    assert "reading the end of a response body failed" in caplog.text


def test_a_failure_starting_to_watch_a_raw_body_never_reaches_the_app(
    instrumented, client, monkeypatch, caplog
) -> None:
    import sys

    from otel_tokencost.instrumentation import openai as openai_patch

    monkeypatch.setenv("OTEL_TOKENCOST_STRICT", "0")
    monkeypatch.setattr(openai_patch, "_watch_body", lambda response, call: 1 / 0)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(2, 3)
    ) as response:
        assert response.json()["usage"]["completion_tokens"] == 3
    del response
    gc.collect()
    assert unraisable == []  # nothing failed in a finalizer either
    assert len(instrumented.spans()) == 1
    assert "reading the openai result failed; the app is unaffected" in caplog.text


def test_instrument_is_idempotent_and_reversible(telemetry, client) -> None:
    import otel_tokencost

    otel_tokencost.instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    otel_tokencost.instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(telemetry.spans()) == 1
    otel_tokencost.uninstrument()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(telemetry.spans()) == 1
    assert not hasattr(openai._base_client.SyncAPIClient.request, "__wrapped__")


def test_non_llm_endpoints_pass_through(instrumented, client) -> None:
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-1")
    assert instrumented.spans() == ()


@contextlib.contextmanager
def suppressed(plain_key_only: bool):
    """Instrumentation suppressed the standard way, or by the plain key older instrumentations set."""
    if not plain_key_only:
        with suppress_instrumentation():
            yield
        return
    token = context.attach(context.set_value("suppress_instrumentation", True))
    try:
        yield
    finally:
        context.detach(token)


@pytest.mark.parametrize("plain_key_only", [False, True])
def test_suppressed_instrumentation_makes_no_span(instrumented, client, plain_key_only) -> None:
    with suppressed(plain_key_only):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert instrumented.spans() == ()
    assert instrumented.points(names.METRIC_DURATION) == []
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(instrumented.spans()) == 1


def test_prices_file_prices_a_reseller(telemetry, server, tmp_path) -> None:
    rates = "input_mtok = 0.28\noutput_mtok = 0.42\ncache_read_mtok = 0.028\n"
    reseller = openai.OpenAI(base_url=server.base_url, api_key=API_KEY)
    with priced_on_the_local_server(telemetry, server, tmp_path, "deepseek-v3.2", rates), reseller:
        reseller.chat.completions.create(
            model="deepseek-v3.2", messages=MESSAGES, extra_headers=usage_header(10_000, 2_000, cached=6_000)
        )
    expected = (Decimal("0.28") * 4_000 + Decimal("0.028") * 6_000 + Decimal("0.42") * 2_000) / 1_000_000
    span = telemetry.span()
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(expected)
    assert span.attributes[names.PRICING_SOURCE] == "prices-file"


def test_content_captured_when_opted_in(capturing, client) -> None:
    result = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."}, *MESSAGES]
    )
    attributes = capturing.span().attributes
    assert json.loads(attributes[names.INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": MESSAGES[0]["content"]}]},
    ]
    assert json.loads(attributes[names.OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": result.choices[0].message.content}],
            "finish_reason": "stop",
        }
    ]
    assert API_KEY not in json.dumps(dict(attributes))


def test_streamed_content_captured_and_capped(capturing, client) -> None:
    from otel_tokencost.content import MAX_CHARS, TRUNCATED

    long_prompt = "word " * 10_000
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": long_prompt}],
            stream=True,
            extra_headers={"x-mock-chunks": "6"},
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    attributes = capturing.span().attributes
    assert len(attributes[names.INPUT_MESSAGES]) <= MAX_CHARS
    (recorded,) = json.loads(attributes[names.INPUT_MESSAGES])  # still JSON: the text is cut, not the JSON
    assert recorded["role"] == "user" and len(recorded["parts"][0]["content"]) > MAX_CHARS - 100
    assert long_prompt.startswith(recorded["parts"][0]["content"].removesuffix(TRUNCATED))
    assert recorded["parts"][0]["content"].endswith(TRUNCATED)
    output = json.loads(attributes[names.OUTPUT_MESSAGES])
    assert output[0]["parts"][0]["content"] == text


def raw_reply(body: dict | list) -> dict:
    """Headers that have the local server answer with `body`: a JSON object, or a stream's chunks."""
    if isinstance(body, dict):
        return {"x-mock-raw-body": json.dumps(body), "x-mock-content-type": "application/json"}
    events = "".join(f"data: {json.dumps(chunk)}\\n\\n" for chunk in body) + "data: [DONE]\\n\\n"
    # (a header holds no line break: the server reads `\n` as one)
    return {"x-mock-raw-body": events, "x-mock-content-type": "text/event-stream"}


@pytest.mark.skipif(not HAS_RESPONSES, reason="this openai has no Responses API")
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_hosted_web_search_is_priced_per_search(instrumented, client, stream: bool) -> None:
    """A Responses call with the web search tool bills each search (`tool_usage.web_search`) beside the
    tokens; openai 3 declares the field, earlier SDKs keep it as an extra."""
    done = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "gpt-4.1",
        "output": [],
        "usage": {"input_tokens": 1000, "output_tokens": 200, "total_tokens": 1200},
        "tool_usage": {"web_search": {"num_requests": 40}},
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [{"type": "web_search"}],
    }
    if stream:
        created = {**done, "status": "in_progress", "usage": None, "tool_usage": None}
        events = [
            {"type": "response.created", "sequence_number": 0, "response": created},
            {"type": "response.completed", "sequence_number": 1, "response": done},
        ]
        list(
            client.responses.create(model="gpt-4.1", input="hi", stream=True, extra_headers=raw_reply(events))
        )
    else:
        client.responses.create(model="gpt-4.1", input="hi", extra_headers=raw_reply(done))
    span = instrumented.span()
    assert span.attributes[names.USAGE_WEB_SEARCHES] == 40
    searches = Decimal(40) * 10 / 1000  # genai-prices: gpt-4.1's web searches cost 10 USD per 1,000
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4.1", 1000, 200) + searches)
    (cost,) = instrumented.points(names.METRIC_COST)
    assert cost.sum == span.attributes[names.USAGE_COST_AMOUNT]


WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
}
CALL_PART = {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}


def test_captured_content_has_a_message_per_choice_and_the_tool_calls(capturing, client) -> None:
    """Each choice is its own output message with its finish reason; tool calls and their results, in
    the history and in the reply, are the conventions' tool_call and tool_call_response parts."""
    reply = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
                "finish_reason": "tool_calls",
            },
            {"index": 1, "message": {"role": "assistant", "content": "Rain."}, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rainy"},
    ]
    client.chat.completions.create(model="gpt-4o-mini", messages=history, n=2, extra_headers=raw_reply(reply))
    attributes = capturing.span().attributes
    assert json.loads(attributes[names.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {"role": "assistant", "parts": [CALL_PART]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy"}]},
    ]
    assert json.loads(attributes[names.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [CALL_PART], "finish_reason": "tool_calls"},
        {"role": "assistant", "parts": [{"type": "text", "content": "Rain."}], "finish_reason": "length"},
    ]


def test_streamed_content_is_gathered_per_choice_and_tool_call(capturing, client) -> None:
    """Choices arrive interleaved and a tool call's arguments in pieces: each is put back together."""

    def chunk(index: int, delta: dict, finish_reason: str | None = None) -> dict:
        choice = {"index": index, "delta": delta, "finish_reason": finish_reason}
        return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}

    call_start = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": ""},
    }
    chunks = [
        chunk(0, {"role": "assistant", "tool_calls": [call_start]}),
        chunk(1, {"role": "assistant", "content": "Rain"}),
        chunk(0, {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk(1, {"content": " today."}, "stop"),
        chunk(0, {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, "tool_calls"),
    ]
    request = {
        "model": "m",
        "messages": MESSAGES,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert len(list(client.chat.completions.create(**request, extra_headers=raw_reply(chunks)))) == 5
    assert json.loads(capturing.span().attributes[names.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [CALL_PART], "finish_reason": "tool_calls"},
        {"role": "assistant", "parts": [{"type": "text", "content": "Rain today."}], "finish_reason": "stop"},
    ]


@pytest.mark.skipif(not HAS_RESPONSES, reason="this openai has no Responses API")
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_failed_response_is_an_error_of_the_call(instrumented, client, stream: bool) -> None:
    """A Responses API response can fail over HTTP 200: the span records it, with the error's code."""
    failed = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "failed",
        "error": {"code": "server_error", "message": "The model failed."},
        "model": "gpt-4.1",
        "output": [],
        "usage": {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    if stream:
        created = {**failed, "status": "in_progress", "error": None, "usage": None}
        events = [
            {"type": "response.created", "sequence_number": 0, "response": created},
            {"type": "response.failed", "sequence_number": 1, "response": failed},
        ]
        assert (
            len(
                list(
                    client.responses.create(
                        model="gpt-4.1", input="hi", stream=True, extra_headers=raw_reply(events)
                    )
                )
            )
            == 2
        )
    else:
        assert (
            client.responses.create(model="gpt-4.1", input="hi", extra_headers=raw_reply(failed)).status
            == "failed"
        )
    span = instrumented.span()
    assert (span.status.status_code, span.attributes[names.ERROR_TYPE]) == (StatusCode.ERROR, "server_error")
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("failed",)
    (duration,) = instrumented.points(names.METRIC_DURATION)
    assert duration.attributes[names.ERROR_TYPE] == "server_error"
    tokens = {
        point.attributes[names.TOKEN_TYPE]: point for point in instrumented.points(names.METRIC_TOKEN_USAGE)
    }
    assert (tokens["input"].sum, tokens["output"].sum) == (12, 3)  # what the failed response used
    assert all(names.ERROR_TYPE not in point.attributes for point in tokens.values())  # not a token's


@pytest.mark.skipif(not HAS_RESPONSES, reason="this openai has no Responses API")
def test_responses_tool_calls_are_captured_as_tool_call_parts(capturing, client) -> None:
    reply = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "gpt-4.1",
        "output": [
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "weather",
                "arguments": '{"city": "Paris"}',
                "status": "completed",
            },
        ],
        "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    history = [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": "call_0", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_0", "output": "rainy"},
    ]
    client.responses.create(model="gpt-4.1", input=history, extra_headers=raw_reply(reply))
    attributes = capturing.span().attributes
    assert json.loads(attributes[names.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_0", "name": "weather", "arguments": {}}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_0", "response": "rainy"}]},
    ]
    assert json.loads(attributes[names.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [CALL_PART], "finish_reason": "completed"}
    ]


@pytest.mark.skipif(not HAS_RESPONSES, reason="this openai has no Responses API")
def test_responses_content_captured(capturing, client) -> None:
    result = client.responses.create(model="gpt-4.1", input="a b c", instructions="Answer in French.")
    attributes = capturing.span().attributes
    assert json.loads(attributes["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "Answer in French."}
    ]
    assert json.loads(attributes[names.OUTPUT_MESSAGES])[0]["parts"][0]["content"] == result.output_text


@pytest.mark.skipif(not HAS_COMPACT, reason="this openai cannot compact a response")
def test_a_compaction_records_the_messages_it_read_as_input_only(capturing, client) -> None:
    """A compaction's output repeats the user's messages before its compaction item: they are input,
    not something the model generated."""
    result = client.responses.compact(model="gpt-4.1", input=COMPACTED)
    assert [item.type for item in result.output] == ["message", "message", "compaction"]
    attributes = capturing.span().attributes
    sent = json.loads(attributes[names.INPUT_MESSAGES])
    assert [message["parts"][0]["content"] for message in sent] == [item["content"] for item in COMPACTED]
    assert names.OUTPUT_MESSAGES not in attributes  # nothing generated to read: the compaction is encrypted
    assert attributes[names.USAGE_OUTPUT_TOKENS] == result.usage.output_tokens


def test_uninstrumenting_under_another_wrapper_leaves_it_in_place(telemetry, client) -> None:
    """Another tool wrapped the SDK's `request` over ours: uninstrumenting ours takes neither its wrapper
    off nor leaves ours measuring, and instrumenting ours again measures each call once."""
    import wrapt
    from openai._base_client import SyncAPIClient

    seen = []

    def other_tool(wrapped, instance, args, kwargs):
        seen.append(args[1].url if len(args) > 1 else kwargs["options"].url)
        return wrapped(*args, **kwargs)

    ours = OpenAIInstrumentor()
    ours.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    wrapt.wrap_function_wrapper(SyncAPIClient, "request", other_tool)
    try:
        ours.uninstrument()
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert (seen, telemetry.spans()) == (["/chat/completions"], ())
        ours.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert len(seen) == 2 and [span.name for span in telemetry.spans()] == ["chat gpt-4o-mini"]
    finally:
        ours.uninstrument()
        while getattr(SyncAPIClient.__dict__["request"], "_self_wrapper", None) is not None:
            SyncAPIClient.request = SyncAPIClient.__dict__["request"].__wrapped__
    assert not hasattr(SyncAPIClient.request, "__wrapped__")


def test_cost_reported_by_the_provider_is_the_cost(instrumented, client) -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120, "cost": 0.00123}
    client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, extra_headers={"x-mock-usage": json.dumps(usage)}
    )
    span = instrumented.span()
    assert (span.attributes[names.USAGE_COST_AMOUNT], span.attributes[names.PRICING_SOURCE]) == (
        0.00123,
        "provider",
    )
    (cost,) = instrumented.points(names.METRIC_COST)
    assert cost.sum == 0.00123


@pytest.mark.parametrize("stream", [False, True])
def test_litellm_proxy_cost_header(instrumented, client, stream) -> None:
    headers = {"x-mock-response-headers": json.dumps({"x-litellm-response-cost": "0.0042"})}
    result = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=stream, extra_headers=headers
    )
    if stream:
        list(result)
    span = instrumented.span()
    assert (span.attributes[names.USAGE_COST_AMOUNT], span.attributes[names.PRICING_SOURCE]) == (
        0.0042,
        "provider",
    )


def test_cost_header_hook_only_once_a_gateway_is_called(instrumented, server, client) -> None:
    """OpenAI's own API sends no gateway cost header: its calls skip that hook until a call to some
    other host (a gateway, maybe) installs it. The server answers here as api.openai.com, as a proxy."""
    from openai._base_client import AsyncAPIClient, SyncAPIClient

    from otel_tokencost import OpenAIInstrumentor

    headers = {"x-mock-response-headers": json.dumps({"x-litellm-response-cost": "0.0042"})}
    with openai_own_api(server) as own_api:
        own_api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
    span = instrumented.span()
    attributes = span.attributes
    assert attributes[names.SERVER_ADDRESS] == "api.openai.com"
    assert attributes[names.PRICING_SOURCE] != "provider"  # priced from the tokens, not the header
    assert attributes[names.USAGE_COST_AMOUNT] == float(
        genai_cost(
            "gpt-4o-mini",
            attributes[names.USAGE_INPUT_TOKENS],
            attributes[names.USAGE_OUTPUT_TOKENS],
            provider="openai",
        )
    )
    assert not hasattr(SyncAPIClient._process_response, "__wrapped__")

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
    assert instrumented.spans()[-1].attributes[names.USAGE_COST_AMOUNT] == 0.0042
    assert hasattr(SyncAPIClient._process_response, "__wrapped__")
    assert hasattr(AsyncAPIClient._process_response, "__wrapped__")
    OpenAIInstrumentor().uninstrument()
    assert not hasattr(SyncAPIClient._process_response, "__wrapped__")
    assert not hasattr(AsyncAPIClient._process_response, "__wrapped__")


def test_instrument_caps_an_existing_instrumentation_with_its_budgets(instrumented, client, caplog) -> None:
    import otel_tokencost

    other_provider = TracerProvider()
    otel_tokencost.instrument(tracer_provider=other_provider, budgets=[otel_tokencost.Budget(limit=0.0)])
    try:
        with pytest.raises(otel_tokencost.BudgetExceededError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        otel_tokencost.uninstrument()
    assert instrumented.span().attributes[names.ERROR_TYPE] == "BudgetExceededError"  # where it went before
    assert (
        "openai already instrumented (by opentelemetry-instrument or an earlier instrument())" in caplog.text
    )


@pytest.fixture
def instrument_again():
    """`otel_tokencost.instrument`, with everything it instrumented taken off afterwards."""
    import otel_tokencost

    yield otel_tokencost.instrument
    otel_tokencost.uninstrument()
    RequestsInstrumentor().uninstrument()


def test_instrument_called_again_applies_the_budgets_it_is_given(telemetry, client, instrument_again) -> None:
    """Another library (or an earlier line) called instrument() first: the app's budgets still apply,
    and given again they keep what they counted."""
    instrument_again(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    limit = otel_tokencost.Budget(limit=float(genai_cost("gpt-4o-mini", 1000, 100)))
    instrument_again(budgets=[limit])
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(1000, 100)
    )
    instrument_again(budgets=[limit])
    with pytest.raises(otel_tokencost.BudgetExceededError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    instrument_again(budgets=[otel_tokencost.Budget(limit=5.0, period="day"), limit])  # one more
    with pytest.raises(otel_tokencost.BudgetExceededError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_instrument_shares_one_ledger_with_an_existing_instrumentation(
    instrumented, client, server, instrument_again
) -> None:
    """`requests`, instrumented now beside an openai instrumentation already in place, is capped by the
    same ledger: what openai spent counts for its calls too."""
    limit = otel_tokencost.Budget(limit=float(genai_cost("gpt-4o-mini", 1000, 100)))
    instrument_again(budgets=[limit])
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage_header(1000, 100)
    )
    with pytest.raises(otel_tokencost.BudgetExceededError):
        requests.post(
            f"{server.base_url}/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES}
        )


def test_instrument_instruments_again_what_was_uninstrumented(
    telemetry, client, instrument_again, caplog
) -> None:
    """Instrumented again beside `requests`, still instrumented, openai shares its engine and providers:
    others given now are refused with a warning naming it."""
    instrument_again(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    OpenAIInstrumentor().uninstrument()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert telemetry.spans() == ()
    instrument_again(tracer_provider=TracerProvider())
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(telemetry.spans()) == 1
    assert "the spans and metrics of openai and requests go on to the providers given there" in caplog.text
    otel_tokencost.uninstrument()  # each instrumentor once
    assert "already uninstrumented" not in caplog.text
    assert not OpenAIInstrumentor().is_instrumented_by_opentelemetry


@pytest.mark.parametrize(
    ("disabled", "instrumented"), [("tokencost_requests, other", ["openai"]), ("*", [])], ids=["named", "all"]
)
def test_instrument_leaves_alone_what_the_environment_switches_off(
    telemetry, client, server, instrument_again, monkeypatch, disabled: str, instrumented: list
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", disabled)
    instrument_again(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    requests.post(f"{server.base_url}/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES})
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(telemetry.spans()) == len(instrumented)  # the openai call's span, if any
    assert OpenAIInstrumentor().is_instrumented_by_opentelemetry == ("openai" in instrumented)
    assert not RequestsInstrumentor().is_instrumented_by_opentelemetry


def test_uninstrument_restores_what_was_instrumented_before_instrument(instrumented, client) -> None:
    """`uninstrument()` restores every patched callable, those `opentelemetry-instrument` patched too."""
    import otel_tokencost

    otel_tokencost.instrument()  # the fixture's instrumentor is already in place, as the agent's is
    otel_tokencost.uninstrument()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert instrumented.spans() == ()
    assert not OpenAIInstrumentor().is_instrumented_by_opentelemetry
