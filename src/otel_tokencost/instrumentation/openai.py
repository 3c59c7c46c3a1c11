"""The openai SDK patch point: `SyncAPIClient.request` and `AsyncAPIClient.request`.

Every endpoint goes through one of these two methods, retries included, in openai 1.x, 2.x and 3.x,
so one wrapper gives one span per logical call. This module turns a call into what the engine needs
and hands back exactly what the SDK returned (or a transparent proxy of it).
"""

from __future__ import annotations

import inspect
import logging
import os
import weakref
from collections.abc import Callable, Collection, Mapping
from types import FunctionType
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from ..bodies import BodyWatch, read_body
from ..budgets import BudgetExceededError
from ..engine import Call, current_call, report_internal_error
from ..locks import fork_safe_lock
from ..operations import Operation, operation_for
from ..package import _instruments_openai
from ..providers import Endpoint, asks_for_stream_usage
from ..stream import AsyncStreamProxy, StreamProxy
from ..telemetry import Telemetry
from .on_import import PatchOnImport, unwrap_own

STREAM_USAGE_ENV = "OTEL_TOKENCOST_STREAM_USAGE"
MAX_ENDPOINTS = 256  # clients' base URLs kept (their endpoints, and those that refuse stream options)
logger = logging.getLogger(__name__)


