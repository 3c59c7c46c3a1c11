"""The engine every transport shares: one span per call, priced when it ends, with its metrics.

A transport describes a call (endpoint, operation, request body), hands what comes back to `Call`,
and the engine does the rest. It knows no transport and no SDK.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from decimal import Decimal
from time import perf_counter, time_ns
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.metrics import Meter, get_meter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from . import content, names
from .instruments import Instruments
from .operations import Operation, Outcome
from .pricing import Pricer, PricesFileError, load
from .providers import Endpoint
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
IN_CALL = context_api.create_key("otel_tokencost.in_call")


def report_internal_error(what: str) -> None:
    """Log a failure inside the instrumentation; under tests (OTEL_TOKENCOST_STRICT=1) raise it."""
    if os.environ.get(STRICT_ENV) == "1":
        raise
    logger.exception("otel_tokencost: %s failed; the call itself is unaffected", what)


class Telemetry:
    """Tracer, instruments, pricer and settings, built once by `instrument()`."""

    def __init__(self, tracer: Tracer, meter: Meter, pricer: Pricer, capture_content: bool = False) -> None:
        self.tracer = tracer
        self.instruments = Instruments.create(meter)
        self.pricer = pricer
        self.capture_content = capture_content

    @classmethod
    def from_config(
        cls, tracer_provider: Any = None, meter_provider: Any = None, prices: str | None = None
    ) -> Telemetry:
        tracer = trace.get_tracer(names.SCOPE, __version__, tracer_provider)
        meter = get_meter(names.SCOPE, __version__, meter_provider)
        capture = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() == "true"
        return cls(tracer, meter, Pricer(_load_prices(prices)), capture)

    def start(self, endpoint: Endpoint, operation: Operation, body: Mapping[str, Any]) -> Call | None:
        """Start the span of one call; None when suppressed, or inside a call already being measured."""
        if not is_instrumentation_enabled() or context_api.get_value(IN_CALL):
            return None
        return Call(self, endpoint, operation, body)


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
    )

    def __init__(self, telemetry: Telemetry, endpoint: Endpoint, operation: Operation, body: Mapping) -> None:
        self.telemetry = telemetry
        self.endpoint = endpoint
        self.operation = operation
        self.body = body
        model = body.get("model")
        self.request_model = model if isinstance(model, str) else None
        self.outcome = Outcome()
        self.first_chunk_at: float | None = None
        self._ended = False
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
        if self.telemetry.capture_content:
            attributes.update(content.input_attributes(body))
        return attributes

    def activate(self) -> object:
        """Make the span current (so HTTP spans nest under it); pass the token to `deactivate`.

        The context also marks the call, so a transport layer below (a redirect's second `send`, say)
        does not start a second GenAI span for it.
        """
        return context_api.attach(context_api.set_value(IN_CALL, True, trace.set_span_in_context(self.span)))

    @staticmethod
    def deactivate(token: object) -> None:
        context_api.detach(token)

    def read(self, response: Any) -> None:
        """Read a whole (non-streamed) response."""
        try:
            self.operation.read(self.outcome, response)
            if self.telemetry.capture_content:
                content.read_output(self.outcome, response)
        except Exception:
            report_internal_error("reading the response")

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
        attributes = self._response_attributes(error_type)
        context = trace.set_span_in_context(span)
        instruments.duration.record(duration, metric_attributes, context=context)
        if self.first_chunk_at is not None:
            ttfc = self.first_chunk_at - self._start
            attributes[names.RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
            instruments.time_to_first_chunk.record(ttfc, metric_attributes, context=context)
        usage = outcome.usage
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
            cost = self.telemetry.pricer.price(
                self.endpoint.base_url, self.outcome.response_model, self.request_model, usage, self.start_ns
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
