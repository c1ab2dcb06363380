"""diffdesign.xpcs vs homodyne 2.23.3: NLSQ and CMC on the same synthetic two-time data.

    python benchmarks/xpcs_vs_homodyne.py [--datasets A,B,C] [--no-cmc] [--smoke]
        [--out benchmarks/results/cpu/xpcs_vs_homodyne.json]
        [--peer-python .venv-homodyne/bin/python]

Data (generated once by ``diffdesign.xpcs.synthetic_c2``, whose model matches homodyne's code to
1e-15; symmetric noise): truth D0 3000, alpha -0.6, D_offset 20 (+ gamma_dot_t0 0.01,
beta -0.3, gamma_dot_t_offset 1e-4, phi0 5 for laminar flow); contrast 0.3, offset 1.0, noise
sigma 0.01; dt 0.1 s, t = arange(n) dt; q 0.0054 1/A, L 2e6 A. Both tools start from D0 5000,
alpha -0.3, D_offset 10 (+ 0.005, -0.1, 5e-5, 0). Data sets:
  A: static, 1 angle (phi 0), 200 x 200;
  B: laminar_flow, 3 angles linspace(-30, 30), 200 x 200;
  C: laminar_flow, 23 angles linspace(-30, 30), 300 x 300 (~1M one-triangle points).

homodyne runs in its own Python 3.12 virtual environment through
``benchmarks/peers/homodyne_xpcs.py`` (a subprocess per data set) with ``--keep-t0`` (so both
tools fit the same matrix) and its default per-angle mode; its NLSQ runs twice in one process
(first call with JIT compile, then steady state); its CMC is ``fit_mcmc_jax`` warm-started from
its NLSQ as the homodyne CLI does, with homodyne's default adaptive sample counts (the counts it
actually ran are recorded; ESS per second normalises for them).

diffdesign: ``fit_nlsq`` (default multi-start) with both solvers; the first call in a fresh
Python process (imports excluded, compilation included: the counterpart of homodyne's first
call), then the steady state in this process (median of a few calls). ``fit_cmc`` with its
defaults (500 warmup, 1000 samples, 2 chains), warm-started from the NLSQ fit, in a fresh
process under the same time limit as homodyne's (A 900 s, B 600 s; C 600 s); a second call
there gives its steady state (not for C). homodyne's CMC is not run on C (ANCHORS: 2-4 h for
1M points).

Accuracy: per physical parameter the fit, its reported standard error, |fit - truth| and the
z-score (fit - truth) / reported std; and the chi^2 of each tool's fit on diffdesign's
one-triangle likelihood (``make_problem`` + ``residuals``), so both fits are judged on one
objective. Ratios are homodyne / diffdesign for times and diffdesign / homodyne for ESS per
second. ``--smoke`` (the CI test): 40 x 40 data sets A and B, normal-equations only, CMC with
few samples on A; the peer only if its Python exists; child processes overlap the main one, so
smoke timings mean nothing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from _timing import timed  # benchmarks/_timing.py (scripts run from their folder)

import diffdesign
from diffdesign import xpcs

ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = ROOT / "benchmarks" / "peers" / "homodyne_xpcs.py"
DEFAULT_PEER_PYTHON = ROOT / ".venv-homodyne" / "bin" / "python"

DT, Q, L = 0.1, 0.0054, 2e6
CONTRAST, OFFSET, NOISE = 0.3, 1.0, 0.01
TRUTH = {
    "D0": 3000.0,
    "alpha": -0.6,
    "D_offset": 20.0,
    "gamma_dot_t0": 0.01,
    "beta": -0.3,
    "gamma_dot_t_offset": 1e-4,
    "phi0": 5.0,
}
INIT = {
    "D0": 5000.0,
    "alpha": -0.3,
    "D_offset": 10.0,
    "gamma_dot_t0": 0.005,
    "beta": -0.1,
    "gamma_dot_t_offset": 5e-5,
    "phi0": 0.0,
}
#: The parameters whose relative error the summary quotes (those the mode has).
HEADLINE = ("D0", "alpha", "gamma_dot_t0", "phi0")
SOLVERS = ("normal-equations", "optimistix")
#: What the report keeps of the peer's NLSQ block, and its version fields.
PEER_NLSQ_KEYS = (
    "status", "nlsq_wall_first_s", "nlsq_wall_second_s", "params", "params_se", "contrast",
    "offset", "reduced_chi2", "convergence_status", "success", "quality_flag", "message",
    "iterations_reported", "n_params_fitted", "second_run_max_rel_param_diff", "recomputed",
)  # fmt: skip
PEER_VERSION_KEYS = (
    "python_version", "homodyne_version", "nlsq_version", "jax_version", "numpyro_version",
    "arviz_version",
)  # fmt: skip


def dataset_specs(smoke: bool) -> dict[str, dict]:
    """Name -> mode, time points, angles, noise seed, time limits (s)."""
    n_ab, n_c = (40, 40) if smoke else (200, 300)
    return {
        "A": {"mode": "static", "n_t": n_ab, "phi": [0.0], "seed": 0},
        "B": {
            "mode": "laminar_flow",
            "n_t": n_ab,
            "phi": np.linspace(-30, 30, 3).tolist(),
            "seed": 1,
        },
        "C": {
            "mode": "laminar_flow",
            "n_t": n_c,
            "phi": np.linspace(-30, 30, 23).tolist(),
            "seed": 2,
        },
    }


#: Wall-clock limits (s): homodyne's CMC per data set (None: not run), its whole process, and
#: our optimistix first call and CMC child on C.
PEER_CMC_TIMEOUT = {"A": 900.0, "B": 600.0, "C": None}
PEER_CMC_NOT_RUN = "not run: ANCHORS reports 2-4 h for a 1M-point laminar-flow CMC on 16 cores"
PEER_NLSQ_BUDGET = {"A": 600.0, "B": 600.0, "C": 1800.0}
OURS_OPTIMISTIX_TIMEOUT = 600.0
OURS_CMC_TIMEOUT = {"A": 900.0, "B": 600.0, "C": 600.0}
#: What a CMC that never printed a progress line (every 10 % of its iterations) reached.
NO_PROGRESS = "no progress report: the first 10 % of iterations (compile included) not done"
#: Our CMC is called a second time (steady state) only when its first call took less (s).
CMC_SECOND_CALL_BELOW_S = 180.0
#: Steady-state repetitions of our NLSQ: 3, or 1 when its first call took longer (s).
NLSQ_REPS, NLSQ_SLOW_S = 3, 60.0
#: The optimistix solver's steady state is skipped when its first call took longer (s).
NLSQ_SKIP_STEADY_S = 150.0


def progress(message: str) -> None:
    print(f"[xpcs_vs_homodyne {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def finite(value) -> float | None:
    """A JSON number (None for missing or non-finite)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------- data


