"""The `requests` patch points: `Session.request` and `Session.send`, which every call goes through.

A POST whose URL path ends in an OpenAI-compatible endpoint is a call; anything else passes through
after one string check. Nothing the user sends or reads is modified: a streamed body is observed as the
user consumes it, through `iter_lines`, `iter_content`, `.content` or the raw body's reads.
"""

from __future__ import annotations

import functools
import logging
import os
import weakref
from collections.abc import Callable, Collection, Iterator
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from ..bodies import BodyWatch, read_body
from ..budgets import BudgetExceededError
from ..engine import Call, current_call, report_internal_error
from ..json_tail import LARGE_BODY, decode_object, top_level_members
from ..operations import CHAT_COMPLETIONS, Operation, operation_for
from ..package import _instruments_requests
from ..providers import Endpoint
from ..request_attributes import REQUEST_KEYS
from ..telemetry import Telemetry
from .on_import import PatchOnImport, unwrap_own

PATHS_ENV = "OTEL_TOKENCOST_REQUESTS_PATHS"
STANDARD_SUFFIXES = ("/chat/completions", "/completions", "/embeddings", "/responses", "/responses/compact")
MAX_TARGETS = 256  # endpoint URLs whose operation and endpoint are kept
logger = logging.getLogger(__name__)


