"""Call ends put off: a call the app dropped unfinished (a stream or a response it let go of) is ended by a
finalizer, which the garbage collector may run anywhere, inside OpenTelemetry's SDK too, while that holds
a lock ending the call takes again (a histogram's, as it adds an attribute set; an exporter's). There the
end waits for the next call's start, or for the process's exit."""

from __future__ import annotations

import atexit
from collections import deque
from collections.abc import Callable
from types import FrameType

_SDK_MODULES = ("opentelemetry.sdk.", "opentelemetry.exporter.")

waiting: deque[Callable[[], None]] = deque()  # appended and taken without a lock: any thread may
_runs_at_exit = False


def inside_opentelemetry_sdk(frame: FrameType | None) -> bool:
    """Whether `frame`, or a frame that called it, runs OpenTelemetry's SDK or one of its exporters."""
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(_SDK_MODULES):
            return True
        frame = frame.f_back
    return False


def put_off(end: Callable[[], None]) -> None:
    """Run `end` at the next call's start (`run_waiting`), or at exit, before the SDK's providers shut
    down (registered after them, so run before them)."""
    global _runs_at_exit
    waiting.append(end)
    if not _runs_at_exit:
        _runs_at_exit = True
        atexit.register(run_waiting)


def run_waiting() -> None:
    """Run the ends put off, oldest first."""
    while True:
        try:
            end = waiting.popleft()
        except IndexError:
            return
        end()
