"""otel_tokencost: OpenTelemetry spans, token usage and cost for OpenAI-compatible LLM calls."""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from .engine import Telemetry
from .instrumentation.openai import OpenAIInstrumentor
from .instrumentation.requests import RequestsInstrumentor
from .version import __version__

__all__ = ["OpenAIInstrumentor", "RequestsInstrumentor", "__version__", "instrument", "uninstrument"]

_lock = threading.Lock()
_active: list[BaseInstrumentor] = []


def instrument(
    tracer_provider: Any = None,
    meter_provider: Any = None,
    prices: str | None = None,
    budgets: Any = (),
) -> None:
    """Instrument every supported client library that is importable; calling it again changes nothing."""
    with _lock:
        if _active:
            return
        telemetry = Telemetry.from_config(tracer_provider, meter_provider, prices)
        for instrumentor, module in ((OpenAIInstrumentor(), "openai"), (RequestsInstrumentor(), "requests")):
            if importlib.util.find_spec(module) is not None:
                instrumentor.instrument(telemetry=telemetry, skip_dep_check=True)
                _active.append(instrumentor)


def uninstrument() -> None:
    """Restore every callable `instrument()` patched."""
    with _lock:
        while _active:
            _active.pop().uninstrument()
