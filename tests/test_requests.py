"""Raw `requests` calls to OpenAI-compatible endpoints: the same spans, tokens and cost as the SDK."""

from __future__ import annotations

import base64
import gc
import gzip
import io
import json
import shutil
import zlib
from decimal import Decimal

import pytest
import requests
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode

import otel_tokencost
from otel_tokencost import RequestsInstrumentor, names

from conftest import API_KEY, genai_cost

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
MESSAGES = [{"role": "user", "content": "What does this call cost?"}]


@pytest.fixture
def traced(telemetry):
    RequestsInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    yield telemetry
    RequestsInstrumentor().uninstrument()


def usage(prompt: int, completion: int, **extra) -> dict:
    body = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return {**HEADERS, "x-mock-usage": json.dumps({**body, **extra})}


def post(server, path: str, body: dict, headers: dict | None = None, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 10)
    return requests.post(f"{server.base_url}{path}", json=body, headers=headers or HEADERS, **kwargs)


def chat_body(**extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": MESSAGES, **extra}


def test_chat_completion(traced, server) -> None:
    response = post(
        server,
        "/chat/completions",
        chat_body(temperature=0.5),
        usage(1500, 400, **{"prompt_tokens_details": {"cached_tokens": 1024}}),
    )
    span = traced.span()
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
        names.REQUEST_TEMPERATURE: 0.5,
        names.RESPONSE_MODEL: "gpt-4o-mini",
        names.RESPONSE_ID: response.json()["id"],
        names.RESPONSE_FINISH_REASONS: ("stop",),
        names.USAGE_INPUT_TOKENS: 1500,
        names.USAGE_OUTPUT_TOKENS: 400,
        names.USAGE_CACHE_READ_INPUT_TOKENS: 1024,
        names.USAGE_COST_AMOUNT: float(genai_cost("gpt-4o-mini", 1500, 400, cached=1024)),
        names.USAGE_COST_CURRENCY: "USD",
        names.PRICING_SOURCE: "genai-prices:model-only",
    }
    (cost,) = traced.points(names.METRIC_COST)
    assert cost.sum == span.attributes[names.USAGE_COST_AMOUNT]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_audio_tokens_are_priced_at_audio_rates(traced, server, stream: bool) -> None:
    audio = {
        "prompt_tokens_details": {"audio_tokens": 80},
        "completion_tokens_details": {"audio_tokens": 300},
    }
    response = post(
        server,
        "/chat/completions",
        {**chat_body(stream=stream, stream_options={"include_usage": True}), "model": "gpt-audio"},
        usage(120, 330, **audio),
        stream=stream,
    )
    response.content  # noqa: B018 (read to its end)
    cost = genai_cost("gpt-audio", 120, 330, input_audio=80, output_audio=300)
    assert traced.span().attributes[names.USAGE_COST_AMOUNT] == float(cost)


@pytest.mark.parametrize("encode", [lambda body: json.dumps(body).encode(), json.dumps], ids=["bytes", "str"])
def test_body_given_as_data(traced, server, encode) -> None:
    requests.post(
        f"{server.base_url}/chat/completions", data=encode(chat_body()), headers=usage(20, 10), timeout=10
    )
    assert traced.span().attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 20, 10))


@pytest.mark.parametrize(
    ("path", "body", "span_name"),
    [
        (
            "/completions",
            {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"},
            "text_completion gpt-3.5-turbo-instruct",
        ),
        (
            "/embeddings",
            {"model": "text-embedding-3-small", "input": "a b c"},
            "embeddings text-embedding-3-small",
        ),
        ("/responses", {"model": "gpt-4.1", "input": "a b c"}, "chat gpt-4.1"),
        (
            "/responses/compact",
            {"model": "gpt-4.1", "input": [{"role": "user", "content": "a b c d e f g h"}]},
            "chat gpt-4.1",
        ),
    ],
)
def test_other_endpoints(traced, server, path, body, span_name) -> None:
    returned = post(server, path, body).json()["usage"]
    span = traced.span()
    assert span.name == span_name
    expected_input = returned.get("prompt_tokens", returned.get("input_tokens"))
    assert span.attributes[names.USAGE_INPUT_TOKENS] == expected_input
    if path.startswith("/responses"):  # a compaction pass is billed as the model's tokens
        output_tokens = returned["output_tokens"]
        assert span.attributes[names.USAGE_OUTPUT_TOKENS] == output_tokens > 0
        cost = genai_cost("gpt-4.1", expected_input, output_tokens)
        assert span.attributes[names.USAGE_COST_AMOUNT] == float(cost)


def spy_on_decoding(monkeypatch, reader=None) -> list[int]:
    """The sizes of the bodies `reader` decodes whole (by default the requests patch, which reads request
    bodies, and the module that reads response bodies)."""
    from otel_tokencost import bodies
    from otel_tokencost.instrumentation import requests as requests_patch

    decoded: list[int] = []
    for module in (requests_patch, bodies) if reader is None else (reader,):
        decode_whole = module.decode_object
        monkeypatch.setattr(
            module, "decode_object", lambda raw, decode=decode_whole: decoded.append(len(raw)) or decode(raw)
        )
    return decoded


def test_a_large_embeddings_body_is_read_from_its_tail(telemetry, server, tmp_path, monkeypatch) -> None:
    """A batch of long vectors (here ~1 MB of JSON) is priced without decoding its floats a second time:
    only the trailing `model` and `usage` members are decoded."""
    decoded = spy_on_decoding(monkeypatch)
    prices = tmp_path / "prices.json"  # the local server, priced as OpenAI
    prices.write_text(json.dumps({"providers": [{"match": server.base_url, "prices_from": "openai"}]}))
    RequestsInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider, prices=str(prices)
    )
    try:
        inputs = [f"item{index} alpha beta" for index in range(64)]
        body = {"model": "text-embedding-3-small", "input": inputs, "dimensions": 1536}
        response = post(server, "/embeddings", body)
    finally:
        RequestsInstrumentor().uninstrument()
    assert len(response.content) > 500_000
    assert [len(item["embedding"]) for item in response.json()["data"]] == [1536] * 64
    assert decoded == []
    span = telemetry.span()
    assert span.attributes[names.USAGE_INPUT_TOKENS] == 192
    assert span.attributes[names.RESPONSE_MODEL] == "text-embedding-3-small"
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(
        genai_cost("text-embedding-3-small", 192, 0, provider="openai")
    )


