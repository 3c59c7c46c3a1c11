"""Patch a library when the app imports it, not when it is instrumented.

`instrument()` and `opentelemetry-instrument` run before the app's imports. Patching at once would import
the library there: the openai SDK takes about half a second and tens of MB to import, a cost an app that
has it installed but does not use it (or uses it on one path only) should never pay. A library already
imported is patched at once.
"""

from __future__ import annotations

from collections.abc import Callable

import wrapt

from ..engine import report_internal_error
from ..locks import fork_safe_lock

WAITING, APPLIED, CANCELLED = "waiting", "applied", "cancelled"  # applied: `apply` ran, even if it failed


class PatchOnImport:
    """Runs `apply` once `module` is imported (at once if it is already), unless cancelled before."""

    def __init__(self, module: str, apply: Callable[[], None]) -> None:
        self.module = module
        self._apply = apply
        self._state = WAITING
        self._lock = fork_safe_lock()
        wrapt.register_post_import_hook(self._imported, module)

    def _imported(self, _module: object) -> None:
        # Runs inside the app's import statement: a failure is logged, never raised into the import.
        with self._lock:
            if self._state != WAITING:
                return
            self._state = APPLIED  # a failure may leave part of the patch in place, for undoing
            try:
                self._apply()
            except Exception:
                report_internal_error(f"patching {self.module}")

    def cancel(self) -> bool:
        """Keep a patch not yet applied from ever applying; True when it was (undo what it did then)."""
        with self._lock:
            applied = self._state == APPLIED
            self._state = CANCELLED
            return applied


def unwrap_own(owner: type, name: str, wrapper: Callable[..., object]) -> None:
    """Take the wrapt wrapper calling `wrapper` off `owner.name` if it is the outermost one.

    Another tool may have wrapped the method over it since: then theirs stays in place, and ours under
    it is left to pass calls through (the patch is switched off), rather than taking theirs off with it.
    """
    attribute = owner.__dict__.get(name)
    if getattr(attribute, "_self_wrapper", None) == wrapper:  # a wrapt FunctionWrapper of ours
        setattr(owner, name, attribute.__wrapped__)