def make_dataset(spec: dict) -> tuple[xpcs.XpcsData, dict, dict]:
    names = xpcs.parameter_names(spec["mode"])
    truth = {n: TRUTH[n] for n in names}
    init = {n: INIT[n] for n in names}
    t = np.arange(spec["n_t"]) * DT
    phi = np.asarray(spec["phi"], dtype=float)
    ones = np.ones(phi.size)
    c2 = xpcs.synthetic_c2(
        jax.random.key(spec["seed"]), truth, t, phi, Q, L, CONTRAST * ones, OFFSET * ones, NOISE
    )
    return xpcs.XpcsData(np.asarray(c2), t, phi, Q, L, NOISE), truth, init


def write_npz(path: Path, data: xpcs.XpcsData, mode: str, truth: dict, init: dict) -> None:
    """The peer script's input (its docstring lists the keys)."""
    np.savez(
        path,
        c2=np.asarray(data.c2),
        t=np.asarray(data.t),
        phi=np.asarray(data.phi),
        q=Q,
        L=L,
        dt=DT,
        sigma=NOISE,
        mode=mode,
        truth=np.asarray(list(truth.values())),
        init=np.asarray(list(init.values())),
        contrast=CONTRAST,
        offset=OFFSET,
    )


def read_npz(path: str) -> tuple[xpcs.XpcsData, str, dict]:
    with np.load(path) as z:
        mode = str(z["mode"])
        init = dict(zip(xpcs.parameter_names(mode), z["init"].tolist(), strict=True))
        data = xpcs.XpcsData(z["c2"], z["t"], z["phi"], float(z["q"]), float(z["L"]), z["sigma"])
    return data, mode, init


# ---------------------------------------------------------------------------- children


def child_main(argv: list[str]) -> None:
    """``--_child nlsq DATA.npz OUT.json SOLVER`` or ``--_child cmc DATA.npz OUT.json SMOKE
    WARM.npz``: one job in a fresh process."""
    kind, data_path, out_path, extra, *warm_path = argv
    data, mode, init = read_npz(data_path)
    out: dict = {"pid": os.getpid()}
    if kind == "nlsq":
        start = time.perf_counter()
        result = xpcs.fit_nlsq(data, mode, initial=init, solver=extra)
        jax.block_until_ready(result.x)
        out["first_call_s"] = time.perf_counter() - start
        out["result"] = result.to_json()
    else:  # cmc, warm-started from the main process's least-squares fit
        from diffdesign.xpcs.cmc import fit_cmc

        warm = read_warm(warm_path[0])
        smoke, second = extra[0] == "1", extra[1] == "1"
        start = time.perf_counter()
        cmc = fit_cmc(data, mode, warm_start=warm, progress=True, **cmc_settings(smoke))
        out.update(cmc_block(cmc, time.perf_counter() - start, mode))
        Path(out_path).write_text(json.dumps(out))  # kept if the second call times out
        if second and out["wall_s"] < CMC_SECOND_CALL_BELOW_S:
            time.sleep(0.5)
            start = time.perf_counter()
            fit_cmc(data, mode, warm_start=warm, progress=True, **cmc_settings(smoke))
            out["steady_wall_s"] = time.perf_counter() - start
    Path(out_path).write_text(json.dumps(out))


