"""Peer benchmark: homodyne 2.23.3 (NLSQ + CMC) on one synthetic XPCS two-time data set.

This script runs ONLY under the separate Python 3.12 virtual environment that holds the
peer package (homodyne needs Python 3.12; our project runs on 3.11).  Create it once from
the repository root::

    python3.12 -m venv .venv-homodyne
    .venv-homodyne/bin/pip install homodyne==2.23.3 nlsq==0.7.6

Our benchmark (Python 3.11, separate process) calls it as::

    .venv-homodyne/bin/python benchmarks/peers/homodyne_xpcs.py DATA.npz OUT.json \
        [--cmc] [--cmc-timeout SECONDS] [--cmc-samples N --cmc-warmup N --cmc-chains N] \
        [--per-angle individual|auto|constant|averaged|fourier] [--keep-t0] [--cmc-no-adaptive]

DATA.npz holds ``c2`` (n_phi, n_t, n_t), ``t`` (n_t,), ``phi`` (degrees), ``q``, ``L``, ``dt``,
``sigma``, ``mode`` ('static' | 'laminar_flow'), ``truth``, ``init``, ``contrast``, ``offset``.
The fit is set up the way a homodyne user gets it: the package's own YAML template for the
mode, ``initial_parameters.values`` = ``init``, ``analyzer_parameters.dt`` = ``dt``, and (as the
homodyne CLI does) the t = 0 row/column dropped unless ``--keep-t0``.  NLSQ is
``homodyne.optimization.nlsq.core.fit_nlsq_jax`` (run twice: with and without JIT compile);
CMC is ``homodyne.optimization.cmc.fit_mcmc_jax`` warm-started from the NLSQ result exactly as
the CLI does, run in a child process so that a wall-clock timeout can kill it (the result is
handed over as npz + JSON and rebuilt there; nothing is pickled).

Everything measured goes to OUT.json; homodyne failures are recorded, not raised.  homodyne's
and nlsq's logging is silenced (WARNING+ records are collected into the JSON); one short
progress line per stage goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any

PHYS_NAMES = {
    "static": ["D0", "alpha", "D_offset"],
    "laminar_flow": [
        "D0",
        "alpha",
        "D_offset",
        "gamma_dot_t0",
        "beta",
        "gamma_dot_t_offset",
        "phi0",
    ],
}
PER_ANGLE_CHOICES = ["individual", "auto", "constant", "averaged", "fourier"]
# homodyne CLI: NLSQ warm start for CMC is dropped when its reduced chi2 exceeds this
# (homodyne/cli/optimization_runner.py, _CMC_WARMSTART_CHI2_THRESHOLD).
CLI_WARMSTART_CHI2_MAX = 100.0
TAG = "[homodyne_xpcs]"


def progress(msg: str) -> None:
    print(f"{TAG} {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- logging
class _Collector(logging.Handler):
    """Keeps WARNING+ log records (deduplicated, truncated) instead of printing them."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []
        self._seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.levelname} {record.name}: {record.getMessage()}"
        except Exception:  # a broken log call must not break the run
            return
        text = " ".join(text.split())[:400]
        if text not in self._seen and len(self.messages) < 60:
            self._seen.add(text)
            self.messages.append(text)


def quiet_logging() -> _Collector:
    """Silence INFO/DEBUG everywhere; collect WARNING+ from homodyne, nlsq, jax, numpyro."""
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.disable(logging.INFO)
    collector = _Collector()
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(collector)
    root.setLevel(logging.WARNING)
    # nlsq installs its own stdout handler unless the 'nlsq' logger already has one.
    logging.getLogger("nlsq").addHandler(logging.NullHandler())
    # homodyne's get_logger() adds a console handler to the 'homodyne' logger unless it
    # already has a StreamHandler; give it one that writes nowhere (records still reach
    # the collector through propagation).
    logging.getLogger("homodyne").addHandler(logging.StreamHandler(open(os.devnull, "w")))
    warnings.simplefilter("default")  # each distinct warning once ...
    logging.captureWarnings(True)  # ... routed to the collector, not printed
    return collector


