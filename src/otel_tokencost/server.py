"""A local OpenAI-compatible HTTP server with deterministic replies, for tests and demos.

Standard library only. Endpoints under ``/v1``: ``/chat/completions``, ``/completions``,
``/embeddings``, ``/responses``, ``/responses/compact`` and ``/decisions`` (POST, JSON body, optional SSE
streaming).

The reply is ``"Echo: "`` followed by up to 12 words of the last user message (or a fixed
sentence). Default usage counts whitespace-separated words: input words (plus 3 per chat
message) and reply words. Request headers control the behaviour, never the body:

- ``x-mock-usage``: JSON value used verbatim as ``usage``; ``none`` leaves usage out.
- ``x-mock-response-model``: model name put in responses.
- ``x-mock-status``: answer with this HTTP error status and an OpenAI error body.
- ``x-mock-fail-times``: fail only the first N attempts (keyed by ``Idempotency-Key``,
  else counted by the openai SDK's ``x-stainless-retry-count``), then succeed.
- ``x-mock-chunks``: make the reply exactly N words, so streams have N content chunks.
- ``x-mock-delay-ms`` / ``x-mock-chunk-delay-ms``: sleep before answering / between stream events.
- ``x-mock-cut-after``: stream at most N content chunks, then drop the connection unfinished.
- ``x-mock-cut-before-usage``: stream to the finish, then drop the connection before the usage chunk.
- ``x-mock-response-headers``: a JSON object of extra headers to answer with (a proxy's cost header, say).
- ``x-mock-raw-body``: answer with this body verbatim (``\\n`` escapes allowed), with the status of
  ``x-mock-status`` (else 200) and the type of ``x-mock-content-type`` (else ``text/html``).
- ``x-mock-raw-body-b64``: the same, base64-encoded (any bytes).
- ``x-mock-reject-members``: comma-separated top-level request members answered with a 422, as a strict
  provider (Mistral) refuses members it does not know.

Requests in absolute form (``POST http://api.openai.com/v1/chat/completions``) are answered as well: a
client that uses the server as its HTTP proxy can address it under any host name.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import socket
import struct
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

__all__ = ["LocalServer"]

FALLBACK_REPLY = "This is a deterministic reply from the local server."
DEFAULT_MODEL = "local-model"
MAX_ECHO_WORDS = 12
MAX_BODIES = 100
MAX_ATTEMPT_KEYS = 1024
EMBEDDING_SIZE = 8  # floats per vector unless the request asks for `dimensions`
MAX_EMBEDDING_SIZE = 4096

_DEFAULT = object()  # usage: compute the default
_OMIT = object()  # usage: leave the key out


class _BadRequest(Exception):
    """A request the server answers with 400."""


# ---------------------------------------------------------------------------------------------
# Request reading


def _texts(value: Any) -> Iterator[str]:
    """Yield the text strings of a content value: string, list of parts, or message dict."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key in ("content", "text"):
            yield from _texts(value.get(key))


def _words(value: Any) -> list[str]:
    """All whitespace-separated words of a content value."""
    return [word for text in _texts(value) for word in text.split()]


def _last_user_words(messages: Any) -> list[str]:
    """Words of the last user message (a plain string counts as one)."""
    if isinstance(messages, str):
        return messages.split()
    if not isinstance(messages, list):
        return []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return _words(users[-1].get("content")) if users else []


def _limit(body: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    """The first integer token limit found under ``keys``."""
    for key in keys:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _reply_words(source: list[str], chunks: int | None) -> list[str]:
    """Deterministic reply words, cycled to exactly ``chunks`` words when given."""
    words = ["Echo:", *source[:MAX_ECHO_WORDS]] if source else FALLBACK_REPLY.split()
    if chunks is None:
        return words
    return [words[i % len(words)] for i in range(chunks)]


def _pieces(words: list[str]) -> list[str]:
    """Stream deltas: each word keeps its trailing space, so the deltas join to the reply."""
    return [word + " " for word in words[:-1]] + words[-1:]


@dataclass(frozen=True)
class _Controls:
    """Test controls read from the request headers."""

    usage: object = _DEFAULT
    model: str | None = None
    status: int | None = None
    fail_times: int | None = None
    chunks: int | None = None
    delay_ms: int = 0
    chunk_delay_ms: int = 0
    cut_after: int | None = None
    cut_before_usage: bool = False


def _int_header(headers: Message, name: str) -> int | None:
    """A non-negative integer header, or None when absent."""
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"Invalid {name} header: {raw!r}") from None
    if value < 0:
        raise _BadRequest(f"Invalid {name} header: {raw!r}")
    return value


