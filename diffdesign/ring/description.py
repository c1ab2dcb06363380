"""The plain-data description of a ring that every reader produces and the optics consume.

A :class:`RingDescription` is what a lattice file says, nothing more: an ordered list of
elements, each a ``dict`` keyed by Accelerator Toolbox (AT) field names, and the ring's
energy, periodicity and particle. Readers (AT MATLAB files, JSON, pyAT objects) produce it;
:func:`diffdesign.ring.Lattice.from_description` turns it into arrays for the optics.

Element dictionaries use AT's attribute names and units exactly (SI: m, rad, 1/m^(n+1) for
``PolynomB[n]``, eV, Hz, V), so a user who knows AT knows the format:

=====================  ===========================================================
key                    meaning
=====================  ===========================================================
``Class``              AT class: ``Drift``, ``Quadrupole``, ``Sextupole``,
                       ``Octupole``, ``Multipole``, ``ThinMultipole``, ``Dipole``,
                       ``Corrector``, ``Monitor``, ``Marker``, ``Aperture``,
                       ``RFCavity``, ``M66``
``FamName``            element name (str)
``PassMethod``         AT pass method name (str), e.g. ``StrMPoleSymplectic4Pass``
``Length``             m (float)
``PolynomA/B``         skew/normal multipole coefficients, lists of floats,
                       length >= ``MaxOrder`` + 1 (readers pad shorter
                       ones with zeros, as AT does; longer ones are kept
                       and the coefficients beyond ``MaxOrder`` ignored)
``MaxOrder``           highest multipole index used (int)
``NumIntSteps``        integrator steps (int)
``BendingAngle``       rad; ``EntranceAngle``, ``ExitAngle`` edge angles, rad
``FullGap``            m; ``FringeInt1``, ``FringeInt2`` dimensionless
``FringeBendEntrance`` ``FringeBendExit``, ``FringeQuadEntrance``,
                       ``FringeQuadExit``: AT fringe method flags (int)
``KickAngle``          [x, y] corrector kicks, rad
``T1``, ``T2``         entrance/exit translations, 6 floats
``R1``, ``R2``         entrance/exit rotations, 6x6 nested lists
``M66``                6x6 matrix of an ``M66`` element
``Voltage`` ...        RF cavity: ``Voltage`` (V), ``Frequency`` (Hz),
                       ``HarmNumber``, ``Energy`` (eV), ``TimeLag`` (m)
``Limits``             aperture limits [x_min, x_max, y_min, y_max] (m)
=====================  ===========================================================

Other AT fields (``origin``, ``fitpoint``, ...) are kept as they are and ignored by the
optics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: AT element classes the optics understand.
ELEMENT_CLASSES = (
    "Drift",
    "Quadrupole",
    "Sextupole",
    "Octupole",
    "Multipole",
    "ThinMultipole",
    "Dipole",
    "Corrector",
    "Monitor",
    "Marker",
    "Aperture",
    "RFCavity",
    "M66",
)


@dataclass(frozen=True)
class RingDescription:
    """An ordered ring lattice as plain data.

    Attributes:
        elements: element dictionaries in beam order (see the module docstring).
        energy: reference energy, eV.
        periodicity: number of times the elements repeat to make the whole ring.
        particle: ``"electron"``, ``"positron"``, ``"proton"`` or ``"relativistic"``.
        name: the lattice's name (e.g. the file's function name).
        source: where it came from (a path or ``"pyat"``), for messages.
    """

    elements: list[dict[str, Any]]
    energy: float
    periodicity: int = 1
    particle: str = "relativistic"
    name: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