# --------------------------------------------------------------------------- helpers
def jsonable(obj: Any) -> Any:
    """Recursively convert numpy/jax values to plain JSON types (non-finite -> None)."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        arr = np.asarray(obj)
        return jsonable(arr.item() if arr.ndim == 0 else arr.tolist())
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def err_text(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}: {str(exc)[:500]}"


def load_npz(path: str) -> dict[str, Any]:
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    out: dict[str, Any] = {
        "c2": np.asarray(d["c2"], dtype=np.float64),
        "t": np.asarray(d["t"], dtype=np.float64),
        "phi": np.atleast_1d(np.asarray(d["phi"], dtype=np.float64)),
        "q": float(d["q"]),
        "L": float(d["L"]),
        "dt": float(d["dt"]),
        "sigma": float(np.asarray(d["sigma"]).ravel()[0]),
        "mode": str(np.asarray(d["mode"]).item()),
        "truth": np.asarray(d["truth"], dtype=np.float64),
        "init": np.asarray(d["init"], dtype=np.float64),
        "contrast": float(d["contrast"]) if "contrast" in d else None,
        "offset": float(d["offset"]) if "offset" in d else None,
    }
    if out["c2"].ndim == 2:
        out["c2"] = out["c2"][None]
    if out["mode"] not in PHYS_NAMES:
        raise ValueError(f"mode must be static or laminar_flow, got {out['mode']!r}")
    return out


def used_arrays(d: dict[str, Any], keep_t0: bool) -> tuple[Any, Any]:
    """c2 and t as homodyne sees them (the CLI drops the t = 0 row and column)."""
    if keep_t0 or d["c2"].shape[-1] < 2:
        return d["c2"], d["t"]
    return d["c2"][:, 1:, 1:], d["t"][1:]


def build_config(d: dict[str, Any], n_t_used: int, per_angle: str | None) -> Any:
    """homodyne's own template for the mode, edited the way a user edits the YAML."""
    import homodyne
    from homodyne.config.manager import ConfigManager

    tpl = os.path.join(
        os.path.dirname(homodyne.__file__),
        "config",
        "templates",
        f"homodyne_{d['mode']}.yaml",
    )
    cfg = ConfigManager(tpl)
    c = cfg.config
    c["analyzer_parameters"]["dt"] = d["dt"]
    c["analyzer_parameters"]["start_frame"] = 1
    c["analyzer_parameters"]["end_frame"] = int(n_t_used)
    c["analyzer_parameters"].setdefault("scattering", {})["wavevector_q"] = d["q"]
    c["analyzer_parameters"].setdefault("geometry", {})["stator_rotor_gap"] = d["L"]
    c["initial_parameters"]["values"] = [float(x) for x in d["init"]]
    opt = c.setdefault("optimization", {})
    ad = opt.setdefault("nlsq", {}).setdefault("anti_degeneracy", {})
    cmc = opt.setdefault("cmc", {})
    if per_angle in ("individual", "auto", "constant"):
        ad["per_angle_mode"] = per_angle
        cmc["per_angle_mode"] = per_angle
    elif per_angle == "averaged":
        # homodyne's "auto" turns into its averaged-scaling mode once n_phi >= threshold.
        ad["per_angle_mode"] = "auto"
        ad["constant_scaling_threshold"] = 1
        cmc["per_angle_mode"] = "auto"
        cmc["constant_scaling_threshold"] = 1
    elif per_angle == "fourier":  # NLSQ only; CMC keeps its default
        ad["per_angle_mode"] = "fourier"
    return cfg


def per_angle_record(cfg: Any, requested: str | None) -> dict[str, Any]:
    opt = cfg.config.get("optimization", {})
    ad = opt.get("nlsq", {}).get("anti_degeneracy", {})
    cmc = opt.get("cmc", {})
    return {
        "requested": requested if requested else "default",
        "nlsq_per_angle_mode": ad.get("per_angle_mode", "auto"),
        "nlsq_constant_scaling_threshold": ad.get("constant_scaling_threshold", 3),
        "nlsq_anti_degeneracy_enable": ad.get("enable"),
        "cmc_per_angle_mode": cmc.get("per_angle_mode", "auto"),
        "cmc_constant_scaling_threshold": cmc.get("constant_scaling_threshold", 3),
        "note": (
            "homodyne default is 'auto' (threshold 3). For fewer than 1M points NLSQ "
            "takes its standard path, which always fits free per-angle contrast/offset; "
            "per_angle_mode then only changes the DOF used in reduced chi2."
        ),
    }


