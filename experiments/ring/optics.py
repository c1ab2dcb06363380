"""tunes, chromaticity and the optics at the BPMs of a ring

Compute the 4-D linear optics of a ring: print tunes and chromaticity, write optics.json
(Twiss functions and dispersion at the BPMs, and the verdict) and optics.png (beta and
dispersion at every element's entrance, the BPMs marked, above a magnet synoptic) into
--out.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from experiments.ring._common import add_lattice_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_lattice_argument(parser)


@functools.cache
def _optics_program():
    """One compiled program per lattice structure for `ring optics`, kept for the session."""
    import equinox as eqx
    import numpy as np

    from diffdesign import ring

    def optics_and_chromaticity(lattice, refpts: tuple[int, ...] | None):
        points = None if refpts is None else np.asarray(refpts)
        # unstable optics are reported below with the lattice's name, not as a runtime error
        return (
            ring.linear_optics(lattice, points, allow_unstable=True),
            ring.chromaticity(lattice, allow_unstable=True),
        )

    return eqx.filter_jit(optics_and_chromaticity)


def _lattice_source(args: argparse.Namespace) -> str:
    """LATTICE, else the ``lattice`` key of --config (TOML), else the paper's ring."""
    from experiments.ring._studies import OpticsConfig

    if args.lattice is not None:
        return str(args.lattice)
    return (OpticsConfig.from_toml(args.config) if args.config else OpticsConfig()).lattice


def run(args: argparse.Namespace):
    import numpy as np

    from diffdesign.core.verdict import StudySummary
    from experiments.ring._plots import plot_optics
    from experiments.ring._studies import load_study_lattice

    source = _lattice_source(args)
    lattice = load_study_lattice(source)
    if "Monitor" in lattice.classes:
        refpts, where = tuple(int(i) for i in lattice.indices("Monitor")), "BPMs"
    else:
        refpts, where = None, "element entrances"  # a ring without BPMs: everywhere
    # every element's entrance (and the end) once: the curves of the plot; the BPMs a subset
    along, chromaticity = _optics_program()(lattice, None)
    along = {k: np.asarray(v) for k, v in along.items()}
    rows = np.asarray(refpts) if refpts is not None else np.arange(lattice.n_elements + 1)
    n_points = lattice.n_elements + 1
    per_point = {k for k, v in along.items()
                 if v.ndim and v.shape[0] == n_points and k != "one_turn"}  # fmt: skip
    optics = {k: (v[rows] if k in per_point else v) for k, v in along.items()}
    if not np.all(np.isfinite(optics["beta_x"])) or not np.all(np.isfinite(optics["beta_y"])):
        raise ValueError(
            f"the linear optics of {source} are unstable (no periodic Twiss functions); "
            "check the quadrupole strengths"
        )
    chromaticity = np.asarray(chromaticity)
    name = lattice.name or Path(source).stem
    print(
        f"ring {name!r}: {lattice.n_elements} elements, circumference "
        f"{lattice.circumference:.6g} m, energy {lattice.energy / 1e9:.4g} GeV, "
        f"periodicity {lattice.periodicity}"
    )
    print(f"  tunes          Qx {optics['tunes_total'][0]:.6f}  Qy {optics['tunes_total'][1]:.6f}")
    print(f"  chromaticity   Q'x {chromaticity[0]:+.4f}  Q'y {chromaticity[1]:+.4f}")
    print(
        f"  at {len(optics['s'])} {where}: max beta_x {optics['beta_x'].max():.4g} m, "
        f"max beta_y {optics['beta_y'].max():.4g} m, eta_x in "
        f"[{optics['eta_x'].min():.4g}, {optics['eta_x'].max():.4g}] m"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    points = refpts if refpts is not None else np.arange(lattice.n_elements + 1)
    result = {
        "lattice": str(source),
        "name": name,
        "n_elements": lattice.n_elements,
        "circumference_m": lattice.circumference,
        "energy_eV": lattice.energy,
        "periodicity": lattice.periodicity,
        "tunes": optics["tunes"].tolist(),
        "tunes_total": optics["tunes_total"].tolist(),
        "chromaticity": chromaticity.tolist(),
        "refpoints": where,
        "names": [lattice.names[i] if i < lattice.n_elements else "END" for i in points],
        "s_m": optics["s"].tolist(),
        **{
            f"{key}{unit}": optics[key].tolist()
            for key, unit in (
                ("beta_x", "_m"),
                ("beta_y", "_m"),
                ("alpha_x", ""),
                ("alpha_y", ""),
                ("mu_x", "_rad"),
                ("mu_y", "_rad"),
                ("eta_x", "_m"),
                ("etap_x", ""),
            )
        },
    }
    verdict = optics_verdict(result)
    result["verdict"] = verdict.to_json()
    (out / "optics.json").write_text(json.dumps(result, indent=1))
    elements = {
        "s": np.asarray(lattice.s_positions())[:-1],
        "length": np.asarray(lattice.params.length),
        "class": lattice.classes,
        "k1": np.asarray(lattice.params.polynom_b)[:, 1],
    }
    plot = plot_optics(along, out / "optics.png", title=f"{name}: linear optics",
                       elements=elements, bpms=optics if refpts is not None else None)  # fmt: skip
    print(f"wrote {out / 'optics.json'} and {plot}")
    figures = {"tunes": f"Qx {optics['tunes_total'][0]:.6f}, Qy {optics['tunes_total'][1]:.6f}"}
    return StudySummary(figures, verdict)


def optics_verdict(result: dict):
    """The checks of the optics (optics.json's layout): tunes, chromaticity and the
    functions at the points all finite, and the beta functions positive."""
    import numpy as np

    from diffdesign.core.verdict import Check, Verdict, all_finite

    keys = ("tunes_total", "chromaticity", "beta_x_m", "beta_y_m", "alpha_x", "alpha_y",
            "eta_x_m", "etap_x")  # fmt: skip
    beta = np.concatenate([result["beta_x_m"], result["beta_y_m"]])
    smallest = float(np.min(beta)) if beta.size else float("nan")
    return Verdict((
        all_finite("finite optics", np.concatenate([np.ravel(result[k]) for k in keys])),
        Check("beta > 0", bool(smallest > 0), f"smallest beta {smallest:.4g} m (> 0 expected)",
              "a beta function at or below zero is not a periodic solution: check the "
              "lattice file's element lengths and strengths"),
    ))  # fmt: skip
