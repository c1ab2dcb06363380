"""Regenerate the pyAT reference optics of the packaged rings (``diffdesign/ring/data``).

For each AT lattice (``esrf.m``, ``nsls2.m``) pyAT computes, with radiation off:

* at the BPMs (``at.Monitor``): beta, alpha (x, y; m and 1), phase advance (x, y; rad),
  horizontal dispersion and its slope (m, 1), the BPMs' s (m), names and element indices;
* the fractional tunes and the chromaticity (``get_optics(get_chrom=True)``);
* the quadrupoles' (``at.Quadrupole``) names and element indices;
* ``jacobian_first_quads``: d beta_x / d K1 and d beta_y / d K1 at the BPMs (m per m^-2)
  of the first 8 quadrupoles by central differences, K1 +- 1e-5 m^-2 on ``PolynomB[1]``;
* ``timing_note``: how long one optics call and one Jacobian column took (indicative only).

The tests compare our optics against these files (``tests/ring/test_optics.py``). Needs pyAT
(``pip install accelerator-toolbox==0.9.0``); run from the repository root::

    python benchmarks/peers/make_ring_reference_optics.py            # both rings, in place
    python benchmarks/peers/make_ring_reference_optics.py --rings esrf --out /tmp/ref
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import at
import numpy as np

DATA = Path(__file__).resolve().parents[2] / "diffdesign" / "ring" / "data"
RINGS = ("esrf", "nsls2")
DELTA_K1 = 1e-5  # m^-2, central differences
N_COLUMNS = 8


def _plain(values) -> list:
    return np.asarray(values, dtype=float).tolist()


def _set_k1(element, k1: float) -> None:
    element.PolynomB[1] = k1
    if hasattr(element, "K"):
        element.K = k1


def _beta_at(ring: at.Lattice, bpms: np.ndarray) -> np.ndarray:
    _, _, optics = ring.get_optics(refpts=bpms)
    return np.asarray(optics.beta)


def _jacobian_columns(ring: at.Lattice, bpms, quads) -> tuple[list[dict], float]:
    """Central-difference d beta / d K1 of the first quadrupoles, and seconds per column."""
    columns = []
    start = time.perf_counter()
    for index in quads[:N_COLUMNS]:
        element = ring[int(index)]
        k1 = float(element.PolynomB[1])
        _set_k1(element, k1 + DELTA_K1)
        plus = _beta_at(ring, bpms)
        _set_k1(element, k1 - DELTA_K1)
        minus = _beta_at(ring, bpms)
        _set_k1(element, k1)
        slope = (plus - minus) / (2.0 * DELTA_K1)
        columns.append(
            {
                "quad_index": int(index),
                "dbeta_x_dk": _plain(slope[:, 0]),
                "dbeta_y_dk": _plain(slope[:, 1]),
            }
        )
    return columns, (time.perf_counter() - start) / max(len(columns), 1)


def reference_optics(path: Path) -> dict:
    """The reference dictionary of one AT lattice file."""
    ring = at.load_lattice(str(path)).radiation_off(copy=True)
    bpms = at.get_refpts(ring, at.Monitor)
    quads = at.get_refpts(ring, at.Quadrupole)
    start = time.perf_counter()
    _, ring_data, optics = ring.get_optics(refpts=bpms, get_chrom=True)
    optics_s = time.perf_counter() - start
    columns, column_s = _jacobian_columns(ring, bpms, quads)
    return {
        "source": path.name,
        "tool": f"pyAT (accelerator-toolbox) {at.__version__}",
        "energy_eV": float(ring.energy),
        "circumference_m": float(ring.circumference),
        "periodicity": int(ring.periodicity),
        "n_elements": len(ring),
        "bpm_indices": [int(i) for i in bpms],
        "quad_indices": [int(i) for i in quads],
        "bpm_names": [ring[int(i)].FamName for i in bpms],
        "quad_names": [ring[int(i)].FamName for i in quads],
        "tunes": _plain(ring_data.tune),
        "chromaticity": _plain(ring_data.chromaticity),
        "beta_x": _plain(optics.beta[:, 0]),
        "beta_y": _plain(optics.beta[:, 1]),
        "alpha_x": _plain(optics.alpha[:, 0]),
        "alpha_y": _plain(optics.alpha[:, 1]),
        "mu_x": _plain(optics.mu[:, 0]),
        "mu_y": _plain(optics.mu[:, 1]),
        "eta_x": _plain(optics.dispersion[:, 0]),
        "etap_x": _plain(optics.dispersion[:, 1]),
        "s_bpm": _plain(ring.get_s_pos(bpms)),
        "jacobian_first_quads": columns,
        "timing_note": (
            f"pyAT on this machine: one get_optics at BPMs {optics_s:.3f} s; central-difference "
            f"column {column_s:.3f} s; full {len(quads)}-quad beta Jacobian by finite "
            f"differences ~ {column_s * len(quads):.1f} s"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rings", nargs="+", choices=RINGS, default=list(RINGS))
    parser.add_argument("--out", default=str(DATA), help="folder for <ring>_reference_optics.json")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", module="at")
    for name in args.rings:
        reference = reference_optics(DATA / f"{name}.m")
        target = out / f"{name}_reference_optics.json"
        target.write_text(json.dumps(reference, indent=1))
        print(f"{target}: tunes {reference['tunes']}; {reference['timing_note']}")


if __name__ == "__main__":
    main()