def assert_read_as_responses_body(attributes, body: dict) -> None:
    """The span of a Responses call with 6 output tokens has what `body` says, priced exactly."""
    input_tokens = body["usage"]["input_tokens"]
    expected = {
        names.RESPONSE_MODEL: body["model"],
        names.RESPONSE_ID: body["id"],
        names.RESPONSE_FINISH_REASONS: ("completed",),
        names.USAGE_INPUT_TOKENS: input_tokens,
        names.USAGE_OUTPUT_TOKENS: 6,
        names.USAGE_COST_AMOUNT: float(genai_cost("gpt-4.1", input_tokens, 6)),
    }
    assert {key: attributes.get(key) for key in expected} == expected


def post_echoing_a_long_word(telemetry, server, monkeypatch, capture: bool, path: str, body: dict):
    """Post `body`, its word "x" made 400 KB long, for a reply of 6 words echoing it (800 KB of JSON);
    check the package decoded it whole only when capturing content, and hand back the response."""
    if capture:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    RequestsInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        decoded = spy_on_decoding(monkeypatch)
        long_body = json.loads(json.dumps(body).replace("one x", "one " + "x" * 400_000))
        response = post(server, path, long_body, {**HEADERS, "x-mock-chunks": "6"})
    finally:
        RequestsInstrumentor().uninstrument()
    assert len(response.content) > 800_000
    assert decoded == ([len(response.content)] if capture else [])
    assert (names.OUTPUT_MESSAGES in telemetry.span().attributes) is capture
    return response


@pytest.mark.parametrize("capture", [False, True], ids=["members", "content captured"])
def test_a_large_responses_body_is_read_without_decoding_its_output(telemetry, server, monkeypatch, capture):
    """A large Responses body (a generated image; here 800 KB of text) is priced from its top-level
    members, its `output` stepped over. With message content captured it is decoded whole, for the text."""
    body = {"model": "gpt-4.1", "input": "one x"}
    response = post_echoing_a_long_word(telemetry, server, monkeypatch, capture, "/responses", body)
    assert_read_as_responses_body(telemetry.span().attributes, response.json())


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one x"}]}),
        ("/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "one x"}),
    ],
    ids=["chat", "completions"],
)
@pytest.mark.parametrize("capture", [False, True], ids=["members", "content captured"])
def test_a_large_choices_body_is_read_without_decoding_its_messages(
    telemetry, server, monkeypatch, capture, path, body
):
    """A large Chat Completions or Completions body (generated audio; here 800 KB of text) is priced
    from its model, id and usage and each choice's finish reason, its messages stepped over. With
    message content captured it is decoded whole, for the text."""
    returned = post_echoing_a_long_word(telemetry, server, monkeypatch, capture, path, body).json()
    input_tokens = returned["usage"]["prompt_tokens"]
    expected = {
        names.RESPONSE_MODEL: body["model"],
        names.RESPONSE_ID: returned["id"],
        names.RESPONSE_FINISH_REASONS: (returned["choices"][0]["finish_reason"],),
        names.USAGE_INPUT_TOKENS: input_tokens,
        names.USAGE_OUTPUT_TOKENS: 6,
        names.USAGE_COST_AMOUNT: float(genai_cost(body["model"], input_tokens, 6)),
    }
    attributes = telemetry.span().attributes
    assert {key: attributes.get(key) for key in expected} == expected


def image_body(**extra) -> dict:
    """A chat request with an image as a base64 data URL (~1 MB), the usual shape of a vision call."""
    image = base64.b64encode(bytes(range(256)) * 3000).decode()
    parts = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
    ]
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": parts}], **extra}


def send_raw(server, encoded: bytes | str, how: str, headers: dict) -> requests.Response:
    """A chat request whose body the app encoded itself: `data=`, or a prepared request sent directly."""
    url = f"{server.base_url}/chat/completions"
    if how == "Session.send":
        with requests.Session() as session:
            prepared = requests.Request("POST", url, data=encoded, headers=headers).prepare()
            return session.send(prepared, timeout=10)
    return requests.post(url, data=encoded, headers=headers, timeout=10)


def span_without_id(telemetry) -> dict:
    attributes = dict(telemetry.spans()[-1].attributes)
    attributes.pop(names.RESPONSE_ID)
    return attributes


@pytest.mark.parametrize("how", ["data bytes", "data str", "Session.send"])
def test_a_large_request_body_is_read_without_decoding_its_image(traced, server, monkeypatch, how) -> None:
    """The model and parameters of a request sent as bytes or text with a ~1 MB image are read member by
    member, the image stepped over: the span is the one the same call sent with `json=` gets."""
    body = image_body(max_tokens=300, temperature=0.2, seed=5, n=2, response_format={"type": "json_object"})
    post(server, "/chat/completions", body, usage(900, 40))
    expected = span_without_id(traced)
    assert expected[names.REQUEST_MODEL] == "gpt-4o-mini"
    assert expected[names.REQUEST_MAX_TOKENS] == 300
    assert (expected[names.REQUEST_SEED], expected[names.REQUEST_CHOICE_COUNT]) == (5, 2)
    assert expected[names.OUTPUT_TYPE] == "json"
    assert expected[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 900, 40))
    decoded = spy_on_decoding(monkeypatch)
    encoded = json.dumps(body)
    send_raw(server, encoded.encode() if how != "data str" else encoded, how, usage(900, 40))
    assert len(traced.spans()) == 2
    assert span_without_id(traced) == expected
    assert len(encoded) > 1_000_000
    assert decoded and max(decoded) < 10_000  # the response, not the request


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("how", ["json", "large data"])
def test_service_tiers_on_openai_own_api(traced, server, how, stream) -> None:
    """A call to api.openai.com (the local server answering as its proxy) records the service tier asked
    for and the one that served it, from a large body sent as bytes too, and is priced at that tier."""
    options = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    body = (image_body if how == "large data" else chat_body)(service_tier="flex", **options)
    sent = {"json": body} if how == "json" else {"data": json.dumps(body).encode()}
    response = requests.post(
        "http://api.openai.com/v1/chat/completions",
        headers=HEADERS,
        proxies={"http": server.base_url.removesuffix("/v1")},
        stream=stream,
        timeout=10,
        **sent,
    )
    for _ in response.iter_lines():
        pass
    attributes = traced.span().attributes
    assert attributes[names.SERVER_ADDRESS] == "api.openai.com"
    tiers = attributes[names.OPENAI_REQUEST_SERVICE_TIER], attributes[names.OPENAI_RESPONSE_SERVICE_TIER]
    assert tiers == ("flex", "flex")
    input_tokens, output_tokens = attributes[names.USAGE_INPUT_TOKENS], attributes[names.USAGE_OUTPUT_TOKENS]
    standard = genai_cost("gpt-4o-mini", input_tokens, output_tokens, provider="openai")
    assert attributes[names.USAGE_COST_AMOUNT] == float(standard / 2)  # OpenAI bills a flex call at half


