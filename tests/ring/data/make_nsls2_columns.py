"""Make ``nsls2_ql1_ql2_columns.json``: two beta_x-beat Jacobian columns of NSLS-II by pyAT.

The columns are d(Δβx/βx)/dK1 at the 180 BPMs (``at.Monitor``) for the neighbouring
quadrupoles QL1G2C01A and QL2G2C01A of the packaged ``diffdesign/ring/data/nsls2.m``, by
central differences
with ΔK1 = ±1e-5 m⁻² on ``PolynomB[1]`` (pyAT's ``K`` is the same number). The paper
("Bayesian Approach for Linear Optics Correction", Sect. IV) quotes 0.9896 for their
correlation and BPMs {30, 31, 37, 62, 71, 78} (1-based) as a near-orthogonal subset.

Run from the repository root (needs pyAT, ``pip install accelerator-toolbox==0.9.0``)::

    python tests/ring/data/make_nsls2_columns.py [path/to/nsls2.m]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import at
import numpy as np

from diffdesign.ring.catalogue import DATA

HERE = Path(__file__).resolve().parent
DEFAULT_LATTICE = DATA / "nsls2.m"
NAMES = ("QL1G2C01A", "QL2G2C01A")
DELTA_K1 = 1e-5  # m^-2


def _beta_x(ring: at.Lattice) -> np.ndarray:
    _, _, optics = ring.get_optics(refpts=at.Monitor)
    return np.asarray(optics.beta[:, 0])


def _set_k1(element, k1: float) -> None:
    element.PolynomB[1] = k1
    if hasattr(element, "K"):
        element.K = k1  # an alias of PolynomB[1] in pyAT 0.9; set both to be explicit


def main(lattice_path: Path) -> None:
    ring = at.load_lattice(str(lattice_path))
    beta0 = _beta_x(ring)
    all_quads = [i for i, e in enumerate(ring) if isinstance(e, at.Quadrupole)]
    # The paper numbers normal quadrupoles only (QL1G2C01A is "index 10", 0-based); the
    # skew quadrupoles SQ* are AT Quadrupoles with K1 = 0.
    normal_quads = [i for i in all_quads if not ring[i].FamName.startswith("SQ")]
    columns, element_index, quad_number = {}, {}, {}
    for name in NAMES:
        (index,) = [i for i in normal_quads if ring[i].FamName == name][:1]
        element = ring[index]
        k1 = float(element.PolynomB[1])
        _set_k1(element, k1 + DELTA_K1)
        beta_plus = _beta_x(ring)
        _set_k1(element, k1 - DELTA_K1)
        beta_minus = _beta_x(ring)
        _set_k1(element, k1)
        columns[name] = ((beta_plus - beta_minus) / (2 * DELTA_K1) / beta0).tolist()
        element_index[name] = index
        quad_number[name] = normal_quads.index(index)
    a, b = (np.asarray(columns[n]) for n in NAMES)
    pearson = float(np.corrcoef(a, b)[0, 1])
    cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    out = {
        "source": lattice_path.name,
        "tool": f"pyAT (accelerator-toolbox) {at.__version__}",
        "what": "d(dbeta_x/beta_x)/dK1 at the BPMs (at.Monitor), central differences",
        "delta_k1_per_m2": DELTA_K1,
        "n_bpm": len(beta0),
        "quadrupoles": list(NAMES),
        "element_index": element_index,
        "normal_quadrupole_number": quad_number,
        "beta_x": beta0.tolist(),
        "columns": columns,
        "pearson_correlation": pearson,
        "cosine_correlation": cosine,
        "paper_correlation": 0.9896,
        "paper_subset_1based": [30, 31, 37, 62, 71, 78],
    }
    (HERE / "nsls2_ql1_ql2_columns.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"pearson {pearson:.6f}  cosine {cosine:.6f}  indices {element_index} {quad_number}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_LATTICE)