class OpenAIInstrumentor(BaseInstrumentor):
    """Spans, token usage and cost for every call of the openai SDK."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments_openai

    def _instrument(self, **kwargs: Any) -> None:
        self.telemetry = telemetry = Telemetry.for_instrumentor(kwargs)
        inject_usage = _injects_stream_usage()

        def apply() -> None:
            self._patch = patch = _Patch(telemetry, inject_usage)
            wrapt.wrap_function_wrapper("openai._base_client", "SyncAPIClient.request", patch.sync_request)
            wrapt.wrap_function_wrapper("openai._base_client", "AsyncAPIClient.request", patch.async_request)
            # An app that imports the SDK makes calls: the prices load beside its import (a twentieth
            # of it), not in the first call. (An app may import `requests` for anything else: its first
            # call priced loads them.)
            telemetry.preload_prices()

        self._patching = PatchOnImport("openai", apply)

    def _uninstrument(self, **kwargs: Any) -> None:
        if not self._patching.cancel():
            return  # openai was never imported: nothing was patched
        from openai._base_client import AsyncAPIClient, SyncAPIClient

        patch = getattr(self, "_patch", None)
        if patch is None:
            return  # patching failed before it wrapped anything
        patch.active = False  # a wrapper another tool wrapped over stays, passing calls through
        for client, request in ((SyncAPIClient, patch.sync_request), (AsyncAPIClient, patch.async_request)):
            unwrap_own(client, "request", request)
            unwrap_own(client, "_process_response", _read_headers)


def _injects_stream_usage() -> bool:
    """OTEL_TOKENCOST_STREAM_USAGE: `inject` (the default) or `off`; anything else is reported."""
    value = os.environ.get(STREAM_USAGE_ENV, "").strip().lower() or "inject"
    if value not in ("inject", "off"):
        logger.warning("otel_tokencost: %s=%r is not inject or off; using inject", STREAM_USAGE_ENV, value)
    return value != "off"


def _read_headers(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    """Hand the final HTTP response's headers to the call (the parsed result no longer has them).

    Sync and async alike: the async method's coroutine is returned for the SDK to await. Installed on
    the first call to a host that is not a provider's own API (a gateway may state the cost in a header):
    calls to OpenAI and the other known providers never pay for it.
    """
    call = current_call()
    response = kwargs.get("response")
    if call is not None and response is not None:
        call.read_headers(response.headers)
    return wrapped(*args, **kwargs)


def _sdk_function(function: Any) -> Any:
    """`function` if it is the openai SDK's own plain function (not another tool's or a wrapper), else
    None."""
    if type(function) is FunctionType and function.__module__.startswith("openai."):
        return function
    return None


class _Patch:
    """The two wrappers and what they share: starting the call and handling what the SDK returned."""

    def __init__(self, telemetry: Telemetry, inject_usage: bool) -> None:
        self.telemetry = telemetry
        self.inject_usage = inject_usage
        self.active = True  # False once uninstrumented: calls pass through untouched
        self._endpoints: dict[Any, tuple[Any, Endpoint]] = {}  # by base-URL object's id, or URL text
        self._stores_base_url: dict[type, bool] = {}  # by client class: see `_stores_base_url`
        self._refusing: set[str] = set()  # base URLs whose provider refused `stream_options`
        self._reads_headers = False
        self._lock = fork_safe_lock()
        from openai import AsyncStream, Stream
        from openai._constants import RAW_RESPONSE_HEADER
        from openai._legacy_response import LegacyAPIResponse
        from openai._response import BaseAPIResponse

        self.stream_types = {Stream: StreamProxy, AsyncStream: AsyncStreamProxy}
        self.stream_bases = tuple(self.stream_types)
        # Each stream class's own iteration, while it is the SDK's: it passes on what `_iterator` yields.
        # Another tool's (set on the class before or after this) is not, and the proxy goes through it.
        self.passing_on = {
            kind: _sdk_function(getattr(kind, proxy.ITERATION)) for kind, proxy in self.stream_types.items()
        }
        self.raw_types = (LegacyAPIResponse, BaseAPIResponse)
        self.legacy_type = LegacyAPIResponse
        self.raw_response_header = RAW_RESPONSE_HEADER
        try:  # the HTTP response classes the app may ask for (`cast_to`): httpx2's, and httpx's too
            from openai._httpx2 import http_response_types
        except ImportError:  # openai before 3
            import httpx

            def http_response_types() -> tuple[type, ...]:
                return (httpx.Response,)

        self.http_response_types = http_response_types

    def sync_request(self, wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        started = self._start(instance, args, kwargs)
        if started is None:
            return wrapped(*args, **kwargs)
        call, asked = started
        if asked is not None:
            wrapped = self._resending(wrapped, asked)
        result = call.invoke(wrapped, args, kwargs)
        return self._returned(call, result, _hides_usage(asked))  # once sent: a refusal takes it back

    async def async_request(self, wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        started = self._start(instance, args, kwargs)
        if started is None:
            return await wrapped(*args, **kwargs)
        call, asked = started
        if asked is not None:
            wrapped = self._resending_async(wrapped, asked)
        result = await call.invoke_async(wrapped, args, kwargs)
        return self._returned(call, result, _hides_usage(asked))

    def _resending(self, wrapped: Any, asked: _UsageAsked) -> Any:
        """`wrapped`, sent again as the app made it if the provider refuses the usage asked for; the
        request's options are put back as the app made them once sent (the SDK sends a copy of them)."""

        def send(*args: Any, **kwargs: Any) -> Any:
            try:
                try:
                    return wrapped(*args, **kwargs)
                except Exception as error:
                    if not self._refused(asked, error):
                        raise
                return wrapped(*args, **kwargs)
            finally:
                asked.put_back()

        return send

    def _resending_async(self, wrapped: Any, asked: _UsageAsked) -> Any:
        """`_resending` for a coroutine function."""

        async def send(*args: Any, **kwargs: Any) -> Any:
            try:
                try:
                    return await wrapped(*args, **kwargs)
                except Exception as error:
                    if not self._refused(asked, error):
                        raise
                return await wrapped(*args, **kwargs)
            finally:
                asked.put_back()

        return send

    def _refused(self, asked: _UsageAsked, error: Exception) -> bool:
        """Whether `error` is the provider refusing the usage asked for (a 400 or 422 that names
        `stream_options`); then the request is put back as the app made it, and its endpoint is not asked
        again."""
        try:
            if getattr(error, "status_code", None) not in (400, 422):
                return False
            if "stream_options" not in f"{getattr(error, 'body', None)} {error}":
                return False
            asked.undo()
            with self._lock:
                if len(self._refusing) >= MAX_ENDPOINTS:
                    self._refusing.clear()
                self._refusing.add(asked.base_url)
            logger.warning(
                "otel_tokencost: %s refuses stream_options; its streams are sent as the app makes them",
                asked.base_url,
            )
            return True
        except Exception:
            report_internal_error("reading a refused request")
            return False

    def _start(self, client: Any, args: tuple, kwargs: dict) -> tuple[Call, _UsageAsked | None] | None:
        """Start the call if this request is a priced endpoint; None to pass it through untouched."""
        if not self.active:
            return None
        try:
            options = args[1] if len(args) > 1 else kwargs["options"]
            body = options.json_data
            if options.method != "post" or body.__class__ is not dict:
                return None
            extra = options.extra_json
            if extra and isinstance(extra, Mapping):  # `extra_body`: sent merged over the body
                body = {**body, **extra}
            operation = operation_for(options.url)
            if operation is None:
                return None
            endpoint = self._endpoint(client)
            if not (endpoint.known_provider or self._reads_headers):
                self._read_headers_from_now_on()
            call = self.telemetry.start(endpoint, operation, body)
        except BudgetExceededError:
            raise  # the budget's refusal is meant for the app
        except Exception:
            report_internal_error("starting the openai span")
            return None
        if call is None:
            return None
        try:
            _read_before_the_post_parser(options, call)
        except Exception:
            report_internal_error("reading before a parse() helper's post-parser")
        try:
            cast_to = args[0] if args else kwargs.get("cast_to")
            asked = self._inject_stream_usage(options, cast_to, body, operation, client, endpoint)
        except Exception:
            report_internal_error("asking for a stream's usage")  # the call goes on as the app made it
            asked = None
        return call, asked

    def _read_headers_from_now_on(self) -> None:
        with self._lock:
            if not self._reads_headers:
                for client in ("SyncAPIClient", "AsyncAPIClient"):
                    method = f"{client}._process_response"
                    wrapt.wrap_function_wrapper("openai._base_client", method, _read_headers)
                self._reads_headers = True

    def _endpoint(self, client: Any) -> Endpoint:
        """The client's Endpoint, keyed by its base-URL object so that a call skips URL formatting."""
        cls = type(client)
        stores = self._stores_base_url.get(cls)
        if stores is None:
            stores = self._stores_base_url[cls] = _stores_base_url(cls)
        if stores:
            # The base URL as the client stores it, which its `base_url` property returns: openai 3.x's
            # property imports a module on each access (and later 3.x's `_base_url` goes through it).
            state = client.__dict__
            url = state.get("_configured_base_url") or state.get("_base_url") or client.base_url
            key: Any = id(url)
        else:  # a property of its own (the module-level client's reads `openai.base_url`): asked each call
            url = key = str(client.base_url)
        cached = self._endpoints.get(key)
        if cached is not None and (key is url or cached[0] is url):
            return cached[1]
        endpoint = self.telemetry.endpoint(str(url))
        if len(self._endpoints) >= MAX_ENDPOINTS:
            self._endpoints.clear()
        self._endpoints[key] = (url, endpoint)  # holding the URL keeps its id from being reused
        return endpoint

    def _inject_stream_usage(
        self, options: Any, cast_to: Any, body: dict, operation: Operation, client: Any, endpoint: Endpoint
    ) -> _UsageAsked | None:
        """Ask for usage on a stream that did not (in its body or its `extra_body`, which `body` merges);
        what was asked for when the extra usage chunk must be hidden, else None.

        Not for `with_streaming_response` or `cast_to=httpx.Response`, which hand the app the body as it
        comes: the app would read the extra chunk (a raw body is priced when the request asks for usage).
        Nor of a provider that reports it unasked (DeepSeek, Groq, OpenRouter, ...), nor where the provider
        refuses the request for it (Mistral, Azure OpenAI before 2024-09-01, and any endpoint that has
        refused it before).
        """
        if not (self.inject_usage and operation.accepts_stream_options and body.get("stream") is True):
            return None
        headers = options.headers
        if isinstance(headers, Mapping) and headers.get(self.raw_response_header) == "stream":
            return None
        if cast_to in self.http_response_types():
            return None
        stream_options = body.get("stream_options")
        if stream_options is not None and (
            not isinstance(stream_options, dict) or stream_options.get("include_usage") is True
        ):
            return None  # the app asked for usage itself, or sends stream options we cannot add to
        if endpoint.base_url in self._refusing:
            return None
        if not asks_for_stream_usage(endpoint, _api_version(client, options)):
            return None
        asked = _UsageAsked(options, endpoint.base_url)
        wanted = {**(stream_options or {}), "include_usage": True}
        # Members replaced, not changed: the body and extra_body the app made stay as they are.
        options.json_data = {**options.json_data, "stream_options": wanted}
        if "stream_options" in (options.extra_json or ()):  # `extra_body`'s would be sent over ours
            options.extra_json = {**options.extra_json, "stream_options": wanted}
        return asked

    def _returned(self, call: Call, result: Any, hide_usage_chunk: bool) -> Any:
        """Follow what the SDK returned: a model, a stream, or a raw response still to be parsed."""
        try:
            kind = type(result)
            proxy = self.stream_types.get(kind)
            if proxy is not None:
                passes_on = getattr(kind, proxy.ITERATION) is self.passing_on[kind]
                return proxy(result, call, hide_usage_chunk, passes_on)
            if isinstance(result, self.stream_bases):
                # A subclass of the SDK's stream: Logfire passes a new one per call as `stream_cls`.
                proxy = next(kind for base, kind in self.stream_types.items() if isinstance(result, base))
                return proxy(result, call, hide_usage_chunk)
            if isinstance(result, self.raw_types):
                return self._raw_response(call, result, hide_usage_chunk)
            call.read(result)
            if call.outcome.response_model is None and isinstance(result, self.http_response_types()):
                return self._http_response(call, result)  # `cast_to=httpx.Response`: read nothing yet
            call.end()
        except Exception:
            report_internal_error("reading the openai result")
            call.end()
        return result

    def _http_response(self, call: Call, http_response: Any) -> Any:
        """The HTTP response itself, asked for with `cast_to=httpx.Response`: its body read as the app
        reads it, the call ended when the body ends or the response is dropped."""
        if http_response.is_stream_consumed:  # read already, as the SDK reads a body it does not stream
            read_body(call, http_response.content)
            call.end()
        else:
            weakref.finalize(http_response, _watch_body(http_response, call).end_dropped)
        return http_response

    def _raw_response(self, call: Call, response: Any, hide_usage_chunk: bool) -> Any:
        if isinstance(response, self.legacy_type) and not response._stream:
            # `with_raw_response`: the body is read and parse() caches, so this costs the user nothing.
            try:
                call.read(response.parse())
            except Exception:
                post_parser = getattr(getattr(response, "_options", None), "post_parser", None)
                if post_parser.__class__ is not _ReadFirst:  # else a parse() helper's refusal, read first:
                    report_internal_error("reading the openai result")  # the app meets it as it parses
            call.end()
            return response
        return RawResponseProxy(response, call, self, hide_usage_chunk)


