"""Server-sent events watched as raw bytes pass by, for transports whose streams are never modified.

Only the events that can carry what the span needs are decoded: the first (model, id), any that
finishes a choice, and the last two (usage, Responses' `response.completed`). Memory is bounded: one
partial line (capped) and two event payloads, however long the stream.
"""

from __future__ import annotations

import json

from .engine import Call, report_internal_error

MAX_LINE = 1 << 20  # a longer line is not an event this observer needs
FINISH_MARKERS = (b'"finish_reason":"', b'"finish_reason": "')


class SSEObserver:
    """Feeds a call with the events of an OpenAI-compatible SSE body, chunk by chunk."""

    __slots__ = ("_call", "_first_done", "_last", "_previous", "_tail")

    def __init__(self, call: Call) -> None:
        self._call = call
        self._tail = b""
        self._first_done = False
        self._previous: bytes | None = None
        self._last: bytes | None = None

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the body, as the user reads them."""
        if not data:
            return
        if self._tail:
            data = self._tail + data
        lines = data.split(b"\n")
        tail = lines.pop()
        self._tail = tail if len(tail) <= MAX_LINE else b""
        for line in lines:
            if line.startswith(b"data:"):
                self._event(line[5:].strip())

    def _event(self, payload: bytes) -> None:
        if not payload or payload == b"[DONE]":
            return
        if not self._first_done:
            self._first_done = True
            self._read(payload)
        elif FINISH_MARKERS[0] in payload or FINISH_MARKERS[1] in payload:
            self._read(payload)
        else:
            self._previous, self._last = self._last, payload

    def finish(self) -> None:
        """The body ended: read the trailing events (usage comes last)."""
        if self._tail.startswith(b"data:"):
            self._event(self._tail[5:].strip())
        self._tail = b""
        for payload in (self._previous, self._last):
            if payload is not None:
                self._read(payload)
        self._previous = self._last = None

    def _read(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            return  # a malformed event is the provider's problem, not the app's
        if isinstance(event, dict):
            try:
                self._call.read_chunk(event)
            except Exception:
                report_internal_error("reading a stream event")
