"""Radiation lengths and densities of the materials muon-tomography studies use.

X0 in metres and density in kg/m^3 (PDG "Atomic and nuclear properties of materials";
X0 = (X0 in g/cm^2) / density). Lead and beryllium are TomOpt's values, so the two tools'
volumes are the same numbers.
"""

from __future__ import annotations

from typing import NamedTuple


class Material(NamedTuple):
    """A material: radiation length (m) and density (kg/m^3)."""

    x0: float
    density: float


#: name -> Material.
MATERIALS: dict[str, Material] = {
    "air": Material(303.9, 1.205),
    "water": Material(0.3608, 1000.0),
    "beryllium": Material(0.3528, 1848.0),
    "carbon": Material(0.1932, 2210.0),
    "aluminium": Material(0.08897, 2699.0),
    "concrete": Material(0.1155, 2300.0),
    "iron": Material(0.01757, 7874.0),
    "copper": Material(0.01436, 8960.0),
    "tungsten": Material(0.003504, 19300.0),
    "lead": Material(0.005612, 11350.0),
    "uranium": Material(0.003166, 18950.0),
}


def material(name: str) -> Material:
    """The Material called ``name``; a clear error listing the known names otherwise."""
    try:
        return MATERIALS[name]
    except KeyError:
        raise ValueError(f"unknown material {name!r}; known: {sorted(MATERIALS)}") from None


def x0_of(name_or_x0: str | float) -> float:
    """A radiation length (m) from a material name or a positive number."""
    if isinstance(name_or_x0, str):
        return material(name_or_x0).x0
    value = float(name_or_x0)
    if not value > 0:
        raise ValueError(f"a radiation length must be > 0 m; got {value}")
    return value
