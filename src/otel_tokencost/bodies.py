"""Raw response bodies read as the app reads them: a JSON document or SSE events, for a transport that
hands the body over unread (`requests` with `stream=True`, the openai SDK's raw responses).

Nothing the app reads is changed: each piece is looked at as it passes, and the call ends, once, when
the body does (or when the app closes it), with what was seen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .engine import Call, report_internal_error
from .json_tail import LARGE_BODY, decode_object, trailing_members
from .sse import SSEObserver

MAX_KEPT = 16 << 20  # bytes of a streamed JSON body kept to read it whole
TAIL_WINDOW = 64 << 10  # bytes kept of a larger one, for its trailing members


class BodyWatch:
    """One response's raw body, read piece by piece by the app: fed to the observer its content type
    calls for, and the end of the call when the body ends."""

    __slots__ = ("_error_type", "_observer", "call")

    def __init__(self, call: Call, content_type: str, error_type: str | None = None) -> None:
        self.call = call
        self._observer = _observer_for(call, content_type)
        self._error_type = error_type

    def feed(self, data: bytes) -> None:
        """The next bytes the app read: the call ends as they end an event stream (`data: [DONE]`)."""
        observer = self._observer
        if observer is not None:
            try:
                done = observer.feed(data)
            except Exception:
                report_internal_error("reading a response body")
                return
            if done:
                self.end()

    def end(self, dropped: bool = False) -> None:
        """The body ended, or the app is done with it: read what was seen and end the call (once).
        `dropped`: the app dropped the response, and a finalizer ends it (`Call.end_dropped`)."""
        observer, self._observer = self._observer, None
        if observer is None or self.call.ended:
            return
        try:
            observer.finish()
        except Exception:
            report_internal_error("reading the end of a response body")
        (self.call.end_dropped if dropped else self.call.end)(error_type=self._error_type)

    def end_dropped(self) -> None:
        """`end` for a response the app dropped, from its finalizer."""
        self.end(dropped=True)

    def follow(
        self, pieces: Iterator[bytes], decode: Callable[[bytes], bytes] | None = None
    ) -> Iterator[bytes]:
        """`pieces` unchanged, watched (`decode`d first, when they are compressed); the call ends with
        them, or with the error they raise."""
        with self:
            for data in pieces:
                self.feed(data if decode is None else decode(data))
                yield data

    async def follow_async(self, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`follow` for an async iterator."""
        with self:
            async for data in pieces:
                self.feed(data)
                yield data

    def __enter__(self) -> BodyWatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: object) -> None:
        """The pieces ended (the body did), failed (so does the call), or were left, closed or cancelled
        (the app closes the response, or drops it)."""
        if kind is None:
            self.end()
        elif issubclass(kind, Exception):
            self.call.end(error)


def _observer_for(call: Call, content_type: str) -> JSONObserver | SSEObserver | SniffingObserver:
    """The observer of a body of this content type: JSON, SSE, or whichever the body turns out to be."""
    if "json" in content_type:
        return JSONObserver(call)
    if "event-stream" in content_type:
        return SSEObserver(call)
    return SniffingObserver(call)


def read_body(call: Call, content: Any, fragment: bool = False) -> None:
    """Read a whole body: SSE events (as its first lines say, or as the request asked for a stream and
    it is not a JSON object), else JSON. A `fragment` is the end of a body whose start is gone: only
    trailing members can be read.

    An embeddings body's members are read from its end. A large body (over LARGE_BODY) is walked to the
    members the call reads, the rest stepped over (a generated image or audio), unless message content is
    captured: that is read from the rest. Any other body, or one whose walk fails, is decoded whole.
    """
    if not content or content.__class__ is not bytes:
        return
    if _is_sse(content, call.body.get("stream") is True):
        observer = SSEObserver(call)
        observer.feed(content)
        observer.finish()
        return
    operation, members = call.operation, None
    if operation.tail_keys:
        members = trailing_members(content, operation.tail_keys, fragment)
    elif (
        len(content) > LARGE_BODY
        and not fragment
        and operation.walk_body is not None
        and not call.telemetry.capture_content
    ):
        members = operation.walk_body(content)
    if members is not None:
        call.read(members)
        return
    if fragment:
        return
    body = decode_object(content)
    if body is not None:  # else an HTML error page, say: the span keeps its status and error.type
        call.read(body)


class JSONObserver:
    """A whole JSON body read through a streamed response (`stream=True` on a call that does not
    stream): the pieces are kept as they pass and the body is read when it ends.

    Past MAX_KEPT bytes only the last TAIL_WINDOW are kept, enough for an embeddings body's trailing
    `model` and `usage`; a body that large is never a chat completion.
    """

    __slots__ = ("_call", "_kept", "_pieces", "_seen")

    def __init__(self, call: Call) -> None:
        self._call = call
        self._pieces: deque[bytes] = deque()
        self._kept = self._seen = 0

    def feed(self, data: bytes) -> bool:
        if not data:
            return False
        self._pieces.append(data)
        self._kept += len(data)
        self._seen += len(data)
        if self._seen > MAX_KEPT:
            pieces = self._pieces
            while self._kept - len(pieces[0]) >= TAIL_WINDOW:
                self._kept -= len(pieces.popleft())
        return False

    def finish(self) -> None:
        body = b"".join(self._pieces)
        self._pieces.clear()
        read_body(self._call, body, fragment=self._seen > MAX_KEPT)


class SniffingObserver:
    """A body whose content type names neither JSON nor SSE (none, or `text/plain`): read as JSON when
    it starts as an object, else as SSE events, which never start with a brace."""

    __slots__ = ("_call", "_observer")

    def __init__(self, call: Call) -> None:
        self._call = call
        self._observer: JSONObserver | SSEObserver | None = None

    def feed(self, data: bytes) -> bool:
        observer = self._observer
        if observer is None:
            start = data.lstrip()[:1]
            if not start:
                return False  # blank so far: it says nothing, and neither reading misses it
            observer = JSONObserver(self._call) if start == b"{" else SSEObserver(self._call)
            self._observer = observer
        return observer.feed(data)

    def finish(self) -> None:
        if self._observer is not None:
            self._observer.finish()


def _is_sse(content: bytes, stream_requested: bool) -> bool:
    """Whether a whole body is SSE events: it says so in its first lines, or the request asked for a
    stream and the body is not a JSON object (a server that does not stream answers with one)."""
    if content.startswith(b"data:") or b"\ndata:" in content[:512]:
        return True
    return stream_requested and content[:64].lstrip()[:1] != b"{"
