"""diffdesign.xpcs vs xpcsjax 0.1.8: the two-component (heterodyne) least-squares fit.

    python benchmarks/xpcs_heterodyne_vs_xpcsjax.py [--smoke]
        [--out benchmarks/results/cpu/xpcs_heterodyne_vs_xpcsjax.json]
        [--peer-python .venv-xpcsjax/bin/python]

Data: the packaged two-component example (``diffdesign.xpcs.examples.make_example``: 4 angles
x 80 frames of 0.04 s, q 0.012 1/A, noise 0.005, the truth ``TWO_COMPONENT_TRUTH``); its model
equals xpcsjax's kernel to 2e-16 (``tests/xpcs/test_heterodyne.py``). Both tools start from
1.2 x the truth in every parameter, with f2 held at 0 (f0 and f2 are one direction of the
data), per-angle contrast and offset free, weights 1/sigma^2.

xpcsjax runs in its own Python 3.12 venv (``python3.12 -m venv .venv-xpcsjax &&
.venv-xpcsjax/bin/pip install xpcsjax==0.1.8``) through ``benchmarks/peers/xpcsjax_heterodyne.py``
(its ``fit_nlsq_multi_phi``, twice in one process: first call with compilation, then steady).
diffdesign: ``fit_nlsq`` from the same start with one start (``n_starts=1``: what xpcsjax does)
and with its default 32-start screen; first call in this process (compilation included,
imports excluded), then the median of 3 calls.

Accuracy: both fits on diffdesign's one-triangle likelihood (``make_problem`` +
``residuals``: the same objective for both), and per physical parameter (fit - truth) /
diffdesign's standard error at its fit. ``--smoke`` (CI): 2 angles x 30 frames, one
repetition, the peer only if its Python exists; the times then mean nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax
import numpy as np

import diffdesign.xpcs as xpcs
from benchmarks._timing import environment, timed
from diffdesign.xpcs.examples import make_example as example

PEER_SCRIPT = ROOT / "benchmarks" / "peers" / "xpcsjax_heterodyne.py"
DEFAULT_PEER_PYTHON = ROOT / ".venv-xpcsjax" / "bin" / "python"
PEER_TIMEOUT_S = 1200
FIXED = {"f2": 0.0}
TRUTH = example.TWO_COMPONENT_TRUTH


def progress(message: str) -> None:
    print(f"[xpcs heterodyne] {message}", file=sys.stderr, flush=True)


def dataset(smoke: bool) -> tuple[xpcs.XpcsData, dict]:
    spec = example.TWO_COMPONENT
    c2 = example.make_two_component_c2()
    t = spec["dt"] * np.arange(spec["n_frames"])
    phi, contrast, offset = (np.asarray(spec[k]) for k in ("phi", "contrast", "offset"))
    if smoke:
        c2, t, phi, contrast, offset = c2[:2, :30, :30], t[:30], phi[:2], contrast[:2], offset[:2]
    data = xpcs.XpcsData(c2, t, phi, spec["q"], 1.0, spec["noise"])
    return data, {"contrast": contrast.tolist(), "offset": offset.tolist(), "dt": spec["dt"]}


def start() -> dict[str, float]:
    return {name: (FIXED[name] if name in FIXED else 1.2 * value) for name, value in TRUTH.items()}


def run_peer(peer_python: Path, data: xpcs.XpcsData, dt: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path, out = Path(folder) / "data.npz", Path(folder) / "peer.json"
        names = list(xpcs.TWO_COMPONENT_PARAMETERS)
        np.savez(
            path, c2=np.asarray(data.c2), t=np.asarray(data.t), phi=np.asarray(data.phi),
            q=float(data.q), dt=dt, sigma=float(np.asarray(data.sigma)), names=np.array(names),
            init=np.array([start()[n] for n in names]), fixed=np.array(list(FIXED)),
        )  # fmt: skip
        progress(f"xpcsjax fit (its venv: {peer_python})")
        done = subprocess.run(
            [str(peer_python), str(PEER_SCRIPT), str(path), str(out)], cwd=ROOT,
            capture_output=True, text=True, timeout=PEER_TIMEOUT_S,
        )  # fmt: skip
        if done.returncode != 0:
            return {"error": done.stderr[-2000:]}
        return json.loads(out.read_text())


def judged(problem: xpcs.Problem, params: dict, contrast, offset, fit) -> dict:
    """chi^2 of a fit on diffdesign's one-triangle likelihood and z-scores vs the truth with
    diffdesign's standard errors."""
    theta = xpcs.pack(params, contrast, offset, problem)
    chi2 = float(np.sum(np.asarray(xpcs.residuals(theta, problem)) ** 2))
    std = dict(zip(fit.names, np.asarray(fit.std).tolist(), strict=True))
    z = {n: (params[n] - TRUTH[n]) / std[n] for n in problem.physical_names}
    return {"chi2_one_triangle": chi2, "z": z, "max_abs_z": max(abs(v) for v in z.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 angles x 30 frames (CI)")
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks/results/cpu/xpcs_heterodyne_vs_xpcsjax.json")
    )
    parser.add_argument(
        "--peer-python", default=str(DEFAULT_PEER_PYTHON),
        help="xpcsjax's venv Python (the peer is skipped if it is missing)",
    )  # fmt: skip
    args = parser.parse_args()
    data, truth_scaling = dataset(args.smoke)
    problem = xpcs.make_problem(data, "two_component", fixed=FIXED)
    initial = {k: v for k, v in start().items() if k not in FIXED}
    reps = 1 if args.smoke else 3
    results: dict = {}
    fits = {}
    for label, n_starts in (("one_start", 1), ("default_32_starts", 32)):
        progress(f"diffdesign fit_nlsq, {label}")

        def fit(n_starts=n_starts, label=label):
            fits[label] = xpcs.fit_nlsq(data, "two_component", fixed=FIXED, initial=initial,
                                        n_starts=n_starts)  # fmt: skip
            return jax.block_until_ready(fits[label].x)

        timing = timed(fit, reps=reps, warmup=0)
        result = fits[label]
        values = result.values()
        n_phi = data.n_phi
        contrast = [values[f"contrast[{k}]"] for k in range(n_phi)]
        offset = [values[f"offset[{k}]"] for k in range(n_phi)]
        physical = {n: values[n] for n in problem.physical_names} | FIXED
        results[label] = {
            **timing, "converged": bool(result.converged), "num_steps": int(result.num_steps),
            "reduced_chi2": float(result.reduced_chi2), "parameters": physical,
            "std": {n: float(s) for n, s in zip(result.names, np.asarray(result.std), strict=True)},
            **judged(problem, physical, contrast, offset, result),
        }  # fmt: skip
    peer_python = Path(args.peer_python)
    if peer_python.is_file():
        peer = run_peer(peer_python, data, truth_scaling["dt"])
        if "error" not in peer:
            reference = fits["one_start"]
            peer |= judged(problem, peer["parameters"], peer["contrast"], peer["offset"], reference)
            ours = results["one_start"]
            peer["ratios"] = {
                "steady_xpcsjax_over_ours": peer["steady_s"] / ours["median_s"],
                "first_call_xpcsjax_over_ours": peer["first_call_s"] / ours["first_call_s"],
                "chi2_ours_minus_xpcsjax": ours["chi2_one_triangle"] - peer["chi2_one_triangle"],
            }
        results["xpcsjax"] = peer
    else:
        progress(f"no xpcsjax Python at {peer_python}: the peer is skipped")
        results["xpcsjax"] = {"skipped": f"no Python at {peer_python}"}
    report = {
        "benchmark": "XPCS two-component (heterodyne) NLSQ: diffdesign.xpcs vs xpcsjax",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "smoke": args.smoke,
        "settings": {
            "data": f"packaged two-component example, {data.n_phi} angles x {data.n_t} frames",
            "n_points_one_triangle": int(problem.n_points),
            "truth": TRUTH,
            "truth_scaling": truth_scaling,
            "start": start(),
            "fixed": FIXED,
            "reps": reps,
        },
        "environment": environment(),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    progress(f"wrote {out}")


if __name__ == "__main__":
    main()