class RequestsInstrumentor(BaseInstrumentor):
    """Spans, token usage and cost for raw `requests` calls to OpenAI-compatible endpoints."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments_requests

    def _instrument(self, **kwargs: Any) -> None:
        self.telemetry = telemetry = Telemetry.for_instrumentor(kwargs)
        extra = _extra_suffixes(os.environ.get(PATHS_ENV, ""))

        def apply() -> None:
            self._patch = patch = _Patch(telemetry, extra)
            wrapt.wrap_function_wrapper("requests.sessions", "Session.request", patch.request)
            wrapt.wrap_function_wrapper("requests.sessions", "Session.send", patch.send)

        self._patching = PatchOnImport("requests", apply)

    def _uninstrument(self, **kwargs: Any) -> None:
        if not self._patching.cancel():
            return  # requests was never imported: nothing was patched
        import requests

        patch = getattr(self, "_patch", None)
        if patch is None:
            return  # patching failed before it wrapped anything
        patch.active = False  # a wrapper another tool wrapped over stays, passing calls through
        unwrap_own(requests.Session, "request", patch.request)
        unwrap_own(requests.Session, "send", patch.send)


def _extra_suffixes(setting: str) -> tuple[str, ...]:
    """OTEL_TOKENCOST_REQUESTS_PATHS: comma-separated path suffixes, each as `/path`. One that names no
    path (`/`) would make every URL ending in a slash a call: it is reported and left out."""
    suffixes = []
    for entry in setting.split(","):
        path = entry.strip().strip("/")
        if path:
            suffixes.append("/" + path)
        elif entry.strip():
            logger.warning("otel_tokencost: %s entry %r names no path; left out", PATHS_ENV, entry.strip())
    return tuple(suffixes)


class _Patch:
    """The wrappers of `Session.request` and `Session.send`.

    `Session.request` (behind `requests.post` and `Session.post`) is wrapped as well as `send` so that
    the GenAI span starts outside any `send` wrapper, whatever order instrumentations were applied in:
    an HTTP span from opentelemetry-instrumentation-requests then always nests under it. Inside a call
    the `send` wrapper passes through; called directly, `send` is measured itself.
    """

    def __init__(self, telemetry: Telemetry, extra_suffixes: tuple[str, ...]) -> None:
        self.telemetry = telemetry
        self.active = True  # False once uninstrumented: calls pass through untouched
        self.suffixes = STANDARD_SUFFIXES + extra_suffixes
        self.extra_suffixes = extra_suffixes
        self._targets: dict[str, tuple[Operation, Endpoint]] = {}

    def request(self, wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        # requests.post and Session.post pass everything after method and url by keyword; anything
        # more unusual is left to the `send` wrapper.
        method = args[0] if args else kwargs.get("method")
        url = args[1] if len(args) > 1 else kwargs.get("url")
        if (
            not self.active
            or len(args) > 2
            or method.__class__ is not str
            or (method != "POST" and method.upper() != "POST")
        ):
            return wrapped(*args, **kwargs)
        path = self._llm_path(url)
        if path is None:
            return wrapped(*args, **kwargs)
        body = kwargs.get("json")
        if not isinstance(body, dict):
            body = kwargs.get("data")
        return self._measure(wrapped, args, kwargs, path, body)

    def send(self, wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        request = args[0] if args else kwargs.get("request")
        if getattr(request, "method", None) != "POST":
            return wrapped(*args, **kwargs)
        path = self._llm_path(getattr(request, "url", None))
        if path is None or current_call() is not None or not self.active:
            return wrapped(*args, **kwargs)  # not a call, or inside one that `request` measures
        return self._measure(wrapped, args, kwargs, path, request.body)

    def _llm_path(self, url: Any) -> str | None:
        """The URL without its query and fragment when its path names an OpenAI-compatible endpoint, else
        None."""
        if url.__class__ is not str:
            return None
        plain = "?" not in url and "#" not in url
        if plain:  # the common case, decided without a copy of the URL
            if url.endswith(self.suffixes):
                return url
            if not url.endswith("/"):
                return None
        path = url.split("#", 1)[0].split("?", 1)[0].rstrip("/")
        return path if path.endswith(self.suffixes) else None

    def _measure(self, wrapped: Any, args: tuple, kwargs: dict, path: str, body: Any) -> Any:
        call = self._start(body, path)
        if call is None:
            return wrapped(*args, **kwargs)
        response = call.invoke(wrapped, args, kwargs)
        try:
            _follow(call, response)
        except Exception:
            report_internal_error("reading the requests response")
            call.end()
        return response

    def _start(self, body: Any, path: str) -> Call | None:
        """Start the call of a request whose body is the app's dict (`json=`), or as it was sent."""
        try:
            if not isinstance(body, dict):
                body = _json_body(body, self.telemetry.capture_content)
            operation, endpoint = self._targets.get(path) or self._target(path)
            return self.telemetry.start(endpoint, operation, body)
        except BudgetExceededError:
            raise  # the budget's refusal is meant for the app
        except Exception:
            report_internal_error("starting the requests span")
            return None

    def _target(self, path: str) -> tuple[Operation, Endpoint]:
        """The operation an endpoint's URL names and the endpoint of its base URL (the URL less the
        operation's suffix), worked out once per URL: a service calls the same few.

        Extra suffixes (OTEL_TOKENCOST_REQUESTS_PATHS) are read as Chat Completions; its usage reader
        also understands the Responses API's usage shape.
        """
        suffix = next(suffix for suffix in self.suffixes if path.endswith(suffix))
        operation = CHAT_COMPLETIONS if suffix in self.extra_suffixes else operation_for(path)
        target = operation or CHAT_COMPLETIONS, self.telemetry.endpoint(path[: -len(suffix)])
        if len(self._targets) >= MAX_TARGETS:
            self._targets.clear()  # endless URLs (a path per tenant, say): start over rather than grow
        self._targets[path] = target
        return target


def _json_body(raw_body: Any, capture_content: bool) -> dict:
    """The request body the app sent as bytes or text, as the object it should be; {} when it is not.

    A large body that is mostly long strings (an image sent as a base64 data URL, say) is not decoded
    whole: only the members a call reads are, unless message content is captured.
    """
    if raw_body is None or raw_body.__class__ not in (bytes, str):
        return {}
    if len(raw_body) > LARGE_BODY and not capture_content:
        raw = raw_body if raw_body.__class__ is bytes else raw_body.encode("utf-8", "surrogatepass")
        members = top_level_members(raw, REQUEST_KEYS)
        if members is not None:
            return members
    return decode_object(raw_body) or {}