def _usage_header(headers: Message) -> object:
    """The ``x-mock-usage`` value: a JSON value, ``_OMIT`` for ``none``, or ``_DEFAULT``."""
    raw = headers.get("x-mock-usage")
    if raw is None:
        return _DEFAULT
    if raw.strip().lower() == "none":
        return _OMIT
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise _BadRequest(f"Invalid x-mock-usage header: {raw!r}") from None


def _parse_controls(headers: Message) -> _Controls:
    """Read every ``x-mock-*`` header."""
    status = _int_header(headers, "x-mock-status")
    fail_times = _int_header(headers, "x-mock-fail-times")
    if status is None and fail_times is not None:
        status = 500
    if status is not None and not 400 <= status <= 599:
        raise _BadRequest(f"Invalid x-mock-status header: {status}")
    return _Controls(
        usage=_usage_header(headers),
        model=headers.get("x-mock-response-model"),
        status=status,
        fail_times=fail_times,
        chunks=_int_header(headers, "x-mock-chunks"),
        delay_ms=_int_header(headers, "x-mock-delay-ms") or 0,
        chunk_delay_ms=_int_header(headers, "x-mock-chunk-delay-ms") or 0,
        cut_after=_int_header(headers, "x-mock-cut-after"),
        cut_before_usage=headers.get("x-mock-cut-before-usage") is not None,
    )