@pytest.mark.parametrize("how", ["data bytes", "Session.send"])
def test_a_failure_reading_the_request_body_never_reaches_the_app(
    traced, server, monkeypatch, caplog, how
) -> None:
    from otel_tokencost.instrumentation import requests as requests_patch

    monkeypatch.setenv("OTEL_TOKENCOST_STRICT", "0")
    monkeypatch.setattr(requests_patch, "top_level_members", lambda *args: 1 / 0)
    response = send_raw(server, json.dumps(image_body()).encode(), how, usage(900, 40))
    assert response.status_code == 200 and response.json()["usage"]["prompt_tokens"] == 900
    assert traced.spans() == ()  # the call went through unmeasured
    assert "starting the requests span failed; the app is unaffected" in caplog.text


def test_a_large_request_body_is_decoded_whole_when_content_is_captured(
    telemetry, server, monkeypatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    RequestsInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        decoded = spy_on_decoding(monkeypatch)
        encoded = json.dumps(image_body()).encode()
        send_raw(server, encoded, "data bytes", usage(900, 40))
    finally:
        RequestsInstrumentor().uninstrument()
    assert len(encoded) in decoded
    messages = json.loads(telemetry.span().attributes[names.INPUT_MESSAGES])
    assert messages[0]["parts"][0] == {"type": "text", "content": "What is in this image?"}


def test_a_large_request_body_of_many_short_strings_is_decoded_whole(traced, server, monkeypatch) -> None:
    """A long conversation would take a member walk longer than a full decode: it is decoded whole."""
    history = [{"role": "user", "content": f"message {index}"} for index in range(5_000)]
    body = chat_body(messages=history, temperature=0.7)
    decoded = spy_on_decoding(monkeypatch)
    encoded = json.dumps(body).encode()
    send_raw(server, encoded, "data bytes", usage(30_000, 12))
    assert len(encoded) > 100_000 and len(encoded) in decoded
    span = traced.span()
    assert (span.attributes[names.REQUEST_MODEL], span.attributes[names.REQUEST_TEMPERATURE]) == (
        "gpt-4o-mini",
        0.7,
    )
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 30_000, 12))


@pytest.mark.parametrize("read", ["json", "iter_content", "raw.read"])
def test_a_whole_body_read_with_stream_true_is_priced(traced, server, read) -> None:
    """`stream=True` on a call that does not stream: the JSON body is read as the app reads it."""
    response = post(server, "/chat/completions", chat_body(), usage(300, 40), stream=True)
    if read == "json":
        returned = response.json()
    elif read == "iter_content":
        returned = json.loads(b"".join(response.iter_content(chunk_size=7)))
    else:
        returned = json.loads(response.raw.read())
    assert returned["usage"]["prompt_tokens"] == 300
    span = traced.span()
    assert span.attributes[names.RESPONSE_ID] == returned["id"]
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert (span.attributes[names.USAGE_INPUT_TOKENS], span.attributes[names.USAGE_OUTPUT_TOKENS]) == (
        300,
        40,
    )
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 300, 40))


@pytest.mark.parametrize("kept", [None, 100_000], ids=["kept whole", "tail only"])
def test_a_large_embeddings_body_read_with_stream_true(traced, server, monkeypatch, kept) -> None:
    """Past the bytes kept to read a body whole, the last ones still hold an embeddings body's usage."""
    from otel_tokencost import bodies

    if kept is not None:
        monkeypatch.setattr(bodies, "MAX_KEPT", kept)
    inputs = [f"item{index} alpha beta" for index in range(64)]
    body = {"model": "text-embedding-3-small", "input": inputs, "dimensions": 1536}
    response = post(server, "/embeddings", body, stream=True)
    pieces = list(response.iter_content(chunk_size=8192))
    assert sum(map(len, pieces)) > 500_000
    assert json.loads(b"".join(pieces))["usage"]["prompt_tokens"] == 192
    span = traced.span()
    assert span.attributes[names.USAGE_INPUT_TOKENS] == 192
    assert span.attributes[names.RESPONSE_MODEL] == "text-embedding-3-small"


def test_session_and_prices_file(telemetry, server, tmp_path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {
                "providers": [
                    {"match": server.base_url, "models": {"house-llm": {"input_mtok": 3, "output_mtok": 9}}},
                ]
            }
        )
    )
    RequestsInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider, prices=str(prices)
    )
    try:
        with requests.Session() as session:
            session.post(
                f"{server.base_url}/chat/completions",
                json={"model": "house-llm", "messages": MESSAGES},
                headers=usage(1000, 100),
                timeout=10,
            )
    finally:
        RequestsInstrumentor().uninstrument()
    span = telemetry.span()
    assert span.attributes[names.PRICING_SOURCE] == "prices-file"
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(
        (Decimal(3) * 1000 + Decimal(9) * 100) / 1_000_000
    )


# Streams: every way a user can read the body ---------------------------------------------------


def read_into(raw) -> bytes:
    data, buffer = bytearray(), bytearray(100)
    while count := raw.readinto(buffer):
        data += buffer[:count]
    return bytes(data)


def stream_lines(response: requests.Response, style: str) -> list[bytes]:
    raw = response.raw
    if style == "iter_lines":
        return [line for line in response.iter_lines() if line]
    if style == "iter_content":
        data = b"".join(response.iter_content(chunk_size=7))
    elif style == "content":
        data = response.content
    elif style == "raw_read_chunks":
        data = b"".join(iter(lambda: raw.read(64), b""))
    elif style == "raw_read1":
        data = b"".join(iter(lambda: raw.read1(64), b""))
    elif style == "raw_readinto":
        data = read_into(raw)
    elif style == "raw_lines":
        data = b"".join(raw)
    elif style == "raw_readline":
        data = b"".join(iter(raw.readline, b""))
    elif style == "raw_readlines":
        data = b"".join(raw.readlines())
    elif style == "text_wrapper":
        data = io.TextIOWrapper(raw, encoding="utf-8").read().encode()
    else:
        data = raw.read()
    return [line for line in data.split(b"\n") if line]


