"""otel_tokencost: OpenTelemetry spans, token usage and cost for OpenAI-compatible LLM calls.

Importing the package is cheap: the instrumentors (and the OpenTelemetry instrumentation machinery
behind them) load on first use.
"""

from __future__ import annotations

import importlib.util
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
_active: list[Any] = []


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
    """Instrument every supported client library that is importable; calling it again changes nothing."""
    from .telemetry import Telemetry

    with _lock:
        if _active:
            return
        telemetry = Telemetry.from_config(tracer_provider, meter_provider, prices, budgets)
        for name, (_, library) in _INSTRUMENTORS.items():
            if importlib.util.find_spec(library) is not None:
                instrumentor = __getattr__(name)()
                if instrumentor.is_instrumented_by_opentelemetry:
                    continue  # already done (by opentelemetry-instrument, say): leave it to its owner
                instrumentor.instrument(telemetry=telemetry, skip_dep_check=True)
                _active.append(instrumentor)


def uninstrument() -> None:
    """Restore every callable `instrument()` patched."""
    with _lock:
        while _active:
            _active.pop().uninstrument()
