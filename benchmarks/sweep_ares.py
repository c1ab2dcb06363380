"""A sweep of ARES calibrations: one vmapped program against the same points one by one.

    python benchmarks/sweep_ares.py [--out benchmarks/results/cpu/sweep_ares.json]
                                    [--cli-points 10] [--smoke]

The sweep ``experiments/sweeps/ares_noise.toml`` (10 screen-noise levels x 100 seeds =
1,000 simulated calibrations of ``diffdesign ares calibrate``) is run

  (a) batched: ``diffdesign sweep`` as a user runs it (a fresh process: import, compile,
      run, tables and plots), and ``diffdesign.sweep.run`` in this process into a fresh
      folder twice (the second call is the steady state: compiled programs cached);
  (b) one by one through the CLI: ``diffdesign ares calibrate --config POINT.toml`` for
      ``--cli-points`` of the points (a process each, as a shell loop would), timed and
      extrapolated to all points;
  (c) one by one in this process: the same sweep with ``separate=True`` (the study's own
      code per point, compiled once), which also gives the sweep's overhead per point
      (wall time minus the points' own time).

Every point computed both ways is compared (largest relative difference of each outcome).
``--smoke`` (the CI test): 2 noise levels x 2 seeds, 1 CLI point.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import diffdesign  # noqa: F401  (float64)
from diffdesign import sweep
from diffdesign._config import to_toml
from diffdesign.cli import command_target

SPEC = ROOT / "experiments/sweeps/ares_noise.toml"
EXE = [sys.executable, "-m", "diffdesign.cli"]


def _spec_content(smoke: bool) -> dict:
    """The sweep file's content (the smoke sweep: 2 noise levels x 2 seeds)."""
    content = tomllib.loads(SPEC.read_text())
    if smoke:
        content["axes"] = [{"screen_noise": [1e-6, 1e-4]}, {"seed": {"start": 0, "stop": 2}}]
    return content


def _run(spec, out, separate=False):
    start = time.perf_counter()
    result = sweep.run(command_target(spec.target), spec.axes, out, fixed=spec.fixed,
                       memory_budget_gib=spec.memory_budget_gib, separate=separate,
                       outcomes=spec.outcomes, progress=False)  # fmt: skip
    return result, time.perf_counter() - start


def _relative(a: dict, b: dict, index) -> dict[str, float]:
    diffs = {}
    for name in a:
        x, y = np.asarray(a[name])[index], np.asarray(b[name])[index]
        scale = np.maximum(np.abs(x), np.abs(y))
        diffs[name] = float(
            np.max(np.where(scale > 0, np.abs(x - y) / np.where(scale > 0, scale, 1), 0))
        )
    return diffs