STYLES = ["iter_lines", "iter_content", "content", "raw_read_chunks", "raw_read_all", "raw_read1"]
STYLES += ["raw_readinto", "raw_lines", "raw_readline", "raw_readlines", "text_wrapper"]


@pytest.mark.parametrize("style", STYLES)
def test_stream_with_usage_every_consumption_style(traced, server, style) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    response = post(server, "/chat/completions", body, {**HEADERS, "x-mock-chunks": "6"}, stream=True)
    assert traced.spans() == ()
    lines = stream_lines(response, style)
    response.close()
    events = [json.loads(line[6:]) for line in lines if line != b"data: [DONE]"]
    assert len(events) == 9 and lines[-1] == b"data: [DONE]"  # untouched: role, 6 words, finish, usage
    span = traced.span()
    reported = events[-1]["usage"]
    assert (span.attributes[names.USAGE_INPUT_TOKENS], span.attributes[names.USAGE_OUTPUT_TOKENS]) == (
        reported["prompt_tokens"],
        6,
    )
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(
        genai_cost("gpt-4o-mini", reported["prompt_tokens"], 6)
    )
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert span.attributes[names.RESPONSE_ID] == events[0]["id"]
    assert span.attributes[names.REQUEST_STREAM] is True
    assert span.attributes[names.RESPONSE_TIME_TO_FIRST_CHUNK] > 0


class PlainFileAdapter(requests.adapters.HTTPAdapter):
    """Hands a streamed body on as a plain file object, as some caching and replaying adapters do: it
    has no urllib3 `stream()` or `release_conn()`."""

    def send(self, request, stream=False, **kwargs):
        response = super().send(request, stream=stream, **kwargs)
        if stream:
            response.raw = io.BytesIO(response.raw.read())
        return response


@pytest.mark.parametrize("style", STYLES)
def test_a_stream_whose_raw_body_is_a_plain_file_is_read_and_priced(traced, server, style) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    with requests.Session() as session:
        session.mount(server.base_url, PlainFileAdapter())
        url, headers = f"{server.base_url}/chat/completions", {**HEADERS, "x-mock-chunks": "6"}
        response = session.post(url, json=body, headers=headers, stream=True, timeout=10)
        assert isinstance(response.raw.__wrapped__, io.BytesIO)
        lines = stream_lines(response, style)
        response.close()
    events = [json.loads(line[6:]) for line in lines if line != b"data: [DONE]"]
    assert len(events) == 9 and lines[-1] == b"data: [DONE]"
    span = traced.span()
    prompt_tokens = events[-1]["usage"]["prompt_tokens"]
    assert (span.attributes[names.USAGE_INPUT_TOKENS], span.attributes[names.USAGE_OUTPUT_TOKENS]) == (
        prompt_tokens,
        6,
    )
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", prompt_tokens, 6))


class NoBodyAdapter(requests.adapters.HTTPAdapter):
    """Answers with a response that has no raw body at all, as test and replaying adapters may."""

    def send(self, request, stream=False, **kwargs):
        response = super().send(request, stream=stream, **kwargs)
        response.raw = None
        return response


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_response_with_no_raw_body_is_handed_over_as_it_is(traced, server, stream: bool) -> None:
    with requests.Session() as session:
        session.mount(server.base_url, NoBodyAdapter())
        url = f"{server.base_url}/chat/completions"
        response = session.post(url, json=chat_body(), headers=HEADERS, stream=stream, timeout=10)
        assert (response.raw, response.content) == (None, None)
    span = traced.span()  # ended at once: there is nothing to read
    assert span.attributes[names.REQUEST_MODEL] == "gpt-4o-mini"
    assert names.USAGE_INPUT_TOKENS not in span.attributes and span.status.status_code == StatusCode.UNSET


@pytest.mark.parametrize("style", STYLES)
def test_a_failure_watching_the_stream_never_reaches_the_app(
    traced, server, style, monkeypatch, caplog
) -> None:
    from otel_tokencost.sse import SSEObserver

    monkeypatch.setenv("OTEL_TOKENCOST_STRICT", "0")
    monkeypatch.setattr(SSEObserver, "feed", lambda self, data: 1 / 0)
    monkeypatch.setattr(SSEObserver, "finish", lambda self: 1 / 0)
    body = chat_body(stream=True, stream_options={"include_usage": True})
    response = post(server, "/chat/completions", body, {**HEADERS, "x-mock-chunks": "6"}, stream=True)
    lines = stream_lines(response, style)
    response.close()
    assert len(lines) == 10 and lines[-1] == b"data: [DONE]"  # every line, as uninstrumented
    span = traced.span()  # ended once, with what could be read
    assert names.USAGE_INPUT_TOKENS not in span.attributes
    assert "reading a response body failed; the app is unaffected" in caplog.text
    assert "reading the end of a response body failed" in caplog.text


def sse_body(*events: dict) -> dict:
    """Headers making the local server answer with these events as SSE, then [DONE]."""
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    return {
        "x-mock-raw-body-b64": base64.b64encode(body.encode()).decode(),
        "x-mock-content-type": "text/event-stream",
    }


def running_chunk(content: str | None, finish: str | None, completion: int) -> dict:
    """A chat chunk carrying the usage so far, as Perplexity sends it."""
    usage = {"prompt_tokens": 12, "completion_tokens": completion, "total_tokens": 12 + completion}
    choice = {"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}
    return {"id": "c1", "model": "gpt-4o-mini", "choices": [choice], "usage": usage}


def test_a_stream_that_repeats_its_running_usage_is_priced_by_the_last(traced, server) -> None:
    """Usage so far in every chunk, the whole in the finishing one: the chunks before it are older."""
    events = [
        running_chunk("Hello", None, 1),
        running_chunk(" world", None, 2),
        running_chunk("!", "stop", 3),
    ]
    response = post(server, "/chat/completions", chat_body(stream=True), sse_body(*events), stream=True)
    assert len([line for line in response.iter_lines() if line]) == 4
    span = traced.span()
    assert (span.attributes[names.USAGE_INPUT_TOKENS], span.attributes[names.USAGE_OUTPUT_TOKENS]) == (12, 3)
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 12, 3))


