"""The design layer's acceptance test: ARES offsets + settings and a muography detector in
one fit, checkpointed, killed with SIGKILL mid-run and resumed to the same bits."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = 30


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "diffdesign.cli", "joint", "example", "--smoke", "--quiet",
            "--steps", str(STEPS), "--out", str(out)]  # fmt: skip


def _history(checkpoint: Path) -> list[dict]:
    try:
        with np.load(checkpoint, allow_pickle=False) as archive:
            return json.loads(archive["__metadata__"].tobytes().decode())["history"]
    except (OSError, ValueError, KeyError):
        return []  # not written yet (the rename makes it appear whole)


def _steps_done(checkpoint: Path) -> int:
    return len(_history(checkpoint))


@pytest.mark.smoke
def test_joint_fit_resumes_after_kill_9(tmp_path):
    env = os.environ | {"DIFFDESIGN_JAX_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    whole = tmp_path / "whole"
    subprocess.run(_command(whole), env=env, check=True, cwd=ROOT, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(killed), env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600
    while _steps_done(killed / "checkpoint.npz") < 2 and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    done = _steps_done(killed / "checkpoint.npz")
    assert 2 <= done < STEPS
    assert not (killed / "results.json").exists()

    before = _history(killed / "checkpoint.npz")
    subprocess.run(_command(killed), env=env, check=True, cwd=ROOT, capture_output=True)
    a = json.loads((whole / "results.json").read_text())
    b = json.loads((killed / "results.json").read_text())
    assert len(b["history"]) == STEPS
    assert b["history"][:done] == before  # resumed: the killed run's steps, timings included
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert drop(b["history"]) == drop(a["history"])  # bit-identical losses at every step
    for key in ("offsets_m", "settings", "detector", "true_screen_beam_m"):
        assert b[key] == a[key], key
    # all three domains moved: offsets towards the truth, the detector's loss and the beam
    error = np.abs(np.subtract(a["offsets_m"], a["true_offsets_m"]))
    assert error.mean() < np.abs(a["true_offsets_m"]).mean()
    assert a["history"][-1]["tuning.loss"] < a["history"][0]["tuning.loss"]
    assert a["history"][-1]["calibration.loss"] < a["history"][0]["calibration.loss"]
