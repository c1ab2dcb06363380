"""Storage-ring optics: lattices, closed orbit, Twiss functions, Jacobians, correction.

Read a lattice (AT MATLAB file, JSON) with :func:`load_lattice`, then every optics function
is a pure function of the :class:`Lattice` PyTree:

>>> lattice = load_lattice("esrf.m")                      # doctest: +SKIP
>>> optics = linear_optics(lattice)                       # at the BPMs  # doctest: +SKIP
>>> jac = k1_jacobian(lattice)                            # d optics / d K1  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from diffdesign.ring.at_file import read_at_file
from diffdesign.ring.description import RingDescription
from diffdesign.ring.jacobians import k1_jacobian, k1_orm_jacobian
from diffdesign.ring.json_format import read_lattice_json, write_lattice_json
from diffdesign.ring.lattice import Lattice
from diffdesign.ring.optics import (
    chromaticity,
    closed_orbit,
    linear_optics,
    orbit_response,
    tunes,
)
from diffdesign.ring.pyat_import import from_pyat


def load_lattice(path: str | Path, integrator: str = "at") -> Lattice:
    """Read a ring from an AT MATLAB lattice file (``.m``) or diffdesign JSON (``.json``).

    Args:
        path: the file.
        integrator: ``"at"`` (default: AT's 4th-order integrator with the file's
            NumIntSteps, agreeing with pyAT) or ``"exact"`` (closed-form linear flows, the
            converged limit of AT's integrator).

    Raises:
        ValueError: unknown suffix, malformed file, unsupported element (with its name).
    """
    path = Path(path)
    if path.suffix == ".m":
        description = read_at_file(path)
    elif path.suffix == ".json":
        description = read_lattice_json(path)
    else:
        raise ValueError(f"lattice file must end in .m (AT) or .json; got {path.name!r}")
    return Lattice.from_description(description, integrator=integrator)


__all__ = [
    "Lattice",
    "RingDescription",
    "chromaticity",
    "closed_orbit",
    "from_pyat",
    "k1_jacobian",
    "k1_orm_jacobian",
    "linear_optics",
    "load_lattice",
    "orbit_response",
    "read_at_file",
    "read_lattice_json",
    "tunes",
    "write_lattice_json",
]