class RawResponseProxy(wrapt.ObjectProxy):
    """`with_raw_response` streams and `with_streaming_response`: the call ends when parsed or closed,
    or when the app has read the body itself (`iter_lines()`, `read()`, `json()`, ...)."""

    def __init__(self, response: Any, call: Call, patch: _Patch, hide_usage_chunk: bool) -> None:
        super().__init__(response)
        self._self_call = call
        self._self_patch = patch
        self._self_hide = hide_usage_chunk
        self._self_parsed: Any = None  # what `parse()` returned, handed out again as the SDK does
        self._self_awaited = False  # `parse()` is a coroutine function (an async client's response)
        self._self_followed = False  # a parsed stream follows the call from here on
        http_response = response.http_response
        # A body read already (an event hook's read) is read as the app is done with it, if not parsed.
        self._self_watch = None if http_response.is_stream_consumed else _watch_body(http_response, call)

    def parse(self, **kwargs: Any) -> Any:
        if self._self_parsed is not None and not kwargs:
            return _resolved(self._self_parsed) if self._self_awaited else self._self_parsed
        if self._self_hands_over_the_body(kwargs.get("to")):
            return self.__wrapped__.parse(**kwargs)  # read by the watch, as the SDK or the app reads it
        self._self_unwatch()  # the SDK reads the body now, and the parsed result is read instead
        parsed = self.__wrapped__.parse(**kwargs)
        if inspect.isawaitable(parsed):
            self._self_awaited = True
            return self._await_parsed(parsed, kwargs)
        return self._follow(parsed, kwargs)

    async def _await_parsed(self, parsed: Any, kwargs: dict) -> Any:
        return self._follow(await parsed, kwargs)

    def _follow(self, parsed: Any, kwargs: dict) -> Any:
        if self._self_call.ended:
            return parsed
        result = self._self_patch._returned(self._self_call, parsed, self._self_hide)
        self._self_followed = True
        if not kwargs:
            self._self_parsed = result
        return result

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end(closed=True)

    def __del__(self) -> None:
        if getattr(self, "_self_call", None) is not None:
            self._self_end(closed=False)

    def _self_end(self, closed: bool) -> None:
        """End the call with what the app read of the body: when the body is closed, whatever read it,
        and when the response is dropped, unless the stream parsed from it goes on."""
        call = self._self_call
        if call.ended or (self._self_followed and not closed):
            return
        watch = self._self_watch
        if watch is not None:
            watch.end(dropped=not closed)
        elif not self._self_followed:  # a body read before the SDK handed it over (by an event hook)
            http_response = self.__wrapped__.http_response
            if http_response.is_stream_consumed:
                try:
                    read_body(call, http_response.content)
                except Exception:
                    report_internal_error("reading a response body")
        if closed:
            call.end()
        else:
            call.end_dropped()

    def _self_hands_over_the_body(self, to: Any) -> bool:
        """Whether `parse(to=...)` gives the body itself: its text, its bytes or the httpx response."""
        return to is str or to is bytes or (isinstance(to, type) and isinstance(self.http_response, to))

    def _self_unwatch(self) -> None:
        if self._self_watch is not None:
            self._self_watch = None
            http_response = self.__wrapped__.http_response
            del http_response.iter_bytes, http_response.aiter_bytes