def test_a_stream_read_with_content_captured_records_all_its_text(telemetry, server, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    RequestsInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    events = [
        running_chunk("Hello", None, 1),
        running_chunk(" world", None, 2),
        running_chunk("!", "stop", 3),
    ]
    try:
        response = post(server, "/chat/completions", chat_body(stream=True), sse_body(*events), stream=True)
        response.content  # noqa: B018
    finally:
        RequestsInstrumentor().uninstrument()
    output = json.loads(telemetry.span().attributes[names.OUTPUT_MESSAGES])
    assert output == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello world!"}], "finish_reason": "stop"}
    ]


def test_stream_without_usage_event(traced, server) -> None:
    response = post(server, "/chat/completions", chat_body(stream=True), {"x-mock-chunks": "5"}, stream=True)
    assert sum(1 for line in response.iter_lines() if line) == 5 + 2 + 1  # words, role, finish, [DONE]
    span = traced.span()
    assert span.attributes[names.RESPONSE_FINISH_REASONS] == ("stop",)
    assert names.USAGE_INPUT_TOKENS not in span.attributes and names.USAGE_COST_AMOUNT not in span.attributes


def test_streamed_body_read_by_send(traced, server) -> None:
    """`stream` in the JSON body but not passed to requests: send() reads the whole SSE body."""
    response = post(
        server, "/chat/completions", chat_body(stream=True, stream_options={"include_usage": True})
    )
    assert response.text.endswith("data: [DONE]\n\n")
    span = traced.span()
    assert span.attributes[names.USAGE_OUTPUT_TOKENS] > 0 and names.USAGE_COST_AMOUNT in span.attributes


def test_responses_stream(traced, server) -> None:
    response = post(
        server, "/responses", {"model": "gpt-4.1", "input": "one two three", "stream": True}, stream=True
    )
    events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith(b"data: ")]
    final = events[-1]["response"]
    span = traced.span()
    assert span.attributes[names.USAGE_INPUT_TOKENS] == final["usage"]["input_tokens"]
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(
        genai_cost("gpt-4.1", final["usage"]["input_tokens"], final["usage"]["output_tokens"])
    )


@pytest.mark.parametrize(
    "error",
    [{"code": "rate_limit_exceeded"}, {"error": {"code": "rate_limit_exceeded"}}],
    ids=["flat", "nested"],
)
def test_a_responses_stream_that_ends_in_an_error_event_failed(traced, server, error: dict) -> None:
    created = {
        "type": "response.created",
        "response": {"id": "resp_1", "model": "gpt-4.1", "status": "in_progress"},
    }
    headers = sse_body(created, {"type": "error", "sequence_number": 1, **error})
    response = post(
        server, "/responses", {"model": "gpt-4.1", "input": "hi", "stream": True}, headers, stream=True
    )
    assert len([line for line in response.iter_lines() if line]) == 3
    assert traced.span().attributes[names.ERROR_TYPE] == "rate_limit_exceeded"


@pytest.mark.parametrize("capture", [False, True], ids=["members", "content captured"])
def test_a_large_responses_stream_event_is_read_without_decoding_its_output(
    telemetry, server, monkeypatch, capture
) -> None:
    """The last events of a Responses stream repeat the whole output (a generated image; here 2 MB of
    text): they are read from their type and their response's members, the output stepped over."""
    from otel_tokencost import sse

    if capture:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    decoded = spy_on_decoding(monkeypatch, sse)
    RequestsInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        body = {"model": "gpt-4.1", "input": "one " + "x" * 1_000_000, "stream": True}  # a long word, echoed
        response = post(server, "/responses", body, {**HEADERS, "x-mock-chunks": "6"}, stream=True)
        data = b"".join(response.iter_content(chunk_size=1 << 16))  # iter_lines is slow on long lines
    finally:
        RequestsInstrumentor().uninstrument()
    lines = [line for line in data.split(b"\n") if line.startswith(b"data: ")]
    final = json.loads(lines[-1][6:])["response"]
    assert min(len(line) for line in lines[-2:]) > 2_000_000  # the output item and the response, whole
    assert (max(decoded) > 2_000_000) is capture
    assert_read_as_responses_body(telemetry.span().attributes, final)


@pytest.mark.parametrize("ending", ["close", "with", "collected", "partial_then_close"])
def test_stream_span_ends_exactly_once(traced, server, ending) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    if ending == "with":
        with post(server, "/chat/completions", body, stream=True) as response:
            next(response.iter_lines())
    else:
        response = post(server, "/chat/completions", body, stream=True)
        if ending == "partial_then_close":
            next(response.iter_content(16))
        if ending == "collected":
            del response
            gc.collect()
        else:
            response.close()
    assert len(traced.spans()) == 1
    gc.collect()
    assert len(traced.spans()) == 1


def test_a_stream_dropped_unclosed_keeps_what_the_app_read(traced, server) -> None:
    """A hand-rolled SSE loop that stops at `[DONE]` and drops the response: the call ends when the
    response is collected, priced from the usage event the app read."""

    def read_until_done() -> dict:
        body = chat_body(stream=True, stream_options={"include_usage": True})
        response = post(server, "/chat/completions", body, {**HEADERS, "x-mock-chunks": "6"}, stream=True)
        events = []
        for line in response.iter_lines():
            if line == b"data: [DONE]":
                break
            if line:
                events.append(json.loads(line[6:]))
        return events[-1]["usage"]

    reported = read_until_done()
    gc.collect()
    span = traced.span()
    assert (span.attributes[names.USAGE_INPUT_TOKENS], span.attributes[names.USAGE_OUTPUT_TOKENS]) == (
        reported["prompt_tokens"],
        6,
    )
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(
        genai_cost("gpt-4o-mini", reported["prompt_tokens"], 6)
    )


def test_a_stream_dropped_after_raise_for_status_keeps_its_error(traced, server) -> None:
    def call() -> None:
        post(
            server, "/chat/completions", chat_body(), {"x-mock-status": "429"}, stream=True
        ).raise_for_status()

    try:
        call()
    except requests.HTTPError as error:
        assert error.response.status_code == 429
    gc.collect()
    span = traced.span()
    assert (span.status.status_code, span.attributes[names.ERROR_TYPE]) == (StatusCode.ERROR, "429")