def split_params(
    vec: Any, mode: str, n_phi: int
) -> tuple[list[float], list[float] | None, list[float] | None]:
    """homodyne's NLSQ layout: [contrast x k, offset x k, physical...] (k = n_phi or 1)."""
    import numpy as np

    v = np.asarray(vec, dtype=np.float64).ravel()
    n_phys = len(PHYS_NAMES[mode])
    phys = v[-n_phys:].tolist()
    n_scal = v.size - n_phys
    if n_scal >= 2 and n_scal % 2 == 0:
        k = n_scal // 2
        return phys, v[:k].tolist(), v[k : 2 * k].tolist()
    return phys, None, None


def recompute_chi2(
    d: dict[str, Any],
    c2: Any,
    t: Any,
    phys: list[float],
    contrast: list[float] | None,
    offset: list[float] | None,
    n_free: int,
) -> dict[str, Any]:
    """chi2 of a parameter set with homodyne's own forward model, one triangle (i < j)."""
    import jax.numpy as jnp
    import numpy as np
    from homodyne.core.physics_nlsq import compute_g2_scaled

    n_phi, n, _ = c2.shape
    iu = np.triu_indices(n, 1)

    def chi2_of(p: list[float], cs: list[float], os_: list[float]) -> float:
        total = 0.0
        for k in range(n_phi):
            g2 = compute_g2_scaled(
                jnp.asarray(p),
                jnp.asarray(t),
                jnp.asarray(t),
                jnp.asarray(d["phi"][k : k + 1]),
                d["q"],
                d["L"],
                float(cs[k]),
                float(os_[k]),
                d["dt"],
            )
            r = (np.asarray(g2).reshape(n, n) - c2[k])[iu] / d["sigma"]
            total += float(np.sum(r * r))
        return total

    def bcast(x: list[float] | None, default: float | None) -> list[float] | None:
        if x is None:
            return None if default is None else [default] * n_phi
        return list(x) * n_phi if len(x) == 1 else list(x)

    n_upper = n_phi * len(iu[0])
    out: dict[str, Any] = {
        "definition": (
            "sum over i<j of ((model-c2)/sigma)^2 with homodyne compute_g2_scaled, "
            "divided by (n_upper - n_free)"
        ),
        "n_upper": n_upper,
        "n_free": n_free,
    }
    cs, os_ = bcast(contrast, None), bcast(offset, None)
    if cs is not None and os_ is not None:
        out["chi2_red_fit_upper"] = chi2_of(phys, cs, os_) / max(1, n_upper - n_free)
    cs_t, os_t = bcast(None, d["contrast"]), bcast(None, d["offset"])
    if cs_t is not None and os_t is not None:
        n_truth = len(phys) + 2
        out["chi2_red_truth_upper"] = chi2_of([float(x) for x in d["truth"]], cs_t, os_t) / max(
            1, n_upper - n_truth
        )
    return out


