"""SIGKILL at random points of four long loops (the design layer's fit, ensemble training,
Bayesian optimisation, L-GSO): five kills each, at random moments after a random amount of
progress (inside a step, inside a checkpoint write or between), then a rerun of the same
command. Nothing may be lost or altered: every checkpoint left behind loads, and the final
result equals the uninterrupted run's bit for bit. (Targets: ``tests/kill_targets.py``.)"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
KILLS = 5
CHECKPOINTS = {"fit": "fit.npz", "ensemble": "ensemble.npz", "bo": "bo.npz", "lgso": "lgso.npz"}


def _command(loop: str, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "tests" / "kill_targets.py"), loop, str(out)]


def _stamp(path: Path):
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _loads(path: Path) -> dict:
    """The checkpoint's metadata: the file opens whole (numbers and JSON, no pickle)."""
    with np.load(path, allow_pickle=False) as archive:
        for name in archive.files:
            archive[name]  # every array reads
        return json.loads(archive["__metadata__"].tobytes().decode())


@pytest.mark.smoke
@pytest.mark.parametrize("loop", sorted(CHECKPOINTS))
def test_random_kills_lose_nothing(loop, tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT), "KILL_TARGETS_CACHE": str(tmp_path / "cache")}
    whole = tmp_path / "whole"
    subprocess.run(_command(loop, whole), env=env, cwd=ROOT, check=True, capture_output=True)

    killed, rng = tmp_path / "killed", np.random.default_rng(sorted(CHECKPOINTS).index(loop))
    checkpoint = killed / CHECKPOINTS[loop]
    kills = 0
    while kills < KILLS:
        before = _stamp(checkpoint)
        process = subprocess.Popen(_command(loop, killed), env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 300
        while _stamp(checkpoint) == before and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint progress in 300 s"
            time.sleep(0.005)
        if process.poll() is not None:
            break  # finished before this kill: the loop was shorter than the campaign
        time.sleep(rng.uniform(0.0, 0.4))  # then anywhere: a step, a write, a pause
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        kills += 1
        _loads(checkpoint)  # what the kill left is a whole checkpoint
        assert not (killed / "result.json").exists()
    assert kills == KILLS, f"{loop}: the run ended after {kills} kills"
    subprocess.run(_command(loop, killed), env=env, cwd=ROOT, check=True, capture_output=True)
    assert (killed / "result.json").read_text() == (whole / "result.json").read_text()