class Child:
    """A subprocess in its own session (so a timeout kills it and all it started)."""

    def __init__(self, command: list[str], out: Path, timeout: float | None, log: Path):
        self.command, self.out, self.timeout = command, out, timeout
        self.result: dict | None = None
        self.log = log.open("w")
        self.start = time.perf_counter()
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait(self) -> dict:
        """The JSON the child wrote with ``process`` "ok" and its wall time, or ``process``
        saying why there is none (timeout, exit code) and the log's tail."""
        if self.result is None:
            self.result = self._wait()
        return self.result

    def _wait(self) -> dict:
        remaining = None
        if self.timeout is not None:
            remaining = max(1.0, self.timeout - (time.perf_counter() - self.start))
        try:
            code = self.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.log.close()
            partial = json.loads(self.out.read_text()) if self.out.is_file() else {}
            return partial | {
                "process": f"timeout after {self.timeout:g} s",
                "process_wall_s": self.timeout,
                "log_tail": Path(self.log.name).read_text()[-600:],
            }
        wall = time.perf_counter() - self.start
        self.log.close()
        if code != 0 or not self.out.is_file():
            tail = Path(self.log.name).read_text()[-1500:]
            return {"process": f"error: exit code {code}", "log_tail": tail, "process_wall_s": wall}
        return json.loads(self.out.read_text()) | {"process": "ok", "process_wall_s": wall}


def our_child(
    kind: str, npz: Path, work: Path, extra: str, timeout: float | None, *more: str
) -> Child:
    stem = f"ours_{npz.stem}_{kind}_{extra}"
    out = work / f"{stem}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--_child", kind, str(npz)]
    return Child([*command, str(out), extra, *more], out, timeout, work / f"{stem}.log")


def peer_child(
    python: Path, npz: Path, work: Path, name: str, cmc: dict | None, smoke: bool
) -> Child:
    out = work / f"homodyne_{name}.json"
    command = [str(python), str(PEER_SCRIPT), str(npz), str(out), "--keep-t0"]
    timeout = PEER_NLSQ_BUDGET[name]
    if cmc is not None:
        settings = cmc_settings(smoke)
        command += [
            "--cmc",
            "--cmc-timeout", str(cmc["timeout_s"]),
            "--cmc-warmup", str(settings["num_warmup"]),
            "--cmc-samples", str(settings["num_samples"]),
            "--cmc-chains", str(settings["num_chains"]),
        ]  # fmt: skip
        timeout += cmc["timeout_s"]
    return Child(command, out, timeout, work / f"homodyne_{name}.log")


# ---------------------------------------------------------------------------- accuracy


def accuracy(values: dict, std: dict | None, truth: dict) -> dict:
    """Per parameter fit, reported std, |error|, z = (fit - truth)/std; a summary."""
    per = {}
    for name, true in truth.items():
        fit = finite(values.get(name))
        sd = finite((std or {}).get(name))
        error = None if fit is None else fit - true
        per[name] = {
            "truth": true,
            "fit": fit,
            "std": sd,
            "abs_error": None if error is None else abs(error),
            "relative_error": None if error is None else abs(error) / abs(true),
            "z": error / sd if error is not None and sd else None,
        }
    zs = [abs(p["z"]) for p in per.values() if p["z"] is not None]
    summary = {
        "max_abs_z": max(zs) if zs else None,
        "z_available_for": len(zs),
        **{f"relative_error_{n}": per[n]["relative_error"] for n in HEADLINE if n in per},
    }
    return {"parameters": per, "summary": summary}


class Objective:
    """chi^2 of any parameter set on diffdesign's one-triangle likelihood (per-angle scalings)."""

    def __init__(self, data: xpcs.XpcsData, mode: str):
        self.problem = xpcs.make_problem(data, mode)
        self.n_points = int(self.problem.n_points)
        self.n_params = len(self.problem.names)
        self._chi2 = jax.jit(lambda theta, problem: jnp.sum(xpcs.residuals(theta, problem) ** 2))

    def __call__(self, params: dict, contrast, offset) -> dict:
        theta = xpcs.pack(params, contrast, offset, self.problem)
        chi2 = float(self._chi2(theta, self.problem))
        return {
            "chi2": chi2,
            "reduced_chi2": chi2 / (self.n_points - self.n_params),
            "n_points": self.n_points,
        }


def per_angle(values, n_phi: int) -> list[float] | None:
    """homodyne's contrast/offset as one value per angle (broadcast when it fitted one)."""
    if values is None:
        return None
    values = [float(v) for v in np.atleast_1d(values)]
    return values * n_phi if len(values) == 1 else values


# ---------------------------------------------------------------------------- CMC


def cmc_settings(smoke: bool) -> dict:
    if smoke:
        return {"num_warmup": 30, "num_samples": 30, "num_chains": 2}
    return {"num_warmup": 500, "num_samples": 1000, "num_chains": 2}


