"""Sweeps across processes: kill -9 and resume through the CLI, any command with a CONFIG,
two processes under jax.distributed on localhost against one."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from diffdesign import sweep

ROOT = Path(__file__).resolve().parents[2]

TOY_CONFIG = """
import dataclasses
from diffdesign._config import TomlConfig

@dataclasses.dataclass(frozen=True)
class ToyConfig(TomlConfig):
    x: float = 1.0
    seed: int = 0
    pause: float = 0.0

    def __post_init__(self):
        if not 0 <= self.x <= 10:
            raise ValueError(f"x must lie in [0, 10]; got {self.x}")
"""

TOY_COMMAND = '''
"""a toy study: slow, logs every point it runs"""
import json, os, time
from pathlib import Path

CONFIG = "experiments.toy._config:ToyConfig"

def run(args):
    from experiments.toy._config import ToyConfig
    config = ToyConfig.from_toml(args.config)
    time.sleep(config.pause)
    with open(os.environ["TOY_LOG"], "a") as log:
        log.write(f"{config.seed} {config.x}\\n")
    Path(args.out, "results.json").write_text(json.dumps(
        {"value": config.x ** 2 + config.seed, "parts": {"root": config.x ** 0.5}}))
    return {"value": str(config.x ** 2)}
'''


def _toy_experiments(tmp_path: Path) -> Path:
    package = tmp_path / "toy_repo" / "experiments"
    (package / "toy").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "toy" / "__init__.py").write_text('"""toy studies"""\n')
    (package / "toy" / "_config.py").write_text(TOY_CONFIG)
    (package / "toy" / "slow.py").write_text(TOY_COMMAND)
    return package


def _sweep(spec: Path, out: Path, env: dict, *extra: str, wait: bool = True, pipe=subprocess.PIPE):
    command = [sys.executable, "-m", "diffdesign.cli", "sweep", str(spec), "--out", str(out),
               "--quiet", *extra]  # fmt: skip
    if not wait:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=pipe, stderr=pipe)
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)


@pytest.mark.smoke
def test_kill_9_mid_sweep_loses_nothing_and_recomputes_no_finished_point(tmp_path):
    experiments = _toy_experiments(tmp_path)
    log = tmp_path / "log.txt"
    env = os.environ | {"DIFFDESIGN_EXPERIMENTS": str(experiments), "TOY_LOG": str(log),
                        "PYTHONPATH": str(ROOT)}  # fmt: skip
    spec = tmp_path / "toy.toml"
    spec.write_text(
        textwrap.dedent("""
        target = "toy slow"
        [config]
        pause = 0.3
        [[axes]]
        x = [1.0, 2.0, 3.0]
        [[axes]]
        seed = {start = 0, stop = 4}
    """)
    )
    out = tmp_path / "sweep"

    def records() -> int:
        return len(list((out / "points").glob("point-*.npz")))

    def start_and_wait_for(n_records: int, pipe):
        process = _sweep(spec, out, env, wait=False, pipe=pipe)
        deadline = time.time() + 120
        while records() < n_records and time.time() < deadline:
            time.sleep(0.05)
        return process

    # Ctrl-C: the point in progress finishes and is recorded, then a clean exit 130
    process = start_and_wait_for(2, subprocess.PIPE)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()[-2000:]
    assert "rerun the same command to resume" in stderr.decode()
    assert len(log.read_text().splitlines()) == records()
    # kill -9 in the middle of the rerun
    process = start_and_wait_for(4, subprocess.DEVNULL)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {int(p.stem.split("-")[1]) for p in (out / "points").glob("point-*.npz")}
    assert 4 <= len(finished) < 12
    runs_before = log.read_text().splitlines()
    resumed = _sweep(spec, out, env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{12 - len(finished)} run now" in resumed.stdout
    runs_after = log.read_text().splitlines()[len(runs_before) :]
    # no finished point ran again (the point in flight at the kill had no record: it reruns)
    finished_runs = {(int(s), float(x)) for s, x in (r.split() for r in runs_before)}
    again = {(int(s), float(x)) for s, x in (r.split() for r in runs_after)}
    columns, _ = sweep.expand(sweep.SweepSpec.from_toml(spec).axes)
    recorded = {(columns["seed"][i], columns["x"][i]) for i in finished}
    assert not recorded & again and len(again) == 12 - len(finished)
    assert len(finished_runs - recorded) <= 1
    # the same table as an uninterrupted sweep
    whole = _sweep(spec, tmp_path / "whole", env)
    assert whole.returncode == 0, whole.stderr
    assert (out / "results.jsonl").read_text() == (tmp_path / "whole" / "results.jsonl").read_text()
    rows = sweep.load_rows(out)
    assert [r["value"] for r in rows] == [
        x**2 + s for x, s in zip(columns["x"], columns["seed"], strict=True)
    ]
    assert rows[5]["parts.root"] == pytest.approx(2.0**0.5, rel=1e-15)
    # bad input through the CLI: named, exit 2, nothing run
    spec.write_text('target = "toy slow"\n[[axes]]\nx = [1.0, 11.0]\n')
    bad = _sweep(spec, tmp_path / "bad", env)
    assert bad.returncode == 2 and "x must lie in [0, 10]; got 11.0" in bad.stderr
    spec.write_text('target = "toy fast"\n[[axes]]\nx = [1.0]\n')
    bad = _sweep(spec, tmp_path / "bad", env)
    assert bad.returncode == 2 and "commands: ['toy slow']" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.smoke
def test_two_processes_under_jax_distributed_give_the_same_table(tmp_path):
    """Batched (a global array over 2 x 2 emulated devices) and point by point (each
    process runs the points its devices hold), each against one process with one device."""
    from experiments.ares._calibrate import sweep_target

    text = textwrap.dedent("""
        target = "ares calibrate"
        chunk = 4
        outcomes = ["offsets_m", "std_m", "chi2"]
        [config]
        n_calibration = 8
        [[axes]]
        screen_noise = [1e-6, 1e-4]
        [[axes]]
        seed = {start = 0, stop = 3}
    """)
    spec = tmp_path / "ares.toml"
    spec.write_text(text)
    parsed = sweep.SweepSpec.from_toml(spec)
    reference = sweep.run(sweep_target(), parsed.axes, tmp_path / "one", fixed=parsed.fixed,
                          chunk=4, outcomes=parsed.outcomes, progress=False)  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(ROOT),
                        "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}  # fmt: skip
    for mode in ("batched", "separate"):
        coordinator = f"localhost:{_free_port()}"
        extra = ["--separate"] if mode == "separate" else []
        processes = [
            _sweep(spec, tmp_path / mode, env, "--coordinator", coordinator, "--num-processes",
                   "2", "--process-id", str(i), *extra, wait=False)
            for i in range(2)
        ]  # fmt: skip
        for p in processes:
            _, stderr = p.communicate(timeout=300)
            assert p.returncode == 0, stderr.decode()[-3000:]
        rows = sweep.load_rows(tmp_path / mode)
        assert [r["index"] for r in rows] == list(range(6))
        chi2 = [r["chi2"] for r in rows]
        np.testing.assert_allclose(chi2, reference.outcomes["chi2"], rtol=1e-11)
        shift = np.abs(np.asarray([r["offsets_m"] for r in rows]) - reference.outcomes["offsets_m"])
        assert np.all(shift <= 1e-5 * reference.outcomes["std_m"]), mode
    # point by point, every point ran once, in one of the two processes
    assert sorted(p.name for p in (tmp_path / "separate" / "runs").iterdir()) == [
        f"{i:07d}" for i in range(6)
    ]
