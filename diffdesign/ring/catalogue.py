"""The lattices that ship with diffdesign, loadable by name, and their pyAT reference optics.

The files live in ``diffdesign/ring/data/`` (its README gives their provenance):

* ``"esrf"``: the ESRF ring before EBS, AT format (``esrf.m``);
* ``"nsls2"``: NSLS-II, the ring of the Bayesian optics-correction paper, AT format
  (``nsls2.m``);
* ``"nsls2-elegant"``: the same ring as the elegant commissioning lattice
  (``comm-ring.lte``), read by :func:`~diffdesign.ring.elegant_file.read_elegant_file`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffdesign.ring.at_file import read_at_file
from diffdesign.ring.description import RingDescription
from diffdesign.ring.elegant_file import read_elegant_file
from diffdesign.ring.json_format import read_lattice_json
from diffdesign.ring.lattice import Lattice
from diffdesign.ring.mat_file import read_mat_file

DATA = Path(__file__).resolve().parent / "data"

#: Names of the packaged lattices and their files in :data:`DATA`.
LATTICES: dict[str, str] = {
    "esrf": "esrf.m",
    "nsls2": "nsls2.m",
    "nsls2-elegant": "comm-ring.lte",
}
#: Names with a pyAT reference-optics file ``<name>_reference_optics.json``.
REFERENCE_OPTICS = ("esrf", "nsls2")
#: Beam energy of the elegant lattice (eV): ``.lte`` files do not carry it.
ELEGANT_ENERGY_EV = {"comm-ring.lte": 3e9}
_SUFFIXES = (".m", ".mat", ".json", ".lte")


def lattice_path(name_or_path: str | Path) -> Path:
    """The file of a packaged lattice name, or the given path.

    Args:
        name_or_path: a name of :data:`LATTICES` (``"esrf"``, ``"nsls2"``,
            ``"nsls2-elegant"``) or a lattice file (``.m``, ``.mat``, ``.json`` or ``.lte``).

    Raises:
        ValueError: an unknown name (a word without suffix; the message lists the known
            ones), a file without a lattice suffix, or a file that does not exist.
    """
    if isinstance(name_or_path, str) and name_or_path in LATTICES:
        return DATA / LATTICES[name_or_path]
    path = Path(name_or_path)
    if isinstance(name_or_path, str) and not path.suffix and len(path.parts) == 1:
        raise ValueError(
            f"unknown lattice name {name_or_path!r}; the packaged rings are "
            f"{sorted(LATTICES)} (or give a lattice file)"
        )
    if path.suffix not in _SUFFIXES:
        raise ValueError(
            f"lattice file must end in .m (AT), .mat (AT saved by MATLAB), .lte (elegant) or "
            f".json (diffdesign); got {path.name!r} (packaged rings by name: {sorted(LATTICES)})"
        )
    if not path.is_file():
        raise ValueError(f"lattice file {str(path)!r} does not exist")
    return path


def _read_elegant(path: Path, energy: float | None):
    energy = ELEGANT_ENERGY_EV.get(path.name) if energy is None else energy
    if energy is None:
        raise ValueError(
            f"elegant file {path.name!r}: the beam energy is not in the file; give it: "
            "load_lattice(path, energy=ENERGY_eV) or read_elegant_file(path, energy=ENERGY_eV)"
        )
    return read_elegant_file(path, energy=energy)


def load_lattice(
    name_or_path: str | Path, integrator: str = "at", *, energy: float | None = None
) -> Lattice:
    """Read a packaged ring by name, or a lattice file.

    Args:
        name_or_path: ``"esrf"``, ``"nsls2"`` or ``"nsls2-elegant"`` (see
            :data:`LATTICES`), or a file: AT MATLAB (``.m``), an AT ring saved by MATLAB
            (``.mat``, v4 to v7, the variable ``RING`` or the file's only one), diffdesign
            JSON (``.json``) or elegant (``.lte``: the line its ``USE`` names, else its last line).
        integrator: ``"at"`` (default: AT's 4th-order integrator with the file's
            NumIntSteps, agreeing with pyAT) or ``"exact"`` (closed-form linear flows, the
            converged limit of AT's integrator).
        energy: beam energy in eV of an elegant file (its format does not hold it; known
            for the packaged ``comm-ring.lte``, 3 GeV).

    Raises:
        ValueError: unknown name (listing the known ones), unknown suffix, missing or
            malformed file, unsupported element (with its name).

    Example:
        >>> lattice = load_lattice("nsls2")  # doctest: +SKIP
    """
    description = read_description(lattice_path(name_or_path), energy)
    return Lattice.from_description(description, integrator=integrator)


def read_description(path: Path, energy: float | None = None) -> RingDescription:
    """The element dicts of a lattice file, by its suffix (see :func:`load_lattice`)."""
    if path.suffix == ".m":
        return read_at_file(path)
    if path.suffix == ".mat":
        return read_mat_file(path)
    if path.suffix == ".json":
        return read_lattice_json(path)
    return _read_elegant(path, energy)


def reference_optics(name: str) -> dict[str, Any]:
    """pyAT 0.9.0 optics of a packaged AT lattice (``"esrf"`` or ``"nsls2"``).

    Returns the JSON written by ``benchmarks/peers/make_ring_reference_optics.py``: at the
    BPMs ``beta_x``/``beta_y`` (m), ``alpha_x``/``alpha_y``, ``mu_x``/``mu_y`` (rad),
    ``eta_x`` (m), ``etap_x``, ``s_bpm`` (m); ``tunes``, ``chromaticity``; element indices
    ``bpm_indices``, ``quad_indices`` and names; ``jacobian_first_quads``: central-difference
    d beta / d K1 (m per m⁻²) of the first 8 quadrupoles.

    Raises:
        ValueError: a name without reference optics (the message lists the known ones).
    """
    if name not in REFERENCE_OPTICS:
        raise ValueError(f"reference optics exist for {list(REFERENCE_OPTICS)}; got {name!r}")
    return json.loads((DATA / f"{name}_reference_optics.json").read_text())
