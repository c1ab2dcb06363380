"""Cost-growth curves: wall time (compile and steady state apart) and peak memory against size.

    python benchmarks/scaling.py [--out benchmarks/results/cpu/scaling.json] [--smoke]
        [--only ares,particles,ring,xpcs,muons]

Families and their curves (the size is what the work grows with):
  ares       settings 1 ... 10^6: ``ares.screen_beam`` on a (n, 5) batch of settings
             (forward), and the value and gradient of a squared misfit of the four screen
             observables w.r.t. the three quadrupole offsets (3, 2) shared by all settings;
  particles  macro-particles 10^3 ... 10^7: ``ParticleBeam`` tracked to first order through
             the ARES segment (``ares.segment(settings).track``), sampling excluded;
  ring       elements: ``ring.linear_optics`` at the BPMs and ``ring.k1_jacobian`` (every
             quadrupole, every BPM) on a synthetic FODO ring built with the ring API (10
             elements a cell, 10 ... 1000 cells: 100 ... 10^4 elements), with the packaged
             ESRF and NSLS-II as single points beside the curve (not in the fit);
  xpcs       one-triangle points 4e4 ... 1e7 (laminar flow, 3 angles, data from
             ``xpcs.synthetic_c2``): the whole ``fit_nlsq`` (default multi-start; its
             screening and refinement run on a fixed 20k-point subsample, so they are a
             fixed cost) and one streamed ``J^T J`` pass (``likelihood.normal_equations``),
             the cost per Levenberg-Marquardt step;
  muons      muons 10^3 ... 10^6 (the lead block in beryllium of
             ``benchmarks/muography_vs_tomopt.py``): the X0 map by PoCA and by the path
             likelihood (40 EM steps) from the hits on, forward and forward + gradient
             w.r.t. every panel parameter (the muons' true passage, which does not depend on
             the detector, is simulated once outside the timed call, as the design loop does),
             reconstructed ``MUON_CHUNK`` muons at a time (``predict_x0(chunk_size=)``); the
             gradient curves also record XLA's temporary memory with and without chunks.

Each size runs in a fresh subprocess, so its peak memory (the child's VmHWM) is its own.
Timing: ``benchmarks/_timing.timed`` -- the first call (compile included), then the steady
state; the curve uses the minimum over repetitions (the machine is shared), and the 1-minute
load average is recorded with every point. The power law ``t = a n^p`` is fitted by least
squares on log-log over the sizes whose steady time exceeds ``FIT_THRESHOLD_S`` (fixed
overhead dominates below; with fewer than two such sizes the two largest are used and the fit
is marked ``fallback``). Exponents above ``SUPER_LINEAR`` are flagged and carry the reason
measured for them. A range stops where the next size's predicted steady time exceeds
``--max-step-s`` (or its child exceeds ``--child-timeout-s``); the sizes not reached are listed
with their extrapolated cost. ``--smoke`` (the test): the two smallest sizes of one curve per
family (``SMOKE_CURVES``); ``--merge`` keeps the curves of ``--out`` this run does not measure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timed  # benchmarks/_timing.py (scripts run from their folder)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "cpu" / "scaling.json"
FIT_THRESHOLD_S = 5e-3
SUPER_LINEAR = 1.15
FAMILIES = ("ares", "particles", "ring", "xpcs", "muons")


def _decades(lo: int, hi: int, per_decade: int = 1) -> list[int]:
    exps = np.linspace(math.log10(lo), math.log10(hi), round(per_decade * math.log10(hi / lo)) + 1)
    return [round(10**e) for e in exps]


#: curve -> (family, label, size name, size unit, sizes)
CURVES: dict[str, tuple[str, str, str, str, list[int]]] = {
    "ares/forward": ("ares", "screen_beam forward", "settings", "settings",
                     _decades(1, 10**6)),
    "ares/gradient": ("ares", "forward + gradient w.r.t. offsets", "settings", "settings",
                      _decades(1, 10**6)),
    "particles/track": ("particles", "ParticleBeam through ARES (first order)", "particles",
                        "macro-particles", _decades(10**3, 10**7, 2)),
    "ring/linear_optics": ("ring", "linear_optics (FODO)", "elements", "elements",
                           [100, 300, 1000, 3000, 10000]),
    "ring/k1_jacobian": ("ring", "k1_jacobian (FODO)", "elements", "elements",
                         [100, 300, 1000, 3000, 10000]),
    "xpcs/nlsq_fit": ("xpcs", "fit_nlsq (whole fit)", "points", "points",
                      [40_000, 160_000, 640_000, 2_560_000, 10_000_000]),
    "xpcs/normal_equations": ("xpcs", "one streamed J^T J pass", "points", "points",
                              [40_000, 160_000, 640_000, 2_560_000, 10_000_000]),
    "muons/poca_forward": ("muons", "PoCA forward", "muons", "muons", _decades(10**3, 10**6)),
    "muons/poca_gradient": ("muons", "PoCA forward + gradient", "muons", "muons",
                            _decades(10**3, 10**6)),
    "muons/likelihood_forward": ("muons", "path likelihood forward", "muons", "muons",
                                 _decades(10**3, 10**6)),
    "muons/likelihood_gradient": ("muons", "path likelihood forward + gradient", "muons",
                                  "muons", _decades(10**3, 10**6)),
}  # fmt: skip

#: Why a curve grows faster than linearly, as measured (written next to a flagged curve).
#: The probes behind them timed every size in one process, interleaved, so that each size
#: saw the same load (2-core AMD EPYC, 1 MiB L2 per core, 32 MiB L3, load ~7).
REASONS = {
    "ares/gradient": (
        "memory bandwidth: reverse mode keeps ~1.1 kB of residuals per setting (peak RSS "
        "1.5 GiB at 1e6 settings against 0.37 GiB at 1e4); measured interleaved, the time per "
        "setting is 0.32 us at 1e4 (residuals ~11 MB, inside the 32 MiB L3), 0.51 us at 1e5, "
        "0.90 us at 3e5 and 1.30 us at 1e6 (all in DRAM); the forward pass, which keeps "
        "nothing, stays linear (0.17-0.28 us per setting)"
    ),
    "ring/linear_optics": (
        "cache, not the algorithm: every stage is a scan, gather or vmap linear in the "
        "elements, and the blocked prefix products of the transfer maps measured flat "
        "(0.46, 0.38, 0.43, 0.54 us per element at 1e3, 3e3, 1e4, 3e4 elements), but the "
        "design-orbit stage (closed-orbit check and element Jacobians, arrays of 6 x 6 "
        "doubles per element and integrator step) rose from 1.45 to 2.13 and 3.8 us per "
        "element as its arrays (288 B per element each) outgrew the 1 MiB L2 (~3.6e3 "
        "elements) and the L3; linear_optics per element: 1.9, 2.8, 3.2, 5.0 us at the same "
        "sizes. Only the two largest sizes lie above the 5 ms fit threshold"
    ),
    "ring/k1_jacobian": (
        "the output itself is quadratic: one column per quadrupole, one row per BPM, both "
        "proportional to the element count (n_bpm x n_quad entries, recorded per point as "
        "output_entries), so the floor is exponent 2; beyond it, each column's tangent "
        "forms 6 x 6 products at every BPM, n_bpm x n_quad x 36 doubles (11.5 MB at 1e3 "
        "elements, inside the L3; 104 MB at 3e3; 1.15 GB at 1e4, peak RSS 3.4 GiB), so the "
        "time per output entry rises from 0.44 us (1e3) to 1.8 us (3e3) and 2.4 us (1e4): "
        "memory bandwidth on top of the quadratic output"
    ),
    "muons/poca_forward": (
        "a cache step between 1e4 and 1e5 muons, linear on either side: x0_poca holds (n, 10, "
        "10) voxel probabilities (800 B per muon: 8 MB at 1e4, inside the 32 MiB L3; 80 MB at "
        "1e5); the curve grows 18.7x from 1e4 to 1e5 and 10.7x from 1e5 to 1e6 (load 1.4-1.6), "
        "and an interleaved probe at equal load timed x0_poca at 4.0, 7.1, 10.5, 8.0 us per "
        "muon at 1e4, 3e4, 1e5, 3e5 (the reconstruction 1.3, 3.5, 3.6, 2.6 us): a step, not a "
        "growing trend; the exponent of the sizes from 1e5 up is 1.03"
    ),
}

#: Curves whose top size is tried up to this predicted steady time (s) instead of
#: ``--max-step-s``: the streamed workloads whose peak memory at the top size is a bound.
MUST_REACH_S = {"xpcs/nlsq_fit": 400.0, "muons/poca_gradient": 400.0,
                "muons/likelihood_gradient": 400.0}  # fmt: skip

#: The packaged rings shown beside the synthetic one.
NAMED_RINGS = ("esrf", "nsls2")


def progress(message: str) -> None:
    print(f"[scaling {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- workloads
# Each returns (fn, extra): fn() blocks until its result is ready; extra is recorded.


def _ares(n: int, gradient: bool):
    import jax
    import jax.numpy as jnp

    from diffdesign.beamline import ares

    rng = np.random.default_rng(0)
    settings = jnp.asarray(rng.uniform(ares.SETTING_LOWER, ares.SETTING_UPPER, (n, 5)))
    offsets = jnp.asarray(rng.uniform(-2e-4, 2e-4, (3, 2)))
    target = ares.screen_beam(settings, jnp.zeros((3, 2)))
    if not gradient:
        fn = jax.jit(lambda s, o: ares.screen_beam(s, o))
    else:

        def misfit(o, s):
            out = ares.screen_beam(s, o)
            return sum(jnp.mean((out[k] - target[k]) ** 2) for k in ares.OBSERVABLES)

        fn = jax.jit(jax.value_and_grad(misfit))
    return lambda: jax.block_until_ready(fn(offsets, settings) if gradient
                                         else fn(settings, offsets)), {}  # fmt: skip


def _particles(n: int):
    import jax
    import jax.numpy as jnp

    from diffdesign.beamline import ParticleBeam, ares

    params = {k: v for k, v in ares.INCOMING_PARAMETERS.items()}
    beam = ParticleBeam.from_parameters(n, jax.random.key(0), energy=ares.ENERGY, **params)
    settings = jnp.asarray([10.0, -10.0, 1e-3, 10.0, -1e-3])
    track = jax.jit(lambda b, s: ares.segment(s).track(b))
    return lambda: jax.block_until_ready(track(beam, settings)), {}


def fodo_ring(n_cells: int, k1: float = 1.6):
    """A ring of ``n_cells`` FODO cells (10 elements each: QF, drift, bend, drift, BPM, QD,
    drift, bend, drift, BPM), bends closing the ring, as a :class:`diffdesign.ring.Lattice`."""
    from diffdesign.ring import Lattice, RingDescription

    angle = 2 * np.pi / (2 * n_cells)

    def quad(name, k):
        return {"Class": "Quadrupole", "FamName": name, "Length": 0.25,
                "PassMethod": "StrMPoleSymplectic4Pass", "K": k, "MaxOrder": 1,
                "NumIntSteps": 10, "PolynomA": [0.0, 0.0], "PolynomB": [0.0, k]}  # fmt: skip

    drift = {"Class": "Drift", "FamName": "D", "Length": 0.5, "PassMethod": "DriftPass"}
    bend = {"Class": "Dipole", "FamName": "B", "Length": 1.0,
            "PassMethod": "BndMPoleSymplectic4Pass", "BendingAngle": angle,
            "EntranceAngle": angle / 2, "ExitAngle": angle / 2, "K": 0.0, "MaxOrder": 1,
            "NumIntSteps": 10, "PolynomA": [0.0, 0.0], "PolynomB": [0.0, 0.0]}  # fmt: skip
    bpm = {"Class": "Monitor", "FamName": "BPM", "Length": 0.0, "PassMethod": "IdentityPass"}
    cell = [quad("QF", k1), drift, bend, drift, bpm, quad("QD", -k1), drift, bend, drift, bpm]
    elements = [dict(e) for _ in range(n_cells) for e in cell]
    description = RingDescription(elements, energy=3e9, name=f"fodo{n_cells}", source="scaling")
    return Lattice.from_description(description)


def _ring_lattice(n: int | str):
    from diffdesign import ring

    if isinstance(n, str):
        return ring.load_lattice(n)
    return fodo_ring(max(n // 10, 1))


def _ring(n: int | str, jacobian: bool):
    import jax

    from diffdesign import ring

    lattice = _ring_lattice(n)
    n_quad = len(lattice.indices("Quadrupole"))
    n_bpm = len(lattice.indices("Monitor"))
    if jacobian:
        fn = jax.jit(lambda lat: ring.k1_jacobian(lat))
    else:
        fn = jax.jit(lambda lat: ring.linear_optics(lat))
    tunes = np.asarray(jax.jit(lambda lat: ring.linear_optics(lat)["tunes"])(lattice))
    extra = {"elements": lattice.n_elements, "quadrupoles": n_quad, "bpms": n_bpm,
             "tunes": tunes.tolist()}  # fmt: skip
    if jacobian:
        extra["output_entries"] = n_quad * n_bpm
    return lambda: jax.block_until_ready(fn(lattice)), extra


#: Muons reconstructed (``predict_x0(..., chunk_size=)``) and, for the path likelihood,
#: streamed through every EM step (``PathLikelihood(chunk_size=)``) at a time: the gradient
#: then holds one chunk's intermediates instead of all muons' (see the muons curves).
MUON_CHUNK = 16384

XPCS_TRUTH = {"D0": 3000.0, "alpha": -0.6, "D_offset": 20.0, "gamma_dot_t0": 0.01,
              "beta": -0.3, "gamma_dot_t_offset": 1e-4, "phi0": 5.0}  # fmt: skip
XPCS_INIT = {"D0": 5000.0, "alpha": -0.3, "D_offset": 10.0, "gamma_dot_t0": 0.005,
             "beta": -0.1, "gamma_dot_t_offset": 5e-5, "phi0": 0.0}  # fmt: skip
XPCS_ANGLES = 3


def _xpcs_data(n_points: int):
    import jax

    from diffdesign import xpcs

    # n_phi * n_t (n_t - 1) / 2 one-triangle points
    n_t = round(0.5 + math.sqrt(0.25 + 2 * n_points / XPCS_ANGLES))
    t = np.arange(n_t) * 0.1
    phi = np.linspace(-30, 30, XPCS_ANGLES)
    ones = np.ones(XPCS_ANGLES)
    c2 = xpcs.synthetic_c2(jax.random.key(0), XPCS_TRUTH, t, phi, 0.0054, 2e6, 0.3 * ones,
                           1.0 * ones, 0.01)  # fmt: skip
    return xpcs.XpcsData(np.asarray(c2), t, phi, 0.0054, 2e6, 0.01), n_t


def _xpcs(n: int, whole_fit: bool):
    import jax
    import jax.numpy as jnp

    from diffdesign import xpcs
    from diffdesign.xpcs.likelihood import normal_equations, pack

    data, n_t = _xpcs_data(n)
    extra: dict = {"n_t": n_t, "angles": XPCS_ANGLES}
    if whole_fit:
        last: dict = {}

        def fit():
            result = xpcs.fit_nlsq(data, "laminar_flow", initial=XPCS_INIT)
            jax.block_until_ready(result.x)
            last.update(steps=int(result.num_steps), n_points=int(result.n_points),
                        D0=float(result.values()["D0"]))  # fmt: skip

        return fit, extra | {"last": last}
    problem = xpcs.make_problem(data, "laminar_flow")
    theta = pack(XPCS_TRUTH, 0.3, 1.0, problem)
    fn = jax.jit(normal_equations, static_argnames="chunk_size")
    extra["n_points"] = int(problem.n_points)
    return lambda: jax.block_until_ready(fn(jnp.asarray(theta), problem)), extra


def _muons(n: int, estimator: str, gradient: bool):
    import jax

    # the lead block in beryllium and the 4 + 4 panels of the TomOpt comparison
    from muography_vs_tomopt import DETECTOR as detector
    from muography_vs_tomopt import FOOTPRINT as footprint
    from muography_vs_tomopt import VOLUME as volume

    from diffdesign.muography import (
        ESTIMATORS,
        PathLikelihood,
        generate_muons,
        predict_x0,
        propagate,
        x0_error,
    )

    k_mu, k_sc, k_hit = jax.random.split(jax.random.key(0), 3)
    muons = generate_muons(k_mu, n, footprint=footprint, z=1.0, momentum=5e9)
    passage = jax.block_until_ready(jax.jit(propagate)(k_sc, muons, volume))
    chunk = min(n, MUON_CHUNK)

    def make(chunk_size):
        est = ESTIMATORS[estimator]
        if isinstance(est, PathLikelihood):  # every EM step streamed in chunks too
            est = PathLikelihood(iterations=est.iterations, chunk_size=chunk_size)

        def loss(det, passage, p):
            pred = predict_x0(k_hit, det, passage, p, volume, est, chunk_size=chunk_size)
            return x0_error(pred, volume.x0)

        return jax.jit(jax.value_and_grad(loss) if gradient else loss)

    fn = make(chunk)
    extra = {"chunk_size": chunk}
    if gradient:  # XLA's own account of the temporaries, chunked and all muons at once
        for key, size in (("xla_temp_mib", chunk), ("xla_temp_mib_unchunked", None)):
            compiled = make(size).lower(detector, passage, muons.p).compile()
            extra[key] = compiled.memory_analysis().temp_size_in_bytes / 2**20
    return lambda: jax.block_until_ready(fn(detector, passage, muons.p)), extra


def workload(curve: str, size):
    kind = curve.split("/", 1)[1]
    if curve.startswith("ares/"):
        return _ares(size, kind == "gradient")
    if curve.startswith("particles/"):
        return _particles(size)
    if curve.startswith("ring/"):
        return _ring(size, kind == "k1_jacobian")
    if curve.startswith("xpcs/"):
        return _xpcs(size, kind == "nlsq_fit")
    if curve.startswith("muons/"):
        estimator, mode = kind.split("_")
        return _muons(size, estimator, mode == "gradient")
    raise ValueError(f"unknown curve {curve!r}")


# ---------------------------------------------------------------------------- child


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def measure(fn) -> dict:
    """First call (compile included) and one steady call, then more repetitions as cheap
    steady calls allow; steady = the minimum over all of them."""
    first = timed(fn, reps=1, warmup=0)
    samples = [first["min_s"]]
    steady = first["min_s"]
    reps, warmup = (20, 3) if steady < 0.05 else (5, 1) if steady < 1 else (2, 0)
    if steady < 30:
        more = timed(fn, reps=reps, warmup=warmup)
        samples += [more["min_s"], more["median_s"]]
        median = more["median_s"]
        reps += 1
    else:
        median, reps = steady, 1
    minimum = min(samples)
    return {
        "first_call_s": first["first_call_s"],
        "compile_s": max(first["first_call_s"] - minimum, 0.0),
        "min_s": minimum,
        "median_s": median,
        "reps": reps,
    }


def xpcs_memory_probe(n: int) -> dict:
    """Peak memory of the whole ``fit_nlsq`` on ``n`` points with its final fit cut to 2
    Levenberg-Marquardt steps: every pass over the points is streamed, so the peak does not
    depend on the number of steps, only the time does."""
    import jax

    from diffdesign import xpcs

    data, n_t = _xpcs_data(n)
    start = time.perf_counter()
    result = xpcs.fit_nlsq(data, "laminar_flow", initial=XPCS_INIT, max_steps=2)
    jax.block_until_ready(result.x)
    return {"size": n, "n_t": n_t, "n_points": int(result.n_points), "max_steps": 2,
            "wall_s": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib(),
            "load_1min": os.getloadavg()[0]}  # fmt: skip


def child_main(curve: str, size: str, out: str) -> None:
    import diffdesign  # noqa: F401  (float64)

    size = int(size) if size.isdigit() else size
    if curve == "xpcs/nlsq_fit_memory":
        Path(out).write_text(json.dumps(xpcs_memory_probe(size)))
        return
    start = time.perf_counter()
    fn, extra = workload(curve, size)
    setup = time.perf_counter() - start
    timing = measure(fn)
    last = extra.pop("last", None)
    if last:
        extra["last_fit"] = last
    record = {"size": size, **timing, "setup_s": setup, "peak_rss_mib": peak_rss_mib(),
              "load_1min": os.getloadavg()[0], **extra}  # fmt: skip
    if "output_entries" in extra:
        record["time_per_output_s"] = timing["min_s"] / extra["output_entries"]
    Path(out).write_text(json.dumps(record))


# ---------------------------------------------------------------------------- parent


def fit_power_law(sizes, times, threshold: float = FIT_THRESHOLD_S) -> dict | None:
    """Least squares of log t = log a + p log n over the sizes with t > threshold (the two
    largest sizes if fewer than two qualify; None with fewer than two sizes)."""
    sizes, times = np.asarray(sizes, float), np.asarray(times, float)
    if sizes.size < 2:
        return None
    used = times > threshold
    fallback = int(used.sum()) < 2
    if fallback:
        used = np.zeros(sizes.size, bool)
        used[np.argsort(sizes)[-2:]] = True
    slope, intercept = np.polyfit(np.log(sizes[used]), np.log(times[used]), 1)
    return {
        "exponent": float(slope),
        "prefactor_s": float(np.exp(intercept)),
        "sizes_used": sizes[used].astype(int).tolist(),
        "threshold_s": threshold,
        "time_key": "min_s",
        "fallback": fallback,
    }


def run_child(curve: str, size, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "point.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", curve, str(size),
               str(out)]  # fmt: skip
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  cwd=ROOT)  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"size": size, "status": f"timeout after {timeout:.0f} s",
                    "child_wall_s": time.perf_counter() - start}  # fmt: skip
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not out.exists():
            return {"size": size, "status": f"failed (rc {proc.returncode})",
                    "stderr_tail": proc.stderr[-2000:], "child_wall_s": wall}  # fmt: skip
        return {**json.loads(out.read_text()), "status": "ok", "child_wall_s": wall}


#: Peak-memory bounds (GiB) of the streamed workloads at their top size.
MEMORY_BOUND_GIB = {"xpcs/nlsq_fit": 8.0, "muons/poca_gradient": 8.0,
                    "muons/likelihood_gradient": 8.0}  # fmt: skip


def memory_bound(curve: str, entry: dict) -> dict | None:
    """Whether the curve's top planned size stayed within its bound: measured at that size
    (a timed point, or the memory probe when the timing stopped below it), else unknown."""
    if curve not in MEMORY_BOUND_GIB:
        return None
    top = entry["sizes_planned"][-1]
    at_top = [p for p in entry["points"] if p["size"] == top]
    probe = entry.get("memory_probe") or {}
    source = at_top[0] if at_top else probe if probe.get("size") == top else None
    peak = None if source is None or "peak_rss_mib" not in source else source["peak_rss_mib"]
    return {
        "bound_gib": MEMORY_BOUND_GIB[curve], "size": top,
        "peak_gib": None if peak is None else peak / 1024,
        "measured_by": None if source is None else "timed point" if at_top else "memory probe",
        "holds": None if peak is None else peak / 1024 <= MEMORY_BOUND_GIB[curve],
    }  # fmt: skip


#: ``--smoke`` runs one curve a family (the cheapest), at its two smallest sizes.
SMOKE_CURVES = ("ares/forward", "particles/track", "ring/linear_optics", "xpcs/normal_equations",
                "muons/poca_forward")  # fmt: skip


def run_curve(curve: str, smoke: bool, max_step_s: float, timeout: float) -> dict:
    family, label, size_name, unit, sizes = CURVES[curve]
    sizes = sizes[:2] if smoke else sizes
    max_step_s = max(max_step_s, MUST_REACH_S.get(curve, 0.0))
    points, not_reached = [], []
    for size in sizes:
        ok = [p for p in points if p["status"] == "ok"]
        if len(ok) >= 2:
            law = fit_power_law([p["size"] for p in ok], [p["min_s"] for p in ok])
            exponent = max(law["exponent"], 1.0) if law else 1.0
            predicted = ok[-1]["min_s"] * (size / ok[-1]["size"]) ** exponent
            if predicted > max_step_s:
                not_reached.append(
                    {
                        "size": size,
                        "extrapolated_min_s": predicted,
                        "why": f"predicted steady time above {max_step_s:.0f} s",
                    }
                )
                continue  # fmt: skip
        if not_reached:  # a larger size is not tried once a smaller one was skipped
            not_reached.append({"size": size, "why": "a smaller size was not run"})
            continue
        progress(f"{curve}: {size} {unit} ...")
        point = run_child(curve, size, timeout)
        if point["status"] != "ok":
            progress(f"{curve}: {size} {point['status']}")
            not_reached.append({**point, "why": point["status"]})
            continue
        progress(f"{curve}: {size}: first {point['first_call_s']:.3g} s, steady "
                 f"{point['min_s']:.3g} s, peak {point['peak_rss_mib']:.0f} MiB, load "
                 f"{point['load_1min']:.2f}")  # fmt: skip
        points.append(point)
    law = fit_power_law([p["size"] for p in points], [p["min_s"] for p in points])
    for item in not_reached:
        if law and "extrapolated_min_s" not in item:
            item["extrapolated_min_s"] = law["prefactor_s"] * item["size"] ** law["exponent"]
    flagged = bool(law and law["exponent"] > SUPER_LINEAR)
    entry = {
        "family": family, "label": label, "size_name": size_name, "size_unit": unit,
        "sizes_planned": sizes, "points": points, "not_reached": not_reached, "fit": law,
        "super_linear": flagged,
        "reason": (REASONS.get(curve, "not investigated") if flagged else None),
        "largest_size": max((p["size"] for p in points), default=None),
        "peak_rss_mib_at_largest": points[-1]["peak_rss_mib"] if points else None,
    }  # fmt: skip
    if family == "ring" and not smoke:
        entry["named_rings"] = [run_child(curve, name, timeout) for name in NAMED_RINGS]
    if curve == "xpcs/nlsq_fit" and not smoke and entry["largest_size"] != sizes[-1]:
        progress(f"{curve}: memory probe at {sizes[-1]} points ...")
        entry["memory_probe"] = run_child("xpcs/nlsq_fit_memory", sizes[-1], timeout)
    if not smoke:
        entry["memory_bound"] = memory_bound(curve, entry)
    return entry


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [f for f in FAMILIES if any(c["family"] == f for c in report["curves"].values())]
    fig, axes = plt.subplots(2, len(families), figsize=(4.2 * len(families), 7.5),
                             squeeze=False)  # fmt: skip
    for col, family in enumerate(families):
        top, bottom = axes[0, col], axes[1, col]
        for curve in report["curves"].values():
            if curve["family"] != family or not curve["points"]:
                continue
            n = np.array([p["size"] for p in curve["points"]], float)
            t = np.array([p["min_s"] for p in curve["points"]])
            law = curve["fit"]
            tag = "" if law is None else f" (p = {law['exponent']:.2f}"
            tag += "" if law is None else (", 2 largest)" if law["fallback"] else ")")
            line = top.loglog(n, t, "o-", label=curve["label"] + tag)[0]
            if law is not None:
                fitted = np.array(law["sizes_used"], float)
                top.loglog(fitted, law["prefactor_s"] * fitted ** law["exponent"], ":",
                           color=line.get_color())  # fmt: skip
            bottom.loglog(n, [p["peak_rss_mib"] / 1024 for p in curve["points"]], "o-",
                          color=line.get_color(), label=curve["label"])  # fmt: skip
            probe = curve.get("memory_probe") or {}
            if "peak_rss_mib" in probe:
                bottom.loglog(
                    probe["size"],
                    probe["peak_rss_mib"] / 1024,
                    "s",
                    mfc="none",
                    color=line.get_color(),
                    label="memory probe (fit_nlsq, 2 steps)",
                )
            for ring in curve.get("named_rings", []):
                if ring.get("status") == "ok":
                    top.loglog(ring["elements"], ring["min_s"], "*", ms=11,
                               color=line.get_color())  # fmt: skip
                    top.annotate(ring["size"], (ring["elements"], ring["min_s"]), fontsize=7)
        unit = next(c["size_unit"] for c in report["curves"].values() if c["family"] == family)
        top.axhline(FIT_THRESHOLD_S, color="grey", lw=0.6, ls="--")
        top.set(title=family, ylabel="steady-state time per call (s)")
        bottom.set(xlabel=f"size ({unit})", ylabel="peak memory of the process (GiB)")
        if family in ("muons", "xpcs"):
            bottom.axhline(8, color="red", lw=0.8, ls="--", label="8 GiB bound")
        top.legend(fontsize=7)
        bottom.legend(fontsize=7)
        for ax in (top, bottom):
            ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("diffdesign cost growth on the CPU (min over repetitions; dotted: fitted "
                 "power law; dashed: 5 ms fit threshold)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> dict:
    import jax
    import jaxlib

    return {
        "platform": platform.platform(), "python": platform.python_version(),
        "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
        "processor": platform.processor(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", default=",".join(FAMILIES))
    parser.add_argument(
        "--max-step-s",
        type=float,
        default=120.0,
        help="skip sizes whose predicted steady time exceeds this (s)",
    )
    parser.add_argument("--child-timeout-s", type=float, default=900.0)
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the curves of --out that this run does not measure",
    )
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = set(families) - set(FAMILIES)
    if unknown:
        parser.error(f"--only: unknown families {sorted(unknown)}; choose from {FAMILIES}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"curves": {}}
    if args.merge and args.out.exists():
        report = json.loads(args.out.read_text())
    report.update({
        "description": __doc__.strip(),
        "machine": machine(), "smoke": args.smoke, "fit_threshold_s": FIT_THRESHOLD_S,
        "super_linear_above": SUPER_LINEAR, "max_step_s": args.max_step_s,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    })  # fmt: skip
    for curve in CURVES:
        if CURVES[curve][0] not in families or (args.smoke and curve not in SMOKE_CURVES):
            continue
        report["curves"][curve] = run_curve(curve, args.smoke, args.max_step_s,
                                            args.child_timeout_s)  # fmt: skip
        args.out.write_text(json.dumps(report, indent=1))  # partial results survive
    png = args.out.with_suffix(".png")
    plot(report, png)
    report["plot"] = png.name
    args.out.write_text(json.dumps(report, indent=1))
    for name, curve in report["curves"].items():
        law = curve["fit"]
        exponent = "n/a" if law is None else f"{law['exponent']:.2f}"
        print(f"{name:28s} p = {exponent:>5s}  largest {curve['largest_size']}  peak "
              f"{curve['peak_rss_mib_at_largest'] or 0:.0f} MiB"
              + ("  SUPER-LINEAR" if curve["super_linear"] else ""))  # fmt: skip
    return report


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        child_main(*sys.argv[2:5])
    else:
        main()
