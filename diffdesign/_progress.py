"""Progress on stderr, shared by every long-running piece of the project: lines
(:func:`say`), bars (:func:`bar`) and compile notices (:class:`CompileNotices`).

Humans get text and tqdm bars; with :func:`use_json` (the command's ``--json-progress``)
every one of them is one JSON object per line instead, for a program watching the run:

    {"event": "message", "time": 1765051200.1, "who": "ring correct", "message": "..."}
    {"event": "progress", "time": ..., "name": "design", "done": 40, "total": 200,
     "unit": "step", "rate_per_s": 3.1, "eta_s": 51.6, "postfix": "loss 0.0123"}
    {"event": "compile", "time": ..., "name": "jit(step)", "state": "started" | "finished",
     "seconds": 12.3}
"""

from __future__ import annotations

import json
import sys
import time

_JSON = [False]


def use_json(enabled: bool = True) -> None:
    """Progress as JSON lines (see the module docstring) from now on, or text again."""
    _JSON[0] = bool(enabled)


def _emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, "time": round(time.time(), 3), **fields}),
          file=sys.stderr, flush=True)  # fmt: skip


def say(message: str, who: str | None = None) -> None:
    """Print ``"who: message"`` (or ``message``) on stderr at once (never on stdout, which
    carries results)."""
    if _JSON[0]:
        _emit("message", who=who, message=message)
        return
    print(f"{who}: {message}" if who else message, file=sys.stderr, flush=True)


class _JsonBar:
    """The part of tqdm's interface the loops use, writing progress events (at most one a
    ``mininterval``, and the last one at close)."""

    def __init__(self, total, initial, desc, unit, disable, mininterval=1.0):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.disable, self.mininterval = disable, mininterval
        self._start_n, self._start, self._last = initial, time.perf_counter(), -float("inf")
        self._postfix = None

    def _report(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.disable or (not force and now - self._last < self.mininterval):
            return
        self._last = now
        rate = (self.n - self._start_n) / max(now - self._start, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 and self.total is not None else None
        _emit("progress", name=self.desc, done=self.n, total=self.total, unit=self.unit,
              rate_per_s=round(rate, 4), eta_s=None if eta is None else round(eta, 1),
              postfix=self._postfix)  # fmt: skip

    def update(self, n: int = 1) -> None:
        self.n += n
        self._report()

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self._postfix = text

    def close(self) -> None:
        self._report(force=True)
        self.disable = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def bar(total: int, initial: int, desc: str, unit: str, disable: bool = False):
    """A progress bar on stderr (tqdm: count, rate, ETA), or JSON progress events."""
    if _JSON[0]:
        return _JsonBar(total, initial, desc, unit, disable)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable,
                file=sys.stderr, mininterval=1.0, dynamic_ncols=True)  # fmt: skip


#: JAX's monitoring event that brackets every XLA compilation (its start is recorded as a
#: scalar, its duration as an event duration, both with ``fun_name``).
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileNotices:
    """Say "compiling NAME ..." when an XLA compilation has run for ``after_s`` seconds, and
    how long it took when it ends, so that a long compilation is never a silent stretch.

    Driven by JAX's monitoring listeners (no logging configuration is changed); quick
    compilations print nothing. Use as a context manager (the ``diffdesign`` command wraps
    every study in one unless ``--quiet``).
    """

    def __init__(self, after_s: float = 3.0, out=None):
        import threading

        self.after_s, self.out = after_s, out
        self._lock = threading.Lock()
        self._timers: dict[str, object] = {}
        self._said: set[str] = set()

    def _print(self, message: str, name: str, seconds: float | None = None) -> None:
        if _JSON[0] and self.out is None:
            _emit("compile", name=name, state="started" if seconds is None else "finished",
                  seconds=None if seconds is None else round(seconds, 2))  # fmt: skip
            return
        print(message, file=self.out or sys.stderr, flush=True)

    def _started(self, event: str, value, **kwargs) -> None:
        if event != _COMPILE_EVENT:
            return
        import threading

        name = str(kwargs.get("fun_name", "a function"))

        def notice():
            with self._lock:
                if name in self._timers:
                    self._said.add(name)
            if name in self._said:
                import jax

                cached = jax.config.jax_compilation_cache_dir is not None
                self._print(
                    f"compiling {name} ... (first call with these shapes"
                    + ("; kept on disk for later runs)" if cached else ")"),
                    name,
                )

        timer = threading.Timer(self.after_s, notice)
        timer.daemon = True
        with self._lock:
            self._timers[name] = timer
        timer.start()

    def _finished(self, event: str, duration: float, **kwargs) -> None:
        if event != _COMPILE_EVENT:
            return
        name = str(kwargs.get("fun_name", "a function"))
        with self._lock:
            timer = self._timers.pop(name, None)
            said = name in self._said
            self._said.discard(name)
        if timer is not None:
            timer.cancel()
        if said:
            self._print(f"compiled {name} in {duration:.1f} s", name, duration)

    def __enter__(self):
        import jax.monitoring

        jax.monitoring.register_scalar_listener(self._started)
        jax.monitoring.register_event_duration_secs_listener(self._finished)
        return self

    def __exit__(self, *exc):
        import jax.monitoring

        jax.monitoring.unregister_scalar_listener(self._started)
        jax.monitoring.unregister_event_duration_listener(self._finished)
        with self._lock:
            timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.cancel()
        return False
