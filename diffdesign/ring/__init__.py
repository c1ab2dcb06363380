"""Storage-ring optics: lattices, closed orbit, Twiss functions, Jacobians, correction.

Read a packaged ring by name (``"esrf"``, ``"nsls2"``, ``"nsls2-elegant"``) or a lattice file
(AT MATLAB ``.m`` or ``.mat``, elegant ``.lte``, JSON) with :func:`load_lattice`, then every
optics function is a pure function of the :class:`Lattice` PyTree:

>>> lattice = load_lattice("esrf")     # a packaged ring, or a path  # doctest: +SKIP
>>> optics = linear_optics(lattice)                       # at the BPMs  # doctest: +SKIP
>>> jac = k1_jacobian(lattice)                            # d optics / d K1  # doctest: +SKIP
"""

from __future__ import annotations

from diffdesign.ring.at_file import read_at_file
from diffdesign.ring.catalogue import LATTICES, lattice_path, load_lattice, reference_optics
from diffdesign.ring.description import RingDescription
from diffdesign.ring.elegant_file import read_elegant_file
from diffdesign.ring.jacobians import k1_jacobian, k1_orm_jacobian
from diffdesign.ring.json_format import read_lattice_json, write_lattice_json
from diffdesign.ring.lattice import Lattice
from diffdesign.ring.mat_file import read_mat_file
from diffdesign.ring.model import OBSERVABLES, RingModel, fitted_quadrupoles, ring_model
from diffdesign.ring.optics import (
    chromaticity,
    closed_orbit,
    linear_optics,
    orbit_response,
    tunes,
)
from diffdesign.ring.pyat_import import from_pyat
from diffdesign.ring.spec import k1_error_spec

__all__ = [
    "LATTICES",
    "OBSERVABLES",
    "Lattice",
    "RingDescription",
    "RingModel",
    "chromaticity",
    "closed_orbit",
    "fitted_quadrupoles",
    "from_pyat",
    "k1_error_spec",
    "k1_jacobian",
    "k1_orm_jacobian",
    "lattice_path",
    "linear_optics",
    "load_lattice",
    "orbit_response",
    "read_at_file",
    "read_elegant_file",
    "read_lattice_json",
    "read_mat_file",
    "reference_optics",
    "ring_model",
    "tunes",
    "write_lattice_json",
]
