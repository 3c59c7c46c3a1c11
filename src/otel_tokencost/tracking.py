"""`track()`: who spent it. A tracking id and attributes carried in the OpenTelemetry context.

Being context-based, a block's values follow asyncio tasks and threads started with a copied context,
and nested blocks combine (inner values win; a budget of any enclosing id counts the call). Each block
also counts what its calls used in a `Spend`.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar

from opentelemetry import baggage
from opentelemetry import context as context_api
from opentelemetry.context import Context

from . import names
from .locks import fork_safe_lock
from .money import MONEY

F = TypeVar("F", bound=Callable[..., Any])
_TRACKING = context_api.create_key("otel_tokencost.tracking")
logger = logging.getLogger(__name__)


class Spend:
    """What the calls started inside one `track()` block used, live and thread-safe."""

    __slots__ = ("_lock", "calls", "cost", "input_tokens", "output_tokens", "unpriced_calls")

    def __init__(self) -> None:
        self.calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = Decimal(0)
        self.unpriced_calls = 0
        self._lock = fork_safe_lock(reentrant=True)  # a finalizer ending a dropped stream may add too

    def add(self, input_tokens: int, output_tokens: int, cost: Decimal | None) -> None:
        with self._lock:
            self.calls += 1
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            if cost is None:
                self.unpriced_calls += 1
            else:
                self.cost = MONEY.add(self.cost, cost)

    def __repr__(self) -> str:
        return (
            f"Spend(calls={self.calls}, input_tokens={self.input_tokens}, "
            f"output_tokens={self.output_tokens}, cost={self.cost}, unpriced_calls={self.unpriced_calls})"
        )


@dataclass(frozen=True, slots=True)
class Tracking:
    """The values in force: tracking id, attributes, and the Spend of every enclosing block."""

    # Every tracking id the call is inside, outermost first: a budget of any of them counts it.
    tracking_ids: tuple[str, ...]
    attributes: Mapping[str, Any]
    spends: tuple[Spend, ...]
    attributes_key: tuple | None = ()  # the attributes, hashable; None when a value is not (a list)
    tracking_id: str | None = field(init=False)  # the innermost: spans and metrics name the call by it

    def __post_init__(self) -> None:
        object.__setattr__(self, "tracking_id", self.tracking_ids[-1] if self.tracking_ids else None)


def _attributes_key(attributes: Mapping[str, Any]) -> tuple | None:
    key = tuple(attributes.items())
    try:
        hash(key)
    except TypeError:
        return None
    return key


# The attributes the instrumentation sets itself: a block's own attributes must not replace them. (Not
# the conversation id, which the app may know for a chat: a Responses request's own wins over it.)
RESERVED = frozenset(
    value
    for name, value in vars(names).items()
    if name.isupper() and not name.startswith("METRIC_") and isinstance(value, str) and "." in value
) - {names.CONVERSATION_ID}
_SCALARS = (str, bool, int, float)


def _check_attribute(key: Any, value: Any) -> None:
    """Refuse an attribute that is not the app's own or that OpenTelemetry cannot record."""
    if not isinstance(key, str) or not key:
        raise TypeError(f"track(): attribute names must be non-empty strings, not {key!r}")
    if key in RESERVED:
        raise ValueError(
            f"track(): {key!r} is set by the instrumentation itself; give the attribute a name of your own"
        )
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, list | tuple) and value:
        kind = type(value[0])
        if kind in _SCALARS and all(type(item) is kind for item in value):
            return
    raise TypeError(
        f"track(): attribute {key!r} must be a string, bool, int or float, or a non-empty list of one of them"
        f" (all the same type), not {value!r}"
    )


def current(baggage_key: str | None = None, context: Context | None = None) -> Tracking | None:
    """The tracking in `context` (the current one by default). With `baggage_key`, the id in the
    caller's W3C baggage too: the tracking id where no block names one, and the outermost of the ids
    the call is inside."""
    tracking = (context_api.get_current() if context is None else context).get(_TRACKING)
    if baggage_key is None:
        return tracking
    value = baggage.get_baggage(baggage_key, context)
    if not value:
        return tracking
    value = str(value)  # the caller's id: the call is inside it, whatever blocks it is in here
    if tracking is None:
        return Tracking((value,), {}, ())
    return replace(tracking, tracking_ids=(value, *tracking.tracking_ids))


class track:  # lower case: used like a function, `with track(...)` and `@track(...)`
    """Attribute the LLM calls inside a block (or a function) to a tracking id and attributes.

    `with track(tracking_id="checkout") as spend:` yields the block's live `Spend`. As a decorator it
    wraps each call of a sync or async function in a fresh block (not a generator function's: its body
    runs after the call, so that is refused).
    """

    def __init__(self, tracking_id: str | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        if tracking_id is not None and not isinstance(tracking_id, str):
            raise TypeError(
                f"track(): tracking_id must be a string or None, not {type(tracking_id).__name__}"
            )
        self.tracking_id = tracking_id
        self.attributes = dict(attributes or {})
        for key, value in self.attributes.items():
            _check_attribute(key, value)
        # Each open block's context token, by its Tracking: one `track` may be entered by several tasks
        # or threads at once, and each leaves its own block.
        self._tokens: dict[int, object] = {}

    def __enter__(self) -> Spend:
        outer = context_api.get_value(_TRACKING)
        spend = Spend()
        own_id = () if self.tracking_id is None else (self.tracking_id,)
        if outer is None:
            tracking = Tracking(own_id, self.attributes, (spend,), _attributes_key(self.attributes))
        else:
            attributes = {**outer.attributes, **self.attributes}
            ids, spends = (*outer.tracking_ids, *own_id), (*outer.spends, spend)
            tracking = Tracking(ids, attributes, spends, _attributes_key(attributes))
        self._tokens[id(tracking)] = context_api.attach(context_api.set_value(_TRACKING, tracking))
        return spend

    def __exit__(self, *exc_info: object) -> None:
        token = self._tokens.pop(id(context_api.get_value(_TRACKING)), None)
        if token is None:
            logger.warning("otel_tokencost: a track() block was left in a context other than its own")
            return
        context_api.detach(token)

    def _block(self) -> track:
        """A fresh block of the same values, checked already: each decorated call enters its own."""
        block = copy.copy(self)
        block._tokens = {}
        return block

    def __call__(self, function: F) -> F:
        if isinstance(function, staticmethod | classmethod):  # decorated above the method's own decorator
            return type(function)(self(function.__func__))  # type: ignore[return-value]
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            # Its body runs after the call returns, step by step, in its consumer's context: a block
            # around the call would be over before the first step.
            raise TypeError(
                f"track() cannot decorate the generator function {function.__qualname__}: put "
                "`with track(...)` around the loop that consumes it, or decorate the function that runs it"
            )
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def tracked_async(*args: Any, **kwargs: Any) -> Any:
                with self._block():
                    return await function(*args, **kwargs)

            return tracked_async  # type: ignore[return-value]

        @functools.wraps(function)
        def tracked(*args: Any, **kwargs: Any) -> Any:
            with self._block():
                return function(*args, **kwargs)

        return tracked  # type: ignore[return-value]
