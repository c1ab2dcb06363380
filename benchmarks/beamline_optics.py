"""Beamline optics functions, diffdesign vs the peers side by side in one process: Twiss
functions along Cheetah's 1,058-element speed-notebook line, and the periodic solution of
the whole NSLS-II ring (3,570 elements) treated as one beamline cell.

    python benchmarks/beamline_optics.py [--out FILE] [--smoke]

(default FILE: benchmarks/results/cpu/beamline_optics.json).

Work measured (float64, CPU unless JAX finds an accelerator):
  (a) beta, alpha and dispersion after every element of the 1,058-element line, with every
      quadrupole's k1 (450 settings) new each call. Cheetah has no optics functions: its
      route is ``Segment.get_beam_attrs_along_segment`` of a ParameterBeam (element by
      element tracking); ours ``optics_along`` (phase advance included), jitted over k1.
  (b) the periodic solution (beta, alpha, phase, dispersion at every element) of the NSLS-II
      ring from the project's elegant file, with every quadrupole's k1 new each call: ours
      ``periodic_optics`` jitted over k1; pyAT's ``get_optics`` at every element (its
      integrators at the file's steps, as a user runs it). The agreement is measured
      against pyAT at 400 integrator steps (converged to the closed-form maps).
Compile time (first call minus the steady-state median) and steady-state medians apart;
speed-up = peer median / ours.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import warnings

import at
import cheetah
import jax
import jax.numpy as jnp
import numpy as np
import torch
from _timing import timed, write_report  # benchmarks/_timing.py (scripts run from their folder)
from long_lattice import notebook_line

import diffdesign.beamline as bl
from diffdesign.beamline.convert import to_cheetah
from diffdesign.beamline.optics import Optics, optics_along, periodic_optics
from diffdesign.lattices import segment_from_description
from diffdesign.ring.catalogue import DATA
from diffdesign.ring.elegant_file import read_elegant_file

torch.set_default_dtype(torch.float64)
NSLS2 = DATA / "comm-ring.lte"
NSLS2_ENERGY = 3e9


def _quadrupoles(segment: bl.Segment) -> list[str]:
    """Names of the quadrupoles, each once (a name placed several times is set together)."""
    return list(dict.fromkeys(e.name for e in segment.elements if isinstance(e, bl.Quadrupole)))


def _jitted(fn, segment: bl.Segment, names: list[str]):
    """``fn(segment with k1 settings)`` jitted over the k1 vector."""

    def call(k1):
        return fn(segment.with_settings({f"{n}.k1": k1[i] for i, n in enumerate(names)}))

    return jax.jit(call)


def along_line(cells: int, reps: int) -> dict:
    line = notebook_line(cells)
    beam = bl.ParameterBeam.from_twiss(
        energy=1.07e8,
        beta_x=5.0,
        alpha_x=-0.5,
        beta_y=3.0,
        alpha_y=0.3,
        sigma_p=1e-4,
        dispersion_x=0.02,
    )
    names = _quadrupoles(line)
    k1 = np.asarray([float(line[n].k1) for n in names])
    k1 = k1 * np.random.default_rng(0).uniform(0.95, 1.05, len(names))
    ours = _jitted(lambda s: optics_along(s, Optics.from_beam(beam), beam.energy), line, names)
    theirs, their_beam = to_cheetah(line), to_cheetah(beam)
    their_quads = [e for e in theirs.elements if isinstance(e, cheetah.Quadrupole)]
    attributes = ("beta_x", "alpha_x", "beta_y", "alpha_y", "dispersion_x")

    def cheetah_call():
        for element, value in zip(their_quads, torch.tensor(k1), strict=True):
            element.k1 = value
        return theirs.get_beam_attrs_along_segment(attributes, their_beam)

    j_k1 = jnp.asarray(k1)
    timings = {
        "cheetah": timed(cheetah_call, max(3, reps // 10)),
        "diffdesign": timed(lambda: jax.block_until_ready(ours(j_k1)), reps),
    }
    result = ours(j_k1)
    expected = cheetah_call()
    fields = ("beta_x", "alpha_x", "beta_y", "alpha_y", "eta_x")
    difference = max(
        float(np.abs(np.asarray(getattr(result, f)) - e.numpy()).max() / np.abs(e.numpy()).max())
        for f, e in zip(fields, expected, strict=True)
    )
    return {
        "elements": len(line),
        "settings": len(names),
        **timings,
        "max_relative_difference": difference,
    }


def _pyat_ring(steps: int | None, end: int | None):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        ring = at.load_elegant(str(NSLS2), energy=NSLS2_ENERGY)
    ring = at.Lattice(ring[:end] if end else ring[:], energy=NSLS2_ENERGY)
    for element in ring:
        if steps and hasattr(element, "NumIntSteps"):
            element.NumIntSteps = steps
    ring.disable_6d()
    return ring


def periodic_ring(end: int | None, reps: int) -> dict:
    """``end``: the number of elements (None: the whole ring; the smoke run takes one
    superperiod, 238 elements)."""
    description = read_elegant_file(NSLS2, energy=NSLS2_ENERGY)
    cell = segment_from_description(description, end=None if end is None else end - 1)
    names = _quadrupoles(cell)
    k1 = np.asarray([float(cell.elements[cell.indices(n)[0]].k1) for n in names])
    ours = _jitted(lambda s: periodic_optics(s, NSLS2_ENERGY), cell, names)
    ring = _pyat_ring(None, end)
    quads = [e for e in ring if isinstance(e, at.Quadrupole)]
    pyat_k1 = {n: float(v) for n, v in zip(names, k1, strict=True)}
    refpts = range(len(ring) + 1)

    def pyat_call():
        for element in quads:
            element.K = pyat_k1[element.FamName]
        return ring.get_optics(refpts=refpts)

    j_k1 = jnp.asarray(k1)
    timings = {
        "pyat": timed(pyat_call, max(3, reps // 10)),
        "diffdesign": timed(lambda: jax.block_until_ready(ours(j_k1)), reps),
    }
    result = ours(j_k1)
    _, _, converged = _pyat_ring(400, end).get_optics(refpts=refpts)
    beta0 = np.sqrt(1 - (bl.ELECTRON.mass_eV / NSLS2_ENERGY) ** 2)
    return {
        "elements": len(cell),
        "settings": len(names),
        **timings,
        "beta_relative_difference_pyat_400_steps": float(
            max(
                np.abs(np.asarray(getattr(result, f"beta_{p}")) / converged.beta[:, i] - 1).max()
                for i, p in enumerate("xy")
            )
        ),
        "phase_difference_rad_pyat_400_steps": float(
            max(
                np.abs(np.asarray(getattr(result, f"mu_{p}")) - converged.mu[:, i]).max()
                for i, p in enumerate("xy")
            )
        ),
        "dispersion_difference_m_pyat_400_steps": float(
            np.abs(np.asarray(result.eta_x) * beta0 - converged.dispersion[:, 0]).max()
        ),
        "tunes_per_cell": [
            float(result.mu_x[-1] / (2 * np.pi)),
            float(result.mu_y[-1] / (2 * np.pi)),
        ],
    }


def run(reps: int, cells: int, ring_end: int | None) -> dict:
    results = {
        "a_twiss_along_line": along_line(cells, reps),
        "b_periodic_ring": periodic_ring(ring_end, reps),
    }
    for entry in results.values():
        ours = entry["diffdesign"]["median_s"]
        for peer in ("cheetah", "pyat"):
            if peer in entry:
                entry[f"speedup_over_{peer}"] = entry[peer]["median_s"] / ours
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/cpu/beamline_optics.json")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="short lines, to check it runs")
    args = parser.parse_args()
    if args.smoke:
        results = run(reps=3, cells=10, ring_end=238)
    else:
        results = run(reps=args.reps, cells=150, ring_end=None)
    out = write_report(
        args.out,
        "beamline optics functions: diffdesign vs Cheetah and pyAT",
        results,
        smoke=args.smoke,
        versions={
            "cheetah": cheetah.__version__,
            "torch": torch.__version__,
            "pyat": at.__version__,
        },
    )
    print(f"{'work':24s} {'elements':>8s} {'peer':>10s} {'ours':>10s} {'compile':>8s} {'x':>7s}")
    for name, entry in results.items():
        peer = entry.get("cheetah", entry.get("pyat"))
        ours = entry["diffdesign"]
        print(
            f"{name:24s} {entry['elements']:8d} {peer['median_s'] * 1e3:8.3f}ms "
            f"{ours['median_s'] * 1e3:8.3f}ms {ours['compile_s']:7.2f}s "
            f"{peer['median_s'] / ours['median_s']:6.1f}x"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
