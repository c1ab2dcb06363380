"""Particle species: the mass and charge that set the relativistic factors of a beam.

A species is static (hashable) data carried by beams; first-order maps depend on it only
through the reference particle's mass (gamma = E / m c^2), as in Cheetah.
"""

from __future__ import annotations

import dataclasses

from scipy.constants import physical_constants

# CODATA values from scipy.constants, the source Cheetah uses, so masses agree to the last digit.
ELEMENTARY_CHARGE = physical_constants["elementary charge"][0]  # C
ELECTRON_MASS_EV = physical_constants["electron mass energy equivalent in MeV"][0] * 1e6
PROTON_MASS_EV = physical_constants["proton mass energy equivalent in MeV"][0] * 1e6
DEUTERON_MASS_EV = physical_constants["deuteron mass energy equivalent in MeV"][0] * 1e6


@dataclasses.dataclass(frozen=True)
class Species:
    """A particle species.

    Args:
        name: a label, e.g. ``"electron"``.
        mass_eV: rest energy m c^2 in eV; must be positive.
        num_elementary_charges: charge in units of the elementary charge e (signed).

    Example:
        >>> carbon6 = Species("C6+", mass_eV=11.178e9, num_elementary_charges=6)
    """

    name: str
    mass_eV: float
    num_elementary_charges: float

    def __post_init__(self) -> None:
        if not (self.mass_eV > 0.0):
            raise ValueError(
                f"mass_eV must be > 0 eV; got {self.mass_eV} for species '{self.name}'"
            )

    @property
    def charge_coulomb(self) -> float:
        """Charge of one particle in C."""
        return self.num_elementary_charges * ELEMENTARY_CHARGE

    @classmethod
    def from_name(cls, name: str) -> Species:
        """One of ``electron``, ``positron``, ``proton``, ``antiproton``, ``deuteron``."""
        try:
            return KNOWN_SPECIES[name]
        except KeyError:
            raise ValueError(
                f"unknown species '{name}'; known: {sorted(KNOWN_SPECIES)}, "
                "or give mass_eV and num_elementary_charges"
            ) from None


ELECTRON = Species("electron", ELECTRON_MASS_EV, -1.0)
KNOWN_SPECIES = {
    s.name: s
    for s in (
        ELECTRON,
        Species("positron", ELECTRON_MASS_EV, 1.0),
        Species("proton", PROTON_MASS_EV, 1.0),
        Species("antiproton", PROTON_MASS_EV, -1.0),
        Species("deuteron", DEUTERON_MASS_EV, 1.0),
    )
}