def _extra_forbidden(members: list[str]) -> dict[str, Any]:
    """A 422 body as Mistral's API sends for request members it does not accept."""
    detail = [
        {"type": "extra_forbidden", "loc": ["body", name], "msg": "Extra inputs are not permitted"}
        for name in members
    ]
    return {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error", "code": None}


def _parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of the request body."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise _BadRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise _BadRequest("The request body must be a JSON object.")
    return body


# ---------------------------------------------------------------------------------------------
# Response building


@dataclass(frozen=True)
class _Event:
    """One server-sent event; ``kind`` is "head", "content", "tail" or "usage" (the usage chunk)."""

    kind: str
    data: Any
    name: str | None = None

    def encode(self) -> bytes:
        """The SSE wire form of the event."""
        data = self.data if isinstance(self.data, str) else _dumps(self.data)
        prefix = f"event: {self.name}\n" if self.name else ""
        return f"{prefix}data: {data}\n\n".encode()


@dataclass(frozen=True)
class _Call:
    """A parsed request being answered."""

    body: dict[str, Any]
    controls: _Controls
    number: int
    created: int

    @property
    def model(self) -> Any:
        """The model to report: header override, else the requested one."""
        return self.controls.model or self.body.get("model", DEFAULT_MODEL)

    @property
    def stream(self) -> bool:
        """Whether the client asked for a stream."""
        return self.body.get("stream") is True

    @property
    def stream_usage(self) -> bool:
        """Whether a streamed reply carries usage."""
        options = self.body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    @property
    def service_tier(self) -> str:
        """The tier that serves the call, as OpenAI reports it: the one asked for, `default` for `auto`."""
        tier = self.body.get("service_tier")
        return tier if isinstance(tier, str) and tier != "auto" else "default"

    def reply(self, source: list[str], limit_keys: tuple[str, ...]) -> tuple[list[str], str]:
        """Reply words and finish reason, truncated to the request's token limit."""
        words = _reply_words(source, self.controls.chunks)
        limit = _limit(self.body, limit_keys)
        if limit is not None and limit < len(words):
            return words[:limit], "length"
        return words, "stop"

    def usage(self, default: dict[str, Any]) -> object:
        """The usage to send: the header override, else ``default``."""
        return default if self.controls.usage is _DEFAULT else self.controls.usage


def _dumps(value: Any) -> str:
    """Compact JSON."""
    return json.dumps(value, separators=(",", ":"))


def _with_usage(payload: dict[str, Any], usage: object) -> dict[str, Any]:
    """``payload`` with its usage, unless usage is omitted."""
    return payload if usage is _OMIT else {**payload, "usage": usage}


def _token_usage(prompt: int, completion: int) -> dict[str, int]:
    """Chat/completions usage."""
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _stream_end(base: dict[str, Any], usage: object, with_usage: bool) -> Iterator[_Event]:
    """The usage chunk (when wanted) and ``[DONE]``."""
    if with_usage:
        yield _Event("usage", {**base, "choices": [], "usage": usage})
    yield _Event("tail", "[DONE]")


def _chat(call: _Call) -> dict[str, Any] | Iterator[_Event]:
    """``POST /v1/chat/completions``."""
    messages = call.body.get("messages")
    words, finish = call.reply(_last_user_words(messages), ("max_completion_tokens", "max_tokens"))
    count = len(messages) if isinstance(messages, list) else 0
    usage = call.usage(_token_usage(len(_words(messages)) + 3 * count, len(words)))
    base = {"id": f"chatcmpl-local-{call.number}", "created": call.created, "model": call.model}
    base["service_tier"] = call.service_tier
    if call.stream:
        chunk_base = {**base, "object": "chat.completion.chunk"}
        return _chat_stream(chunk_base, words, finish, call.stream_usage, usage)
    message = {"role": "assistant", "content": " ".join(words)}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return _with_usage({**base, "object": "chat.completion", "choices": [choice]}, usage)


def _chat_stream(
    base: dict[str, Any], words: list[str], finish: str, stream_usage: bool, usage: object
) -> Iterator[_Event]:
    """Chat completion chunks: role, one per word, finish, then optional usage."""
    with_usage = stream_usage and usage is not _OMIT
    extra = {"usage": None} if with_usage else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**base, "choices": [choice], **extra}

    yield _Event("head", chunk({"role": "assistant", "content": ""}))
    for piece in _pieces(words):
        yield _Event("content", chunk({"content": piece}))
    yield _Event("tail", chunk({}, finish))
    yield from _stream_end(base, usage, with_usage)


def _completions(call: _Call) -> dict[str, Any] | Iterator[_Event]:
    """``POST /v1/completions`` (legacy text completions)."""
    prompt = call.body.get("prompt")
    words, finish = call.reply(_words(prompt), ("max_tokens",))
    usage = call.usage(_token_usage(len(_words(prompt)), len(words)))
    base = {"id": f"cmpl-local-{call.number}", "object": "text_completion"}
    base.update(created=call.created, model=call.model)
    if call.stream:
        return _completions_stream(base, words, finish, call.stream_usage, usage)
    choice = {"text": " ".join(words), "index": 0, "logprobs": None, "finish_reason": finish}
    return _with_usage({**base, "choices": [choice]}, usage)


