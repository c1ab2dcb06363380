"""Clean interrupts of long runs: Ctrl-C (SIGINT) or SIGTERM ends the step in progress,
the checkpoint is written, and :class:`Interrupted` says where to resume.

Inside :func:`stop_on_signal`, the first signal only *asks* the design layer's loop to stop
after its current chunk (``request_stop``); outside a loop, or at a second signal, it
interrupts at once as Python would. The ``diffdesign`` command wraps every study in it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_STOP = threading.Event()
_ACTIVE = [0]  # loops running now (the first signal waits for them)


class Interrupted(Exception):
    """A run stopped by a signal after writing its checkpoint at ``step`` of ``steps``."""

    def __init__(self, name: str, step: int, steps: int, checkpointed: bool):
        self.name, self.step, self.steps = name, step, steps
        where = "rerun the same command to resume" if checkpointed else "no checkpoint was kept"
        super().__init__(f"{name}: interrupted at step {step}/{steps}; {where}")


def stop_requested() -> bool:
    return _STOP.is_set()


@contextlib.contextmanager
def running() -> Iterator[None]:
    """Marks a loop that checks :func:`stop_requested` between its chunks."""
    _ACTIVE[0] += 1
    try:
        yield
    finally:
        _ACTIVE[0] -= 1


@contextlib.contextmanager
def stop_on_signal() -> Iterator[None]:
    """SIGINT/SIGTERM ask the running loop to stop after its chunk (see module docstring)."""

    def handler(signum, frame):
        if _STOP.is_set() or _ACTIVE[0] == 0:
            raise KeyboardInterrupt
        _STOP.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    _STOP.clear()
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _STOP.clear()
