"""diffdesign.muography vs TomOpt 0.1.0 (PyTorch): lead block in beryllium, forward + X0 + backward.

    python benchmarks/muography_vs_tomopt.py [--smoke] [--peer-muons 1000,10000]
        [--out benchmarks/results/cpu/muography_vs_tomopt.json]
        [--peer-python .venv-tomopt/bin/python]

Geometry (TomOpt's lead-block benchmark): 1 m x 1 m footprint, 10 cm voxels,
passive z = 0.2 ... 0.8 m, beryllium (X0 0.3528 m) with a lead block (X0 0.005612 m) in voxels
x, y 3..5 of the layers 0.4-0.5 and 0.5-0.6 m; 4 panels above (z 1.0, 0.95, 0.9, 0.85) and 4
below (0.1999, 0.15, 0.1, 0.05; TomOpt's top one sits at 0.2, on the volume's face, which
``check_detector`` refuses), 100 um resolution, efficiency 0.9, 1 m x 1 m; muons at a fixed
5 GeV/c (TomOpt's default) with zenith angles from the flux up to 70 deg, crossing z = 1 m over
x, y in (-0.241, 1.241) m (TomOpt's ``from_volume`` margin).

Measured, per muon count N, the same work for both tools: generate N muons, pass them through
the volume, record hits, fit tracks, infer X0 per voxel, the loss mean(((pred - true) / true)^2)
and its gradient with respect to every panel parameter. TomOpt runs in its own virtual
environment through ``benchmarks/peers/tomopt_muography.py`` (a fresh process per count, in
batches of 1000 muons as its own fit loop does; its wall time includes no compilation). Ours is
one jitted function: the first call (compile included) and the steady state (median of 3) are
reported apart, for the PoCA estimator (TomOpt's kind) and the angle+offset likelihood.
TomOpt's time at 100k muons is extrapolated linearly from 10k (its batches are independent and
equal; measured ANCHORS: 100k did not finish in 50 min on a loaded machine), and marked so.
``--smoke`` (the CI test): 500 muons, PoCA only, and the peer at 200 muons if its Python
exists.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

import diffdesign  # float64
from diffdesign.muography import (
    ESTIMATORS,
    Detector,
    block_in_matrix,
    generate_muons,
    make_panels,
    predict_x0,
    propagate,
    x0_error,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timed

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PEER_PYTHON = ROOT / ".venv-tomopt" / "bin" / "python"
PEER_SCRIPT = ROOT / "benchmarks" / "peers" / "tomopt_muography.py"
RESULTS = ROOT / "benchmarks" / "results" / "cpu"
FOOTPRINT = ((-0.24115, 1.24115), (-0.24115, 1.24115))
VOLUME = block_in_matrix((0.31, 0.31, 0.41), (0.59, 0.59, 0.59), lower=(0.0, 0.0, 0.2))
DETECTOR = Detector(
    make_panels([1.0, 0.95, 0.9, 0.85], sigma=1e-4, efficiency=0.9),
    make_panels([0.1999, 0.15, 0.1, 0.05], sigma=1e-4, efficiency=0.9),
)


def progress(message: str) -> None:
    print(f"[muography_vs_tomopt {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr,
          flush=True)  # fmt: skip


def _chain(n: int, estimator: str):
    """key, detector -> (loss, gradient, prediction): the whole chain for n muons."""

    def loss(det, key):
        k_mu, k_sc, k_hit = jax.random.split(key, 3)
        muons = generate_muons(k_mu, n, footprint=FOOTPRINT, z=1.0, momentum=5e9)
        passage = propagate(k_sc, muons, VOLUME)
        pred = predict_x0(k_hit, det, passage, muons.p, VOLUME, ESTIMATORS[estimator])
        return x0_error(pred, VOLUME.x0), pred

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def _gradient_norms(grad: Detector) -> dict[str, float]:
    out = {}
    for field in ("xy", "z", "span", "sigma", "efficiency"):
        parts = [np.asarray(getattr(getattr(grad, side), field)) for side in ("above", "below")]
        out[field] = float(np.sqrt(sum(np.sum(p**2) for p in parts)))
    return out


def ours(counts: list[int], estimators: tuple[str, ...]) -> dict:
    """Timings, loss, gradient norms and lead-block means of our chain per count and
    estimator (the prediction maps of the largest count kept for the plot)."""
    block = np.asarray(VOLUME.x0) < 0.01
    out: dict = {}
    for estimator in estimators:
        for n in counts:
            progress(f"ours: {estimator}, {n} muons ...")
            fn = _chain(n, estimator)
            keys = iter(jax.random.split(jax.random.key(0), 100))
            last: dict = {}

            def call(fn=fn, keys=keys, last=last):
                (value, pred), grad = fn(DETECTOR, next(keys))
                jax.block_until_ready(grad)
                last.update(loss=value, pred=pred, grad=grad)

            timing = timed(call, reps=3, warmup=1)
            pred = np.asarray(last["pred"])
            out[f"{estimator}/{n}"] = {
                "estimator": estimator, "n_muons": n, **timing,
                "loss": float(last["loss"]), "gradient_norms": _gradient_norms(last["grad"]),
                "lead_mean_x0": float(pred[block].mean()),
                "beryllium_median_x0": float(np.median(pred[~block])),
                "peak_rss_mib_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "prediction_zxy": np.moveaxis(pred, 2, 0).round(6).tolist(),
            }  # fmt: skip
            progress(f"ours: {estimator} {n}: first {timing['first_call_s']:.2f} s, steady "
                     f"{timing['median_s']:.3f} s, loss {float(last['loss']):.4g}")  # fmt: skip
    return out


def peer(python: Path, counts: list[int], work: Path) -> dict:
    if not python.exists():
        return {"status": f"skipped: {python} not found (see {PEER_SCRIPT.name}'s docstring)"}
    out = work / "tomopt.json"
    cmd = [str(python), str(PEER_SCRIPT), str(out), "--batch", "1000", "--seed", "0",
           "--predict-muons", str(max(counts))]  # fmt: skip
    for n in counts:
        cmd += ["--muons", str(n)]
    progress(f"TomOpt: {counts} muons (a fresh process per count) ...")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if not out.exists():
        return {"status": f"failed (rc {proc.returncode})", "stderr_tail": proc.stderr[-3000:]}
    return {"status": "ok", **json.loads(out.read_text())}


def _peer_run(report: dict, n: int) -> dict | None:
    for run in report.get("runs", []):
        if run.get("n_muons") == n and run.get("status") == "ok":
            return run
    return None


def ratios(our: dict, their: dict, counts: list[int], peer_counts: list[int]) -> dict:
    """TomOpt wall / our steady and first-call times at equal muon counts (extrapolated
    linearly from TomOpt's largest measured count where it was not run)."""
    measured = {n: r["wall_s"] for n in peer_counts if (r := _peer_run(their, n))}
    out = {}
    if not measured:
        return out
    largest = max(measured)
    for estimator in ("poca", "likelihood"):
        for n in counts:
            mine = our.get(f"{estimator}/{n}")
            if mine is None:
                continue
            wall = measured.get(n, measured[largest] * n / largest)
            out[f"{estimator}/{n}"] = {
                "tomopt_s": wall, "tomopt_extrapolated": n not in measured,
                "vs_steady": wall / mine["median_s"], "vs_first_call": wall / mine["first_call_s"],
            }  # fmt: skip
    return out


def markdown(our: dict, their: dict, rat: dict, counts: list[int]) -> str:
    lines = [
        "| muons | TomOpt 0.1.0 (s) | ours PoCA: first / steady (s) | ours likelihood: first / "
        "steady (s) | TomOpt / ours steady (PoCA, likelihood) | loss TomOpt / PoCA / likelihood |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n in counts:
        p, lk = our[f"poca/{n}"], our[f"likelihood/{n}"]
        run = _peer_run(their, n)
        rp, rl = rat.get(f"poca/{n}"), rat.get(f"likelihood/{n}")
        tomopt = "-"
        if rp is not None:
            tomopt = f"{rp['tomopt_s']:.1f}" + (" (extrap.)" if rp["tomopt_extrapolated"] else "")
        ratio = "-" if rp is None else f"{rp['vs_steady']:.0f}x, {rl['vs_steady']:.0f}x"
        loss_t = f"{run['loss']:.3g}" if run else "-"
        lines.append(
            f"| {n:,} | {tomopt} | {p['first_call_s']:.2f} / {p['median_s']:.3f} | "
            f"{lk['first_call_s']:.2f} / {lk['median_s']:.3f} | {ratio} | "
            f"{loss_t} / {p['loss']:.3g} / {lk['loss']:.3g} |"
        )
    return "\n".join(lines)


def plot(our: dict, their: dict, n: int, path: Path) -> None:
    sys.path.insert(0, str(ROOT))  # the study's plots live in the repository's experiments/
    from experiments.muography._plots import plot_depth_profile, plot_x0_maps

    maps = {"truth": np.asarray(VOLUME.x0)}
    pred = their.get("prediction", {})
    if pred.get("status") == "ok":
        maps[f"TomOpt ({pred['n_muons']:,})"] = np.moveaxis(np.asarray(pred["pred_x0"]), 0, 2)
    for est in ("poca", "likelihood"):
        if f"{est}/{n}" in our:
            maps[f"ours {est} ({n:,})"] = np.moveaxis(
                np.asarray(our[f"{est}/{n}"]["prediction_zxy"]), 0, 2
            )
    plot_x0_maps(maps, VOLUME, path, "lead block in beryllium: X0 per layer (top first)")
    plot_depth_profile({k: v[4, 4] for k, v in maps.items()}, VOLUME,
                       path.with_name(path.stem + "_depth.png"),
                       "X0 through the block's centre column")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "muography_vs_tomopt.json"))
    parser.add_argument("--peer-python", default=str(DEFAULT_PEER_PYTHON))
    parser.add_argument("--peer-muons", default="1000,10000")
    args = parser.parse_args(argv)
    counts = [500] if args.smoke else [1000, 10_000, 100_000]
    peer_counts = [200] if args.smoke else [int(c) for c in args.peer_muons.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.stem}_work"
    work.mkdir(exist_ok=True)
    load_before = os.getloadavg()
    our = ours(counts, ("poca",) if args.smoke else ("poca", "likelihood"))
    their = peer(Path(args.peer_python), peer_counts, work)
    rat = ratios(our, their, counts, peer_counts)
    report = {
        "benchmark": "muography_vs_tomopt", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "smoke": args.smoke, "counts": counts, "peer_counts": peer_counts,
        "definitions": {
            "first_call_s": "our first call in this process: compile + run",
            "median_s": "our steady state: median of 3 calls after 1 unrecorded one",
            "tomopt_s": "TomOpt wall time, generation to end of backward, batches of 1000",
            "loss": "mean over voxels of ((pred - true) / true)^2",
        },
        "machine": {
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "jax_backend": jax.default_backend(), "jax_devices": len(jax.devices()),
            "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        },
        "versions": {"diffdesign": diffdesign.__version__, "jax": jax.__version__,
                     "tomopt": their.get("env", {}).get("tomopt_version")},
        "ours": our, "tomopt": their, "ratios": rat,
    }  # fmt: skip
    if not args.smoke:
        report["markdown"] = markdown(our, their, rat, counts) if rat else None
    out.write_text(json.dumps(report, indent=1))
    plot(our, their, max(counts), out.with_name("muography_x0_maps.png") if not args.smoke
         else work / "maps.png")  # fmt: skip
    if report.get("markdown"):
        print(report["markdown"])
    progress(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
