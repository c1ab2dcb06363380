"""A table of bad inputs and what each must give: a clear error, or a handled result.

The project's rule for bad input (wrong shapes, NaN/inf, out-of-range settings, physically
meaningless values, malformed files): a clear error that names the field, the value and what
is allowed, raised before any long computation; never a silent bad result (NaN, inf or an
absurd number returned as if fine) and never an unhelpful crash (a raw ``UnicodeDecodeError``,
``BadZipFile``, ``KeyError: 'history'``, a JAX gather error, ...).

How to add cases (a new domain gets its own ``tests/fuzz/test_fuzz_<domain>.py``)::

    from tests.fuzz._harness import Case, handled, parametrize, raises, run_case

    CASES = [
        # an error is expected: these exception types, and a regex (re.search, case
        # insensitive) that the message must match; make it name the field.
        Case("dipole e1 = pi/2", lambda: Dipole(1.0, e1=np.pi / 2), raises(r"e1.*pi/2")),
        Case("k1 nan", lambda: Quadrupole(0.1, k1=np.nan), raises(r"k1", ValueError)),
        # the input is odd but legitimate: the call must return, and ``check(result)`` must
        # hold (return True/None; return False or raise AssertionError when it does not).
        Case("zero length", lambda: Drift(0.0), handled(lambda d: float(d.length) == 0.0)),
    ]

    @parametrize(CASES)
    def test_case(case):
        run_case(case)

Command-line cases run ``diffdesign.cli.main(argv)`` through :func:`cli`, which turns a
refusal (exit status 2 with ``diffdesign: error: ...`` or argparse's usage error) into a
``ValueError`` carrying what was printed on stderr, so ``raises(regex)`` checks the message::

    Case("track q1 1e6", lambda: cli(["ares", "track", "--q1", "1e6"]), raises(r"--q1"))

:func:`run_case` classifies the case (:func:`classify`), records the outcome for the
session summary and fails the test unless the outcome is ``clear_error`` or ``handled``.
The summary (counts per outcome and every case that failed) is printed at the end of the
run and written to ``fuzz_summary.json`` in pytest's base temporary folder (see
``tests/fuzz/conftest.py``); it works with and without xdist.

Outcomes:

- ``clear_error``: an error was expected and one of the expected types was raised with a
  message matching the regex;
- ``handled``: a result was expected and ``check`` accepted it;
- ``silent_bad``: the call returned where an error was expected (the detail says whether the
  result held non-finite numbers), or returned a result that ``check`` rejected;
- ``unhelpful_crash``: another exception type, or an expected type whose message does not
  match the regex (it does not say what is wrong);
- ``hang``: the call ran past the case's ``timeout`` (seconds).
"""

from __future__ import annotations

import dataclasses
import re
import signal
import threading
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

OUTCOMES = ("clear_error", "handled", "silent_bad", "unhelpful_crash", "hang")
GOOD = ("clear_error", "handled")

#: the outcomes of this process's cases, in order (see ``conftest.py`` for the summary).
RECORDED: list[dict[str, Any]] = []


@dataclasses.dataclass(frozen=True)
class Raises:
    """An error is expected: one of ``types``, with a message matching ``match``."""

    match: str
    types: tuple[type[BaseException], ...] = (ValueError,)


@dataclasses.dataclass(frozen=True)
class Handled:
    """A result is expected, and ``check(result)`` must accept it (True or None)."""

    check: Callable[[Any], Any]
    what: str = ""


def raises(match: str, *types: type[BaseException]) -> Raises:
    """Expect an exception of ``types`` (default ``ValueError``) whose message matches the
    regex ``match`` (``re.search``, case-insensitive). The regex should name the field."""
    return Raises(match, tuple(types) or (ValueError,))


