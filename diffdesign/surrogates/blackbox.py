"""Black-box simulators: anything that maps parameters and inputs to random outputs.

The optimisers of :mod:`diffdesign.surrogates` see a simulator only through
:class:`BlackBoxSimulator`: ``sample_inputs(n, seed) -> x`` draws the simulator's inputs
``x ~ q(x)`` and ``simulate(psi, x, seed) -> y`` runs it row by row. Both take and return
NumPy arrays, so the simulator need not be JAX, Python, or even on this machine:

* :class:`PythonSimulator` wraps two Python functions;
* :class:`SubprocessSimulator` runs a command per call, exchanging ``.npz`` files (numeric
  arrays only, read with ``allow_pickle=False``); a script answers with :func:`serve`.

:func:`run_simulation` checks every call's shapes and values, naming the simulator. One
*simulator call* is one row: ``simulate`` on ``n`` rows costs ``n`` calls.
"""

from __future__ import annotations

import abc
import dataclasses
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


class BlackBoxSimulator(abc.ABC):
    """A stochastic simulator ``y ~ p(y | x; psi)`` with inputs ``x ~ q(x)``.

    Attributes:
        psi_dim: number of parameters ``psi`` (what is optimised).
        x_dim: number of inputs per row.
        y_dim: number of outputs per row.
    """

    psi_dim: int
    x_dim: int
    y_dim: int

    @abc.abstractmethod
    def sample_inputs(self, n: int, seed: int) -> np.ndarray:
        """``(n, x_dim)`` inputs drawn from ``q(x)``."""

    @abc.abstractmethod
    def simulate(self, psi: np.ndarray, x: np.ndarray, seed: int) -> np.ndarray:
        """``(n, y_dim)`` outputs, one per row of ``psi (n, psi_dim)`` and ``x (n, x_dim)``."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def __post_init__(self) -> None:
        for field in ("psi_dim", "x_dim", "y_dim"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{field} must be an integer >= 1; got {value!r}")


@dataclasses.dataclass(frozen=True)
class PythonSimulator(BlackBoxSimulator):
    """A simulator from two Python functions (NumPy in, NumPy out).

    Attributes:
        simulate_fn: ``(psi (n, psi_dim), x (n, x_dim), seed) -> y (n, y_dim)``.
        sample_inputs_fn: ``(n, seed) -> x (n, x_dim)``.
        psi_dim, x_dim, y_dim: dimensions.
        label: name used in messages.
    """

    simulate_fn: Callable[[np.ndarray, np.ndarray, int], np.ndarray]
    sample_inputs_fn: Callable[[int, int], np.ndarray]
    psi_dim: int
    x_dim: int
    y_dim: int
    label: str = "python simulator"

    def sample_inputs(self, n: int, seed: int) -> np.ndarray:
        return self.sample_inputs_fn(n, seed)

    def simulate(self, psi: np.ndarray, x: np.ndarray, seed: int) -> np.ndarray:
        return self.simulate_fn(psi, x, seed)

    @property
    def name(self) -> str:
        return self.label


@dataclasses.dataclass(frozen=True)
class SubprocessSimulator(BlackBoxSimulator):
    """A simulator run as a command, one process per call.

    The command is called as ``command + [request.npz, response.npz]``. The request holds
    ``task`` (``"simulate"`` or ``"sample_inputs"``), ``seed``, ``n`` and, to simulate,
    ``psi`` and ``x``; the command writes ``y`` (or ``x``) into the response. A Python
    script does both with :func:`serve`.

    Attributes:
        command: the program and its leading arguments, e.g. ``["python", "sim.py"]``.
        psi_dim, x_dim, y_dim: dimensions.
        timeout: seconds a call may take.
    """

    command: Sequence[str]
    psi_dim: int
    x_dim: int
    y_dim: int
    timeout: float = 600.0

    def _call(self, request: dict, key: str) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="diffdesign-simulator-") as folder:
            request_path = Path(folder) / "request.npz"
            response_path = Path(folder) / "response.npz"
            np.savez(request_path, **request)
            try:
                done = subprocess.run(
                    [*self.command, str(request_path), str(response_path)],
                    capture_output=True,
                    text=True,
                    timeout=self.timeout,
                )
            except (OSError, subprocess.TimeoutExpired) as error:
                raise RuntimeError(f"simulator {self.name!r} could not run: {error}") from None
            if done.returncode != 0:
                raise RuntimeError(
                    f"simulator {self.name!r} exited with status {done.returncode}: "
                    f"{done.stderr.strip()[-2000:]}"
                )
            try:
                with np.load(response_path, allow_pickle=False) as response:
                    return np.asarray(response[key])
            except (OSError, KeyError, ValueError) as error:
                raise RuntimeError(
                    f"simulator {self.name!r} wrote no readable {key!r} array to its response "
                    f"file: {error}"
                ) from None

    def sample_inputs(self, n: int, seed: int) -> np.ndarray:
        return self._call({"task": "sample_inputs", "n": n, "seed": seed}, "x")

    def simulate(self, psi: np.ndarray, x: np.ndarray, seed: int) -> np.ndarray:
        return self._call(
            {"task": "simulate", "n": len(psi), "seed": seed, "psi": psi, "x": x}, "y"
        )

    @property
    def name(self) -> str:
        return " ".join(self.command)


def serve(
    simulate: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
    sample_inputs: Callable[[int, int], np.ndarray],
    argv: Sequence[str] | None = None,
) -> None:
    """Answer one :class:`SubprocessSimulator` request (call from a script's ``__main__``).

    Example (``sim.py``)::

        if __name__ == "__main__":
            serve(my_simulate, my_sample_inputs)
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 2:
        raise SystemExit("usage: SCRIPT REQUEST.npz RESPONSE.npz")
    request_path, response_path = argv
    with np.load(request_path, allow_pickle=False) as request:
        task, seed, n = str(request["task"]), int(request["seed"]), int(request["n"])
        if task == "simulate":
            np.savez(response_path, y=np.asarray(simulate(request["psi"], request["x"], seed)))
        elif task == "sample_inputs":
            np.savez(response_path, x=np.asarray(sample_inputs(n, seed)))
        else:
            raise SystemExit(f"unknown task {task!r}")


def sample_inputs_checked(simulator: BlackBoxSimulator, n: int, seed: int) -> np.ndarray:
    """``simulator.sample_inputs`` with its shape and values checked."""
    x = np.asarray(simulator.sample_inputs(n, seed), dtype=float)
    return _checked(simulator, x, (n, simulator.x_dim), "sample_inputs")


def run_simulation(
    simulator: BlackBoxSimulator, psi: np.ndarray, x: np.ndarray, seed: int
) -> np.ndarray:
    """``simulator.simulate`` with inputs and outputs checked (costs ``len(psi)`` calls).

    Raises:
        ValueError: on inputs of the wrong shape or non-finite parameters.
        RuntimeError: if the simulator returns the wrong shape or non-finite outputs.
    """
    psi = np.asarray(psi, dtype=float)
    x = np.asarray(x, dtype=float)
    if psi.ndim != 2 or psi.shape[1] != simulator.psi_dim:
        raise ValueError(f"psi must have shape (n, {simulator.psi_dim}); got {psi.shape}")
    if x.shape != (psi.shape[0], simulator.x_dim):
        raise ValueError(f"x must have shape ({psi.shape[0]}, {simulator.x_dim}); got {x.shape}")
    if not np.all(np.isfinite(psi)):
        raise ValueError(f"psi must be finite for simulator {simulator.name!r}")
    y = np.asarray(simulator.simulate(psi, x, seed), dtype=float)
    return _checked(simulator, y, (psi.shape[0], simulator.y_dim), "simulate")


def _checked(simulator, array: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    if array.shape != shape:
        raise RuntimeError(
            f"simulator {simulator.name!r}: {what} returned shape {array.shape}; expected {shape}"
        )
    if not np.all(np.isfinite(array)):
        raise RuntimeError(f"simulator {simulator.name!r}: {what} returned non-finite values")
    return array


def derived_seed(seed: int, *path: int) -> int:
    """An independent 32-bit seed for the draw named by ``path`` (e.g. iteration, purpose)
    of a run with ``seed``: reruns repeat every draw, different paths share none."""
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])