def read_the_body(response: requests.Response, **kwargs) -> None:
    """A response hook that reads the body, to log it, say."""
    response.content  # noqa: B018


class BodyReadingSession(requests.Session):
    """Reads every response's body in `send`, as a caching or retrying session may."""

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        response.content  # noqa: B018
        return response


@pytest.mark.parametrize("reader", ["response hook", "send override"])
def test_a_streamed_body_read_before_the_app_gets_it_is_priced(traced, server, reader) -> None:
    with BodyReadingSession() if reader == "send override" else requests.Session() as session:
        if reader == "response hook":
            session.hooks["response"].append(read_the_body)
        url = f"{server.base_url}/chat/completions"
        response = session.post(url, json=chat_body(), headers=usage(300, 40), stream=True, timeout=10)
        assert response.json()["usage"]["prompt_tokens"] == 300
    span = traced.span()
    assert (span.attributes[names.USAGE_INPUT_TOKENS], span.attributes[names.USAGE_OUTPUT_TOKENS]) == (
        300,
        40,
    )
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 300, 40))


def completion_text(**extra) -> str:
    usage = {"prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340}
    message = {"role": "assistant", "content": "Quarante"}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
                       "choices": [choice], "usage": usage, **extra}, ensure_ascii=False)  # fmt: skip


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    ("asked_to_stream", "content_type", "encoding"),
    [
        (True, "application/json", "utf-8"),  # a server that does not stream
        (False, "", "utf-8"),  # no content type
        (False, "text/plain", "utf-8"),
        (False, "application/json; charset=iso-8859-1", "latin-1"),  # not JSON's charset, yet read
    ],
    ids=["stream asked, JSON sent", "no content type", "text/plain", "latin-1"],
)
def test_a_json_body_however_it_is_labelled_is_priced(
    traced, server, stream, asked_to_stream, content_type, encoding
) -> None:
    sent = completion_text(system_fingerprint="café")
    headers = {
        "x-mock-raw-body-b64": base64.b64encode(sent.encode(encoding)).decode(),
        "x-mock-content-type": content_type,
    }
    response = post(server, "/chat/completions", chat_body(stream=asked_to_stream), headers, stream=stream)
    assert response.content == sent.encode(encoding)
    response.close()
    span = traced.span()
    assert span.attributes[names.RESPONSE_ID] == "chatcmpl-1"
    assert (span.attributes[names.USAGE_INPUT_TOKENS], span.attributes[names.USAGE_OUTPUT_TOKENS]) == (
        300,
        40,
    )
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 300, 40))


def compressed(data: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    return zlib.compress(data)  # `deflate` is zlib's format


RAW_COMPRESSED_READS = {
    "read": lambda raw: raw.read(),
    "read in pieces": lambda raw: b"".join(iter(lambda: raw.read(16), b"")),
    "read1": lambda raw: b"".join(iter(lambda: raw.read1(16), b"")),
    "readinto": read_into,
    "stream": lambda raw: b"".join(raw.stream(16)),
    "copyfileobj": lambda raw: copied(raw),
    "data": lambda raw: raw.data,
}


def copied(raw) -> bytes:
    target = io.BytesIO()
    shutil.copyfileobj(raw, target)
    return target.getvalue()


@pytest.mark.parametrize("read", RAW_COMPRESSED_READS)
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("kind", ["json", "sse"])
def test_a_compressed_body_relayed_as_it_came_is_priced(traced, server, read, encoding, kind) -> None:
    """A gateway relays the provider's body as it came, compressed (`raw` reads do not decode unless
    asked): the app gets those bytes untouched, and the call is priced from the decoded body."""
    if kind == "json":
        text, content_type = completion_text(), "application/json"
    else:
        text = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in sse_chunks()) + "data: [DONE]\n\n"
        content_type = "text/event-stream"
    sent = compressed(text.encode(), encoding)
    headers = {
        "x-mock-raw-body-b64": base64.b64encode(sent).decode(),
        "x-mock-content-type": content_type,
        "x-mock-response-headers": json.dumps({"Content-Encoding": encoding}),
    }
    response = post(server, "/chat/completions", chat_body(stream=kind == "sse"), headers, stream=True)
    assert RAW_COMPRESSED_READS[read](response.raw) == sent
    response.close()
    span = traced.span()
    assert (span.attributes[names.USAGE_INPUT_TOKENS], span.attributes[names.USAGE_OUTPUT_TOKENS]) == (
        300,
        40,
    )
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 300, 40))


def sse_chunks() -> list[dict]:
    """A chat stream's chunks: a word, the finish, and the usage."""
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
    usage = {"prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340}
    return [
        {**chunk, "choices": [{"index": 0, "delta": {"content": "Quarante"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**chunk, "choices": [], "usage": usage},
    ]


@pytest.mark.parametrize("encoding", ["none", "utf-8", "binary"])
def test_a_body_in_an_encoding_urllib3_passes_through_is_read_as_it_is(traced, server, encoding) -> None:
    sent = completion_text().encode()
    headers = {
        "x-mock-raw-body-b64": base64.b64encode(sent).decode(),
        "x-mock-content-type": "application/json",
        "x-mock-response-headers": json.dumps({"Content-Encoding": encoding}),
    }
    response = post(server, "/chat/completions", chat_body(), headers, stream=True)
    assert response.raw.read() == sent
    response.close()
    assert traced.span().attributes[names.USAGE_INPUT_TOKENS] == 300


def test_a_compressed_body_decoded_by_urllib3_is_not_decoded_again(traced, server) -> None:
    sent = completion_text().encode()
    headers = {
        "x-mock-raw-body-b64": base64.b64encode(gzip.compress(sent)).decode(),
        "x-mock-content-type": "application/json",
        "x-mock-response-headers": json.dumps({"Content-Encoding": "gzip"}),
    }
    response = post(server, "/chat/completions", chat_body(), headers, stream=True)
    assert response.raw.read(decode_content=True) == sent
    response.close()
    assert traced.span().attributes[names.USAGE_INPUT_TOKENS] == 300


def test_a_raw_body_read_for_nothing_first_is_still_priced(traced, server) -> None:
    """A read of no bytes (a probe) is not the end of the body."""
    response = post(server, "/chat/completions", chat_body(), usage(300, 40), stream=True)
    assert response.raw.read(0) == b""
    assert json.loads(b"".join(iter(lambda: response.raw.read(64), b"")))["usage"]["prompt_tokens"] == 300
    assert traced.span().attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 300, 40))


def test_a_body_read_through_urllib3s_json_is_priced(traced, server) -> None:
    response = post(server, "/chat/completions", chat_body(), usage(300, 40), stream=True)
    assert response.raw.json()["usage"]["completion_tokens"] == 40
    assert traced.span().attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 300, 40))


