"""Stream proxies: the user iterates the SDK's stream unchanged while the call's span follows it.

The span ends exactly once: when the stream is exhausted, closed, left through `with`, raises, or is
garbage-collected unfinished (the finalizer is why an abandoned stream still ends its span).
Chunks pass through a generator rather than a Python `__next__`: resuming a generator is the cheapest
per-chunk hook Python offers. It takes them from the SDK stream's `_iterator` while the stream class's
iteration is the SDK's own, which only passes them on: one generator step less a chunk. Sync and async
generators share what they do with a chunk (`_chunk_keeper`), which calls the operation's chunk reader
itself (`Call.chunk_reader`), with no call of the engine's in between: what a chunk costs is that step,
two calls and a look at its fields.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from time import perf_counter
from typing import Any

import wrapt

from .engine import Call, report_internal_error
from .operations import is_usage_chunk

# The generators hold the stream and the call but never the proxy: no reference cycle, so whichever
# of proxy and generator is dropped last ends the span at once. `for chunk in create(stream=True)`
# drops the proxy as the loop starts; the generator's finalizer covers that one.


# The usage chunk the package asks for comes right after the chunk that finishes the last choice: that
# chunk, and any after it, is held until the usage chunk has been read (or the stream ends), so that an
# app that stops reading at the finish reason (breaks out of its loop, leaves the block) still has its
# call priced. Chunks held that a loop could not hand over (it was closed, or cancelled, while they
# waited) are handed over first by the app's next loop over the stream.
_END = object()
_NO_HOLD = 1 << 62  # choices to finish before chunks are held: never
MAX_HELD = 64  # chunks held at most: a provider that sends no usage after the finish gets them all


def _choices_to_finish(call: Call, hide_usage_chunk: bool) -> int:
    """How many choices finish before the usage chunk asked for (the request's `n`); _NO_HOLD when the
    package asked for none."""
    if not hide_usage_chunk:
        return _NO_HOLD
    n = call.body.get("n")
    return n if n.__class__ is int and n > 0 else 1


def _holds(after: Any, keep: Callable[[Any], bool], pending: list) -> bool:
    """Hold `after` as well, unless it is the end or the usage chunk (read, and hidden); whether to read
    on."""
    if after is _END or not keep(after):
        return False
    pending.append(after)
    return True


def _follow(stream: Any, call: Call, hide_usage_chunk: bool, passes_on: bool, pending: list) -> Iterator[Any]:
    keep = _chunk_keeper(call, hide_usage_chunk)
    outcome, choices = call.outcome, _choices_to_finish(call, hide_usage_chunk)
    finished = outcome.finished
    chunks = iter(stream._iterator if passes_on else stream)
    try:
        while pending:
            yield pending.pop(0)
        for chunk in chunks:
            if keep(chunk):
                if len(finished) >= choices and outcome.usage is None:
                    pending.append(chunk)  # held, with any after it, until the usage chunk is read
                    failure = None
                    try:
                        while len(pending) < MAX_HELD and _holds(next(chunks, _END), keep, pending):
                            pass
                    except Exception as error:
                        failure = error  # raised once the app has the chunks, as it would have been
                    while pending:  # what a loop closed meanwhile does not take stays for the next
                        yield pending.pop(0)
                    if failure is not None:
                        raise failure
                    continue
                yield chunk
    except Exception as error:
        call.end(error)
        raise
    except BaseException:  # closed or collected before the end, or cancelled: not an error of the call
        call.end_dropped()
        raise
    call.end()


async def _follow_async(
    stream: Any, call: Call, hide_usage_chunk: bool, passes_on: bool, pending: list
) -> AsyncIterator[Any]:
    """`_follow` for an async stream."""
    keep = _chunk_keeper(call, hide_usage_chunk)
    outcome, choices = call.outcome, _choices_to_finish(call, hide_usage_chunk)
    finished = outcome.finished
    chunks = aiter(stream._iterator if passes_on else stream)
    try:
        while pending:
            yield pending.pop(0)
        async for chunk in chunks:
            if keep(chunk):
                if len(finished) >= choices and outcome.usage is None:  # as in `_follow`
                    pending.append(chunk)
                    failure = None
                    try:
                        while len(pending) < MAX_HELD and _holds(await anext(chunks, _END), keep, pending):
                            pass
                    except Exception as error:
                        failure = error
                    while pending:
                        yield pending.pop(0)
                    if failure is not None:
                        raise failure
                    continue
                yield chunk
    except Exception as error:
        call.end(error)
        raise
    except BaseException:
        call.end_dropped()
        raise
    call.end()


def _chunk_keeper(call: Call, hide_usage_chunk: bool) -> Callable[[Any], bool]:
    """What the follower does with each chunk: read it into the call (timing the first), and say whether
    the app gets it. With `hide_usage_chunk` (the package asked for usage), the usage-only chunk is
    kept from the app, and the `usage: null` the provider then adds to every other chunk is left out of
    its set fields: its `to_dict()`, `to_json()` and `model_fields_set` are as if unasked."""
    read, outcome = call.chunk_reader(), call.outcome

    def keep(chunk: Any) -> bool:
        if call.first_chunk_at is None:
            call.first_chunk_at = perf_counter()
        try:
            read_as = read(outcome, chunk)
            if read_as:
                return not hide_usage_chunk  # the usage chunk: the app's only if it asked for usage
            if read_as is None and hide_usage_chunk:
                fields_set = getattr(chunk, "__pydantic_fields_set__", None)  # None: not pydantic 2
                if fields_set is not None:
                    fields_set.discard("usage")
        except Exception:
            return not _hidden_after_failure(chunk, hide_usage_chunk)
        return True

    return keep


def _hidden_after_failure(chunk: Any, hide_usage_chunk: bool) -> bool:
    """Report the reader's failure on a chunk; True when the chunk is still to be hidden: the usage
    chunk asked for on the user's behalf reaches the user no more than when the reader works."""
    report_internal_error("reading a stream chunk")
    try:
        return hide_usage_chunk and is_usage_chunk(chunk)
    except Exception:
        report_internal_error("recognizing a usage chunk")
        return False


class _StreamProxy(wrapt.ObjectProxy):
    """What sync and async streams share: the call, the usage-chunk rule and the finalizer."""

    ITERATION = ""  # the name of the stream's iteration method

    def __init__(self, stream: Any, call: Call, hide_usage_chunk: bool, passes_on: bool = False) -> None:
        """`passes_on`: the stream's iteration only passes on what its `_iterator` yields (the SDK's
        own does), so the proxy iterates that itself: one generator step less a chunk."""
        super().__init__(stream)
        self._self_call = call
        self._self_hide_usage_chunk = hide_usage_chunk
        self._self_passes_on = passes_on
        self._self_chunks: Any = None
        self._self_pending: list = []  # chunks read ahead that a closed loop could not hand over
        self._self_response: Any = None

    def _self_chunk_iterator(self, follow: Any, frame: str) -> Any:
        """The generator a loop takes the chunks from: the one already under way, else a new one. As the
        SDK's stream hands each loop a new generator over one `_iterator`, a loop whose generator the app
        closed (`yield from` in a generator closed early, say) leaves the stream readable: the next loop
        reads on where it stopped. `frame` is the generator's frame attribute, None once it is over."""
        chunks = self._self_chunks
        if chunks is None or getattr(chunks, frame) is None:
            call, hide, passes_on = self._self_call, self._self_hide_usage_chunk, self._self_passes_on
            pending = self._self_pending
            self._self_chunks = chunks = follow(self.__wrapped__, call, hide, passes_on, pending)
            weakref.finalize(chunks, call.end_dropped)
        return chunks

    @property
    def response(self) -> Any:
        """The stream's HTTP response, as the app and the SDK's stream helpers see it: closing it ends
        the call (`client.chat.completions.stream()`'s block, left early, closes it, not the stream)."""
        if self._self_response is None:
            self._self_response = _ClosingResponse(self.__wrapped__.response, self._self_call)
        return self._self_response

    def __del__(self) -> None:
        # Dropped before iteration began: end the span (once iterating, the generator's finalizer does).
        call = getattr(self, "_self_call", None)
        if call is not None and self._self_chunks is None and not call.ended:
            call.end_dropped()


class _ClosingResponse(wrapt.ObjectProxy):
    """An HTTP response whose closing ends the call: nothing more of the stream comes. (The SDK's stream
    closes its own reference to the response when it ends or fails, not this one: its call ends as
    the stream does, with the stream's error.)"""

    def __init__(self, response: Any, call: Call) -> None:
        super().__init__(response)
        self._self_call = call

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_call.end()

    async def aclose(self) -> None:
        try:
            await self.__wrapped__.aclose()
        finally:
            self._self_call.end()


class StreamProxy(_StreamProxy):
    """Proxy for `openai.Stream`."""

    ITERATION = "__iter__"

    def __iter__(self) -> Iterator[Any]:
        return self._self_chunk_iterator(_follow, "gi_frame")

    def __next__(self) -> Any:
        return next(self.__iter__())

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_call.end()

    def __enter__(self) -> StreamProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncStreamProxy(_StreamProxy):
    """Proxy for `openai.AsyncStream`."""

    ITERATION = "__aiter__"

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._self_chunk_iterator(_follow_async, "ag_frame")

    async def __anext__(self) -> Any:
        return await self.__aiter__().__anext__()

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_call.end()

    @property
    def aclose(self) -> Callable[[], Awaitable[None]]:
        """The SDK's alias of `close()` (what `contextlib.aclosing` calls), where its stream has one: on
        the stream itself, it would call the stream's own `close()`, not this one."""
        self.__wrapped__.aclose  # noqa: B018  # AttributeError where it has none, as uninstrumented
        return self.close

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