def handled(check: Callable[[Any], Any], what: str = "") -> Handled:
    """Expect a result that ``check`` accepts (returns True or None, raises nothing)."""
    return Handled(check, what)


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: ``call()`` runs it; ``expect`` is :func:`raises` or :func:`handled`."""

    name: str
    call: Callable[[], Any]
    expect: Raises | Handled
    timeout: float = 30.0


@dataclasses.dataclass(frozen=True)
class Outcome:
    case: str
    outcome: str
    detail: str

    @property
    def good(self) -> bool:
        return self.outcome in GOOD


def finite_everywhere(result: Any) -> bool:
    """True when every number in ``result`` (nested tuples, lists, dicts, arrays, NamedTuples,
    PyTrees) is finite; non-numeric leaves are ignored."""
    import jax

    for leaf in jax.tree.leaves(result):
        try:
            array = np.asarray(leaf)
        except Exception:
            continue
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            return False
    return True


class _Timeout(BaseException):
    """Raised in the main thread by the alarm (a BaseException, so ``except Exception``
    in the code under test does not swallow it)."""


def _call_with_timeout(call: Callable[[], Any], timeout: float) -> tuple[str, Any]:
    """``("ok", result)``, ``("error", exception)`` or ``("hang", None)``."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM"):

        def alarm(signum, frame):
            raise _Timeout

        previous = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return "ok", call()
        except _Timeout:
            return "hang", None
        except Exception as error:
            return "error", error
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    box: dict[str, Any] = {}

    def target():
        try:
            box["ok"] = call()
        except Exception as error:
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return "hang", None
    return ("ok", box["ok"]) if "ok" in box else ("error", box["error"])


def _describe(error: BaseException) -> str:
    frame = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" at {Path(frame[0].filename).name}:{frame[0].lineno}" if frame else ""
    return f"{type(error).__name__}: {str(error)[:300]}{where}"


def classify(case: Case) -> Outcome:
    """Run ``case`` (with its timeout) and say which of :data:`OUTCOMES` it gave."""
    status, value = _call_with_timeout(case.call, case.timeout)
    if status == "hang":
        return Outcome(case.name, "hang", f"ran past {case.timeout} s")
    expect = case.expect
    if isinstance(expect, Raises):
        if status == "ok":
            finite = "finite" if finite_everywhere(value) else "NON-FINITE"
            return Outcome(
                case.name, "silent_bad", f"returned a {finite} {type(value).__name__}: "
                f"{str(value)[:200]}"
            )  # fmt: skip
        if isinstance(value, expect.types) and re.search(expect.match, str(value), re.I | re.S):
            return Outcome(case.name, "clear_error", _describe(value))
        wanted = "/".join(t.__name__ for t in expect.types)
        return Outcome(
            case.name, "unhelpful_crash",
            f"wanted {wanted} matching {expect.match!r}; got {_describe(value)}",
        )  # fmt: skip
    if status == "error":
        return Outcome(case.name, "unhelpful_crash", f"wanted a result; got {_describe(value)}")
    try:
        verdict = expect.check(value)
    except AssertionError as error:
        return Outcome(case.name, "silent_bad", f"check failed: {error} ({str(value)[:200]})")
    if verdict is False:
        return Outcome(
            case.name, "silent_bad", f"check {expect.what or 'failed'}: {str(value)[:200]}"
        )
    return Outcome(case.name, "handled", expect.what)


def run_case(case: Case, *, record: bool = True) -> Outcome:
    """Classify ``case``, record it for the summary, and fail unless the outcome is good."""
    outcome = classify(case)
    if record:
        RECORDED.append(dataclasses.asdict(outcome))
    if not outcome.good:
        pytest.fail(f"{outcome.outcome}: {case.name}: {outcome.detail}", pytrace=False)
    return outcome


class CommandRefused(ValueError):
    """A command that exited with status 2: its stderr is the message."""


def cli(argv: list[str]) -> tuple[int, str]:
    """Run ``diffdesign.cli.main(argv)``; exit status 2 (a refusal, from the command or
    argparse) raises :class:`CommandRefused` with stderr; otherwise ``(status, stdout)``.
    Any other exception propagates (an unhelpful crash: main should have said what is
    wrong)."""
    import contextlib
    import io

    from diffdesign.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit_:  # argparse: usage errors exit with 2
            status = exit_.code if isinstance(exit_.code, int) else 1
    if status == 2:
        raise CommandRefused(err.getvalue().strip()[-2000:])
    return status, out.getvalue()


def parametrize(cases: Iterable[Case]):
    """``pytest.mark.parametrize("case", cases)`` with each case's name as its id (names
    must be unique within a file)."""
    cases = list(cases)
    names = [c.name for c in cases]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"fuzz case names must be unique; repeated: {duplicated}")
    return pytest.mark.parametrize("case", cases, ids=names)


def summary(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts per outcome and the cases that were not good, from recorded outcomes."""
    records = list(records)
    counts = {name: sum(r["outcome"] == name for r in records) for name in OUTCOMES}
    return {
        "total": len(records),
        "counts": counts,
        "failures": [r for r in records if r["outcome"] not in GOOD],
    }