def cmc_block(result, wall: float, mode: str) -> dict:
    """Wall time, ESS (combined draws and worst shard), R-hat, divergences, posterior."""
    import arviz as az

    summary = result.summary()
    names = xpcs.parameter_names(mode)
    posterior = result.idata.posterior
    ess = az.ess(posterior, method="bulk")
    rhat = az.rhat(posterior)
    ess_combined = {n: finite(ess[n].values) for n in names}
    rhat_combined = {n: finite(rhat[n].values) for n in names}
    parameters = summary["parameters"]
    ess_shard = {n: parameters[n]["ess_bulk_min"] for n in names}
    rhat_shard = {n: parameters[n]["r_hat_max"] for n in names}
    ess_min = min((v for v in ess_combined.values() if v is not None), default=None)
    return {
        "cmc_status": "ok",
        "wall_s": wall,
        "sampling_wall_s": result.wall_time,
        "n_shards": result.n_shards,
        "n_points": summary.get("n_points"),
        "num_warmup": summary.get("num_warmup"),
        "num_samples": summary.get("num_samples"),
        "num_chains": summary.get("num_chains"),
        "posterior_mean": {n: parameters[n]["mean"] for n in names},
        "posterior_std": {n: parameters[n]["std"] for n in names},
        "ess_bulk": ess_combined,
        "rhat": rhat_combined,
        "ess_bulk_worst_shard": ess_shard,
        "rhat_worst_shard": rhat_shard,
        "ess_bulk_min": ess_min,
        "rhat_max": max((v for v in rhat_combined.values() if v is not None), default=None),
        "ess_bulk_min_worst_shard": min((v for v in ess_shard.values() if v), default=None),
        "rhat_max_worst_shard": max((v for v in rhat_shard.values() if v), default=None),
        "divergences": summary["divergences"],
        "heterogeneous": summary["heterogeneous"],
        "ess_per_s": ess_min / wall if ess_min else None,
    }


def write_warm(path: Path, nlsq) -> None:
    """The least-squares fit handed to the CMC child, as plain arrays (no pickle)."""
    np.savez(path, **{k: np.asarray(v) for k, v in nlsq._asdict().items()})


def read_warm(path: str):
    """Inverse of write_warm."""
    with np.load(path, allow_pickle=False) as z:
        fields = {k: z[k] for k in z.files}
    strings = {"mode", "scaling", "integral", "status", "message"}
    fields = {k: str(v) if k in strings else v for k, v in fields.items()}
    fields["names"] = tuple(str(n) for n in fields["names"])
    fields["wall_time"] = float(fields["wall_time"])
    fields["condition_number"] = float(fields["condition_number"])
    return xpcs.NlsqResult(**{k: fields[k] for k in xpcs.NlsqResult._fields})


def our_cmc(name: str, nlsq, npz: Path, work: Path, truth: dict, smoke: bool) -> dict:
    """fit_cmc in a fresh process (like homodyne's CMC) under the data set's time limit,
    warm-started from this process's least-squares fit; a second call (steady state) in the
    same process when the first took less than CMC_SECOND_CALL_BELOW_S (not on C)."""
    limit = 120.0 if smoke else OURS_CMC_TIMEOUT[name]
    second = not smoke and name != "C"
    warm = work / f"warm_{name}.npz"
    write_warm(warm, nlsq)
    progress(f"{name}: our CMC in a fresh process ({cmc_settings(smoke)}, limit {limit:g} s) ...")
    flags = f"{int(smoke)}{int(second)}"
    process_limit = limit + (CMC_SECOND_CALL_BELOW_S + 60 if second else 30)
    block = our_child("cmc", npz, work, flags, process_limit, str(warm)).wait()
    block["timeout_s"] = limit
    if block.get("cmc_status") == "ok" and block["wall_s"] > limit:
        block["over_limit"] = f"finished in {block['wall_s']:.0f} s, over the {limit:g} s limit"
    if block.get("cmc_status") != "ok":
        reached = [line for line in block.get("log_tail", "").splitlines() if "cmc:" in line]
        block["cmc_status"] = f"not finished within {limit:g} s ({block['process']})"
        block["reached"] = reached[-1] if reached else NO_PROGRESS
        block["settings"] = cmc_settings(smoke)
        progress(f"{name}: our CMC {block['cmc_status']} ({block['reached']})")
        return block
    if "steady_wall_s" not in block:
        block["steady_note"] = (
            f"second call not run (C, or a first call over {CMC_SECOND_CALL_BELOW_S:g} s)"
            if block["process"] == "ok"
            else block["process"]
        )
    block["accuracy"] = accuracy(block["posterior_mean"], block["posterior_std"], truth)
    progress(
        f"{name}: our CMC {block['wall_s']:.1f} s, ESS min {block['ess_bulk_min']}, "
        f"R-hat max {block['rhat_max']}"
    )
    return block


