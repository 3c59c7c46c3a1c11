"""Stream proxies: the user iterates the SDK's stream unchanged while the call's span follows it.

The span ends exactly once: when the stream is exhausted, closed, left through `with`, raises, or is
garbage-collected unfinished (the finalizer is why an abandoned stream still reports its tokens).
"""

from __future__ import annotations

from typing import Any

import wrapt

from .engine import Call


class _StreamProxy(wrapt.ObjectProxy):
    """What sync and async streams share: the call, the usage-chunk rule and the finalizer."""

    def __init__(self, stream: Any, call: Call, hide_usage_chunk: bool) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_hide_usage_chunk = hide_usage_chunk

    def __del__(self) -> None:
        # Abandoned unfinished: end the span with what was seen so far.
        call = getattr(self, "_self_call", None)
        if call is not None and not call.ended:
            call.end()


class StreamProxy(_StreamProxy):
    """Proxy for `openai.Stream`."""

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        call = self._self_call
        while True:
            try:
                chunk = self.__wrapped__.__next__()
            except StopIteration:
                call.end()
                raise
            except BaseException as error:
                call.end(error)
                raise
            if not (call.read_chunk(chunk) and self._self_hide_usage_chunk):
                return chunk

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

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        call = self._self_call
        while True:
            try:
                chunk = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                call.end()
                raise
            except BaseException as error:
                call.end(error)
                raise
            if not (call.read_chunk(chunk) and self._self_hide_usage_chunk):
                return chunk

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_call.end()

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
