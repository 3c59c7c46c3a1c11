"""The engine every transport shares: one span per call, priced when it ends, with its metrics.

A transport describes a call (endpoint, operation, request body), hands what comes back to `Call`,
and the engine does the rest. It knows no transport and no SDK.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from time import perf_counter, time_ns
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.metrics import Meter, get_meter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from . import content, names
from .budgets import Budget, BudgetExceededError, Budgets
from .instruments import Instruments
from .operations import Operation, Outcome, reported_cost
from .pricing import PROVIDER, Cost, Pricer, PricesFileError, load
from .providers import Endpoint, endpoint_for
from .tracking import Tracking, current
from .version import __version__

logger = logging.getLogger(__name__)

REQUEST_PARAMS = (
    ("max_tokens", names.REQUEST_MAX_TOKENS),
    ("max_completion_tokens", names.REQUEST_MAX_TOKENS),
    ("max_output_tokens", names.REQUEST_MAX_TOKENS),
    ("temperature", names.REQUEST_TEMPERATURE),
    ("top_p", names.REQUEST_TOP_P),
)
STRICT_ENV = "OTEL_TOKENCOST_STRICT"
BAGGAGE_KEY_ENV = "OTEL_TOKENCOST_TRACKING_BAGGAGE_KEY"
MAX_TRACKING_IDS_ENV = "OTEL_TOKENCOST_MAX_TRACKING_IDS"
OTHER_TRACKING_ID = "_other"
IN_CALL = context_api.create_key("otel_tokencost.in_call")  # the Call being measured
LITELLM_COST_HEADER = "x-litellm-response-cost"


def current_call() -> Call | None:
    """The call being measured in this context (a transport's lower layer reports to it)."""
    return context_api.get_value(IN_CALL)


def report_internal_error(what: str) -> None:
    """Log a failure inside the instrumentation; under tests (OTEL_TOKENCOST_STRICT=1) raise it."""
    if os.environ.get(STRICT_ENV) == "1":
        raise
    logger.exception("otel_tokencost: %s failed; the call itself is unaffected", what)


class Telemetry:
    """Tracer, instruments, pricer, budgets and settings, built once by `instrument()`."""

    def __init__(
        self,
        tracer: Tracer,
        meter: Meter,
        pricer: Pricer,
        capture_content: bool = False,
        budgets: Budgets | None = None,
        baggage_key: str | None = None,
        max_tracking_ids: int = 1000,
    ) -> None:
        self.tracer = tracer
        self.instruments = Instruments.create(meter)
        self.pricer = pricer
        self.capture_content = capture_content
        self.budgets = budgets or Budgets()
        self.baggage_key = baggage_key
        self.max_tracking_ids = max_tracking_ids
        self._tracking_ids: set[str] = set()

    @classmethod
    def from_config(
        cls,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        prices: str | None = None,
        budgets: Sequence[Budget] = (),
    ) -> Telemetry:
        tracer = trace.get_tracer(names.SCOPE, __version__, tracer_provider)
        meter = get_meter(names.SCOPE, __version__, meter_provider)
        capture = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() == "true"
        return cls(
            tracer,
            meter,
            Pricer(_load_prices(prices)),
            capture,
            Budgets(budgets),
            os.environ.get(BAGGAGE_KEY_ENV) or None,
            _positive_int(os.environ.get(MAX_TRACKING_IDS_ENV), 1000),
        )

    @classmethod
    def for_instrumentor(cls, kwargs: Mapping[str, Any]) -> Telemetry:
        """The engine an instrumentor's `instrument(**kwargs)` asks for: given, or built from its options."""
        telemetry = kwargs.get("telemetry")
        if telemetry is not None:
            return telemetry
        return cls.from_config(
            kwargs.get("tracer_provider"),
            kwargs.get("meter_provider"),
            kwargs.get("prices"),
            kwargs.get("budgets", ()),
        )

    def endpoint(self, base_url: str) -> Endpoint:
        """What a base URL tells (provider name, server address), the prices file included."""
        return endpoint_for(base_url, self.pricer.provider_name(base_url))

    def start(self, endpoint: Endpoint, operation: Operation, body: Mapping[str, Any]) -> Call | None:
        """Start the span of one call; None when suppressed, or inside a call already being measured.

        Raises BudgetExceededError (after ending the call's span) when a budget refuses the call.
        """
        if not is_instrumentation_enabled() or context_api.get_value(IN_CALL) is not None:
            return None
        call = Call(self, endpoint, operation, body, current(self.baggage_key))
        if self.budgets:
            call.check_budgets()
        return call

    def metric_tracking_id(self, tracking_id: str) -> str:
        """The tracking id as a metric attribute: past the cap of distinct ids, `_other`."""
        ids = self._tracking_ids
        if tracking_id in ids:
            return tracking_id
        if len(ids) < self.max_tracking_ids:
            ids.add(tracking_id)
            return tracking_id
        if OTHER_TRACKING_ID not in ids:
            ids.add(OTHER_TRACKING_ID)
            logger.warning(
                "otel_tokencost: more than %d tracking ids; metrics count the rest as %r (spans keep them)",
                self.max_tracking_ids,
                OTHER_TRACKING_ID,
            )
        return OTHER_TRACKING_ID


def _positive_int(value: str | None, default: int) -> int:
    try:
        number = int(value) if value else default
    except ValueError:
        number = default
    return number if number > 0 else default


def _load_prices(path: str | None) -> list:
    path = path or os.environ.get("OTEL_TOKENCOST_PRICES")
    if not path:
        return []
    try:
        return load(path)
    except PricesFileError as error:
        logger.error("otel_tokencost: prices file ignored: %s", error)
        return []


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
        self._context: Any = None
        self.start_ns = time_ns()
        self.span = telemetry.tracer.start_span(
            f"{operation.name} {self.request_model}" if self.request_model else operation.name,
            kind=SpanKind.CLIENT,
            attributes=self._request_attributes(),
            start_time=self.start_ns,
        )
        self._start = perf_counter()

    def _request_attributes(self) -> dict[str, Any]:
        endpoint, body = self.endpoint, self.body
        attributes: dict[str, Any] = {
            names.OPERATION_NAME: self.operation.name,
            names.PROVIDER_NAME: endpoint.provider,
            names.SERVER_ADDRESS: endpoint.address,
            names.SERVER_PORT: endpoint.port,
        }
        if endpoint.is_openai and self.operation.api_type:
            attributes[names.OPENAI_API_TYPE] = self.operation.api_type
        if self.request_model:
            attributes[names.REQUEST_MODEL] = self.request_model
        for key, attribute in REQUEST_PARAMS:
            value = body.get(key)
            if value is not None and value.__class__ in (int, float):
                attributes[attribute] = value
        if body.get("stream") is True:
            attributes[names.REQUEST_STREAM] = True
        if self.tracking is not None:
            attributes.update(self.tracking.attributes)
            if self.tracking.tracking_id is not None:
                attributes[names.TRACKING_ID] = self.tracking.tracking_id
        if self.telemetry.capture_content:
            attributes.update(content.input_attributes(body))
        return attributes

    def check_budgets(self) -> None:
        """Refuse the call (ending its span) if a budget is used up; mark the span for `warn` budgets."""
        tracking_id = self.tracking.tracking_id if self.tracking is not None else None
        try:
            exceeded = self.telemetry.budgets.check(tracking_id)
        except BudgetExceededError as error:
            self.end(error, error_type="BudgetExceededError")
            raise
        for budget in exceeded:
            self.span.add_event("tokencost.budget.exceeded", {"tokencost.budget": budget.describe()})

    def activate(self) -> object:
        """Make the span current (so HTTP spans nest under it); pass the token to `deactivate`.

        The context also marks the call, so a transport layer below (a redirect's second `send`, say)
        does not start a second GenAI span for it.
        """
        self._context = context_api.set_value(IN_CALL, self, trace.set_span_in_context(self.span))
        return context_api.attach(self._context)

    @staticmethod
    def deactivate(token: object) -> None:
        context_api.detach(token)

    def invoke(self, wrapped: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """Run the transport's own call with the span current; its exception ends the call and goes on."""
        token = self.activate()
        try:
            return wrapped(*args, **kwargs)
        except BaseException as error:
            self.end(error)
            raise
        finally:
            self.deactivate(token)

    async def invoke_async(self, wrapped: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """`invoke` for a coroutine function."""
        token = self.activate()
        try:
            return await wrapped(*args, **kwargs)
        except BaseException as error:
            self.end(error)
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
        """Response headers: a LiteLLM proxy states the call's cost in one."""
        try:
            value = headers.get(LITELLM_COST_HEADER)
            if value is not None:
                self.outcome.reported_cost = reported_cost(value)
        except Exception:
            report_internal_error("reading the response headers")

    def read_chunk(self, chunk: Any) -> bool:
        """Read one stream chunk; True when it is a usage-only chunk the user did not ask for."""
        if self.first_chunk_at is None:
            self.first_chunk_at = perf_counter()
        try:
            if self.telemetry.capture_content:
                content.read_chunk_output(self.outcome, chunk)
            return self.operation.read_chunk(self.outcome, chunk)
        except Exception:
            report_internal_error("reading a stream chunk")
            return False

    def end(self, error: BaseException | None = None, error_type: str | None = None) -> None:
        """End the span and record the metrics; later calls do nothing."""
        if self._ended:
            return
        self._ended = True
        duration = perf_counter() - self._start
        try:
            if error is not None and error_type is None:
                error_type = _error_type(error)
            self._finish(duration, error_type)
        except Exception:
            report_internal_error("ending the span")
            self.span.end()

    @property
    def ended(self) -> bool:
        return self._ended

    def _finish(self, duration: float, error_type: str | None) -> None:
        span, outcome, instruments = self.span, self.outcome, self.telemetry.instruments
        metric_attributes = {
            names.OPERATION_NAME: self.operation.name,
            names.PROVIDER_NAME: self.endpoint.provider,
            names.SERVER_ADDRESS: self.endpoint.address,
        }
        if self.request_model:
            metric_attributes[names.REQUEST_MODEL] = self.request_model
        if outcome.response_model:
            metric_attributes[names.RESPONSE_MODEL] = outcome.response_model
        if error_type:
            metric_attributes[names.ERROR_TYPE] = error_type
            span.set_status(Status(StatusCode.ERROR))
        tracking = self.tracking
        if tracking is not None:
            metric_attributes.update(tracking.attributes)
            if tracking.tracking_id is not None:
                metric_attributes[names.TRACKING_ID] = self.telemetry.metric_tracking_id(tracking.tracking_id)
        attributes = self._response_attributes(error_type)
        context = self._context or trace.set_span_in_context(span)  # the span's context, for exemplars
        instruments.duration.record(duration, metric_attributes, context=context)
        if self.first_chunk_at is not None:
            ttfc = self.first_chunk_at - self._start
            attributes[names.RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
            instruments.time_to_first_chunk.record(ttfc, metric_attributes, context=context)
        usage = outcome.usage
        cost = None
        if usage is not None:
            token_usage = instruments.token_usage
            token_usage.record(usage.input_tokens, {**metric_attributes, names.TOKEN_TYPE: "input"}, context)
            token_usage.record(
                usage.output_tokens, {**metric_attributes, names.TOKEN_TYPE: "output"}, context
            )
            cost = self._price(usage, attributes)
            if cost is not None:
                instruments.cost.record(float(cost), metric_attributes, context=context)
        span.set_attributes(attributes)
        span.end()
        self._count_spend(usage, cost)

    def _count_spend(self, usage: Any, cost: Decimal | None) -> None:
        """Add the call to every enclosing `track()` block's Spend and to the budgets."""
        tracking = self.tracking
        if tracking is not None:
            input_tokens, output_tokens = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
            for spend in tracking.spends:
                spend.add(input_tokens, output_tokens, cost)
        if cost is not None and self.telemetry.budgets:
            self.telemetry.budgets.spend(tracking.tracking_id if tracking is not None else None, cost)

    def _response_attributes(self, error_type: str | None) -> dict[str, Any]:
        outcome = self.outcome
        attributes: dict[str, Any] = {}
        if outcome.response_model:
            attributes[names.RESPONSE_MODEL] = outcome.response_model
        if outcome.response_id:
            attributes[names.RESPONSE_ID] = outcome.response_id
        if outcome.finish_reasons:
            attributes[names.RESPONSE_FINISH_REASONS] = outcome.finish_reasons
        if error_type:
            attributes[names.ERROR_TYPE] = error_type
        if outcome.texts:
            attributes.update(content.output_attributes(outcome))
        usage = outcome.usage
        if usage is not None:
            attributes[names.USAGE_INPUT_TOKENS] = usage.input_tokens
            attributes[names.USAGE_OUTPUT_TOKENS] = usage.output_tokens
            if usage.cache_read_tokens:
                attributes[names.USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
            if usage.cache_write_tokens:
                attributes[names.USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write_tokens
            if usage.reasoning_tokens:
                attributes[names.USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
        return attributes

    def _price(self, usage: Any, attributes: dict[str, Any]) -> Decimal | None:
        try:
            reported = self.outcome.reported_cost
            if reported is not None:
                cost = Cost(
                    usd=reported,
                    source=PROVIDER,
                    billed=reported,
                    currency="USD",
                    provider=self.endpoint.provider,
                )
            else:
                cost = self.telemetry.pricer.price(
                    self.endpoint.base_url,
                    self.outcome.response_model,
                    self.request_model,
                    usage,
                    self.start_ns,
                )
        except Exception:
            report_internal_error("pricing")
            return None
        if cost is None:
            return None
        attributes[names.USAGE_COST_AMOUNT] = float(cost.usd)
        attributes[names.USAGE_COST_CURRENCY] = "USD"
        attributes[names.PRICING_SOURCE] = cost.source
        if cost.currency != "USD":
            attributes[names.BILLED_AMOUNT] = float(cost.billed)
            attributes[names.BILLED_CURRENCY] = cost.currency
        return cost.usd


def _error_type(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    if status.__class__ is int:
        return str(status)
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
