"""Server-sent events watched as raw bytes pass by, for transports whose streams are never modified.

Only the events that can carry what the span needs are decoded: the first (model, id), any that
finishes a choice, and the last two after it (usage, Responses' `response.completed`); every event where
message content is captured (each carries a piece of the text). Memory is bounded: one
partial line (capped) and two event lines, however long the stream. A line is kept as it came: its
payload is cut out (a copy) only for an event that is read.
"""

from __future__ import annotations

import re

from .engine import Call, report_internal_error
from .json_tail import LARGE_BODY, decode_object

# A longer line is not an event this observer needs. A Responses event that repeats a generated image
# is a few MB; the app's own reading holds the same line.
MAX_LINE = 16 << 20
# A choice finishes in this event: its finish_reason is a string, not null. One scan of the line.
finishes_a_choice = re.compile(rb'"finish_reason"\s*:\s*"').search


class SSEObserver:
    """Feeds a call with the events of an OpenAI-compatible SSE body, chunk by chunk."""

    __slots__ = ("_call", "_every", "_first_done", "_last", "_previous", "_tail", "_tail_size")

    def __init__(self, call: Call) -> None:
        self._call = call
        self._tail: list[bytes] = []  # the pieces of the line not ended yet, joined when it ends
        self._tail_size = 0
        self._first_done = False
        self._previous: bytes | None = None
        self._last: bytes | None = None
        self._every = call.telemetry.capture_content  # then each event's text is recorded: read them all

    def feed(self, data: bytes) -> bool:
        """Take the next bytes of the body, as the user reads them; True once the stream says it is done
        (`data: [DONE]`): nothing after it is read, and the call can end as the app reads that line."""
        if not data:
            return False
        if b"\n" not in data:  # a long line read in small pieces: kept, not copied at every piece
            self._keep(data)
            return False
        if self._tail:
            self._tail.append(data)
            data = b"".join(self._tail)
            self._tail.clear()
            self._tail_size = 0
        lines = data.split(b"\n")
        unended = lines.pop()
        if unended:
            self._keep(unended)
        for line in lines:  # noqa: SIM110 - a loop, not any(): no generator made per piece read
            if line.startswith(b"data:") and self._event(line):
                return True
        return False

    def _keep(self, piece: bytes) -> None:
        """Keep a piece of the unended line, unless the line grows past MAX_LINE (then drop it)."""
        self._tail_size += len(piece)
        if self._tail_size > MAX_LINE:
            self._tail.clear()
            self._tail_size = 0
        elif piece:
            self._tail.append(piece)

    def _event(self, line: bytes) -> bool:
        """Read, keep or skip a `data:` line; True when it is `[DONE]`, the stream's end."""
        if not line.endswith(b"}"):  # `[DONE]`, no payload, or an object followed by whitespace
            line = line.rstrip()
            if not line.endswith(b"}"):
                return line[5:].strip() == b"[DONE]"  # not an object: no event to read
        if self._every or not self._first_done:
            self._first_done = True
            self._read(line)
        elif finishes_a_choice(line):
            self._read(line)
            self._previous = self._last = None  # older than this one: a running usage total before it
        else:
            self._previous, self._last = self._last, line
        return False

    def finish(self) -> None:
        """The body ended: read the trailing events (usage comes last)."""
        tail = b"".join(self._tail)
        self._tail.clear()
        self._tail_size = 0
        if tail.startswith(b"data:"):
            self._event(tail)
        for line in (self._previous, self._last):
            if line is not None:
                self._read(line)
        self._previous = self._last = None

    def _read(self, line: bytes) -> None:
        payload, event = line[5:], None
        walk = self._call.operation.walk_event
        if walk is not None and len(payload) > LARGE_BODY and not self._call.telemetry.capture_content:
            event = walk(payload)  # a Responses event with an image generated, say: not decoded whole
        if event is None:
            event = decode_object(payload)  # None when malformed: the provider's problem, not the app's
        if event is not None:
            try:
                self._call.read_chunk(event)
            except Exception:
                report_internal_error("reading a stream event")