def _completions_stream(
    base: dict[str, Any], words: list[str], finish: str, stream_usage: bool, usage: object
) -> Iterator[_Event]:
    """Text completion chunks: one per word, finish, then optional usage."""
    with_usage = stream_usage and usage is not _OMIT
    extra = {"usage": None} if with_usage else {}

    def chunk(text: str, finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
        return {**base, "choices": [choice], **extra}

    for piece in _pieces(words):
        yield _Event("content", chunk(piece))
    yield _Event("tail", chunk("", finish))
    yield from _stream_end(base, usage, with_usage)


def _responses(call: _Call) -> dict[str, Any] | Iterator[_Event]:
    """``POST /v1/responses``."""
    source = call.body.get("input")
    words, finish = call.reply(_last_user_words(source), ("max_output_tokens",))
    prompt, completion = len(_words(source)), len(words)
    usage = call.usage(
        {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        }
    )
    response = _with_usage(_response_object(call, " ".join(words), finish == "stop"), usage)
    return _responses_stream(response, words) if call.stream else response


def _response_object(call: _Call, text: str, complete: bool) -> dict[str, Any]:
    """A Responses API ``response`` object without usage."""
    body, status = call.body, "completed" if complete else "incomplete"
    content = [{"type": "output_text", "text": text, "annotations": []}]
    message = {"type": "message", "id": f"msg_local_{call.number}", "status": status, "role": "assistant"}
    message["content"] = content
    return {
        "id": f"resp_local_{call.number}",
        "object": "response",
        "created_at": call.created,
        "status": status,
        "error": None,
        "incomplete_details": None if complete else {"reason": "max_output_tokens"},
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": call.model,
        "output": [message],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": call.service_tier,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "metadata": body.get("metadata") or {},
        "user": None,
    }


def _responses_stream(final: dict[str, Any], words: list[str]) -> Iterator[_Event]:
    """Responses API events, from ``response.created`` to ``response.completed``."""
    message = final["output"][0]
    part = message["content"][0]
    where = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    pending = {**final, "status": "in_progress", "incomplete_details": None, "output": [], "usage": None}
    opened = {**message, "status": "in_progress", "content": []}
    events = [
        ("head", "response.created", {"response": pending}),
        ("head", "response.in_progress", {"response": pending}),
        ("head", "response.output_item.added", {"output_index": 0, "item": opened}),
        ("head", "response.content_part.added", {**where, "part": {**part, "text": ""}}),
        *(
            ("content", "response.output_text.delta", {**where, "delta": piece, "logprobs": []})
            for piece in _pieces(words)
        ),
        ("tail", "response.output_text.done", {**where, "text": part["text"], "logprobs": []}),
        ("tail", "response.content_part.done", {**where, "part": part}),
        ("tail", "response.output_item.done", {"output_index": 0, "item": message}),
        ("tail", f"response.{final['status']}", {"response": final}),
    ]
    for number, (kind, name, data) in enumerate(events):
        yield _Event(kind, {"type": name, **data, "sequence_number": number}, name)


def _compact(call: _Call) -> dict[str, Any]:
    """``POST /v1/responses/compact``: the input's user messages, then one compaction item."""
    source = call.body.get("input")
    items = source if isinstance(source, list) else [{"role": "user", "content": source}]
    kept = [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": " ".join(_texts(item))}],
        }
        for item in items
        if isinstance(item, dict) and item.get("role") == "user"
    ]
    prompt = len(_words(source))
    summary = max(1, prompt // 4)  # what the compaction pass writes: a quarter of what it read
    compaction = {"type": "compaction", "id": f"cmp_local_{call.number}", "encrypted_content": "e" * summary}
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": summary,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + summary,
    }
    payload = {
        "id": f"resp_cmp_local_{call.number}",
        "object": "response.compaction",
        "created_at": call.created,
        "output": [*kept, compaction],
    }
    return _with_usage(payload, call.usage(usage))


def _decisions(call: _Call) -> dict[str, Any]:
    """``POST /v1/decisions``: a yes-or-no answer to each predicate question, a refusal to any other."""
    questions = [item for item in call.body.get("questions") or () if isinstance(item, dict)]
    answers = [
        {"type": "predicate", "name": item.get("name"), "probability": 0.5}
        if item.get("type") == "predicate"
        else {"type": "refusal", "name": item.get("name")}
        for item in questions
    ]
    prompt = len(_words(call.body.get("input"))) + len(_words([item.get("question") for item in questions]))
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": len(answers),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + len(answers),
    }
    return _with_usage({"answers": answers, "model": call.model}, call.usage(usage))


def _embedding_inputs(value: Any) -> list[Any]:
    """The separate inputs of an embeddings request (a token array is one input)."""
    if isinstance(value, list) and not all(isinstance(item, int) for item in value):
        return value
    return [] if value == [] else [value]


def _vector(item: Any, size: int) -> list[float]:
    """A deterministic embedding vector for one input (exact in float32, so base64 round-trips)."""
    digest = hashlib.sha256(_dumps(item).encode()).digest()
    return [(digest[index % len(digest)] - 128) / 128 for index in range(size)]


