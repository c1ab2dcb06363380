"""Black-box simulators: Python and subprocess wrappers, checked calls, clear errors."""

import sys
from pathlib import Path

import numpy as np
import pytest

from diffdesign.surrogates.blackbox import (
    PythonSimulator,
    SubprocessSimulator,
    run_simulation,
    sample_inputs_checked,
)

SCRIPT = Path(__file__).parent / "data" / "subprocess_simulator.py"


def python_simulator(simulate=None):
    def default(psi, x, seed):
        rng = np.random.default_rng(seed)
        return psi.sum(axis=1, keepdims=True) + x + rng.normal(0.0, 0.1, x.shape)

    def inputs(n, seed):
        return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 1))

    return PythonSimulator(simulate or default, inputs, psi_dim=2, x_dim=1, y_dim=1, label="toy")


def subprocess_simulator():
    return SubprocessSimulator([sys.executable, str(SCRIPT)], psi_dim=2, x_dim=1, y_dim=1)


def test_subprocess_and_python_simulators_agree():
    psi = np.tile([0.5, -0.2], (50, 1))
    local, remote = python_simulator(), subprocess_simulator()
    x = sample_inputs_checked(local, 50, 4)
    np.testing.assert_array_equal(sample_inputs_checked(remote, 50, 4), x)
    np.testing.assert_array_equal(
        run_simulation(remote, psi, x, 9), run_simulation(local, psi, x, 9)
    )


@pytest.mark.parametrize(
    "broken, match",
    [("shape", r"returned shape \(5,\)"), ("nan", "non-finite"), ("crash", "status 3.*on purpose")],
)
def test_subprocess_failures_name_the_simulator(monkeypatch, broken, match):
    monkeypatch.setenv("BROKEN_SIMULATOR", broken)
    with pytest.raises(RuntimeError, match=match):
        run_simulation(subprocess_simulator(), np.zeros((5, 2)), np.zeros((5, 1)), 0)


def test_bad_inputs_are_refused_before_the_simulator_runs():
    calls = []

    def spy(psi, x, seed):
        calls.append(len(psi))
        return np.zeros((len(psi), 1))

    simulator = python_simulator(spy)
    with pytest.raises(ValueError, match=r"psi must have shape \(n, 2\)"):
        run_simulation(simulator, np.zeros((3, 3)), np.zeros((3, 1)), 0)
    with pytest.raises(ValueError, match=r"x must have shape \(3, 1\)"):
        run_simulation(simulator, np.zeros((3, 2)), np.zeros((4, 1)), 0)
    with pytest.raises(ValueError, match="finite"):
        run_simulation(simulator, np.full((3, 2), np.inf), np.zeros((3, 1)), 0)
    assert calls == []
    with pytest.raises(RuntimeError, match=r"'toy'.*shape"):
        run_simulation(python_simulator(lambda p, x, s: np.zeros((2, 1))), np.zeros((3, 2)),
                       np.zeros((3, 1)), 0)  # fmt: skip
