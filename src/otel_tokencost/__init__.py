"""otel_tokencost: OpenTelemetry spans, token usage and cost for OpenAI-compatible LLM calls.

Importing the package is cheap: the instrumentors (and the OpenTelemetry instrumentation machinery
behind them) load on first use.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .budgets import Budget, BudgetExceededError
from .locks import fork_safe_lock
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

_INSTRUMENTORS = {  # class: its module, the library it instruments, its entry point's name
    "OpenAIInstrumentor": ("otel_tokencost.instrumentation.openai", "openai", "tokencost_openai"),
    "RequestsInstrumentor": ("otel_tokencost.instrumentation.requests", "requests", "tokencost_requests"),
}
DISABLED_ENV = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
_lock = fork_safe_lock()
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
    """Instrument every supported client library that is importable and not switched off (by
    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS); calling it again instruments nothing twice.

    A library already instrumented (by `opentelemetry-instrument`, or an earlier `instrument()`) stays
    as it is: `prices` and `budgets` apply to its calls from then on, while its spans and metrics go on to
    the providers it was given. A library instrumented now shares its engine: one ledger per budget.
    """
    from .telemetry import Telemetry

    budgets = tuple(budgets)  # read once, for every engine: a generator may be given
    with _lock:
        instrumentors = {_INSTRUMENTORS[name][1]: __getattr__(name)() for name in _enabled_instrumentors()}
        existing = {
            library: owner
            for library, owner in instrumentors.items()
            if owner.is_instrumented_by_opentelemetry
        }
        engines = list({id(owner.telemetry): owner.telemetry for owner in existing.values()}.values())
        for engine in engines:
            engine.configure(prices, budgets)
        telemetry = engines[0] if engines else None
        for library, instrumentor in instrumentors.items():
            if library in existing:
                continue
            if telemetry is None:
                telemetry = Telemetry.from_config(tracer_provider, meter_provider, prices, budgets)
            instrumentor.instrument(telemetry=telemetry, skip_dep_check=True)
        if engines and (tracer_provider is not None or meter_provider is not None):
            logger.warning(
                "otel_tokencost: %s already instrumented (by opentelemetry-instrument or an earlier "
                "instrument()): the spans and metrics of %s go on to the providers given there, not to these",
                " and ".join(existing),
                " and ".join(instrumentors),
            )


def _enabled_instrumentors() -> list[str]:
    """The instrumentors whose library is importable and which OTEL_PYTHON_DISABLED_INSTRUMENTATIONS
    (entry-point names, comma-separated, or `*` for all) does not switch off."""
    disabled = {name.strip() for name in os.environ.get(DISABLED_ENV, "").split(",")}
    if "*" in disabled:
        return []
    return [
        name
        for name, (_, library, entry_point) in _INSTRUMENTORS.items()
        if entry_point not in disabled and importlib.util.find_spec(library) is not None
    ]


def uninstrument() -> None:
    """Restore every callable the package patched, whether `instrument()` or `opentelemetry-instrument`
    instrumented it."""
    with _lock:
        for name, (module, _, _) in _INSTRUMENTORS.items():
            if module in sys.modules:  # else never instrumented
                instrumentor = getattr(sys.modules[module], name)()
                if instrumentor.is_instrumented_by_opentelemetry:
                    instrumentor.uninstrument()