def _in_standard_errors(a: dict, b: dict) -> float:
    """Largest |difference of the offsets| / their standard error."""
    return float(np.max(np.abs(np.asarray(a["offsets_m"]) - np.asarray(b["offsets_m"]))
                        / np.asarray(b["std_m"])))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/cpu/sweep_ares.json"))
    parser.add_argument("--cli-points", type=int, default=10)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    cli_points = 1 if args.smoke else args.cli_points
    content = _spec_content(args.smoke)
    spec = sweep.SweepSpec.from_mapping(content, str(SPEC))
    work = Path(tempfile.mkdtemp(prefix="sweep_ares_"))
    spec_file = work / "spec.toml"
    spec_file.write_text(to_toml(content))
    env = os.environ | {"PYTHONPATH": str(ROOT)}

    # (a) batched, as a user runs it
    start = time.perf_counter()
    subprocess.run([*EXE, "sweep", str(spec_file), "--out", str(work / "cli_batched"), "--quiet"],
                   check=True, env=env, capture_output=True, cwd=ROOT)  # fmt: skip
    batched_cli_s = time.perf_counter() - start
    first, first_s = _run(spec, work / "batched_1")
    steady, steady_s = _run(spec, work / "batched_2")
    n = first.n

    # (b) one by one through the CLI
    columns = first.columns
    picks = np.linspace(0, n - 1, cli_points).round().astype(int)
    cli_times, cli_outcomes = [], {}
    for i in picks:
        point = spec.fixed | {k: columns[k][i] for k in columns}
        config = work / f"point_{i}.toml"
        config.write_text(to_toml(point))
        start = time.perf_counter()
        subprocess.run([*EXE, "ares", "calibrate", "--config", str(config), "--out",
                        str(work / f"cli_{i}"), "--quiet"], check=True, env=env,
                       capture_output=True, cwd=ROOT)  # fmt: skip
        cli_times.append(time.perf_counter() - start)
        results = json.loads((work / f"cli_{i}" / "results.json").read_text())
        for name in spec.outcomes:
            cli_outcomes.setdefault(name, []).append(results[name])
    cli_per_point = statistics.median(cli_times)
    cli_diff = _relative({k: np.asarray(v) for k, v in cli_outcomes.items()},
                         {k: steady.outcomes[k][picks] for k in cli_outcomes},
                         slice(None))  # fmt: skip

    # (c) one by one in this process
    separate, separate_s = _run(spec, work / "separate", separate=True)
    separate_diff = _relative(separate.outcomes, steady.outcomes, slice(None))
    overhead_per_point = (separate.wall_s - separate.work_s) / separate.computed

    results = {
        "benchmark": "sweep of ARES calibrations: batched vs one by one",
        "spec": str(SPEC.relative_to(ROOT)), "smoke": args.smoke, "points": n,
        "device": str(jax.devices()[0]), "device_count": jax.device_count(),
        "jax": jax.__version__, "python": platform.python_version(), "float64": True,
        "batched": {
            "cli_wall_s": batched_cli_s, "first_run_s": first_s, "steady_run_s": steady_s,
            "steady_compiled_calls_s": steady.work_s,
        },
        "one_by_one_cli": {
            "points_timed": len(picks), "indices": picks.tolist(),
            "per_point_s": cli_times, "median_per_point_s": cli_per_point,
            "all_points_extrapolated_s": cli_per_point * n,
            "max_relative_difference": cli_diff,
            "max_offset_difference_in_std": _in_standard_errors(
                {k: np.asarray(v) for k, v in cli_outcomes.items()},
                {k: steady.outcomes[k][picks] for k in ("offsets_m", "std_m")}),
        },
        "one_by_one_in_process": {
            "wall_s": separate_s, "points_own_time_s": separate.work_s,
            "per_point_s": separate.work_s / separate.computed,
            "sweep_overhead_per_point_s": overhead_per_point,
            "overhead_fraction_of_a_1s_point": overhead_per_point / 1.0,
            "max_relative_difference": separate_diff,
            "max_offset_difference_in_std": _in_standard_errors(separate.outcomes,
                                                                steady.outcomes),
        },
        "speedup": {
            "batched_cli_vs_one_by_one_cli": cli_per_point * n / batched_cli_s,
            "batched_steady_vs_one_by_one_cli": cli_per_point * n / steady_s,
            "batched_steady_vs_one_by_one_in_process": separate_s / steady_s,
        },
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    speed = results["speedup"]
    print(
        f"{n} points: batched CLI {batched_cli_s:.2f} s (steady {steady_s:.3f} s); one by one "
        f"via CLI {cli_per_point:.2f} s/point -> {cli_per_point * n:.0f} s; in-process "
        f"{separate_s:.2f} s; speed-ups {speed['batched_cli_vs_one_by_one_cli']:.0f}x (CLI vs "
        f"CLI), {speed['batched_steady_vs_one_by_one_in_process']:.1f}x (in process); "
        f"overhead {overhead_per_point * 1e3:.2f} ms/point; max rel. diff "
        f"{max(separate_diff.values()):.2g} (in process), {max(cli_diff.values()):.2g} (CLI)"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
