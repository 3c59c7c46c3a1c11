"""Locks a forked child can take: a lock another thread held when the process forked is free again in
the child, where that thread does not exist (as CPython resets its own, in `logging` and `threading`)."""

from __future__ import annotations

import os
import threading
import weakref

_locks: weakref.WeakSet = weakref.WeakSet()


def fork_safe_lock(reentrant: bool = False) -> threading.Lock:
    """A new lock, released in a child forked while it was held. `reentrant`: one a thread holding it
    may take again, as a garbage collector's finalizer (a stream the app dropped, ending its call) can
    run while that thread holds it."""
    lock = threading.RLock() if reentrant else threading.Lock()
    _locks.add(lock)
    return lock


def _release_in_child() -> None:
    for lock in list(_locks):
        lock._at_fork_reinit()  # type: ignore[attr-defined]  # CPython's, for exactly this


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_in_child)
