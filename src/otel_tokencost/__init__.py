"""otel_tokencost: OpenTelemetry spans, token usage and cost for OpenAI-compatible LLM calls.

Importing the package is cheap: the instrumentors (and the OpenTelemetry instrumentation machinery
behind them) load on first use.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .budgets import Budget, BudgetExceededError
from .tracking import Spend, track
from .version import __version__

if TYPE_CHECKING:
    from .instrumentation.openai import OpenAIInstrumentor
    from .instrumentation.requests import RequestsInstrumentor

__all__ = [
    "Budget",
    "BudgetExceededError",
    "OpenAIInstrumentor",
    "RequestsInstrumentor",
    "Spend",
    "__version__",
    "instrument",
    "track",
    "uninstrument",
]

_INSTRUMENTORS = {
    "OpenAIInstrumentor": ("otel_tokencost.instrumentation.openai", "openai"),
    "RequestsInstrumentor": ("otel_tokencost.instrumentation.requests", "requests"),
}
_lock = threading.Lock()
_active: list[Any] = []  # the instrumentors `instrument()` applied, for `uninstrument()`
_instrumented = False
logger = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    if name in _INSTRUMENTORS:
        module = importlib.import_module(_INSTRUMENTORS[name][0])
        return getattr(module, name)
    raise AttributeError(f"module 'otel_tokencost' has no attribute {name!r}")


def instrument(
    tracer_provider: Any = None,
    meter_provider: Any = None,
    prices: str | None = None,
    budgets: Sequence[Budget] = (),
) -> None:
    """Instrument every supported client library that is importable; calling it again changes nothing.

    A library already instrumented (by `opentelemetry-instrument`, say) stays its owner's: `prices` and
    `budgets` apply to its calls from then on, while its spans and metrics go on to the providers it
    was given.
    """
    from .telemetry import Telemetry

    global _instrumented
    with _lock:
        if _instrumented:
            return
        _instrumented = True
        telemetry, existing = None, []
        for name, (_, library) in _INSTRUMENTORS.items():
            if importlib.util.find_spec(library) is None:
                continue
            instrumentor = __getattr__(name)()
            if instrumentor.is_instrumented_by_opentelemetry:
                existing.append((library, instrumentor.telemetry))
                continue
            if telemetry is None:
                telemetry = Telemetry.from_config(tracer_provider, meter_provider, prices, budgets)
            instrumentor.instrument(telemetry=telemetry, skip_dep_check=True)
            _active.append(instrumentor)
        for owned in {id(owned): owned for _, owned in existing}.values():
            owned.configure(prices, budgets)
        if existing and (tracer_provider is not None or meter_provider is not None):
            logger.warning(
                "otel_tokencost: %s already instrumented (by opentelemetry-instrument, say): their spans "
                "and metrics go on to the providers given there, not to instrument()'s",
                " and ".join(library for library, _ in existing),
            )


def uninstrument() -> None:
    """Restore every callable `instrument()` patched."""
    global _instrumented
    with _lock:
        _instrumented = False
        while _active:
            _active.pop().uninstrument()