def _read_before_the_post_parser(options: Any, call: Call) -> None:
    """Have a `parse()` helper's post-parser, which may refuse a response that was billed, let the call
    read the response first."""
    post_parser = options.post_parser
    if callable(post_parser):
        if post_parser.__class__ is _ReadFirst:  # options the app sends again
            post_parser = post_parser.parser
        options.post_parser = _ReadFirst(post_parser, call)


class _ReadFirst:
    """A `parse()` helper's post-parser, which turns the response into the app's type and may refuse it
    (cut short by `max_tokens`, not the format asked for) once it was billed: the response is read
    before that error goes on, so the call keeps its usage and cost."""

    __slots__ = ("call", "parser")

    def __init__(self, parser: Callable[[Any], Any], call: Call) -> None:
        self.parser, self.call = parser, call

    def __call__(self, parsed: Any) -> Any:
        try:
            return self.parser(parsed)
        except Exception:
            if not self.call.ended:
                self.call.read(parsed)
            raise


class _UsageAsked:
    """Usage asked for on a stream's behalf: the request's body as the app made it, to send it so if
    the provider refuses the request for the usage asked, and to leave the app's options as it made
    them (an app that calls `client.request` itself may send them again)."""

    __slots__ = ("base_url", "extra_json", "json_data", "options", "undone")

    def __init__(self, options: Any, base_url: str) -> None:
        self.options, self.base_url, self.undone = options, base_url, False
        self.json_data, self.extra_json = options.json_data, options.extra_json

    def undo(self) -> None:
        """Take the usage asked for back: the request goes as the app made it."""
        self.put_back()
        self.undone = True

    def put_back(self) -> None:
        self.options.json_data, self.options.extra_json = self.json_data, self.extra_json


