"""The engine every transport shares: one span per call, priced when it ends, with its metrics.

A transport describes a call (endpoint, operation, request body), hands what comes back to `Call`,
and the engine does the rest. It knows no transport and no SDK. (`telemetry.Telemetry` holds what all
calls share and starts them.)
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from functools import partial
from time import perf_counter, time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import content, names
from .budgets import BudgetExceededError
from .operations import Operation, Outcome, reported_cost
from .pricing import PROVIDER, Cost
from .providers import Endpoint
from .put_off import inside_opentelemetry_sdk, put_off
from .request_attributes import add_request_attributes
from .tracking import Tracking

if TYPE_CHECKING:
    from .telemetry import Telemetry

logger = logging.getLogger(__name__)

STRICT_ENV = "OTEL_TOKENCOST_STRICT"
MAX_ATTRIBUTE_SETS = 2048
IN_CALL = context_api.create_key("otel_tokencost.in_call")  # the Call being measured
# What opentelemetry-instrumentation's is_instrumentation_enabled() reads, here read from the context a
# call has already fetched; tests check that suppress_instrumentation() still silences the calls.
SUPPRESS_KEY, SUPPRESS_KEY_PLAIN = _SUPPRESS_INSTRUMENTATION_KEY, "suppress_instrumentation"
# The key under which the API keeps the current span, found through the API itself.
SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))
LITELLM_COST_HEADER = "x-litellm-response-cost"
REFUSED = "BudgetExceededError"  # the error.type of a call a budget refused: never sent, never spent


def current_call() -> Call | None:
    """The call being measured in this context (a transport's lower layer reports to it)."""
    return context_api.get_value(IN_CALL)


def report_internal_error(what: str) -> None:
    """Log a failure inside the instrumentation; under tests (OTEL_TOKENCOST_STRICT=1) raise it."""
    if os.environ.get(STRICT_ENV) == "1":
        raise
    logger.exception("otel_tokencost: %s failed; the app is unaffected", what)


class Call:
    """One logical LLM call: its span, what its response said, and ending it exactly once."""

    __slots__ = (
        "_context",
        "_ended",
        "_start",
        "body",
        "endpoint",
        "first_chunk_at",
        "operation",
        "outcome",
        "request_model",
        "span",
        "start_ns",
        "telemetry",
        "tracking",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        endpoint: Endpoint,
        operation: Operation,
        body: Mapping,
        tracking: Tracking | None = None,
        parent: Context | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.tracking = tracking
        self.endpoint = endpoint
        self.operation = operation
        self.body = body
        model = body.get("model")
        self.request_model = model if isinstance(model, str) else None
        self.outcome = Outcome()
        self.first_chunk_at: float | None = None
        self._ended = False
        self.start_ns = time_ns()
        if parent is None:
            parent = context_api.get_current()
        self.span = span = telemetry.tracer.start_span(
            f"{operation.name} {self.request_model}" if self.request_model else operation.name,
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=self._request_attributes(),
            start_time=self.start_ns,
        )
        # The context the call runs in: its span current, and marked as inside this call. One copy of
        # the parent, where set_span_in_context and set_value would make two.
        self._context = Context({**parent, SPAN_KEY: span, IN_CALL: self})
        self._start = perf_counter()

    def _request_attributes(self) -> dict[str, Any]:
        endpoint, body = self.endpoint, self.body
        attributes: dict[str, Any] = {
            names.OPERATION_NAME: self.operation.name,
            names.PROVIDER_NAME: endpoint.provider,
            names.SERVER_ADDRESS: endpoint.address,
            names.SERVER_PORT: endpoint.port,
        }
        is_openai = endpoint.is_openai
        if is_openai and self.operation.api_type:
            attributes[names.OPENAI_API_TYPE] = self.operation.api_type
        if self.request_model:
            attributes[names.REQUEST_MODEL] = self.request_model
        if self.tracking is not None:  # first: a Responses request's conversation id wins over the block's
            attributes.update(self.tracking.attributes)
            if self.tracking.tracking_id is not None:
                attributes[names.TRACKING_ID] = self.tracking.tracking_id
        add_request_attributes(body, attributes, is_openai)
        if self.telemetry.capture_content:
            attributes.update(content.input_attributes(body))
        return attributes

    def check_budgets(self) -> None:
        """Refuse the call (ending its span) if a budget is used up; mark the span for `warn` budgets."""
        try:
            exceeded = self.telemetry.budgets.check(
                self.tracking.tracking_ids if self.tracking is not None else ()
            )
        except BudgetExceededError as error:
            self.end(error, error_type=REFUSED)
            raise
        for budget in exceeded:
            self.span.add_event("tokencost.budget.exceeded", {"tokencost.budget": budget.describe()})

    def activate(self) -> object:
        """Make the span current (so HTTP spans nest under it); pass the token to `deactivate`.

        The context also marks the call, so a transport layer below (a redirect's second `send`, say)
        does not start a second GenAI span for it.
        """
        return context_api.attach(self._context)

    @staticmethod
    def deactivate(token: object) -> None:
        context_api.detach(token)

    def invoke(self, wrapped: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """Run the transport's own call with the span current; its exception ends the call and goes on (as
        an error of the call, unless it only cancels or interrupts it, as OpenTelemetry's `use_span` has
        it)."""
        token = self.activate()
        try:
            return wrapped(*args, **kwargs)
        except Exception as error:
            self.end(error)
            raise
        except BaseException:  # cancelled or interrupted (asyncio.CancelledError): no error of the call's
            self.end()
            raise
        finally:
            self.deactivate(token)

    async def invoke_async(self, wrapped: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """`invoke` for a coroutine function."""
        token = self.activate()
        try:
            return await wrapped(*args, **kwargs)
        except Exception as error:
            self.end(error)
            raise
        except BaseException:  # cancelled or interrupted (asyncio.CancelledError): no error of the call's
            self.end()
            raise
        finally:
            self.deactivate(token)

    def read(self, response: Any) -> None:
        """Read a whole (non-streamed) response."""
        try:
            self.operation.read(self.outcome, response)
            if self.telemetry.capture_content:
                content.read_output(self.outcome, response)
        except Exception:
            report_internal_error("reading the response")

    def read_headers(self, headers: Any) -> None:
        """Response headers: a LiteLLM proxy states the call's cost in one (no provider's own API does)."""
        if self.endpoint.known_provider:
            return
        try:
            value = headers.get(LITELLM_COST_HEADER)
            if value is not None:
                self.outcome.reported_cost = reported_cost(value)
        except Exception:
            report_internal_error("reading the response headers")

    def read_chunk(self, chunk: Any) -> bool | None:
        """Read one stream chunk; True when it is the usage-only chunk, None when it has no usage."""
        if self.first_chunk_at is None:
            self.first_chunk_at = perf_counter()
        try:
            return self.chunk_reader()(self.outcome, chunk)
        except Exception:
            report_internal_error("reading a stream chunk")
            return False

    def chunk_reader(self) -> Callable[[Outcome, Any], bool | None]:
        """`read_chunk` for a loop over a stream's chunks, called as `reader(call.outcome, chunk)`: the
        operation's own reader unless message content is captured, so that a chunk costs no call of the
        engine's. The loop times the first chunk (`first_chunk_at`) and reports what the reader raises."""
        if self.telemetry.capture_content:
            return self._read_chunk_and_content
        return self.operation.read_chunk

    def _read_chunk_and_content(self, outcome: Outcome, chunk: Any) -> bool | None:
        content.read_chunk_output(outcome, chunk)
        return self.operation.read_chunk(outcome, chunk)

    def end(self, error: BaseException | None = None, error_type: str | None = None) -> None:
        """End the span and record the metrics; later calls do nothing."""
        if self._ended:
            return
        self._ended = True
        self._end_at(perf_counter(), None, error, error_type)

    def end_dropped(self, error_type: str | None = None) -> None:
        """`end`, from a finalizer of what the app dropped (or a generator closed as it is collected).
        The garbage collector may run it inside OpenTelemetry's SDK, which may hold a lock that ending
        the call takes: there the call ends, as of now, at the next call's start (see `put_off`)."""
        if self._ended:
            return
        if not inside_opentelemetry_sdk(sys._getframe(1)):
            self.end(error_type=error_type)
            return
        self._ended = True
        put_off(partial(self._end_at, perf_counter(), time_ns(), None, error_type))

    def _end_at(
        self, now: float, end_ns: int | None, error: BaseException | None, error_type: str | None
    ) -> None:
        """End the span as of `now` (`perf_counter()`) and `end_ns` (`time_ns()`, None for now)."""
        try:
            if error_type is None:
                if error is not None:
                    error_type = _error_type(error)
                elif self.outcome.failure is not None:
                    error_type = self.outcome.failure  # a Responses API response that failed
            self._finish(now - self._start, error_type, end_ns)
        except Exception:
            report_internal_error("ending the span")
            self.span.end(end_ns)
        # The context holds the call: without it, the call and its span go as soon as the app drops
        # them rather than at the garbage collector's next pass.
        self._context = None

    @property
    def ended(self) -> bool:
        return self._ended

    def _finish(self, duration: float, error_type: str | None, end_ns: int | None) -> None:
        span, outcome, instruments = self.span, self.outcome, self.telemetry.instruments
        if error_type:
            span.set_status(Status(StatusCode.ERROR))
        metric_attributes, input_attributes, output_attributes = self._metric_attributes(error_type)
        attributes = self._response_attributes(error_type)
        context = self._context  # the span's context, for exemplars
        instruments.duration.record(duration, metric_attributes, context=context)
        if self.first_chunk_at is not None:
            ttfc = self.first_chunk_at - self._start
            attributes[names.RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
            instruments.time_to_first_chunk.record(ttfc, metric_attributes, context=context)
        usage = outcome.usage
        cost = None
        if usage is not None:
            instruments.token_usage.record(usage.input_tokens, input_attributes, context)
            if usage.output_tokens or self.operation.generates:
                instruments.token_usage.record(usage.output_tokens, output_attributes, context)
        if usage is not None or outcome.reported_cost is not None:  # a stated cost needs no tokens
            cost = self._price(usage, attributes)
            if cost is not None:
                instruments.cost.record(attributes[names.USAGE_COST_AMOUNT], metric_attributes, context)
        span.set_attributes(attributes)
        span.end(end_ns)
        if (self.tracking is not None or self.telemetry.has_budgets) and error_type != REFUSED:
            self._count_spend(usage, cost)

    def _metric_attributes(self, error_type: str | None) -> tuple[dict, dict, dict]:
        """The call's metric attribute sets (all, input tokens, output tokens), built once per kind of
        call and reused: a service makes the same few kinds of call over and over."""
        tracking = self.tracking
        tracking_id = tracking_key = None
        if tracking is not None:
            tracking_key = tracking.attributes_key
            if tracking.tracking_id is not None:
                tracking_id = self.telemetry.metric_tracking_id(tracking.tracking_id)
        response_model = self.outcome.response_model
        key = (
            self.operation.name,
            self.endpoint.base_url,
            self.request_model,
            response_model,
            error_type,
            tracking_id,
            tracking_key,
        )
        cache = self.telemetry.metric_attribute_sets
        sets = cache.get(key) if tracking is None or tracking_key is not None else None
        if sets is not None:
            return sets
        base = {
            names.OPERATION_NAME: self.operation.name,
            names.PROVIDER_NAME: self.endpoint.provider,
            names.SERVER_ADDRESS: self.endpoint.address,
            names.SERVER_PORT: self.endpoint.port,  # conditionally required beside the address
        }
        if self.request_model:
            base[names.REQUEST_MODEL] = self.request_model
        if response_model:
            base[names.RESPONSE_MODEL] = response_model
        if error_type:
            base[names.ERROR_TYPE] = error_type
        if tracking is not None:
            base.update(tracking.attributes)
            if tracking_id is not None:
                base[names.TRACKING_ID] = tracking_id
        tokens = base  # token counts carry no error.type in the semantic conventions
        if error_type:
            tokens = {key: value for key, value in base.items() if key != names.ERROR_TYPE}
        sets = (base, {**tokens, names.TOKEN_TYPE: "input"}, {**tokens, names.TOKEN_TYPE: "output"})
        if tracking is None or tracking_key is not None:
            if len(cache) >= MAX_ATTRIBUTE_SETS:
                cache.clear()  # many distinct models or ids: start over rather than grow
            cache[key] = sets
        return sets

    def _count_spend(self, usage: Any, cost: Cost | None) -> None:
        """Add the call to every enclosing `track()` block's Spend and to the budgets."""
        tracking, usd = self.tracking, cost.usd if cost is not None else None
        if tracking is not None:
            input_tokens, output_tokens = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
            for spend in tracking.spends:
                spend.add(input_tokens, output_tokens, usd)
        if usd is not None and self.telemetry.has_budgets:
            self.telemetry.budgets.spend(tracking.tracking_ids if tracking is not None else (), usd)

    def _response_attributes(self, error_type: str | None) -> dict[str, Any]:
        outcome = self.outcome
        attributes: dict[str, Any] = {}
        if outcome.response_model:
            attributes[names.RESPONSE_MODEL] = outcome.response_model
        if outcome.response_id:
            attributes[names.RESPONSE_ID] = outcome.response_id
        if outcome.finished:
            attributes[names.RESPONSE_FINISH_REASONS] = outcome.finish_reasons
        if self.endpoint.is_openai:
            if outcome.service_tier:
                attributes[names.OPENAI_RESPONSE_SERVICE_TIER] = outcome.service_tier
            if outcome.system_fingerprint:
                attributes[names.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = outcome.system_fingerprint
        if error_type:
            attributes[names.ERROR_TYPE] = error_type
        if outcome.generations:
            attributes.update(content.output_attributes(outcome, failed=bool(error_type)))
        usage = outcome.usage
        if usage is not None:
            attributes[names.USAGE_INPUT_TOKENS] = usage.input_tokens
            if usage.output_tokens or self.operation.generates:
                attributes[names.USAGE_OUTPUT_TOKENS] = usage.output_tokens
            if usage.cache_read_tokens:
                attributes[names.USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
            if usage.cache_write_tokens:
                attributes[names.USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write_tokens
            if usage.reasoning_tokens:
                attributes[names.USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
            if usage.web_searches:
                attributes[names.USAGE_WEB_SEARCHES] = usage.web_searches
        return attributes

    def _price(self, usage: Any, attributes: dict[str, Any]) -> Cost | None:
        outcome = self.outcome
        try:
            reported = outcome.reported_cost
            if reported is not None:
                cost = Cost.stated(reported, PROVIDER, self.endpoint.provider)
            else:
                cost = self.telemetry.pricer.price(
                    self.endpoint.base_url,
                    outcome.response_model,
                    self.request_model,
                    usage,
                    self.start_ns,
                    outcome.service_tier,
                )
        except Exception:
            report_internal_error("pricing")
            return None
        if cost is None:
            return None
        attributes[names.USAGE_COST_AMOUNT] = cost.amount
        attributes[names.USAGE_COST_CURRENCY] = "USD"
        attributes[names.PRICING_SOURCE] = cost.source
        if cost.currency != "USD":
            attributes[names.BILLED_AMOUNT] = cost.billed_amount
            attributes[names.BILLED_CURRENCY] = cost.currency
        return cost


def _error_type(error: BaseException) -> str:
    """An HTTP error's status code (the SDK's errors carry it, `raise_for_status()`'s their response),
    else the error code an openai SDK error states (a Responses stream's `error` event), else the
    exception's qualified class name."""
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status.__class__ is int and status < 400:  # too many redirects, say: no error status
            status = None
    if status.__class__ is int:
        return str(status)
    cls = type(error)
    code = getattr(error, "code", None)
    if code.__class__ is str and code and cls.__module__.startswith("openai"):
        return code
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
