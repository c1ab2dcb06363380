"""diffdesign vs pyAT on the ESRF and NSLS-II storage rings, side by side in one process.

    python benchmarks/ring_vs_pyat.py [--out benchmarks/results/cpu/ring_vs_pyat.json]
                                      [--reps 20] [--pyat-columns 8] [--full] [--smoke]

Work measured (float64 on the CPU unless JAX finds an accelerator; pyAT 4-D, radiation off):
  (a) linear optics at the BPMs: pyAT ``get_optics(refpts=bpms)`` vs
      ``jit(ring.linear_optics)``, and the parity of beta, phase, dispersion and tunes;
  (b) the Jacobian of beta_x, beta_y, mu_x, mu_y, eta_x (and the tunes) at the BPMs with
      respect to every quadrupole K1: pyAT by central finite differences as in the peer
      script (deepcopy, PolynomB[1] and K moved by +-1e-5, get_optics), a few columns timed
      and extrapolated to all quadrupoles unless ``--full``; diffdesign
      ``jit(ring.k1_jacobian)`` (exact); agreement on the columns both computed;
  (c) linear chromaticity: pyAT ``get_chrom`` and ``get_optics(get_chrom=True)`` vs
      ``jit(ring.chromaticity)``;
  (d) NSLS-II orbit response matrix, both planes, all correctors at all BPMs: pyAT by central
      differences of ``find_orbit4`` over KickAngle (a few correctors timed and extrapolated
      unless ``--full``) and pyAT's analytic ``OrbitResponseMatrix.build_analytical``;
      diffdesign ``jit(ring.orbit_response)``;
  (e) ESRF: generic forward-mode autodiff, ``jit(jacfwd)`` of the tunes w.r.t. all K1, next
      to pyAT's finite differences of ``get_tune`` (skipped with ``--smoke``);
  and, unless ``--smoke``, (a) and (c) on pyAT's ``machine_data/err.mat`` (4,175 elements,
  errors: a 0.6 mm closed orbit and coupling). Optics parity is against pyAT's Sagan-Rubin
  normal modes (``linopt4``), our definition; its timed default is ``linopt6``.
Compile time (first call minus the steady-state median) and steady-state medians are
reported separately; ratio = pyAT median / diffdesign median. ``--smoke`` (the CI test) runs
ESRF (a, b) and NSLS-II (d) with 2 repetitions and 2 pyAT columns (~25 s on 2 cores).
Lattices: the ones packaged with diffdesign (``diffdesign/ring/data``), or ``--rings DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import at
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from _timing import timed  # benchmarks/_timing.py (scripts run from their folder)

import diffdesign
from diffdesign import ring

warnings.filterwarnings("ignore", module="at")


#: K1 step of the finite-difference Jacobian (1/m^2), as in the peer script (timed).
DK1 = 1e-5
#: A smaller K1 step for the agreement only (untimed): the peer step's central difference
#: is truncation-limited (error ~ step^2, ~4e-7 relative on ESRF at 1e-5); 1e-6 is near the
#: optimum, below which pyAT's own roundoff takes over.
DK1_AGREEMENT = 1e-6
#: KickAngle step of the finite-difference orbit response (rad). The central difference's
#: truncation error grows as step^2 (sextupoles): 1e-5 rad leaves ~3e-5 relative on
#: NSLS-II, 1e-7 rad ~3e-9.
KICK_STEP = 1e-7
#: The quantities whose K1 Jacobian is compared (pyAT get_optics name, column).
JACOBIAN_KEYS = {
    "beta_x": ("beta", 0),
    "beta_y": ("beta", 1),
    "mu_x": ("mu", 0),
    "mu_y": ("mu", 1),
    "eta_x": ("dispersion", 0),
}


def ready(fn: Callable[[], object]) -> Callable[[], object]:
    return lambda: jax.block_until_ready(fn())


def pyat_timed(fn: Callable[[], object], reps: int) -> dict[str, float]:
    """pyAT has nothing to compile: its unrecorded first call is warm-up enough."""
    return timed(fn, reps, warmup=0)


def relative_to_max(ours, theirs) -> float:
    """max |ours - theirs| / max |theirs|."""
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def elementwise_relative(ours, theirs) -> float:
    """max |ours - theirs| / |theirs| (for quantities that never vanish: beta, tunes)."""
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    return float(np.max(np.abs(ours - theirs) / np.abs(theirs)))


def column_agreement(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Worst column of max_i |ours[i, j] - theirs[i, j]| / max_i |theirs[i, j]|."""
    scale = np.max(np.abs(theirs), axis=0)
    return float(np.max(np.max(np.abs(ours - theirs), axis=0) / scale))