def _follow(call: Call, response: Any) -> None:
    """Finish the call from a body read already, or watch a streamed one as the user reads it.

    `send` reads the body unless it streams (as the app asks, or a `send` override decides); a response
    hook or an override may have read a streamed one. A response a cache served (requests-cache's
    `from_cache`) was not billed: its call has no usage and no cost.
    """
    status = response.status_code
    error_type = str(status) if status.__class__ is int and status >= 400 else None
    if getattr(response, "from_cache", False) is True:
        call.end(error_type=error_type)
        return
    headers = response.headers
    call.read_headers(headers)
    content = getattr(response, "_content", False)
    if content is not False:
        read_body(call, content)
        call.end(error_type=error_type)
        return
    if response.raw is None:  # a transport adapter's response without a body
        call.end(error_type=error_type)
        return
    watch = BodyWatch(call, headers.get("content-type") or "", error_type)
    response.raw = RawProxy(response.raw, watch, headers.get("content-encoding"))
    weakref.finalize(response, watch.end_dropped)  # dropped unclosed: ends with what was read


class RawProxy(wrapt.ObjectProxy):
    """The raw body under a streamed `requests.Response`: bytes pass through untouched.

    It is urllib3's response unless a transport adapter hands on a plain file object instead: then
    the proxy has no `stream` or `release_conn` either, so that `requests` reads it as it would the
    file (a method the file lacks must stay absent, not fail when called). What the app reads still
    compressed (urllib3 decodes only when asked: `requests` asks in `iter_content`, not in `raw.read`)
    is decoded, a copy, for the watch.
    """

    def __init__(self, raw: Any, watch: BodyWatch, content_encoding: str | None = None) -> None:
        super().__init__(raw)
        self._self_watch = watch
        self._self_decoding = _Decoding.of(content_encoding, raw)

    @property
    def stream(self) -> Callable[..., Iterator[bytes]]:
        return functools.partial(self._self_follow, self.__wrapped__.stream)  # absent on a plain file

    @property
    def read_chunked(self) -> Callable[..., Iterator[bytes]]:
        return functools.partial(self._self_follow, self.__wrapped__.read_chunked)

    @property
    def release_conn(self) -> Callable[[], None]:
        self.__wrapped__.release_conn  # noqa: B018 - AttributeError (absent) on a plain file object
        return self._self_release_conn

    def read(self, amt: int | None = None, *args: Any, **kwargs: Any) -> bytes:
        data = self._self_reading(self.__wrapped__.read, amt, *args, **kwargs)
        self._self_seen(data, _decodes(args, kwargs), amt)
        if amt is None:  # the whole rest of the body
            self._self_watch.end()
        return data

    # The other ways to read a file object, each present only when the body has it (`stream` above).

    @property
    def read1(self) -> Callable[..., bytes]:
        return functools.partial(self._self_read_some, self.__wrapped__.read1)

    @property
    def readline(self) -> Callable[..., bytes]:
        return functools.partial(self._self_read_some, self.__wrapped__.readline)

    @property
    def readinto(self) -> Callable[[Any], int | None]:
        return functools.partial(self._self_readinto, self.__wrapped__.readinto)

    @property
    def readlines(self) -> Callable[..., list[bytes]]:
        return functools.partial(self._self_readlines, self.__wrapped__.readlines)

    @property
    def data(self) -> bytes:
        """urllib3's whole body, read (the rest of it) and kept on first use."""
        data = self.__wrapped__.data
        if data and not self._self_watch.call.ended:  # else read again from urllib3's copy: seen
            self._self_seen(data, None, None)
        self._self_watch.end()
        return data

    @property
    def json(self) -> Callable[[], Any]:
        self.__wrapped__.json  # noqa: B018 - AttributeError (absent) before urllib3 2
        return self._self_json

    def __iter__(self) -> Iterator[bytes]:
        return self._self_watch.follow(iter(self.__wrapped__))  # urllib3's lines are decoded

    def _self_follow(self, read: Callable[..., Iterator[bytes]], *args: Any, **kwargs: Any) -> Any:
        """The pieces a generator of the body's (`stream`, `read_chunked`) yields, watched."""
        decode = self._self_decoding.decode(_decodes(args[1:], kwargs), self)
        return self._self_watch.follow(read(*args, **kwargs), decode)

    def _self_json(self) -> Any:
        self.data  # noqa: B018 - the body, read through the watch: urllib3's json() reads its own
        return self.__wrapped__.json()

    def _self_reading(self, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """What the body's `read` method returns; an error it raises ends the call (a cancel or an
        interrupt too, as no error of the call's)."""
        try:
            return read(*args, **kwargs)
        except Exception as error:
            self._self_watch.call.end(error)
            raise
        except BaseException:
            self._self_watch.call.end()
            raise

    def _self_read_some(self, read: Callable[..., bytes], *args: Any, **kwargs: Any) -> bytes:
        """Bytes read by `read1` or `readline`, watched."""
        data = self._self_reading(read, *args, **kwargs)
        return self._self_seen(data, _decodes(args[1:], kwargs), args[0] if args else None)

    def _self_seen(self, data: bytes, decoded: bool | None, asked: int | None) -> bytes:
        """Bytes the app read, fed to the watch (decoded if the read did not): none is the end of the
        body, unless none were asked for."""
        decode = self._self_decoding.decode(decoded, self)
        self._self_watch.feed(decode(data) if decode is not None else data)
        if not data and asked != 0:
            self._self_watch.end()
        return data

    def _self_readinto(self, readinto: Callable[[Any], int | None], buffer: Any) -> int | None:
        count = self._self_reading(readinto, buffer)
        if count is not None:
            view = memoryview(buffer).cast("B")
            self._self_seen(bytes(view[:count]), None, len(view))
        return count

    def _self_readlines(self, readlines: Callable[..., list[bytes]], hint: int | None = -1) -> list[bytes]:
        lines = self._self_reading(readlines, hint)
        self._self_seen(b"".join(lines), None, None if hint is None or hint <= 0 else hint)
        if hint is None or hint <= 0:  # all the lines there were
            self._self_watch.end()
        return lines

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_watch.end()

    def _self_release_conn(self) -> None:
        try:
            self.__wrapped__.release_conn()
        finally:
            self._self_watch.end()


def _decodes(args: tuple, kwargs: dict) -> bool | None:
    """The `decode_content` a urllib3 read was given (its argument after the amount), if any."""
    return kwargs.get("decode_content", args[0] if args else None)


MAX_DECODED = 64 << 20  # bytes of a compressed body decoded for the watch; past them it is no LLM reply


class _Decoding:
    """A compressed body's decoder for the watch, made on its first undecoded read."""

    __slots__ = ("_decoded", "_decoder", "_encoding")

    NONE: _Decoding

    def __init__(self, encoding: str | None) -> None:
        self._encoding = encoding
        self._decoder: Any = None
        self._decoded = 0

    @classmethod
    def of(cls, content_encoding: str | None, raw: Any) -> _Decoding:
        """The decoding of a body in this content encoding, where urllib3 would decode it (it passes an
        encoding it does not know through as it is); NONE for a plain file's body."""
        encoding = (content_encoding or "").strip().lower()
        known = getattr(raw, "CONTENT_DECODERS", ())
        if encoding and all(member.strip() in known for member in encoding.split(",")):
            return cls(encoding)
        return cls.NONE

    def decode(self, decoded: bool | None, raw: Any) -> Callable[[bytes], bytes] | None:
        """How to decode what a read returned: None when it is plain (the read decoded it, or the body is
        not compressed). `decoded` is the read's `decode_content`; None, the body's own setting."""
        if self._encoding is None:
            return None
        if decoded is None:
            decoded = getattr(raw.__wrapped__, "decode_content", True)  # a plain file: as it is
        return None if decoded else self._decode

    def _decode(self, data: bytes) -> bytes:
        left = MAX_DECODED - self._decoded
        if left <= 0 or not data:
            return b""
        try:
            if self._decoder is None:
                from urllib3.response import _get_decoder  # what urllib3 decodes with: gzip, deflate, br, ...

                self._decoder = _get_decoder(self._encoding)
            try:
                plain = self._decoder.decompress(data, max_length=left)  # urllib3 2.6 and later
            except TypeError:
                plain = self._decoder.decompress(data)
        except Exception:  # not what its content encoding says (or urllib3 changed): left unread
            logger.debug("otel_tokencost: a %s body could not be decoded", self._encoding, exc_info=True)
            self._decoded = MAX_DECODED
            return b""
        self._decoded += len(plain)
        return plain


_Decoding.NONE = _Decoding(None)