def _embeddings(call: _Call) -> dict[str, Any]:
    """``POST /v1/embeddings``; `dimensions` sets the vectors' length (up to 4096)."""
    inputs = call.body.get("input")
    as_base64 = call.body.get("encoding_format") == "base64"
    size = call.body.get("dimensions")
    if not (size.__class__ is int and 0 < size <= MAX_EMBEDDING_SIZE):
        size = EMBEDDING_SIZE
    data = []
    for index, item in enumerate(_embedding_inputs(inputs)):
        vector: Any = _vector(item, size)
        if as_base64:
            vector = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = len(_words(inputs))
    payload = {"object": "list", "data": data, "model": call.model}
    return _with_usage(payload, call.usage({"prompt_tokens": tokens, "total_tokens": tokens}))


_ENDPOINTS: dict[str, Callable[[_Call], dict[str, Any] | Iterator[_Event]]] = {
    "/v1/chat/completions": _chat,
    "/v1/completions": _completions,
    "/v1/embeddings": _embeddings,
    "/v1/responses": _responses,
    "/v1/responses/compact": _compact,
    "/v1/decisions": _decisions,
}


def _error_type(status: int) -> str:
    """OpenAI error ``type`` for an HTTP status."""
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error"
    )


# ---------------------------------------------------------------------------------------------
# HTTP plumbing


class _BoundedList(list[Any]):
    """A list whose ``append`` is thread-safe and keeps only the newest ``maxlen`` items."""

    def __init__(self, maxlen: int) -> None:
        super().__init__()
        self.maxlen = maxlen
        self._lock = threading.Lock()

    def append(self, item: Any) -> None:
        """Append ``item``, dropping the oldest item beyond ``maxlen``."""
        with self._lock:
            super().append(item)
            if len(self) > self.maxlen:
                del self[0]

    def clear(self) -> None:
        """Remove every item."""
        with self._lock:
            super().clear()


class _Attempts:
    """Thread-safe attempt counts per idempotency key, bounded to the newest keys."""

    def __init__(self, limit: int = MAX_ATTEMPT_KEYS) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def next(self, key: str) -> int:
        """Record one attempt for ``key``; return how many came before it."""
        with self._lock:
            seen = self._counts.pop(key, 0)
            self._counts[key] = seen + 1
            if len(self._counts) > self._limit:
                self._counts.popitem(last=False)
        return seen

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._counts.clear()


