"""Tests for the local OpenAI-compatible server, driven by the openai SDK and by requests."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests

from otel_tokencost.server import LocalServer

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "hello there world"},
]
CHAT_REPLY = "Echo: hello there world"
CHAT_USAGE = {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}  # 6 words + 3 * 2 messages


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def client(server: LocalServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0)


def post(server: LocalServer, path: str, body: Any, **headers: str) -> requests.Response:
    return requests.post(server.base_url + path, json=body, headers=headers, timeout=10)


def sse_data(response: requests.Response) -> list[str]:
    """The ``data:`` payloads of a raw SSE response."""
    return [line[len("data: ") :] for line in response.text.split("\n") if line.startswith("data: ")]


def test_base_url_and_port(server: LocalServer) -> None:
    assert server.port > 0
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"


def test_chat_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.id.startswith("chatcmpl-local-")
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.service_tier == "default"  # as OpenAI reports it when none was asked for
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == CHAT_REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.model_dump(exclude_none=True) == CHAT_USAGE


def test_chat_content_parts_and_fallback_reply(server: LocalServer) -> None:
    parts = [{"type": "text", "text": "one two"}, {"type": "image_url", "image_url": {"url": "x"}}]
    body = post(server, "/chat/completions", {"model": "m", "messages": [{"role": "user", "content": parts}]})
    assert body.json()["choices"][0]["message"] == {"role": "assistant", "content": "Echo: one two"}
    assert body.json()["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}

    empty = post(server, "/chat/completions", {"model": "m", "messages": []}).json()
    assert empty["choices"][0]["message"]["content"] == "This is a deterministic reply from the local server."
    assert empty["usage"] == {"prompt_tokens": 0, "completion_tokens": 9, "total_tokens": 9}


def test_chat_max_tokens_truncates(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="m", messages=MESSAGES, max_completion_tokens=2)
    assert completion.choices[0].message.content == "Echo: hello"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert len(chunks) == 7  # role, 4 words, finish, usage
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:5]] == ["Echo: ", "hello ", "there ", "world"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == CHAT_REPLY
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * 5 + ["stop"]
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump(exclude_none=True) == CHAT_USAGE


def test_chat_stream_without_usage(client: openai.OpenAI, server: LocalServer) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert len(chunks) == 6
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == CHAT_REPLY
    assert chunks[-1].choices[0].finish_reason == "stop"

    raw = post(server, "/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True})
    assert raw.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert raw.headers["transfer-encoding"] == "chunked"
    payloads = sse_data(raw)
    assert payloads[-1] == "[DONE]"
    assert all("usage" not in json.loads(p) for p in payloads[:-1])


def test_chat_stream_raw_usage_null_on_every_chunk(server: LocalServer) -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    payloads = sse_data(post(server, "/chat/completions", body))
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert payloads[-1] == "[DONE]"
    assert [c["usage"] for c in chunks[:-1]] == [None] * 6
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == CHAT_USAGE
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["delta"] == {}


def test_chat_stream_helper(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="m", messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert deltas == ["", "Echo: ", "hello ", "there ", "world"]  # the role chunk carries content ""
    assert final.choices[0].message.content == CHAT_REPLY
    assert final.usage is not None
    assert final.usage.total_tokens == 16


def test_legacy_completion(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="davinci-002", prompt="one two three")
    assert completion.id.startswith("cmpl-local-")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "Echo: one two three"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
    }


def test_legacy_completion_stream(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model="davinci-002", prompt="one two", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert [c.choices[0].text for c in chunks[:-1]] == ["Echo: ", "one ", "two", ""]
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None, None, None, "stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (2, 3)


def test_responses(client: openai.OpenAI, server: LocalServer) -> None:
    response = client.responses.create(model="gpt-4.1", input="say hi to me", instructions="Be nice.")
    assert response.id.startswith("resp_local_")
    assert response.status == "completed"
    assert response.output_text == "Echo: say hi to me"
    assert response.instructions == "Be nice."
    assert response.service_tier == "default"
    assert response.usage is not None
    assert response.usage.input_tokens == 4
    assert response.usage.output_tokens == 5

    items = [{"role": "user", "content": "a b"}]
    raw = post(server, "/responses", {"model": "gpt-4.1", "input": items}).json()
    assert raw["object"] == "response"
    flex = post(server, "/responses", {"model": "gpt-4.1", "input": "x", "service_tier": "flex"}).json()
    assert flex["service_tier"] == "flex"  # the tier asked for serves the call
    assert raw["output"][0]["content"] == [{"type": "output_text", "text": "Echo: a b", "annotations": []}]
    assert raw["usage"] == {
        "input_tokens": 2,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 5,
    }


def test_responses_max_output_tokens_is_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(model="m", input="a b c d", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "Echo: a"


def test_responses_stream_helper(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt-4.1", input="abc def") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(11))
    assert events[0].response.status == "in_progress"
    assert events[0].response.usage is None
    assert final.output_text == "Echo: abc def"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (2, 3, 5)


def test_responses_raw_stream(server: LocalServer, client: openai.OpenAI) -> None:
    deltas = [
        e.delta
        for e in client.responses.create(model="m", input="x y", stream=True)
        if e.type == "response.output_text.delta"
    ]
    assert deltas == ["Echo: ", "x ", "y"]

    raw = post(server, "/responses", {"model": "m", "input": "x y", "stream": True}).text
    blocks = raw.strip().split("\n\n")
    assert blocks[0].split("\n")[0] == "event: response.created"
    assert blocks[-1].split("\n")[0] == "event: response.completed"
    assert "[DONE]" not in raw


def test_embeddings(client: openai.OpenAI, server: LocalServer) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in result.data)
    assert result.usage.model_dump() == {"prompt_tokens": 3, "total_tokens": 3}

    raw = post(server, "/embeddings", {"model": "e", "input": ["a b", "c"]}).json()
    assert raw["object"] == "list"
    assert raw["data"][0]["object"] == "embedding"
    assert raw["data"][0]["embedding"] == result.data[0].embedding
    encoded = post(server, "/embeddings", {"model": "e", "input": "a b", "encoding_format": "base64"}).json()
    decoded = list(struct.unpack("<8f", base64.b64decode(encoded["data"][0]["embedding"])))
    assert decoded == raw["data"][0]["embedding"]

    # `dimensions` sets the length; the first eight values stay those of the default vector.
    longer = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"], dimensions=100)
    assert [len(d.embedding) for d in longer.data] == [100, 100]  # through the SDK's base64 decoding
    assert longer.data[0].embedding[:8] == result.data[0].embedding
    assert longer.data[0].embedding[32:40] == result.data[0].embedding


def test_status_500_raises(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES, extra_headers={"x-mock-status": "500"})
    assert caught.value.status_code == 500
    assert caught.value.body == {
        "message": "Simulated error with status 500.",
        "type": "server_error",
        "code": None,
    }
    assert caught.value.response.headers["retry-after-ms"] == "1"


def test_status_400_raises(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="m", input="x", extra_headers={"x-mock-status": "400"})
    assert caught.value.status_code == 400
    assert "retry-after-ms" not in caught.value.response.headers


def test_fail_times_then_succeeds_with_retries(server: LocalServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=2)
    before = server.requests_seen
    completion = client.chat.completions.create(
        model="m", messages=MESSAGES, extra_headers={"x-mock-status": "429", "x-mock-fail-times": "2"}
    )
    assert completion.choices[0].message.content == CHAT_REPLY
    assert server.requests_seen - before == 3


def test_fail_times_exhausts_retries(server: LocalServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=1)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers={"x-mock-status": "429", "x-mock-fail-times": "2"}
        )


def test_fail_times_by_idempotency_key(server: LocalServer) -> None:
    headers = {"x-mock-status": "503", "x-mock-fail-times": "2", "Idempotency-Key": "key-1"}
    statuses = [post(server, "/embeddings", {"input": "a"}, **headers).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_cut_after_breaks_sdk_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, extra_headers={"x-mock-cut-after": "2"}
    )
    received: list[str | None] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "Echo: ", "hello "]


def test_cut_after_breaks_requests_stream(server: LocalServer) -> None:
    body = {"model": "m", "input": "a b c", "stream": True}
    response = requests.post(
        server.base_url + "/responses", json=body, headers={"x-mock-cut-after": "1"}, stream=True, timeout=10
    )
    lines: list[str] = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        lines.extend(response.iter_lines(decode_unicode=True))
    events = [line for line in lines if line.startswith("event: ")]
    assert events[-1] == "event: response.output_text.delta"
    assert len([e for e in events if e.endswith(".delta")]) == 1


def test_reject_members_answers_422_as_a_strict_provider(server: LocalServer) -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    refused = post(server, "/chat/completions", body, **{"x-mock-reject-members": "seed,stream_options"})
    assert refused.status_code == 422
    (detail,) = refused.json()["message"]["detail"]
    assert (detail["loc"], detail["msg"]) == (["body", "stream_options"], "Extra inputs are not permitted")
    del body["stream_options"]
    assert post(server, "/chat/completions", body, **{"x-mock-reject-members": "stream_options"}).ok


def test_not_found_and_bad_json(server: LocalServer) -> None:
    missing = post(server, "/nope", {})
    assert missing.status_code == 404
    message = "Unknown request URL: POST /v1/nope."
    assert missing.json() == {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    assert requests.get(server.base_url + "/chat/completions", timeout=10).status_code == 404

    bad = requests.post(server.base_url + "/chat/completions", data="{oops", timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert bad.json()["error"]["code"] is None
    assert post(server, "/chat/completions", {}, **{"x-mock-chunks": "many"}).status_code == 400
    # Nested deeper than Python decodes (3.13 decodes 5,000 levels): refused, not a dropped connection.
    deep = "[" * 20_000 + "]" * 20_000
    assert requests.post(server.base_url + "/chat/completions", data=deep, timeout=10).status_code == 400
    assert post(server, "/chat/completions", {"model": "m"}, **{"x-mock-usage": deep}).status_code == 400
    headers = post(server, "/chat/completions", {"model": "m"}, **{"x-mock-response-headers": deep})
    assert headers.status_code == 200


def test_sdk_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.post("/unknown", body={}, cast_to=object)
    assert caught.value.status_code == 404


def test_usage_override(client: openai.OpenAI, server: LocalServer) -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1050,
        "prompt_tokens_details": {"cached_tokens": 800},
    }
    completion = client.chat.completions.create(
        model="m", messages=MESSAGES, extra_headers={"x-mock-usage": json.dumps(usage)}
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 800

    headers = {"x-mock-usage": '{"prompt_tokens": "x"}'}
    garbage = post(server, "/chat/completions", {"messages": []}, **headers)
    assert garbage.json()["usage"] == {"prompt_tokens": "x"}
    omitted = post(server, "/completions", {"prompt": "a"}, **{"x-mock-usage": "none"})
    assert "usage" not in omitted.json()


def test_usage_none_stream_sends_no_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-mock-usage": "none"},
    )
    chunks = list(stream)
    assert len(chunks) == 6
    assert all(c.choices and c.usage is None for c in chunks)


def test_response_model_override(client: openai.OpenAI) -> None:
    headers = {"x-mock-response-model": "gpt-4o-2024-08-06"}
    completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers=headers)
    assert completion.model == "gpt-4o-2024-08-06"
    response = client.responses.create(model="gpt-4o", input="x", extra_headers=headers)
    assert response.model == "gpt-4o-2024-08-06"


def test_chunks_control(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-mock-chunks": "10"},
    )
    chunks = list(stream)
    contents = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert len(contents) == 10
    assert "".join(contents) == "Echo: hello there world Echo: hello there world Echo: hello"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10


def test_delays(server: LocalServer) -> None:
    start = time.perf_counter()
    post(server, "/embeddings", {"input": "a"}, **{"x-mock-delay-ms": "50"})
    assert time.perf_counter() - start >= 0.05

    start = time.perf_counter()
    body = {"model": "m", "prompt": "a b", "stream": True}
    payloads = sse_data(post(server, "/completions", body, **{"x-mock-chunk-delay-ms": "20"}))
    assert len(payloads) == 5  # 3 words, finish, [DONE]
    assert time.perf_counter() - start >= 0.08


def test_keep_alive_reuses_connection_after_stream(server: LocalServer) -> None:
    with requests.Session() as session:
        url = server.base_url + "/chat/completions"
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        first = session.post(url, json=body, timeout=10)
        second = session.post(url, json={"model": "m", "messages": MESSAGES}, timeout=10)
        assert sse_data(first)[-1] == "[DONE]"
        assert second.json()["choices"][0]["message"]["content"] == CHAT_REPLY
        assert "close" not in first.headers.get("connection", "") + second.headers.get("connection", "")


def test_last_bodies_records_requests(client: openai.OpenAI, server: LocalServer) -> None:
    client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ).close()
    assert server.last_bodies[-1]["stream_options"] == {"include_usage": True}
    for index in range(105):
        post(server, "/embeddings", {"input": str(index)})
    assert len(server.last_bodies) == 100
    assert server.last_bodies[-1] == {"input": "104"}
    assert server.last_bodies[0] == {"input": "5"}


def test_reset_and_restart() -> None:
    local = LocalServer()
    assert local.port == 0
    with local:
        url = local.base_url + "/embeddings"
        post(local, "/embeddings", {"input": "a"})
        assert local.requests_seen == 1
        assert local.last_bodies == [{"input": "a"}]
        local.reset()
        assert (local.requests_seen, local.last_bodies) == (0, [])
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(url, json={"input": "a"}, timeout=10)