# --------------------------------------------------------------------------- NLSQ
def run_nlsq(d: dict[str, Any], args: argparse.Namespace, report: dict[str, Any]) -> Any:
    import numpy as np
    from homodyne.optimization.nlsq.core import fit_nlsq_jax

    mode = d["mode"]
    c2, t = used_arrays(d, args.keep_t0)
    n_phi, n_used = c2.shape[0], c2.shape[1]
    block: dict[str, Any] = {"status": "not run"}
    report["nlsq"] = block
    data = {
        "phi": d["phi"],
        "g2": c2,
        "t1": t,
        "t2": t,
        "q": d["q"],
        "L": d["L"],
        "dt": d["dt"],
        "sigma": d["sigma"] * np.ones_like(c2),
    }
    results = []
    for run in ("first", "second"):
        cfg = build_config(d, n_used, args.per_angle)  # fresh config, outside the timer
        progress(f"NLSQ {run} run ({mode}, {n_phi} x {n_used} x {n_used}) ...")
        t0 = time.perf_counter()
        try:
            res = fit_nlsq_jax(data, cfg)
        except Exception as exc:  # record homodyne failures, carry on
            wall = time.perf_counter() - t0
            block[f"nlsq_wall_{run}_s"] = wall
            block["status"] = err_text(exc)
            block["traceback"] = traceback.format_exc()[-2000:]
            progress(f"NLSQ {run} run failed after {wall:.2f} s: {exc}")
            break
        wall = time.perf_counter() - t0
        block[f"nlsq_wall_{run}_s"] = wall
        block[f"homodyne_execution_time_{run}_s"] = getattr(res, "execution_time", None)
        results.append(res)
        progress(
            f"NLSQ {run} run done in {wall:.2f} s "
            f"({getattr(res, 'convergence_status', '?')}, "
            f"chi2r {getattr(res, 'reduced_chi_squared', float('nan')):.4g})"
        )
    if not results:
        return None
    res = results[-1]  # steady-state run; same data, same start
    names = PHYS_NAMES[mode]
    params = np.asarray(res.parameters, dtype=np.float64).ravel()
    unc = getattr(res, "uncertainties", None)
    unc = None if unc is None else np.asarray(unc, dtype=np.float64).ravel()
    phys, contrast, offset = split_params(params, mode, n_phi)
    if unc is not None and unc.size == params.size:
        phys_se, contrast_se, offset_se = split_params(unc, mode, n_phi)
    else:
        phys_se, contrast_se, offset_se = None, None, None
    chi2 = float(getattr(res, "chi_squared", float("nan")))
    chi2r = float(getattr(res, "reduced_chi_squared", float("nan")))
    block.update(
        {
            "status": "ok",
            "params": dict(zip(names, phys, strict=True)),
            "params_se": dict(zip(names, phys_se, strict=True)) if phys_se else None,
            "contrast": contrast,
            "offset": offset,
            "contrast_se": contrast_se,
            "offset_se": offset_se,
            "n_params_fitted": int(params.size),
            "chi2": chi2,
            "reduced_chi2": chi2r,
            "convergence_status": getattr(res, "convergence_status", None),
            "success": bool(getattr(res, "success", False)),
            "quality_flag": getattr(res, "quality_flag", None),
            "message": getattr(res, "message", None),
            "iterations_reported": getattr(res, "iterations", None),
            "recovery_actions": list(getattr(res, "recovery_actions", []) or []),
            "device_info": getattr(res, "device_info", None),
            "n_points_fitted": int(c2.size),
            # homodyne's DOF = chi2 / reduced chi2 (n_points - n_params it counts).
            "dof_reported": (
                round(chi2 / chi2r)
                if chi2r and math.isfinite(chi2r) and math.isfinite(chi2)
                else None
            ),
        }
    )
    if len(results) == 2:
        p1 = np.asarray(results[0].parameters, dtype=np.float64).ravel()
        if p1.size == params.size:
            rel = np.abs(p1 - params) / np.maximum(np.abs(params), 1e-300)
            block["second_run_max_rel_param_diff"] = float(np.max(rel))
    try:
        block["recomputed"] = recompute_chi2(d, c2, t, phys, contrast, offset, int(params.size))
    except Exception as exc:
        block["recomputed"] = {"status": err_text(exc)}
    return res


# --------------------------------------------------------------------------- CMC
def pooled_arrays(c2: Any, t: Any, phi: Any) -> tuple[Any, Any, Any, Any]:
    """Flatten (n_phi, n, n) the way homodyne's CLI pools data for CMC."""
    import numpy as np

    n_phi, n, _ = c2.shape
    t1g, t2g = np.meshgrid(t, t, indexing="ij")
    return (
        c2.ravel(),
        np.tile(t1g.ravel(), n_phi),
        np.tile(t2g.ravel(), n_phi),
        np.repeat(np.asarray(phi, dtype=np.float64), n * n),
    )


def ess_rhat(arr: Any) -> tuple[float, float, str]:
    """Bulk ESS and R-hat of a (chains, draws) array: arviz, else numpyro."""
    import numpy as np

    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    try:
        import arviz as az

        return float(az.ess(a, method="bulk")), float(az.rhat(a)), "arviz"
    except Exception:
        from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

        r = float(split_gelman_rubin(a)) if a.shape[0] > 1 else float("nan")
        return float(effective_sample_size(a)), r, "numpyro"


