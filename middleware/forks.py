"""Surviving `os.fork()` (gunicorn `--preload`, Celery, multiprocessing's `fork`): a child has only the thread
that forked, so a lock another thread held stays held for ever in the child, and a connection shared with the
parent is not the child's to use (SQLite says not to carry one across a fork).

An object that holds a lock, a connection or a file registers here (`register`). At a fork, in the forking
thread, its `before_fork()` (if it has one) runs first: it may wait for its own work in flight and put down what
must not cross (a store ends no transaction half way: it waits for it, then closes its SQLite connection); then
`after_fork(child)` runs in the parent (False) and in the child (True): new locks, connections opened again.
The registry holds its objects weakly, as redis-py holds its pools by process id: a dropped object costs nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from functools import partial
from typing import Any

log = logging.getLogger("groupspec.forks")
_live: weakref.WeakSet[Any] = weakref.WeakSet()
_forking: dict[int, list[Any]] = {}  # forking thread -> the objects it prepared (the same ones are resumed)


def register(obj: Any) -> None:
    """Call `obj.before_fork()` (when it has one) and `obj.after_fork(child)` around every fork of the process."""
    _live.add(obj)


def _before() -> None:
    prepared = _forking[threading.get_ident()] = list(_live)
    for obj in prepared:
        before = getattr(obj, "before_fork", None)
        if before is not None:
            _safely(before)


def _after(child: bool) -> None:
    for obj in _forking.pop(threading.get_ident(), ()):
        _safely(obj.after_fork, child)


def _safely(call: Any, *args: Any) -> None:
    """A fork hook never raises (Python would print it and skip the other objects' hooks)."""
    try:
        call(*args)
    except Exception:
        log.exception("groupspec could not prepare %r for a fork", getattr(call, "__self__", call))


os.register_at_fork(before=_before, after_in_parent=partial(_after, False), after_in_child=partial(_after, True))
