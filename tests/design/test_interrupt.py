"""Ctrl-C / SIGTERM during a run: the step ends, the checkpoint is written, the run says
where it stopped and exits 130; rerunning resumes to the uninterrupted result."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys, time, jax, jax.numpy as jnp
from diffdesign import design

class Slow(design.Problem):
    @property
    def spec(self):
        return {"x": design.Param(jnp.ones(3), step=0.01, label="x")}

    def loss(self, params, key):
        return jnp.sum((params["x"] - jax.random.normal(key, (3,))) ** 2), {}

def pause(step, params, info):
    time.sleep(0.02)  # a slow step, so that the signal lands mid-run

try:
    with design.stop_on_signal():
        result = design.run(Slow(), steps=120, key=jax.random.key(0), checkpoint=sys.argv[1],
                            callback=pause, progress=False)
except design.Interrupted as stop:
    print(stop, file=sys.stderr)
    sys.exit(130)
print(repr(result.params["x"].tolist()))
"""


def _steps(path: Path) -> int:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return len(json.loads(archive["__metadata__"].tobytes().decode())["history"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.smoke
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_after_the_step_and_the_rerun_resumes(tmp_path, signum):
    checkpoint = tmp_path / "run.npz"
    command = [sys.executable, "-c", SCRIPT, str(checkpoint)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _steps(checkpoint) < 3 and time.monotonic() < deadline:
        assert process.poll() is None
        time.sleep(0.01)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()
    message = err.decode().strip().splitlines()[-1]
    done = _steps(checkpoint)
    assert message == f"Slow: interrupted at step {done}/120; rerun the same command to resume"
    assert "Traceback" not in err.decode() and 3 <= done < 120

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
    whole = subprocess.run([*command[:-1], str(tmp_path / "whole.npz")], cwd=ROOT,
                           capture_output=True, check=True)  # fmt: skip
    assert resumed.stdout == whole.stdout