def cmc_child(in_path: str, out_path: str) -> int:
    """Runs in a fresh process: homodyne CMC, then diagnostics; writes JSON to out_path."""
    collector = quiet_logging()
    with open(in_path) as f:
        job = json.load(f)
    out: dict[str, Any] = {"cmc_status": "started"}
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import numpy as np
        from homodyne.config.parameter_space import ParameterSpace
        from homodyne.optimization.cmc import fit_mcmc_jax

        d, a = load_npz(job["data_path"]), job["args"]
        mode = d["mode"]
        c2, t = used_arrays(d, a["keep_t0"])
        cfg = build_config(d, c2.shape[1], a["per_angle"])
        # As the homodyne CLI does for --n-warmup/--n-samples/--n-chains.
        per_shard = cfg.config["optimization"]["cmc"].setdefault("per_shard_mcmc", {})
        per_shard["num_warmup"] = a["cmc_warmup"]
        per_shard["num_samples"] = a["cmc_samples"]
        per_shard["num_chains"] = a["cmc_chains"]
        if a["cmc_no_adaptive"]:
            per_shard["adaptive_sampling"] = False
        cmc_config = cfg.get_cmc_config()
        backend = cmc_config.get("backend", {})
        cmc_config["backend"] = {"name": backend} if isinstance(backend, str) else (backend or {})
        initial_values = cfg.get_initial_parameters()
        pspace = ParameterSpace.from_config(config_dict=cfg.config, analysis_mode=mode)
        y, t1p, t2p, phip = pooled_arrays(c2, t, d["phi"])
        nlsq_obj = read_warm_start(job["nlsq_result"])
        t0 = time.perf_counter()
        res = fit_mcmc_jax(
            y,
            t1=t1p,
            t2=t2p,
            phi=phip,
            q=d["q"],
            L=d["L"],
            analysis_mode=mode,
            method="cmc",
            cmc_config=cmc_config,
            initial_values=initial_values,
            parameter_space=pspace,
            dt=d["dt"],
            progress_bar=False,
            nlsq_result=nlsq_obj,
        )
        wall = time.perf_counter() - t0
        names = PHYS_NAMES[mode]
        samples = getattr(res, "samples", {}) or {}
        mean, std, ess, rhat, src = {}, {}, {}, {}, set()
        for nm in names:
            if nm not in samples:
                continue
            arr = np.asarray(samples[nm], dtype=np.float64)
            mean[nm] = float(np.mean(arr))
            std[nm] = float(np.std(arr, ddof=1))
            e, r, s = ess_rhat(arr)
            ess[nm], rhat[nm] = e, r
            src.add(s)
        scal = {
            k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1))}
            for k, v in samples.items()
            if k.startswith(("contrast", "offset", "sigma"))
        }
        ess_vals = [v for v in ess.values() if math.isfinite(v)]
        rhat_vals = [v for v in rhat.values() if math.isfinite(v)]
        ess_min = min(ess_vals) if ess_vals else None
        out.update(
            {
                "cmc_status": "ok",
                "cmc_wall_s": wall,
                "convergence_status": getattr(res, "convergence_status", None),
                "per_angle_mode_effective": (
                    "individual (per-angle contrast/offset sampled)"
                    if "contrast_0" in samples
                    else "averaged (one contrast/offset sampled)"
                    if "contrast" in samples
                    else "fixed scaling (constant / constant_averaged)"
                ),
                "homodyne_result_per_angle_mode": getattr(res, "per_angle_mode", None),
                "num_shards": getattr(res, "num_shards", None),
                "n_points": int(y.size - c2.shape[0] * c2.shape[1]),
                "n_points_note": "pooled points minus the t1 == t2 diagonal (CMC drops it)",
                "n_chains": getattr(res, "n_chains", None),
                "n_warmup_actual": getattr(res, "n_warmup", None),
                "n_samples_actual": getattr(res, "n_samples", None),
                "posterior_mean": mean,
                "posterior_std": std,
                "scaling_posterior": scal,
                "ess_bulk": ess,
                "rhat": rhat,
                "ess_bulk_min": ess_min,
                "rhat_max": max(rhat_vals) if rhat_vals else None,
                "diagnostics_source": sorted(src),
                "homodyne_ess_bulk": dict(getattr(res, "ess_bulk", {}) or {}),
                "homodyne_rhat": dict(getattr(res, "r_hat", {}) or {}),
                "divergences": getattr(res, "divergences", None),
                "ess_per_s": (ess_min / wall) if ess_min and wall > 0 else None,
                "sampled_names": sorted(samples.keys()),
            }
        )
    except Exception as exc:  # record homodyne failures
        out["cmc_status"] = err_text(exc)
        out["traceback"] = traceback.format_exc()[-3000:]
    out["log_warnings"] = collector.messages
    with open(out_path, "w") as f:
        json.dump(jsonable(out), f)
    return 0