def peer_cmc_summary(raw: dict | None, truth: dict) -> dict:
    if not raw:
        return {"cmc_status": "not run"}
    keys = (
        "cmc_status", "cmc_wall_s", "cmc_wall_total_s", "timeout_s", "requested", "warm_start",
        "num_shards", "n_points", "n_chains", "n_warmup_actual", "n_samples_actual",
        "per_angle_mode_effective", "ess_bulk", "rhat", "ess_bulk_min", "rhat_max",
        "divergences", "ess_per_s", "posterior_mean", "posterior_std", "convergence_status",
    )  # fmt: skip
    block = {k: raw.get(k) for k in keys if k in raw}
    block["wall_s"] = raw.get("cmc_wall_s")
    if raw.get("cmc_status") == "ok" and raw.get("posterior_mean"):
        block["accuracy"] = accuracy(raw["posterior_mean"], raw.get("posterior_std"), truth)
    return block


# ---------------------------------------------------------------------------- per data set


def our_nlsq(
    name: str, data, mode, init, child: Child, solver: str, reps: int, objective, truth
) -> tuple[dict, object]:
    """One solver: the steady state here, the cold-process first call (``child``), accuracy.

    The second solver's steady state is skipped when its first call was slow (its accuracy
    then comes from the cold process's fit); the first solver's fit warm-starts the CMC.
    """
    block: dict = {"solver": solver}
    known = child.result or {}
    if "timeout" in known.get("process", ""):
        block["status"] = f"first call: {known['process']}; steady state not run"
        block["cold_process"] = known
        return block, None
    first = known.get("first_call_s") or 0.0
    result = None
    if solver != SOLVERS[0] and first > NLSQ_SKIP_STEADY_S:
        block["timing"] = None
        block["steady_note"] = f"skipped: its first call took {first:.0f} s"
    else:
        reps = 1 if first > NLSQ_SLOW_S else reps
        progress(f"{name}: our NLSQ ({solver}) steady state ({reps} call(s) after a first) ...")

        def call():
            nonlocal result
            result = xpcs.fit_nlsq(data, mode, initial=init, solver=solver)
            jax.block_until_ready(result.x)

        block["timing"] = timed(call, reps, warmup=0)
    cold = child.wait()
    block["cold_process"] = cold
    block["status"] = "ok" if cold["process"] == "ok" else f"first call: {cold['process']}"
    block["first_call_s"] = cold.get("first_call_s")
    block["steady_s"] = block["timing"]["median_s"] if block["timing"] else None
    summary = result.to_json() if result is not None else cold.get("result")
    if summary is None:
        return block, None
    block["result"] = summary
    values, std = summary["parameters"], summary["std"]
    block["accuracy"] = accuracy(values, std, truth)
    n_phi = data.n_phi
    contrast = [values[f"contrast[{k}]"] for k in range(n_phi)]
    offset = [values[f"offset[{k}]"] for k in range(n_phi)]
    block["objective"] = objective(values, contrast, offset)
    if cold["process"] == "ok":
        x_cold = np.asarray(list(cold["result"]["parameters"].values()), dtype=float)
        x_here = np.asarray(list(values.values()), dtype=float)
        block["cold_vs_steady_max_relative_difference"] = float(
            np.max(np.abs(x_cold - x_here) / np.maximum(np.abs(x_here), 1e-300))
        )
    progress(
        f"{name}: ours ({solver}) first {fmt(block['first_call_s'], '.2f')} s, steady "
        f"{fmt(block['steady_s'], '.3f')} s, max|z| "
        f"{fmt(block['accuracy']['summary']['max_abs_z'])}"
    )
    return block, result


def peer_block(raw: dict | None, status: str, data, truth, objective) -> dict:
    if raw is None:
        return {"status": status}
    nlsq = raw.get("nlsq") or {}
    block = {
        "status": raw.get("status", status),
        "errors": raw.get("errors"),
        "n_points_fitted": raw.get("n_points_fitted"),
        "t0_excluded": raw.get("t0_excluded"),
        "per_angle_mode": raw.get("per_angle_mode"),
        "nlsq": {k: nlsq.get(k) for k in PEER_NLSQ_KEYS},
        # paths relative to the repository (the results file names no machine's folders)
        "warnings": [w.replace(f"{ROOT}/", "") for w in raw.get("warnings") or []],
        "process_wall_s": raw.get("process_wall_s"),
    }
    if nlsq.get("status") == "ok":
        entry = block["nlsq"]
        entry["first_call_s"] = nlsq.get("nlsq_wall_first_s")
        entry["steady_s"] = nlsq.get("nlsq_wall_second_s")
        entry["accuracy"] = accuracy(nlsq["params"], nlsq.get("params_se"), truth)
        contrast = per_angle(nlsq.get("contrast"), data.n_phi)
        offset = per_angle(nlsq.get("offset"), data.n_phi)
        if contrast is not None and offset is not None:
            entry["objective"] = objective(nlsq["params"], contrast, offset)
            # the peer recomputed the same chi^2 with homodyne's own model: a parity check
            theirs = (nlsq.get("recomputed") or {}).get("chi2_red_fit_upper")
            if theirs is not None:
                entry["objective_vs_homodyne_recomputed"] = abs(
                    entry["objective"]["reduced_chi2"] / theirs - 1
                )
        entry["std_note"] = (
            "homodyne fits both triangles (and the diagonal) as independent points: its "
            "standard errors are ~sqrt(2) too small on symmetric data"
        )
    return block