def test_a_stream_read_to_its_done_line_ends_the_call_there(traced, server) -> None:
    """The usual SSE loop stops at `data: [DONE]` and keeps the response: the call ends at that line,
    so the block's Spend counts it before the response is closed or dropped."""
    body = chat_body(stream=True, stream_options={"include_usage": True})
    with otel_tokencost.track(tracking_id="done-line") as spend:
        response = post(server, "/chat/completions", body, {**HEADERS, "x-mock-chunks": "6"}, stream=True)
        for line in response.iter_lines():
            if line == b"data: [DONE]":
                break
        span = traced.span()  # ended already
        assert spend.calls == 1 and spend.output_tokens == 6
    assert span.attributes[names.USAGE_OUTPUT_TOKENS] == 6
    response.close()
    assert len(traced.spans()) == 1


class StreamingSession(requests.Session):
    """Streams every response, whatever the app asked: a gateway's client that relays as it reads."""

    def send(self, request, **kwargs):
        return super().send(request, **{**kwargs, "stream": True})


def test_a_session_that_streams_in_send_gets_its_body_unread(traced, server) -> None:
    """What `send` streamed stays for the app to read as it comes: the call is priced as it reads."""
    with StreamingSession() as session:
        url, headers = f"{server.base_url}/chat/completions", {**HEADERS, "x-mock-chunks": "3"}
        body = chat_body(stream=True, stream_options={"include_usage": True})
        response = session.post(url, json=body, headers=headers, timeout=10)
        assert response._content is False  # not read on the app's behalf
        assert traced.spans() == ()
        lines = [line for line in response.iter_lines() if line]
    assert len(lines) == 3 + 4  # role, words, finish, usage, [DONE]
    assert traced.span().attributes[names.USAGE_OUTPUT_TOKENS] == 3


def test_a_response_served_from_a_cache_was_not_billed(traced, server) -> None:
    """A cache's response (requests-cache marks it `from_cache`) has a span but no usage and no cost."""

    class CachingSession(requests.Session):
        def send(self, request, **kwargs):
            response = super().send(request, **kwargs)
            response.from_cache = True
            return response

    with CachingSession() as session:
        url = f"{server.base_url}/chat/completions"
        response = session.post(url, json=chat_body(), headers=usage(300, 40), timeout=10)
    assert response.json()["usage"]["prompt_tokens"] == 300
    span = traced.span()
    assert span.attributes[names.REQUEST_MODEL] == "gpt-4o-mini"
    assert names.USAGE_INPUT_TOKENS not in span.attributes and names.USAGE_COST_AMOUNT not in span.attributes
    assert traced.points(names.METRIC_COST) == []


def test_a_response_hook_that_raises_for_status_keeps_the_status_as_error_type(traced, server) -> None:
    with requests.Session() as session:
        session.hooks["response"].append(lambda response, **kwargs: response.raise_for_status())
        url = f"{server.base_url}/chat/completions"
        with pytest.raises(requests.HTTPError):
            session.post(url, json=chat_body(), headers={"x-mock-status": "429"}, timeout=10)
    assert traced.span().attributes[names.ERROR_TYPE] == "429"


def test_cut_stream_records_the_error(traced, server) -> None:
    response = post(
        server, "/chat/completions", chat_body(stream=True), {"x-mock-cut-after": "2"}, stream=True
    )
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        list(response.iter_lines())
    span = traced.span()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[names.ERROR_TYPE].startswith("urllib3.exceptions.")


# Faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 429, 400])
def test_error_status(traced, server, status) -> None:
    response = post(server, "/chat/completions", chat_body(), {"x-mock-status": str(status)})
    assert response.status_code == status and response.json()["error"]["message"]
    span = traced.span()
    assert (span.status.status_code, span.attributes[names.ERROR_TYPE]) == (StatusCode.ERROR, str(status))


def test_html_error_page(traced, server) -> None:
    page = "<html><body>502 Bad Gateway</body></html>"
    response = post(
        server, "/chat/completions", chat_body(), {"x-mock-status": "502", "x-mock-raw-body": page}
    )
    assert response.text == page
    span = traced.span()
    assert span.attributes[names.ERROR_TYPE] == "502" and names.USAGE_INPUT_TOKENS not in span.attributes


@pytest.mark.parametrize(
    ("raw_body", "content_type"),
    [
        ("not json at all", "application/json"),
        ("[1, 2]", "application/json"),
        ('{"usage": 5}', "application/json"),
        ("data: {broken\\n\\ndata: [DONE]\\n\\n", "text/event-stream"),
    ],
)
def test_unreadable_bodies_give_a_plain_span(traced, server, raw_body, content_type) -> None:
    post(
        server,
        "/chat/completions",
        chat_body(),
        {"x-mock-raw-body": raw_body, "x-mock-content-type": content_type},
    )
    span = traced.span()
    assert span.status.status_code == StatusCode.UNSET and names.USAGE_INPUT_TOKENS not in span.attributes


@pytest.mark.parametrize(
    "bad",
    [
        {"prompt_tokens": "10", "completion_tokens": 5},
        {"prompt_tokens": 10, "completion_tokens": -5},
        {"prompt_tokens": None},
        {"input_tokens": 1.5, "output_tokens": 2},
    ],
)
def test_usage_with_wrong_types(traced, server, bad) -> None:
    post(server, "/chat/completions", chat_body(), {"x-mock-usage": json.dumps(bad)})
    attributes = traced.span().attributes
    assert names.USAGE_INPUT_TOKENS not in attributes and names.USAGE_COST_AMOUNT not in attributes


def test_connection_error(traced) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post("http://127.0.0.1:9/v1/chat/completions", json=chat_body(), timeout=5)
    assert traced.span().attributes[names.ERROR_TYPE] == "requests.exceptions.ConnectionError"