async def _resolved(value: Any) -> Any:
    """`value`, awaited: an async response's `parse()` again."""
    return value


def _hides_usage(asked: _UsageAsked | None) -> bool:
    """Whether the stream's usage chunk is the package's to hide: asked for, and not taken back."""
    return asked is not None and not asked.undone


def _stores_base_url(cls: type) -> bool:
    """Whether a client class's `base_url` is the SDK's own property, which returns the URL the client
    stores; not a subclass's own (the module-level client's, which reads `openai.base_url` each call)."""
    owner = next((kind for kind in cls.__mro__ if "base_url" in kind.__dict__), None)
    getter = getattr(owner.__dict__["base_url"], "fget", None) if owner is not None else None
    # Where it is written (the SDK re-exports its classes as `openai.OpenAI`, the module client's included).
    return getattr(getter, "__module__", None) in ("openai._base_client", "openai._client")


def _api_version(client: Any, options: Any) -> Any:
    """The `api-version` query parameter the request goes with (Azure OpenAI's), if any."""
    params = options.params
    version = params.get("api-version") if isinstance(params, Mapping) else None
    if version is None:
        default_query = getattr(client, "_custom_query", None)  # what `default_query` returns a copy of
        version = default_query.get("api-version") if isinstance(default_query, Mapping) else None
    return version


def _watch_body(http_response: Any, call: Call) -> BodyWatch:
    """Watch the unread body of an HTTP response the SDK hands over, as the app reads it. Every way of
    reading it (the SDK response's `read`, `json`, `iter_lines`, ..., or the httpx response's) goes
    through httpx's `iter_bytes` or `aiter_bytes`: both are shadowed on that one httpx response object."""
    watch = BodyWatch(call, http_response.headers.get("content-type") or "")
    # The class's methods and a weak reference: the response must not hold itself in a reference cycle.
    cls, response_ref = type(http_response), weakref.ref(http_response)
    http_response.iter_bytes = lambda *args, **kwargs: watch.follow(
        cls.iter_bytes(response_ref(), *args, **kwargs)
    )
    http_response.aiter_bytes = lambda *args, **kwargs: watch.follow_async(
        cls.aiter_bytes(response_ref(), *args, **kwargs)
    )
    return watch