def ratio(numerator, denominator) -> float | None:
    if numerator is None or denominator is None or not denominator:
        return None
    return float(numerator) / float(denominator)


class Prepared:
    """One data set written for both tools, and our cold-process first calls."""

    def __init__(self, name: str, spec: dict, smoke: bool, work: Path):
        self.name, self.spec, self.smoke, self.work = name, spec, smoke, work
        self.mode = spec["mode"]
        self.data, self.truth, self.init = make_dataset(spec)
        self.npz = work / f"data_{name}.npz"
        write_npz(self.npz, self.data, self.mode, self.truth, self.init)
        self.solvers = ("normal-equations",) if smoke else SOLVERS
        self.children: dict[str, Child] = {}

    def start_children(self, wait: bool) -> None:
        """Our first calls, each in a fresh process; ``wait``: one at a time, to the end."""
        for solver in self.solvers:
            limit = OURS_OPTIMISTIX_TIMEOUT if solver == "optimistix" else None
            progress(f"{self.name}: our NLSQ ({solver}) first call in a fresh process ...")
            child = our_child("nlsq", self.npz, self.work, solver, limit)
            self.children[solver] = child
            if wait:
                child.wait()


def run_dataset(prep: Prepared, args, peer_python: Path | None) -> dict:
    name, spec, mode, work = prep.name, prep.spec, prep.mode, prep.work
    data, truth, init, npz = prep.data, prep.truth, prep.init, prep.npz
    objective = Objective(data, mode)
    entry: dict = {
        "mode": mode,
        "n_t": spec["n_t"],
        "n_phi": data.n_phi,
        "phi_deg": [float(p) for p in spec["phi"]],
        "seed": spec["seed"],
        "n_points_one_triangle": objective.n_points,
        "n_points_full_matrices": int(np.asarray(data.c2).size),
        "truth": truth,
        "initial": init,
        "truth_objective": objective(truth, [CONTRAST] * data.n_phi, [OFFSET] * data.n_phi),
        # other work on the machine inflates timings: 1-, 5-, 15-minute load averages
        "load_average_start": list(os.getloadavg()),
    }
    solvers = prep.solvers
    cmc = not args.no_cmc and (not args.smoke or name != "B")  # smoke: C only if asked
    # Cold-process first calls: in full runs one process at a time, each to its end before
    # anything else runs (smoke runs started them all at once, overlapping this process).
    if not prep.children:
        prep.start_children(wait=True)
    cold = prep.children

    # homodyne (NLSQ twice, then CMC) in its own process
    peer_raw, peer_status = None, "skipped: no homodyne Python at --peer-python"
    if peer_python is not None:
        cmc_request = None
        if cmc and PEER_CMC_TIMEOUT[name] is not None:
            timeout = 60.0 if args.smoke else PEER_CMC_TIMEOUT[name]
            cmc_request = {"timeout_s": timeout}
        progress(f"{name}: homodyne (NLSQ x2{', CMC' if cmc_request else ''}) ...")
        peer = peer_child(peer_python, npz, work, name, cmc_request, args.smoke).wait()
        peer_status = peer["process"]
        if peer_status == "ok":
            peer_raw = peer
        else:
            peer_raw = None
            peer_status = f"peer process failed: {peer_status}: {peer.get('log_tail', '')}"
        progress(f"{name}: homodyne done ({peer_status})")
    entry["homodyne"] = peer_block(peer_raw, peer_status, data, truth, objective)
    if peer_raw is not None:
        entry["homodyne_versions"] = {k: peer_raw.get(k) for k in PEER_VERSION_KEYS}

    ours: dict = {"nlsq": {}}
    nlsq_result = None
    reps = 1 if args.smoke else NLSQ_REPS
    for solver in solvers:
        block, result = our_nlsq(
            name, data, mode, init, cold[solver], solver, reps, objective, truth
        )
        ours["nlsq"][solver] = block
        if solver == "normal-equations":
            nlsq_result = result
    entry["diffdesign"] = ours

    if cmc:
        ours["cmc"] = our_cmc(name, nlsq_result, npz, work, truth, args.smoke)
        if PEER_CMC_TIMEOUT[name] is None:
            entry["homodyne"]["cmc"] = {"cmc_status": PEER_CMC_NOT_RUN}
        elif peer_raw is not None:
            entry["homodyne"]["cmc"] = peer_cmc_summary(peer_raw.get("cmc"), truth)
        else:
            entry["homodyne"]["cmc"] = {"cmc_status": peer_status}

    # homodyne / ours (times), ours / homodyne (ESS per second)
    theirs = entry["homodyne"].get("nlsq") or {}
    mine = ours["nlsq"]["normal-equations"]
    ratios = {
        "nlsq_first_call": ratio(theirs.get("first_call_s"), mine.get("first_call_s")),
        "nlsq_steady_state": ratio(theirs.get("steady_s"), mine.get("steady_s")),
    }
    if "optimistix" in ours["nlsq"]:
        other = ours["nlsq"]["optimistix"]
        ratios["nlsq_first_call_optimistix"] = ratio(
            theirs.get("first_call_s"), other.get("first_call_s")
        )
        ratios["nlsq_steady_state_optimistix"] = ratio(
            theirs.get("steady_s"), other.get("steady_s")
        )
    if cmc:
        their_cmc, my_cmc = entry["homodyne"]["cmc"], ours["cmc"]
        ok = their_cmc.get("cmc_status") == "ok" and my_cmc.get("cmc_status") == "ok"
        ratios["cmc_wall"] = ratio(their_cmc.get("wall_s"), my_cmc.get("wall_s")) if ok else None
        ratios["cmc_ess_per_s_ours_over_homodyne"] = (
            ratio(my_cmc.get("ess_per_s"), their_cmc.get("ess_per_s")) if ok else None
        )
    entry["ratios"] = ratios
    entry["load_average_end"] = list(os.getloadavg())
    return entry