def spread(n: int, k: int) -> np.ndarray:
    """k indices spread evenly over range(n) (the columns both libraries compute)."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def finite_difference_summary(per_column: list[float], total: int, full: bool) -> dict:
    median = statistics.median(per_column)
    return {
        "columns_computed": len(per_column),
        "columns_total": total,
        "per_column_median_s": median,
        "computed_s": float(sum(per_column)),
        # The time for all columns: measured (--full) or the per-column median times their
        # number (every column costs the same: two get_optics / four find_orbit4 calls).
        "median_s": float(sum(per_column)) if full else median * total,
        "extrapolated": not full,
    }


# ---------------------------------------------------------------------------- pieces


def linear_optics_section(their: at.Lattice, ours: ring.Lattice, bpms, reps: int) -> dict:
    jitted = jax.jit(lambda lat: ring.linear_optics(lat))
    entry = {
        "pyat": pyat_timed(lambda: their.get_optics(refpts=bpms), reps),
        "diffdesign": timed(ready(lambda: jitted(ours)), reps),
    }
    # parity against Sagan-Rubin's normal modes (pyAT's linopt4), the definition ours
    # follows; pyAT's default (linopt6, timed) defines beta otherwise where planes couple
    _, ringdata, elemdata = their.get_optics(refpts=bpms, method=at.linopt4)
    optics = {k: np.asarray(v) for k, v in jitted(ours).items()}
    parity = {
        "beta_x": elementwise_relative(optics["beta_x"], elemdata.beta[:, 0]),
        "beta_y": elementwise_relative(optics["beta_y"], elemdata.beta[:, 1]),
        "alpha_x": relative_to_max(optics["alpha_x"], elemdata.alpha[:, 0]),
        "alpha_y": relative_to_max(optics["alpha_y"], elemdata.alpha[:, 1]),
        "mu_x": relative_to_max(optics["mu_x"], elemdata.mu[:, 0]),
        "mu_y": relative_to_max(optics["mu_y"], elemdata.mu[:, 1]),
        "eta_x": relative_to_max(optics["eta_x"], elemdata.dispersion[:, 0]),
        "etap_x": relative_to_max(optics["etap_x"], elemdata.dispersion[:, 1]),
        "tunes": elementwise_relative(optics["tunes"], ringdata.tune[:2]),
    }
    entry["parity"] = parity
    entry["parity_absolute"] = {
        "beta_m": float(
            max(
                np.max(np.abs(optics["beta_x"] - elemdata.beta[:, 0])),
                np.max(np.abs(optics["beta_y"] - elemdata.beta[:, 1])),
            )
        ),
        "mu_rad": float(
            max(
                np.max(np.abs(optics["mu_x"] - elemdata.mu[:, 0])),
                np.max(np.abs(optics["mu_y"] - elemdata.mu[:, 1])),
            )
        ),
        "eta_x_m": float(np.max(np.abs(optics["eta_x"] - elemdata.dispersion[:, 0]))),
        "tunes": float(np.max(np.abs(optics["tunes"] - ringdata.tune[:2]))),
    }
    entry["max_relative_difference"] = max(parity.values())
    entry["tunes"] = {"pyat": ringdata.tune[:2].tolist(), "diffdesign": optics["tunes"].tolist()}
    return entry


def pyat_k1_column(their: at.Lattice, quad: int, bpms, step: float = DK1) -> dict[str, np.ndarray]:
    """One central-difference column, exactly as the peer script computes it."""
    moved = their.deepcopy()
    k0 = moved[quad].PolynomB[1]
    moved[quad].PolynomB[1] = k0 + step
    moved[quad].K = k0 + step
    _, plus_ring, plus = moved.get_optics(refpts=bpms)
    moved[quad].PolynomB[1] = k0 - step
    moved[quad].K = k0 - step
    _, minus_ring, minus = moved.get_optics(refpts=bpms)
    column = {
        key: (getattr(plus, field)[:, i] - getattr(minus, field)[:, i]) / (2 * step)
        for key, (field, i) in JACOBIAN_KEYS.items()
    }
    column["tunes"] = (plus_ring.tune[:2] - minus_ring.tune[:2]) / (2 * step)
    return column


def k1_jacobian_section(
    their: at.Lattice, ours: ring.Lattice, bpms, quads, reps: int, columns: int, full: bool
) -> dict:
    chosen = np.arange(len(quads)) if full else spread(len(quads), columns)
    fd: dict[str, list[np.ndarray]] = {key: [] for key in (*JACOBIAN_KEYS, "tunes")}
    per_column = []
    time.sleep(0.5)
    for j in chosen:
        start = time.perf_counter()
        column = pyat_k1_column(their, int(quads[j]), bpms)
        per_column.append(time.perf_counter() - start)
        for key, value in column.items():
            fd[key].append(value)
    jitted = jax.jit(lambda lat: ring.k1_jacobian(lat))
    entry = {
        "pyat_finite_difference": finite_difference_summary(per_column, len(quads), full)
        | {"step_k1": DK1, "quadrupole_positions": chosen.tolist()},
        "diffdesign": timed(ready(lambda: jitted(ours)), reps),
        "shape": [len(bpms), len(quads)],
    }
    jacobian = {k: np.asarray(v) for k, v in jitted(ours).items()}
    # the same columns with a smaller step (not timed)
    small: dict[str, list[np.ndarray]] = {key: [] for key in fd}
    for j in chosen:
        for key, value in pyat_k1_column(their, int(quads[j]), bpms, DK1_AGREEMENT).items():
            small[key].append(value)

    def agreement(columns: dict[str, list[np.ndarray]], per_column: bool) -> dict[str, float]:
        measure = column_agreement if per_column else relative_to_max
        return {
            key: measure(jacobian[key][:, chosen], np.stack(columns[key], axis=1))
            for key in columns
        }

    entry["agreement"] = agreement(small, per_column=False)
    entry["agreement_per_column"] = agreement(small, per_column=True)
    entry["agreement_peer_step"] = agreement(fd, per_column=False)
    entry["agreement_peer_step_per_column"] = agreement(fd, per_column=True)
    entry["max_relative_difference"] = max(entry["agreement"].values())
    entry["max_relative_difference_peer_step"] = max(entry["agreement_peer_step"].values())
    entry["note"] = (
        "agreement: max|exact - finite difference| / max|finite difference| over the block of "
        f"columns pyAT computed, with K1 step {DK1_AGREEMENT} (the peer's step {DK1}, timed, "
        "carries O(step^2) truncation error: *_peer_step); *_per_column: worst column of "
        "max|difference| / max|that column|, which for eta_x is dominated by pyAT's "
        "dispersion noise (~1e-8 m per 1/m^2) on quadrupoles in dispersion-free straights, "
        "whose columns are ~1e-3 of the largest"
    )
    return entry


def chromaticity_section(their: at.Lattice, ours: ring.Lattice, bpms, reps: int) -> dict:
    jitted = jax.jit(ring.chromaticity)
    entry = {
        "pyat": pyat_timed(lambda: their.get_chrom(), reps),
        "pyat_get_optics_with_chrom": pyat_timed(
            lambda: their.get_optics(refpts=bpms, get_chrom=True), reps
        ),
        "diffdesign": timed(ready(lambda: jitted(ours)), reps),
    }
    theirs = np.asarray(their.get_optics(refpts=bpms, get_chrom=True)[1].chromaticity[:2])
    mine = np.asarray(jitted(ours))
    entry["values"] = {"pyat": theirs.tolist(), "diffdesign": mine.tolist()}
    entry["max_relative_difference"] = elementwise_relative(mine, theirs)
    return entry


def orbit_response_section(
    their: at.Lattice, ours: ring.Lattice, bpms, correctors, reps: int, columns: int, full: bool
) -> dict:
    chosen = np.arange(len(correctors)) if full else spread(len(correctors), columns)
    fd = np.zeros((2, len(bpms), 2, len(chosen)))
    per_column = []
    time.sleep(0.5)
    for c, j in enumerate(chosen):
        element = their[int(correctors[j])]
        start = time.perf_counter()
        for plane in (0, 1):
            kick = element.KickAngle.copy()
            element.KickAngle[plane] = kick[plane] + KICK_STEP
            _, plus = at.find_orbit4(their, refpts=bpms)
            element.KickAngle[plane] = kick[plane] - KICK_STEP
            _, minus = at.find_orbit4(their, refpts=bpms)
            element.KickAngle = kick
            fd[:, :, plane, c] = ((plus - minus)[:, [0, 2]] / (2 * KICK_STEP)).T
        per_column.append(time.perf_counter() - start)

    def analytic():
        return [
            at.OrbitResponseMatrix(their, plane, bpms, correctors).build_analytical()
            for plane in (0, 1)
        ]

    jitted = jax.jit(lambda lat: ring.orbit_response(lat))
    entry = {
        "pyat_finite_difference": finite_difference_summary(per_column, len(correctors), full)
        | {"step_rad": KICK_STEP, "corrector_positions": chosen.tolist()},
        "pyat_analytic": pyat_timed(analytic, reps),
        "diffdesign": timed(ready(lambda: jitted(ours)), reps),
        "shape": [2, len(bpms), 2, len(correctors)],
    }
    response = np.asarray(jitted(ours))
    analytic_blocks = analytic()
    agreement = {
        "finite_difference_x": column_agreement(response[0, :, 0][:, chosen], fd[0, :, 0]),
        "finite_difference_y": column_agreement(response[1, :, 1][:, chosen], fd[1, :, 1]),
        "analytic_x": column_agreement(response[0, :, 0], analytic_blocks[0]),
        "analytic_y": column_agreement(response[1, :, 1], analytic_blocks[1]),
    }
    entry["agreement"] = agreement
    entry["coupling_m_per_rad"] = {
        "diffdesign": float(np.max(np.abs(response[[0, 1], :, [1, 0]]))),
        "pyat_finite_difference": float(np.max(np.abs(fd[[0, 1], :, [1, 0]]))),
    }
    entry["max_relative_difference"] = max(agreement.values())
    entry["note"] = (
        "agreement: worst column of max|ours - pyAT| / max|pyAT| in the x and y blocks; "
        "pyAT's analytic matrix is the thin-steerer formula of Franchi et al., exact for "
        "NSLS-II's zero-length correctors"
    )
    return entry


def jacfwd_tunes_section(their: at.Lattice, ours: ring.Lattice, quads, reps: int, columns: int):
    zeros = jnp.zeros(len(quads))
    jitted = jax.jit(jax.jacfwd(lambda dk: ring.tunes(ours.add_k1(quads, dk))))

    def pyat_tune_column(quad: int, step: float = DK1) -> np.ndarray:
        moved = their.deepcopy()
        k0 = moved[quad].PolynomB[1]
        moved[quad].PolynomB[1] = k0 + step
        moved[quad].K = k0 + step
        plus = moved.get_tune()[:2]
        moved[quad].PolynomB[1] = k0 - step
        moved[quad].K = k0 - step
        return (plus - moved.get_tune()[:2]) / (2 * step)

    chosen = spread(len(quads), columns)
    per_column = []
    time.sleep(0.5)
    for j in chosen:
        start = time.perf_counter()
        pyat_tune_column(int(quads[j]))
        per_column.append(time.perf_counter() - start)
    entry = {
        "pyat_finite_difference": finite_difference_summary(per_column, len(quads), False)
        | {"step_k1": DK1, "quadrupole_positions": chosen.tolist()},
        # seconds per call: fewer repetitions
        "diffdesign": timed(ready(lambda: jitted(zeros)), max(2, reps // 10), warmup=1),
    }
    generic = np.asarray(jitted(zeros))
    structured = np.asarray(ring.k1_jacobian(ours)["tunes"])
    small = np.stack([pyat_tune_column(int(quads[j]), DK1_AGREEMENT) for j in chosen], axis=1)
    entry["max_relative_difference"] = relative_to_max(generic[:, chosen], small)
    entry["vs_k1_jacobian"] = relative_to_max(generic, structured)
    entry["note"] = (
        "generic jax.jacfwd through the whole ring (one tangent per quadrupole through every "
        "element) vs pyAT finite differences of get_tune (timed with step "
        f"{DK1}, compared with step {DK1_AGREEMENT}); compare with k1_jacobian's timing"
    )
    return entry


# ---------------------------------------------------------------------------- driver


def run_ring(path: Path, reps: int, columns: int, full: bool, smoke: bool, sections: str) -> dict:
    their = at.load_lattice(str(path)).radiation_off(copy=True)
    ours = ring.load_lattice(path)
    bpms = at.get_refpts(their, at.Monitor)
    quads = at.get_refpts(their, at.Quadrupole)
    correctors = at.get_refpts(their, at.Corrector)
    for name, theirs, cls in (
        ("BPM", bpms, "Monitor"),
        ("quadrupole", quads, "Quadrupole"),
        ("corrector", correctors, "Corrector"),
    ):
        if len(theirs) and not np.array_equal(theirs, ours.indices(cls)):
            raise RuntimeError(f"{path.name}: pyAT and diffdesign disagree on the {name} indices")
    result: dict[str, object] = {
        "lattice": path.name,
        "n_elements": len(their),
        "n_bpms": len(bpms),
        "n_quadrupoles": len(quads),
        "n_correctors": len(correctors),
    }
    if "a" in sections:
        result["a_linear_optics"] = linear_optics_section(their, ours, bpms, reps)
    if "b" in sections:
        result["b_k1_jacobian"] = k1_jacobian_section(their, ours, bpms, quads, reps, columns, full)
    if "c" in sections:
        result["c_chromaticity"] = chromaticity_section(their, ours, bpms, reps)
    if "d" in sections and len(correctors):
        result["d_orbit_response"] = orbit_response_section(
            their, ours, bpms, correctors, reps, columns, full
        )
    if "e" in sections and not smoke:
        result["e_jacfwd_tunes"] = jacfwd_tunes_section(their, ours, quads, reps, columns)
    for entry in result.values():
        if isinstance(entry, dict) and "diffdesign" in entry:
            ours_s = entry["diffdesign"]["median_s"]
            pyat = entry.get("pyat") or entry.get("pyat_finite_difference")
            entry["ratio"] = pyat["median_s"] / ours_s
            for extra in ("pyat_analytic", "pyat_get_optics_with_chrom"):
                if extra in entry:
                    entry[f"ratio_{extra}"] = entry[extra]["median_s"] / ours_s
    return result


def find_rings(given: str | None) -> Path:
    """``--rings DIR``, else the lattices packaged with diffdesign."""
    directory = Path(given) if given else ring.catalogue.DATA
    if not (directory / "esrf.m").is_file() or not (directory / "nsls2.m").is_file():
        sys.exit(f"no ring lattices (esrf.m, nsls2.m) in {str(directory)!r}")
    return directory


def print_table(results: dict) -> None:
    names = {
        "a_linear_optics": "linear optics at BPMs",
        "b_k1_jacobian": "K1 Jacobian (FD vs exact)",
        "c_chromaticity": "chromaticity (get_chrom)",
        "d_orbit_response": "orbit response (FD)",
        "e_jacfwd_tunes": "jacfwd tunes/K1 (FD tune)",
    }
    print(
        f"{'ring':6s} {'work':30s} {'pyAT':>11s} {'diffdesign':>11s} {'compile':>8s} "
        f"{'ratio':>8s} {'parity':>9s}"
    )
    for ring_name, per_ring in results.items():
        for key, label in names.items():
            if key not in per_ring:
                continue
            entry = per_ring[key]
            pyat = entry.get("pyat") or entry["pyat_finite_difference"]
            ours = entry["diffdesign"]
            star = "*" if pyat.get("extrapolated") else " "
            print(
                f"{ring_name:6s} {label:30s} {pyat['median_s'] * 1e3:9.1f}ms{star}"
                f"{ours['median_s'] * 1e3:9.2f}ms {ours['compile_s']:7.2f}s "
                f"{entry['ratio']:7.1f}x {entry['max_relative_difference']:9.1e}"
            )
            for extra, extra_label in (
                ("pyat_get_optics_with_chrom", "chromaticity (get_optics+chrom)"),
                ("pyat_analytic", "orbit response (pyAT analytic)"),
            ):
                if extra in entry:
                    print(
                        f"{ring_name:6s} {extra_label:30s} "
                        f"{entry[extra]['median_s'] * 1e3:9.1f}ms "
                        f"{ours['median_s'] * 1e3:9.2f}ms {'':8s} "
                        f"{entry[f'ratio_{extra}']:7.1f}x"
                    )
    print("* pyAT time extrapolated from the columns it computed (per-column median x columns)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/cpu/ring_vs_pyat.json")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument(
        "--pyat-columns",
        type=int,
        default=8,
        help="finite-difference columns pyAT computes (timed, then extrapolated)",
    )
    parser.add_argument(
        "--full", action="store_true", help="pyAT computes every finite-difference column"
    )
    parser.add_argument("--rings", default=None, help="folder with esrf.m and nsls2.m")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny repetitions and column counts; ESRF (a, b), NSLS-II (d) only (< 60 s)",
    )
    args = parser.parse_args()
    rings = find_rings(args.rings)
    load_before = os.getloadavg()
    if args.smoke:
        reps, columns, full = 2, 2, False
        plan = {"esrf": "ab", "nsls2": "d"}
    else:
        reps, columns, full = args.reps, args.pyat_columns, args.full
        plan = {"esrf": "abce", "nsls2": "abcd"}
    paths = {name: rings / f"{name}.m" for name in plan}
    if not args.smoke:  # a ring with errors: pyAT's machine_data/err.mat (4,175 elements)
        import machine_data

        paths["err"] = Path(machine_data.__file__).parent / "err.mat"
        plan["err"] = "ac"
    results = {
        name: run_ring(paths[name], reps, columns, full, args.smoke, sections)
        for name, sections in plan.items()
    }
    report = {
        "benchmark": "Storage-ring optics: diffdesign vs pyAT (ESRF, NSLS-II)",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "smoke": args.smoke,
        "settings": {
            "reps": reps,
            "pyat_columns": columns,
            "full": full,
            "k1_step": DK1,
            "k1_step_agreement": DK1_AGREEMENT,
            "kick_step_rad": KICK_STEP,
            "sections": plan,
        },
        "definitions": {
            "ratio": "pyAT median / diffdesign median (steady state)",
            "compile_s": "diffdesign first call minus its steady-state median",
            "max_relative_difference": (
                "beta, tunes, chromaticity: max elementwise |ours - pyAT| / |pyAT|; phase, "
                "alpha, dispersion, K1 Jacobians: max |ours - pyAT| / max |pyAT|; orbit "
                "response: worst column of max |ours - pyAT| / max |pyAT column|"
            ),
            "extrapolated": (
                "pyAT finite-difference time for all columns = per-column median x number "
                "of columns, from the columns it computed (pass --full to compute them all)"
            ),
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            # other work on the machine inflates the timings: 1-, 5-, 15-minute averages
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "jax_backend": jax.default_backend(),
            "jax_devices": [str(d) for d in jax.devices()],
        },
        "versions": {
            "python": platform.python_version(),
            "diffdesign": diffdesign.__version__,
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "accelerator-toolbox": at.__version__,
            "numpy": np.__version__,
        },
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print_table(results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