class _Handler(BaseHTTPRequestHandler):
    """Serves the OpenAI-compatible endpoints."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Keep quiet."""

    def do_POST(self) -> None:
        """Answer an API call."""
        raw = self._receive()
        try:
            extra = json.loads(self.headers.get("x-mock-response-headers", "{}"))
        except (ValueError, RecursionError):
            extra = {}
        self._extra_headers = {str(k): str(v) for k, v in extra.items()} if isinstance(extra, dict) else {}
        endpoint = _ENDPOINTS.get(urlsplit(self.path).path)  # absolute-form too, as a proxy receives it
        if endpoint is None:
            self._send_not_found()
            return
        try:
            body = _parse_body(raw)
            self.server.owner.last_bodies.append(body)
            controls = _parse_controls(self.headers)
        except _BadRequest as exc:
            self._send_error(400, str(exc))
            return
        refused = [name for name in self.headers.get("x-mock-reject-members", "").split(",") if name in body]
        if refused:  # as a strict provider (Mistral) refuses a member it does not know
            self._send_json(422, _extra_forbidden(refused))
            return
        time.sleep(controls.delay_ms / 1000)
        raw_body = self.headers.get("x-mock-raw-body")
        encoded_body = self.headers.get("x-mock-raw-body-b64")
        if raw_body is not None or encoded_body is not None:
            data = base64.b64decode(encoded_body) if encoded_body else raw_body.replace("\\n", "\n").encode()
            content_type = self.headers.get("x-mock-content-type", "text/html")
            self._send_raw(controls.status or 200, data, content_type)
            return
        if controls.status is not None and self._should_fail(controls.fail_times):
            self._send_error(controls.status, f"Simulated error with status {controls.status}.")
            return
        call = _Call(body, controls, self.server.owner._next_id(), int(time.time()))
        result = endpoint(call)
        if isinstance(result, dict):
            self._send_json(200, result)
        else:
            self._send_stream(result, controls)

    def do_GET(self) -> None:
        """No GET endpoints: 404."""
        self._extra_headers = {}
        self._receive()
        self._send_not_found()

    do_PUT = do_PATCH = do_DELETE = do_GET

    def _receive(self) -> bytes:
        """Count the request and read its body."""
        self.server.owner._count_request()
        length = self.headers.get("content-length", "0")
        return self.rfile.read(int(length)) if length.isdigit() and int(length) > 0 else b""

    def _should_fail(self, fail_times: int | None) -> bool:
        """Whether this attempt gets the simulated error status."""
        if fail_times is None:
            return True
        key = self.headers.get("idempotency-key")
        if key:
            return self.server.owner._attempts.next(key) < fail_times
        retries = self.headers.get("x-stainless-retry-count", "0")
        return (int(retries) if retries.isdigit() else 0) < fail_times

    def _send_not_found(self) -> None:
        """404 for an unknown method or path."""
        self._send_error(404, f"Unknown request URL: {self.command} {self.path}.")

    def _send_error(self, status: int, message: str) -> None:
        """An OpenAI-style error body; 429 and 5xx ask for a quick retry."""
        error = {"message": message, "type": _error_type(status), "code": None}
        retry = {"retry-after-ms": "1"} if status == 429 or status >= 500 else {}
        self._send_json(status, {"error": error}, retry)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """A JSON response with Content-Length (keeps the connection reusable)."""
        self._send_raw(status, _dumps(payload).encode(), "application/json", headers)

    def _send_raw(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """A response with Content-Length (keeps the connection reusable)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in getattr(self, "_extra_headers", {}).items():
            self.send_header(name, value)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, events: Iterator[_Event], controls: _Controls) -> None:
        """Server-sent events in chunked encoding, honouring chunk delay and cut-after."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in getattr(self, "_extra_headers", {}).items():
            self.send_header(name, value)
        self.end_headers()
        cut, sent = controls.cut_after, 0
        try:
            for index, event in enumerate(events):
                if cut is not None and (event.kind == "tail" or (event.kind == "content" and sent >= cut)):
                    self.close_connection = True
                    return
                if controls.cut_before_usage and event.kind == "usage":
                    self.close_connection = True
                    return
                if index and controls.chunk_delay_ms:
                    time.sleep(controls.chunk_delay_ms / 1000)
                data = event.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                sent += event.kind == "content"
            self.wfile.write(b"0\r\n\r\n")
        except ConnectionError:
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    """Threaded HTTP server that tracks open connections so it can drop them on close."""

    daemon_threads = True
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], owner: LocalServer) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track the connection, then serve it on its own thread."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget and close the connection."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Shut down every open (e.g. keep-alive) connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away; report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalServer:
    """A deterministic OpenAI-compatible server running on a background daemon thread.

    ``requests_seen`` counts HTTP requests; ``last_bodies`` holds the newest 100 parsed JSON bodies.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.requested_port = port
        self.requests_seen = 0
        self.last_bodies: list[dict[str, Any]] = _BoundedList(MAX_BODIES)
        self._attempts = _Attempts()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the requested one before ``start``)."""
        return self._httpd.server_address[1] if self._httpd else self.requested_port

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url``, e.g. ``http://127.0.0.1:8000/v1``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> Self:
        """Bind and serve on a daemon thread; starting twice is a no-op."""
        if self._httpd is None:
            self._httpd = _HTTPServer((self.host, self.requested_port), self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, drop open connections and join the thread."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_connections()
        thread.join()

    def reset(self) -> None:
        """Clear ``requests_seen``, ``last_bodies`` and retry attempt counts."""
        with self._lock:
            self.requests_seen = 0
        self.last_bodies.clear()
        self._attempts.clear()

    def _count_request(self) -> None:
        """Count one received HTTP request."""
        with self._lock:
            self.requests_seen += 1

    def _next_id(self) -> int:
        """The next response number (used in response ids)."""
        with self._lock:
            return next(self._ids)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