# ---------------------------------------------------------------------------- report


def fmt(value, spec: str = ".3g", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def markdown(datasets: dict) -> str:
    lines = [
        "| data | tool | NLSQ first call (s) | steady (s) | homodyne / ours (first, steady) "
        "| max abs z | rel. err D0 | alpha | gamma_dot_t0 | phi0 | chi2r (one triangle) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in datasets.items():
        peer = entry["homodyne"]
        rows = [("homodyne", peer.get("nlsq") or {"status": peer.get("status")}, None)]
        for solver, block in entry["diffdesign"]["nlsq"].items():
            rows.append((f"diffdesign ({solver})", block, solver))
        label = f"{name}: {entry['mode']}, {entry['n_phi']} x {entry['n_t']}^2"
        for tool, block, solver in rows:
            summary = (block.get("accuracy") or {}).get("summary", {})
            if solver is None:
                speed = ""
            else:
                theirs = entry["homodyne"].get("nlsq") or {}
                speed = (
                    f"{fmt(ratio(theirs.get('first_call_s'), block.get('first_call_s')), '.1f')}x, "
                    f"{fmt(ratio(theirs.get('steady_s'), block.get('steady_s')), '.1f')}x"
                )
            status = block.get("status")
            if status not in (None, "ok") and "first_call_s" not in block:
                lines.append(f"| {label} | {tool} | {status} | | | | | | | | |")
                continue
            lines.append(
                f"| {label} | {tool} | {fmt(block.get('first_call_s'), '.2f')} "
                f"| {fmt(block.get('steady_s'), '.3f')} | {speed} "
                f"| {fmt(summary.get('max_abs_z'), '.3g')} "
                f"| {fmt(summary.get('relative_error_D0'), '.2%')} "
                f"| {fmt(summary.get('relative_error_alpha'), '.2%')} "
                f"| {fmt(summary.get('relative_error_gamma_dot_t0'), '.2%')} "
                f"| {fmt(summary.get('relative_error_phi0'), '.2%')} "
                f"| {fmt((block.get('objective') or {}).get('reduced_chi2'), '.4f')} |"
            )
    lines += [
        "",
        "| data | tool | CMC wall (s) | steady (s) | draws (chains x warmup+samples) "
        "| min ESS bulk | ESS/s | R-hat max | divergences | max abs z (posterior) "
        "| homodyne / ours wall | ESS/s ours / homodyne |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in datasets.items():
        mine = entry["diffdesign"].get("cmc")
        if mine is None:
            continue
        theirs = entry["homodyne"].get("cmc") or {}
        for tool, block in (("homodyne", theirs), ("diffdesign", mine)):
            if block.get("cmc_status") != "ok":
                lines.append(f"| {name} | {tool} | {block.get('cmc_status')} | | | | | | | | | |")
                continue
            if tool == "homodyne":
                draws = (
                    f"{block.get('n_chains')} x {block.get('n_warmup_actual')}+"
                    f"{block.get('n_samples_actual')}, {block.get('num_shards')} shard(s)"
                )
                extra = (
                    f"{fmt(entry['ratios'].get('cmc_wall'), '.1f')}x | "
                    f"{fmt(entry['ratios'].get('cmc_ess_per_s_ours_over_homodyne'), '.1f')}x"
                )
            else:
                draws = (
                    f"{block.get('num_chains')} x {block.get('num_warmup')}+"
                    f"{block.get('num_samples')}, {block.get('n_shards')} shard(s)"
                )
                extra = " | "
            z = (block.get("accuracy") or {}).get("summary", {}).get("max_abs_z")
            lines.append(
                f"| {name} | {tool} | {fmt(block.get('wall_s'), '.1f')}"
                f"{' (over limit)' if block.get('over_limit') else ''} "
                f"| {fmt(block.get('steady_wall_s'), '.1f')} | {draws} "
                f"| {fmt(block.get('ess_bulk_min'), '.0f')} | {fmt(block.get('ess_per_s'), '.2f')} "
                f"| {fmt(block.get('rhat_max'), '.3f')} | {fmt(block.get('divergences'), 'd')} "
                f"| {fmt(z, '.3g')} | {extra} |"
            )
    return "\n".join(lines)


def versions() -> dict:
    out = {
        "python": platform.python_version(),
        "diffdesign": diffdesign.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
    }
    for package in ("numpyro", "arviz", "optimistix", "equinox"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def share_compilations(directory: Path) -> None:
    """Smoke runs only: a persistent compilation cache that this process and its children
    share, so a computation compiled in one process loads in the others (CI time)."""
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(directory)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None, help="comma-separated subset of A,B,C")
    parser.add_argument("--no-cmc", action="store_true", help="NLSQ only")
    parser.add_argument(
        "--smoke", action="store_true", help="40 x 40 data sets A and B, few CMC draws (CI)"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/cpu/xpcs_vs_homodyne.json"))
    parser.add_argument(
        "--peer-python",
        default=str(DEFAULT_PEER_PYTHON),
        help="the homodyne virtual environment's Python (the peer is skipped if it is missing)",
    )
    args = parser.parse_args()
    specs = dataset_specs(args.smoke)
    chosen = (args.datasets or ("A,B" if args.smoke else "A,B,C")).split(",")
    unknown = sorted(set(chosen) - set(specs))
    if unknown:
        parser.error(f"--datasets: unknown {unknown}; choose from {sorted(specs)}")
    peer_python = Path(args.peer_python)
    if not (peer_python.is_file() and PEER_SCRIPT.is_file()):
        progress(f"no homodyne Python at {peer_python}: the peer is skipped")
        peer_python = None

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "XPCS two-time fits: diffdesign.xpcs vs homodyne (NLSQ and CMC)",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "smoke": args.smoke,
        "settings": {
            "truth": TRUTH,
            "initial": INIT,
            "contrast": CONTRAST,
            "offset": OFFSET,
            "noise_sigma": NOISE,
            "dt_s": DT,
            "q_inverse_angstrom": Q,
            "L_angstrom": L,
            "datasets": {k: specs[k] for k in chosen},
            "cmc": None if args.no_cmc else cmc_settings(args.smoke),
            "homodyne_cmc_timeout_s": PEER_CMC_TIMEOUT,
            "diffdesign_cmc_timeout_s": OURS_CMC_TIMEOUT,
            "homodyne_flags": "--keep-t0, default per-angle mode, default adaptive CMC counts",
            "diffdesign_nlsq": "fit_nlsq defaults (32 starts screened, 3 refined) from the "
            "same initial guess; scaling individual",
        },
        "definitions": {
            "first_call_s": (
                "homodyne: its first fit_nlsq_jax call in its process (JIT compile included, "
                "imports excluded); diffdesign: fit_nlsq's first call in a fresh Python "
                "process (compile included, imports excluded)"
            ),
            "steady_s": "homodyne: its second call; diffdesign: median of 3 calls here",
            "z": "(fit - truth) / the tool's reported standard error",
            "objective": (
                "chi2 of the tool's fit (physical parameters and per-angle contrast/offset) on "
                "diffdesign's one-triangle likelihood (t1 < t2), reduced by n_points - "
                "n_params; the same objective for both tools"
            ),
            "ess_bulk_min": (
                "min over the physical parameters of the bulk ESS of the (combined) posterior "
                "draws (arviz); ess_per_s = ess_bulk_min / CMC wall time (first call)"
            ),
            "ratios": "homodyne / diffdesign for times; diffdesign / homodyne for ESS per second",
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average_before": list(os.getloadavg()),
            "jax_backend": jax.default_backend(),
            "jax_devices": [str(d) for d in jax.devices()],
        },
        "versions": {"diffdesign": versions(), "homodyne": None},
        "datasets": {},
        "ratios": {},
    }
    datasets = report["datasets"]
    with tempfile.TemporaryDirectory(prefix="xpcs_vs_homodyne_") as tmp:
        work = Path(tmp)
        if args.smoke:
            share_compilations(work / "jax_cache")
        prepared = [Prepared(name, specs[name], args.smoke, work) for name in chosen]
        if args.smoke:  # overlap the cold-process children with everything else
            for prep in prepared:
                prep.start_children(wait=False)
        for prep in prepared:
            name = prep.name
            progress(f"data set {name}: {prep.mode}, {len(prep.spec['phi'])} angle(s)")
            entry = run_dataset(prep, args, peer_python)
            datasets[name] = entry
            report["ratios"][name] = entry["ratios"]
            if entry.get("homodyne_versions"):
                report["versions"]["homodyne"] = entry["homodyne_versions"]
            report["machine"]["load_average_after"] = list(os.getloadavg())
            out.write_text(json.dumps(report, indent=2))  # after every data set
    table = markdown(datasets)
    report["markdown"] = table
    out.write_text(json.dumps(report, indent=2))
    print(table)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
