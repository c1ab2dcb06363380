"""Peer benchmark: TomOpt 0.1.0 (PyTorch) muon-scattering tomography of a lead block in beryllium.

This script runs ONLY under the separate virtual environment that holds the peer package
(TomOpt pulls PyTorch, pandas<2, matplotlib<3.8, ...; none of it belongs in our own env).
Create it once from the repository root; torch MUST come first (the CPU wheel lies on this
machine's disk: installing anything torch-dependent before it drags in a multi-GB CUDA build)::

    python3 -m venv .venv-tomopt
    .venv-tomopt/bin/pip install torch==2.13.0
    .venv-tomopt/bin/pip install tomopt mypy_extensions   # tomopt 0.1.0

(tomopt.core imports mypy_extensions, which tomopt does not declare.  With torch 2.13.0 already
present, ``pip install tomopt`` keeps it: tomopt asks for torch>=2.2,<3.)

Call::

    .venv-tomopt/bin/python benchmarks/peers/tomopt_muography.py OUT.json \
        --muons 1000 [--muons 10000 ...] [--batch 1000] [--predict-muons N] [--seed 0] \
        [--timeout-s 1800] [--threads T] [--warmup-muons N] [--no-isolate]

Geometry (TomOpt's lead-block benchmark): 1 m x 1 m footprint, 10 cm voxels,
six PassiveLayers with tops at z = 0.8 ... 0.3 m (0.1 m thick, so the passive block spans
z = 0.2 ... 0.8 m), beryllium (X0 = 0.3528 m) with a lead block (X0 = 0.005612 m) in voxels
x, y index 3..5 of the layers whose top z satisfies 0.45 < z <= 0.65 (tops 0.6 and 0.5).
Detectors: a PanelDetectorLayer 'above' (z = 1, size 0.2) and one 'below' (z = 0.2, size 0.2),
each with 4 DetectorPanels (res = 1e4 m^-1, eff = 0.9, centred at xy = (0.5, 0.5), span 1 x 1 m,
z = top - i * 0.05).  Muons from MuonGenerator2016.from_volume (TomOpt defaults: fixed 5 GeV
momentum, theta in [0, 70 deg]).  The volume stays in torch training mode, as in the reference
script and in TomOpt's own fit loop (continuous, differentiable Gaussian panel model).

For every requested muon count N, timed with time.perf_counter from muon generation to the end
of backward:
    for each batch of --batch muons (last batch = the remainder):
        mu = MuonBatch(gen(n), init_z=vol.h); vol(mu)
        sb = ScatterBatch(mu, vol); inferrer.add_scatters(sb)
    pred = inferrer.get_prediction()           # PanelX0Inferrer over ALL batches (z, x, y)
    loss = (((pred - true) / true) ** 2).mean(); loss.backward()
This is how TomOpt's own AbsVolumeWrapper._scan_volume accumulates muon batches: one
PanelX0Inferrer per volume, one ScatterBatch per muon batch appended with add_scatters, a single
prediction (and loss / backward) from all of them (TomOpt runs n_mu_per_volume // mu_bs full
batches; here a remainder batch is added so that exactly N muons are generated).  The split
matters for memory: the per-muon uncertainties are computed (lazily, inside get_prediction) with
a full Jacobian over each batch (tomopt.utils.jacobian: vmap over an identity of size
n_batch * n_vars, result n_batch * n_vars x n_batch x 8 hits x 3), i.e. ~ batch^2 per batch.

Each count runs in a fresh child process by default (so ru_maxrss is the peak of that count
alone, and an out-of-memory kill is recorded rather than fatal); --no-isolate runs in-process
(maxrss is then the running peak).  The timeout is checked between batches (status
"timed_out"); the parent also kills a child that overruns 1.5 * timeout + 60 s.  The JSON is
rewritten after every count, so partial results survive.  Failures are recorded, not raised.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any

TAG = "[tomopt_muography]"

# Geometry constants (TomOpt's lead-block benchmark).
LW = (1.0, 1.0)
VOXEL = 0.1
PASSIVE_TOPS = [0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
X0_BE = 0.3528
X0_PB = 0.005612
LEAD_XY = (3, 6)  # python slice: indices 3, 4, 5
LEAD_Z = (0.45, 0.65)  # 0.45 < layer top z <= 0.65
DET_ABOVE_Z, DET_BELOW_Z, DET_SIZE = 1.0, 0.2, 0.2
N_PANELS, RES, EFF, SPAN = 4, 1e4, 0.9, (1.0, 1.0)


def progress(msg: str) -> None:
    print(f"{TAG} {msg}", file=sys.stderr, flush=True)


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def current_rss_mib() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except Exception:  # pragma: no cover - non-Linux
        return None


# --------------------------------------------------------------------------- TomOpt setup
def build_volume():
    import torch
    from tomopt.volume import DetectorPanel, PanelDetectorLayer, PassiveLayer, Volume
    from torch import Tensor, nn

    lwh = Tensor([LW[0], LW[1], 1.0])

    def stack(pos: str, z: float):
        panels = [
            DetectorPanel(
                res=RES,
                eff=EFF,
                init_xyz=[0.5, 0.5, z - i * DET_SIZE / N_PANELS],
                init_xy_span=list(SPAN),
            )
            for i in range(N_PANELS)
        ]
        return PanelDetectorLayer(pos=pos, lw=lwh[:2], z=z, size=DET_SIZE, panels=panels)

    layers = [stack("above", DET_ABOVE_Z)]
    for z in PASSIVE_TOPS:
        layers.append(PassiveLayer(lw=lwh[:2], z=z, size=VOXEL))
    layers.append(stack("below", DET_BELOW_Z))

    def lead_block(*, z, lw, size):
        rl = torch.ones(list((lw / size).long())) * X0_BE
        if LEAD_Z[0] < float(z) <= LEAD_Z[1]:
            rl[LEAD_XY[0] : LEAD_XY[1], LEAD_XY[0] : LEAD_XY[1]] = X0_PB
        return rl

    vol = Volume(nn.ModuleList(layers))
    vol.load_rad_length(lead_block)
    return vol


def panel_grads(vol) -> dict[str, Any]:
    """Per-panel gradients of xy, z, xy_span, and their overall L2 norms over all 8 panels."""
    out: dict[str, Any] = {"panels": []}
    sq = {"xy": 0.0, "z": 0.0, "xy_span": 0.0}
    any_grad = {"xy": False, "z": False, "xy_span": False}
    for det in vol.get_detectors():
        for i, p in enumerate(det.panels):
            rec: dict[str, Any] = {"pos": det.pos, "index": i, "z_init": float(p.z.detach()[0])}
            for name in ("xy", "z", "xy_span"):
                g = getattr(p, name).grad
                if g is None:
                    rec[f"grad_{name}"] = None
                    continue
                gl = [float(v) for v in g.detach().flatten()]
                rec[f"grad_{name}"] = gl
                if all(math.isfinite(v) for v in gl):
                    sq[name] += sum(v * v for v in gl)
                else:
                    sq[name] = float("nan")
                any_grad[name] = True
            out["panels"].append(rec)
    for name in sq:
        out[f"grad_norm_{name}"] = math.sqrt(sq[name]) if any_grad[name] else None
    return out


def run_count(
    n_muons: int, batch: int, seed: int, timeout_s: float, want_pred: bool
) -> dict[str, Any]:
    """One timed forward + inference + loss + backward over n_muons (in batches)."""
    import numpy as np
    import torch
    from tomopt.inference import PanelX0Inferrer, ScatterBatch
    from tomopt.muon import MuonBatch, MuonGenerator2016

    rec: dict[str, Any] = {"n_muons": n_muons, "batch": batch, "seed": seed, "status": "started"}
    rec["rss_before_mib"] = current_rss_mib()
    try:
        vol = build_volume()
        gen = MuonGenerator2016.from_volume(vol)
        rec["generator"] = repr(gen)
        torch.manual_seed(seed)
        np.random.seed(seed)  # noqa: NPY002  (TomOpt's generator uses the global numpy RNG)
        vol.zero_grad(set_to_none=True)

        t_gen = t_vol = t_sb = 0.0
        n_done, n_batches, n_kept = 0, 0, 0
        t0 = time.perf_counter()
        inf = PanelX0Inferrer(volume=vol)
        timed_out = False
        while n_done < n_muons:
            if time.perf_counter() - t0 > timeout_s:
                timed_out = True
                break
            nb = min(batch, n_muons - n_done)
            ta = time.perf_counter()
            mu = MuonBatch(gen(nb), init_z=vol.h)
            tb = time.perf_counter()
            vol(mu)
            tc = time.perf_counter()
            sb = ScatterBatch(mu=mu, volume=vol)  # filters muons in place, fits tracks, PoCA
            inf.add_scatters(sb)
            td = time.perf_counter()
            t_gen += tb - ta
            t_vol += tc - tb
            t_sb += td - tc
            n_done += nb
            n_batches += 1
            n_kept += len(sb)
        rec.update(
            n_batches=n_batches, n_muons_generated=n_done, n_muons_after_scatter_filter=n_kept
        )
        if timed_out:
            rec.update(
                status="timed_out",
                wall_s_at_stop=time.perf_counter() - t0,
                peak_rss_mib=maxrss_mib(),
            )
            return rec

        te = time.perf_counter()
        # per-batch Jacobian uncertainties + voxel probabilities + Highland inversion
        pred = inf.get_prediction()
        tf = time.perf_counter()
        true = vol.get_rad_cube()
        loss = (((pred - true) / true) ** 2).mean()
        tg = time.perf_counter()
        loss.backward()
        th = time.perf_counter()
        wall = th - t0
        rec.update(
            status="ok",
            wall_s=wall,
            t_generate_s=t_gen,
            t_volume_pass_s=t_vol,
            t_scatter_batch_s=t_sb,
            t_prediction_s=tf - te,
            t_loss_s=tg - tf,
            t_backward_s=th - tg,
            n_muons_in_inference=int(inf.n_mu),
            loss=float(loss.detach()),
            peak_rss_mib=maxrss_mib(),
        )
        if timeout_s < wall:
            rec["note"] = "finished, but the last batch/inference/backward ran past timeout_s"
        rec.update(panel_grads(vol))
        if want_pred:
            rec["pred_x0"] = pred.detach().cpu().numpy().tolist()
            rec["true_x0"] = true.detach().cpu().numpy().tolist()
    except BaseException as e:  # MemoryError, RuntimeError (alloc), ValueError (NaN pred), ...
        rec.update(
            status="failed",
            error_type=type(e).__name__,
            error=str(e)[:2000],
            traceback=traceback.format_exc()[-4000:],
            peak_rss_mib=maxrss_mib(),
        )
        if isinstance(e, KeyboardInterrupt):
            raise
    return rec


# --------------------------------------------------------------------------- orchestration
def env_info(threads: int | None) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    if threads:
        torch.set_num_threads(threads)
    return {
        "torch_version": torch.__version__,
        "tomopt_version": md.version("tomopt"),
        "numpy_version": md.version("numpy"),
        "torch_num_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def run_isolated(args, n: int, want_pred: bool) -> dict[str, Any]:
    fd, tmp = tempfile.mkstemp(prefix="tomopt_child_", suffix=".json")
    os.close(fd)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        tmp,
        "--_child",
        str(n),
        "--batch",
        str(args.batch),
        "--seed",
        str(args.seed),
        "--timeout-s",
        str(args.timeout_s),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if want_pred:
        cmd += ["--_child-pred"]
    if args.warmup_muons:
        cmd += ["--warmup-muons", str(args.warmup_muons)]
    hard = 1.5 * args.timeout_s + 60
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=hard, capture_output=True, text=True)
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:
        err = e.stderr or ""
        rc, err = None, err.decode(errors="replace") if isinstance(err, bytes) else err
    elapsed = time.perf_counter() - t0
    rec: dict[str, Any] | None = None
    try:
        with open(tmp) as f:
            txt = f.read()
        if txt.strip():
            rec = json.loads(txt)
    except Exception:
        rec = None
    finally:
        os.unlink(tmp)
    if rec is None:
        rec = {"n_muons": n, "batch": args.batch, "seed": args.seed}
        if rc is None:
            rec.update(
                status="timed_out",
                error=f"child killed after hard limit {hard:.0f} s",
                wall_s_at_stop=elapsed,
            )
        else:
            if rc < 0:
                why = f"killed by signal {-rc} (9 is usually the OOM killer)"
            else:
                why = f"exit code {rc}"
            rec.update(
                status="failed",
                error_type="ChildProcessError",
                error=f"child {why}",
                stderr_tail=err[-3000:],
            )
    rec["child_returncode"] = rc
    rec["child_elapsed_s"] = elapsed
    return rec


def warmup(args) -> None:
    if args.warmup_muons > 0:
        r = run_count(
            args.warmup_muons, min(args.batch, args.warmup_muons), args.seed + 12345, 1e9, False
        )
        progress(f"warm-up {args.warmup_muons} muons: {r.get('status')} {r.get('wall_s')} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="JSON output path")
    ap.add_argument(
        "--muons", type=int, action="append", default=[], help="muon count (repeatable)"
    )
    ap.add_argument("--batch", type=int, default=1000, help="muons per MuonBatch/ScatterBatch")
    ap.add_argument(
        "--predict-muons",
        type=int,
        default=None,
        help="also store the X0 map predicted from N muons",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout-s", type=float, default=1800.0)
    ap.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)"
    )
    ap.add_argument("--no-isolate", action="store_true", help="run every count in this process")
    ap.add_argument(
        "--warmup-muons",
        type=int,
        default=0,
        help="untimed run with N muons first (in each child; once with --no-isolate); 0 = cold",
    )
    ap.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_child-pred", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    if args._child is not None:  # internal: one count, write its record
        env_info(args.threads)
        warmup(args)
        rec = run_count(args._child, args.batch, args.seed, args.timeout_s, args._child_pred)
        with open(args.out, "w") as f:
            json.dump(rec, f)
        return 0

    if not args.muons and args.predict_muons is None:
        ap.error("give at least one --muons N (or --predict-muons N)")
    if args.batch < 1:
        ap.error("--batch must be >= 1")

    result: dict[str, Any] = {
        "peer": "tomopt",
        "script": "benchmarks/peers/tomopt_muography.py",
        "env": env_info(args.threads),
        "config": {
            "muons": args.muons,
            "batch": args.batch,
            "predict_muons": args.predict_muons,
            "seed": args.seed,
            "timeout_s": args.timeout_s,
            "warmup_muons": args.warmup_muons,
            "isolated_child_per_count": not args.no_isolate,
            "timed_section": "muon generation + volume pass + ScatterBatch"
            " + PanelX0Inferrer.get_prediction + loss + backward",
            "loss": "mean over voxels of ((pred - true) / true)^2",
            "peak_rss_note": "resource.getrusage(RUSAGE_SELF).ru_maxrss in MiB;"
            " per count when isolated, running peak otherwise",
        },
        "geometry": {
            "lw_m": list(LW),
            "voxel_m": VOXEL,
            "passive_layer_tops_m": PASSIVE_TOPS,
            "x0_background_m": X0_BE,
            "x0_block_m": X0_PB,
            "block_xy_index": [LEAD_XY[0], LEAD_XY[1] - 1],
            "block_layers_rule": f"{LEAD_Z[0]} < layer top z <= {LEAD_Z[1]}",
            "panels": {
                "n_above": N_PANELS,
                "n_below": N_PANELS,
                "layer_z_above": DET_ABOVE_Z,
                "layer_z_below": DET_BELOW_Z,
                "layer_size": DET_SIZE,
                "res_per_m": RES,
                "eff": EFF,
                "xy_span_m": list(SPAN),
                "xy_centre_m": [0.5, 0.5],
                "panel_mode": "torch training mode: continuous Gaussian res./eff. model",
            },
            "generator": "MuonGenerator2016.from_volume(vol) defaults:"
            " fixed_mom=5 GeV, theta 0..70 deg, min_angle=pi/12",
        },
        "runs": [],
    }
    out_path = args.out

    def dump() -> None:
        tmp = out_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, out_path)

    def one(n: int, want_pred: bool) -> dict[str, Any]:
        progress(f"{n} muons, batch {args.batch} ...")
        if args.no_isolate:
            rec = run_count(n, args.batch, args.seed, args.timeout_s, want_pred)
        else:
            rec = run_isolated(args, n, want_pred)
        progress(
            f"{n} muons: {rec.get('status')} wall {rec.get('wall_s')} s, loss {rec.get('loss')}, "
            f"peak RSS {rec.get('peak_rss_mib')} MiB"
        )
        return rec

    if args.no_isolate:
        warmup(args)
    pred_rec = None
    for n in args.muons:
        want = args.predict_muons is not None and n == args.predict_muons and pred_rec is None
        rec = one(n, want)
        if want:
            pred_rec = rec
        result["runs"].append({k: v for k, v in rec.items() if k not in ("pred_x0", "true_x0")})
        dump()
    if args.predict_muons is not None:
        if pred_rec is None:
            pred_rec = one(args.predict_muons, True)
            result["prediction_run"] = {
                k: v for k, v in pred_rec.items() if k not in ("pred_x0", "true_x0")
            }
        result["prediction"] = {
            "n_muons": args.predict_muons,
            "status": pred_rec.get("status"),
            "order": "(z, x, y): z index 0 = LOWEST passive layer (0.2..0.3 m), "
            "index 5 = highest (0.7..0.8 m); x, y index i covers [0.1*i, 0.1*(i+1)) m "
            "(Volume.get_rad_cube / AbsX0Inferrer.vox_zxy_x0_preds)",
            "layer_z_ranges_m": [[round(t - VOXEL, 3), t] for t in reversed(PASSIVE_TOPS)],
            "pred_x0": pred_rec.get("pred_x0"),
            "true_x0": pred_rec.get("true_x0"),
        }
        dump()
    dump()
    progress(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