#: Fields of homodyne's OptimizationResult handed to the CMC child (its warm start reads
#: ``parameters`` and ``uncertainties``); arrays go to an npz beside the job's JSON.
_WARM_ARRAYS = ("parameters", "uncertainties", "covariance")
_WARM_SCALARS = ("chi_squared", "reduced_chi_squared", "convergence_status", "iterations",
                 "execution_time", "quality_flag")  # fmt: skip


def write_warm_start(result: Any, path: str) -> dict[str, Any]:
    """homodyne's NLSQ result as plain data (npz + JSON fields): no pickle between processes."""
    import numpy as np

    np.savez(path, **{k: np.asarray(getattr(result, k), dtype=float) for k in _WARM_ARRAYS})
    fields = {k: jsonable(getattr(result, k)) for k in _WARM_SCALARS}
    return {"arrays": path, "fields": fields, "device_info": jsonable(result.device_info)}


def read_warm_start(entry: dict[str, Any] | None) -> Any:
    """Inverse of write_warm_start: a homodyne OptimizationResult (None stays None)."""
    if entry is None:
        return None
    import numpy as np
    from homodyne.optimization.nlsq.results import OptimizationResult

    with np.load(entry["arrays"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in _WARM_ARRAYS}
    return OptimizationResult(**arrays, **entry["fields"], device_info=entry["device_info"])


def run_cmc(
    data_path: str,
    d: dict[str, Any],
    args: argparse.Namespace,
    nlsq_res: Any,
    report: dict[str, Any],
    workdir: str,
) -> None:
    block: dict[str, Any] = {
        "cmc_status": "not run",
        "timeout_s": args.cmc_timeout,
        "requested": {
            "num_warmup": args.cmc_warmup,
            "num_samples": args.cmc_samples,
            "num_chains": args.cmc_chains,
            "adaptive_sampling": not args.cmc_no_adaptive,
        },
    }
    report["cmc"] = block
    warm = None
    chi2r = getattr(nlsq_res, "reduced_chi_squared", None)
    if nlsq_res is None:
        block["warm_start"] = "none: NLSQ failed (homodyne CLI then starts from config values)"
    elif chi2r is None or not (float(chi2r) <= CLI_WARMSTART_CHI2_MAX):
        block["warm_start"] = (
            f"none: NLSQ reduced chi2 {chi2r} > {CLI_WARMSTART_CHI2_MAX} (CLI rule)"
        )
    else:
        warm = nlsq_res
        block["warm_start"] = (
            "NLSQ OptimizationResult passed as nlsq_result (as the CLI does; rebuilt in the "
            "child from its arrays and fields)"
        )
    job = {
        "data_path": os.path.abspath(data_path),
        "args": {
            "keep_t0": args.keep_t0,
            "per_angle": args.per_angle,
            "cmc_warmup": args.cmc_warmup,
            "cmc_samples": args.cmc_samples,
            "cmc_chains": args.cmc_chains,
            "cmc_no_adaptive": args.cmc_no_adaptive,
        },
        "nlsq_result": None,
    }
    if warm is not None:
        try:
            job["nlsq_result"] = write_warm_start(warm, os.path.join(workdir, "warm.npz"))
        except Exception as exc:  # a result without the expected fields: cold start instead
            block["warm_start"] = f"none: could not write the NLSQ result ({exc})"
    in_path = os.path.join(workdir, "cmc_job.json")
    out_path = os.path.join(workdir, "cmc_out.json")
    with open(in_path, "w") as f:
        json.dump(job, f)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--_cmc-child",
        in_path,
        out_path,
    ]
    progress(
        f"CMC ({args.cmc_chains} chains x {args.cmc_warmup}+{args.cmc_samples}, "
        f"timeout {args.cmc_timeout:g} s) ..."
    )
    t0 = time.perf_counter()
    # New session: the child and any shard workers it spawns share one process group,
    # which is what we kill on timeout.
    proc = subprocess.Popen(cmd, cwd=workdir, start_new_session=True)
    try:
        rc = proc.wait(timeout=args.cmc_timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        wall = time.perf_counter() - t0
        block["cmc_status"] = f"timeout after {args.cmc_timeout:g} s"
        block["cmc_wall_s"] = wall
        block["cmc_wall_total_s"] = wall
        progress(f"CMC killed: timeout after {args.cmc_timeout:g} s")
        return
    total = time.perf_counter() - t0
    block["cmc_wall_total_s"] = total
    block["cmc_wall_total_note"] = "child process start + imports + CMC + diagnostics"
    if os.path.exists(out_path):
        with open(out_path) as f:
            block.update(json.load(f))
    else:
        block["cmc_status"] = f"error: CMC child exited with code {rc} and no result"
    progress(
        f"CMC done: {block.get('cmc_status')} in {block.get('cmc_wall_s', total):.1f} s "
        f"(ESS min {block.get('ess_bulk_min')}, R-hat max {block.get('rhat_max')})"
    )


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="input .npz")
    p.add_argument("out", help="output .json")
    p.add_argument("--cmc", action="store_true", help="also run homodyne CMC")
    p.add_argument("--cmc-timeout", type=float, default=900.0)
    p.add_argument("--cmc-samples", type=int, default=500)
    p.add_argument("--cmc-warmup", type=int, default=500)
    p.add_argument("--cmc-chains", type=int, default=2)
    p.add_argument(
        "--cmc-no-adaptive",
        action="store_true",
        help="turn off homodyne's adaptive shrinking of warmup/samples for small shards",
    )
    p.add_argument(
        "--per-angle",
        choices=PER_ANGLE_CHOICES,
        default=None,
        help="per-angle contrast/offset mode (default: homodyne's own, 'auto')",
    )
    p.add_argument(
        "--keep-t0",
        action="store_true",
        help="fit the t = 0 row/column too (the homodyne CLI drops it)",
    )
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--_cmc-child":
        return cmc_child(argv[1], argv[2])
    args = parse_args(argv)
    out_path = os.path.abspath(args.out)
    data_path = os.path.abspath(args.data)
    collector = quiet_logging()
    report: dict[str, Any] = {
        "tool": "homodyne",
        "argv": argv,
        "data_file": data_path,
        "python_version": platform.python_version(),
        "status": "started",
        "nlsq": None,
        "cmc": None,
        "errors": [],
        "warnings": [],
    }
    # homodyne/numpyro may write checkpoints or results into the working directory.
    workdir = tempfile.mkdtemp(prefix="homodyne_xpcs_")
    os.chdir(workdir)
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import homodyne
        import nlsq

        report.update(
            {
                "homodyne_version": getattr(homodyne, "__version__", None),
                "nlsq_version": getattr(nlsq, "__version__", None),
                "jax_version": jax.__version__,
            }
        )
        for mod in ("numpyro", "arviz"):
            try:
                report[f"{mod}_version"] = __import__(mod).__version__
            except Exception:
                report[f"{mod}_version"] = None
        d = load_npz(data_path)
        c2u, _ = used_arrays(d, args.keep_t0)
        report.update(
            {
                "mode": d["mode"],
                "n_phi": int(d["c2"].shape[0]),
                "n_t": int(d["c2"].shape[-1]),
                "n_t_used": int(c2u.shape[-1]),
                "t0_excluded": not args.keep_t0,
                "n_points_fitted": int(c2u.size),
                "param_names": PHYS_NAMES[d["mode"]],
                "truth": d["truth"],
                "init": d["init"],
                "per_angle_mode": per_angle_record(
                    build_config(d, c2u.shape[-1], args.per_angle), args.per_angle
                ),
            }
        )
        nlsq_res = None
        try:
            nlsq_res = run_nlsq(d, args, report)
        except Exception as exc:
            report["errors"].append(f"nlsq: {err_text(exc)}")
        if args.cmc:
            try:
                run_cmc(data_path, d, args, nlsq_res, report, workdir)
            except Exception as exc:
                report["errors"].append(f"cmc: {err_text(exc)}")
                if report["cmc"] is None:
                    report["cmc"] = {"cmc_status": err_text(exc)}
        report["status"] = "done"
    except Exception as exc:  # still write what we have
        report["status"] = err_text(exc)
        report["errors"].append(traceback.format_exc()[-2000:])
    finally:
        report["warnings"] = collector.messages
        os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
        with open(out_path, "w") as f:
            json.dump(jsonable(report), f, indent=1)
        os.chdir(os.path.dirname(out_path) or "/")
        shutil.rmtree(workdir, ignore_errors=True)
        progress(f"wrote {out_path} ({report['status']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