def test_timeout(traced, server) -> None:
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(server, "/chat/completions", chat_body(), {"x-mock-delay-ms": "400"}, timeout=0.05)
    assert traced.span().attributes[names.ERROR_TYPE] == "requests.exceptions.ReadTimeout"


# What is not an LLM call -----------------------------------------------------------------------


def test_non_llm_requests_make_no_span(traced, server) -> None:
    requests.get(f"{server.base_url}/chat/completions", timeout=5)
    requests.post(f"{server.base_url}/files", json={"purpose": "x"}, timeout=5)
    requests.post(f"{server.base_url}/chat/completions/extra", json=chat_body(), timeout=5)
    requests.post(f"{server.base_url}/login?next=/v1/chat/completions", json=chat_body(), timeout=5)
    assert traced.spans() == ()


def test_a_url_with_a_fragment_is_a_call(traced, server) -> None:
    post(server, "/chat/completions#section", chat_body(), usage(300, 40))
    assert traced.span().attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 300, 40))


def test_suppressed_instrumentation_makes_no_span(traced, server) -> None:
    with suppress_instrumentation():
        post(server, "/chat/completions", chat_body())
    assert traced.spans() == ()
    post(server, "/chat/completions", chat_body())
    assert len(traced.spans()) == 1


def test_extra_paths_from_the_environment(telemetry, server, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TOKENCOST_REQUESTS_PATHS", "/api/generate, chat/send")
    RequestsInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        requests.post(f"{server.base_url}/api/generate", json={"model": "llama3"}, timeout=5)
    finally:
        RequestsInstrumentor().uninstrument()
    span = telemetry.span()
    assert span.name == "chat llama3"
    assert span.attributes[names.ERROR_TYPE] == "404"  # the local server does not serve this path


def test_an_extra_path_that_names_no_path_is_left_out(telemetry, server, monkeypatch, caplog) -> None:
    """`/` would make every URL that ends in a slash an LLM call."""
    monkeypatch.setenv("OTEL_TOKENCOST_REQUESTS_PATHS", " / ,/api/generate")
    RequestsInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        requests.post(f"{server.base_url}/", json={"model": "llama3"}, timeout=5)
        assert telemetry.spans() == ()
        requests.post(f"{server.base_url}/api/generate", json={"model": "llama3"}, timeout=5)
    finally:
        RequestsInstrumentor().uninstrument()
    assert telemetry.span().name == "chat llama3"
    assert "OTEL_TOKENCOST_REQUESTS_PATHS entry '/' names no path; left out" in caplog.text


def test_no_secret_in_telemetry(traced, server) -> None:
    requests.post(
        f"{server.base_url.replace('http://', 'http://user:pw@')}/chat/completions?api-key={API_KEY}",
        json=chat_body(),
        headers=HEADERS,
        timeout=5,
    )
    text = json.dumps({key: str(value) for key, value in traced.span().attributes.items()})
    assert API_KEY not in text and "pw" not in text and "Bearer" not in text


@pytest.mark.parametrize(
    "http_first", [True, False], ids=["http-instrumented-first", "http-instrumented-last"]
)
def test_beside_the_requests_http_instrumentation(telemetry, server, http_first: bool) -> None:
    """The HTTP span nests under the GenAI span whichever instrumentation was applied first."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor as HTTPInstrumentor

    ours = RequestsInstrumentor()
    order = [HTTPInstrumentor(), ours] if http_first else [ours, HTTPInstrumentor()]
    for instrumentor in order:
        instrumentor.instrument(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )
    try:
        post(server, "/chat/completions", chat_body())
    finally:
        for instrumentor in reversed(order):
            instrumentor.uninstrument()
    http, genai = sorted(telemetry.spans(), key=lambda span: span.name == "chat gpt-4o-mini")
    assert (http.name, genai.name) == ("POST", "chat gpt-4o-mini")
    assert http.parent.span_id == genai.context.span_id
    assert http.context.trace_id == genai.context.trace_id


def test_uninstrumenting_under_another_instrumentation_leaves_it_in_place(telemetry, server) -> None:
    """The HTTP instrumentation wrapped `Session.send` over ours: uninstrumenting ours keeps its HTTP
    spans and stops ours, and instrumenting ours again measures each call once."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor as HTTPInstrumentor

    providers = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
    ours, http = RequestsInstrumentor(), HTTPInstrumentor()
    ours.instrument(**providers)
    http.instrument(**providers)
    try:
        ours.uninstrument()
        post(server, "/chat/completions", chat_body())
        assert [span.name for span in telemetry.spans()] == ["POST"]
        ours.instrument(**providers)
        post(server, "/chat/completions", chat_body())
        assert sorted(span.name for span in telemetry.spans()) == ["POST", "POST", "chat gpt-4o-mini"]
    finally:
        ours.uninstrument()
        http.uninstrument()


def test_prepared_request_sent_directly(traced, server) -> None:
    with requests.Session() as session:
        prepared = requests.Request(
            "POST", f"{server.base_url}/chat/completions", json=chat_body(), headers=usage(70, 7)
        ).prepare()
        session.send(prepared, timeout=10)
    span = traced.span()
    assert span.attributes[names.USAGE_COST_AMOUNT] == float(genai_cost("gpt-4o-mini", 70, 7))


@pytest.mark.parametrize("how", ["data bytes", "Session.send"])
def test_a_body_nested_deeper_than_python_decodes_is_sent_as_uninstrumented(traced, server, how) -> None:
    """The app's own body, however odd, is the server's to refuse: decoding it never raises in the app."""
    deep = b'{"model": "gpt-4o-mini", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = send_raw(server, deep, how, {})
    assert response.status_code == 400
    span = traced.span()
    assert span.name == "chat" and span.attributes[names.ERROR_TYPE] == "400"
    assert names.USAGE_COST_AMOUNT not in span.attributes


def test_litellm_proxy_cost_header(traced, server) -> None:
    headers = {"x-mock-response-headers": json.dumps({"x-litellm-response-cost": "0.0042"})}
    post(server, "/chat/completions", chat_body(), headers)
    attributes = traced.span().attributes
    assert (attributes[names.USAGE_COST_AMOUNT], attributes[names.PRICING_SOURCE]) == (0.0042, "provider")
