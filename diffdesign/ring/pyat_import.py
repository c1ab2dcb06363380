"""Convert a pyAT ``Lattice`` into a :class:`~diffdesign.ring.description.RingDescription`.

pyAT (``import at``, the Python Accelerator Toolbox) is an optional peer: it is imported
only when :func:`from_pyat` is called.
"""

from __future__ import annotations

from typing import Any

from .description import ELEMENT_CLASSES, RingDescription
from .json_format import KNOWN_PARTICLES, plain, validate_description

__all__ = ["from_pyat"]

# Lattice attributes that RingDescription holds itself, or that only say where a file was.
_LATTICE_FIELDS = {"name", "energy", "particle", "periodicity"}
_FILE_ATTRIBUTES = {"in_file", "use", "mat_key", "mat_file", "m_file", "repr_file"}


def _element_class(element: Any) -> str:
    """The nearest of our classes in the element's pyAT class hierarchy.

    pyAT subclasses that only add fields (e.g. ``Collimator``, a ``Drift`` with
    ``RApertures``) map to their base; anything else is refused.
    """
    for cls in type(element).__mro__:
        if cls.__name__ in ELEMENT_CLASSES and cls.__module__.startswith("at."):
            return cls.__name__
    raise ValueError(
        f"element {getattr(element, 'FamName', '?')!r} has pyAT class "
        f"{type(element).__name__!r}, which diffdesign does not model; allowed: "
        f"{', '.join(ELEMENT_CLASSES)}"
    )


def from_pyat(ring: Any) -> RingDescription:
    """Describe a pyAT lattice as plain data.

    Args:
        ring: an ``at.Lattice``.

    Returns:
        A :class:`RingDescription` whose elements hold the pyAT elements' public fields
        (``element.items()``, so ``K`` for quadrupoles and dipoles) under their AT names,
        NumPy arrays turned into lists, plus ``Class`` (the pyAT class name); the
        lattice's energy (eV), periodicity, particle name and name; its other public
        attributes (e.g. ``harmonic_number``, ``beam_current``) in ``extra``, and
        ``source="pyat"``.

    Raises:
        TypeError: if ``ring`` is not an ``at.Lattice``.
        ValueError: for an element class diffdesign does not model, or a field of the
            wrong type or shape.

    Example:
        >>> import at  # doctest: +SKIP
        >>> description = from_pyat(at.load_lattice("esrf.m"))  # doctest: +SKIP
    """
    import at  # optional peer dependency

    if not isinstance(ring, at.Lattice):
        raise TypeError(f"from_pyat expects an at.Lattice; got {type(ring).__name__}")
    elements = []
    for element in ring:
        # Private attributes (pyAT's pass-method switches, displacements) are not fields;
        # displacements already live in T1/T2/R1/R2.
        fields = {key: value for key, value in element.items() if not key.startswith("_")}
        fields["Class"] = _element_class(element)
        elements.append(fields)
    extra = {}
    particle = ring.particle.name
    if particle not in KNOWN_PARTICLES:
        extra["particle"] = plain(ring.particle.to_dict())
    for key, value in ring.attrs.items():
        if key not in _LATTICE_FIELDS and key not in _FILE_ATTRIBUTES:
            extra[key] = plain(value)
    description = RingDescription(
        elements=elements,
        energy=float(ring.energy),
        periodicity=int(ring.periodicity),
        particle=particle,
        name=str(ring.name),
        source="pyat",
        extra=extra,
    )
    return validate_description(description, " (from pyAT)")
