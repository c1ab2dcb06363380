"""A versioned JSON file format for ring lattices, and the checks every element passes.

A file holds one :class:`~diffdesign.ring.description.RingDescription`::

    {
      "format": "diffdesign-ring",
      "version": 1,
      "name": "esrf",
      "energy": 6040000000.0,
      "periodicity": 1,
      "particle": "relativistic",
      "extra": {},
      "elements": [
        {"Class": "Drift", "FamName": "SDHI", "Length": 3.0526, "PassMethod": "DriftPass"},
        ...
      ]
    }

Keys (all required except ``extra``; no others are allowed):

==============  ============================================================================
``format``      the string ``"diffdesign-ring"``
``version``     1 (an integer; readers refuse versions they do not know)
``name``        the lattice's name (string, may be empty)
``energy``      reference energy, eV (finite number > 0)
``periodicity`` number of times the elements repeat to make the ring (integer >= 1)
``particle``    ``"relativistic"``, ``"electron"``, ``"positron"``, ``"proton"``,
                ``"antiproton"``, ``"posmuon"`` or ``"negmuon"``; any other name needs
                ``extra["particle"] = {"rest_energy": eV, "charge": e}``
``extra``       other lattice attributes (object), e.g. ``beam_current``
``elements``    the elements in beam order (array of objects)
==============  ============================================================================

Each element is an object keyed by Accelerator Toolbox (AT) field names, in AT's units
(see :mod:`diffdesign.ring.description`). Every element needs ``Class`` (one of
:data:`~diffdesign.ring.description.ELEMENT_CLASSES`), ``FamName``, ``PassMethod`` and
``Length`` (m), plus what its class needs (:data:`REQUIRED_FIELDS`). Known fields have fixed
types: numbers (finite), integers, vectors of numbers (``PolynomA``/``PolynomB``, padded
with zeros to ``MaxOrder + 1``; ``T1``/``T2`` 6; ``KickAngle`` 2; ``Limits`` 4) and 6x6
matrices (``R1``, ``R2``, ``M66``) as arrays of rows. Aperture limits (``Limits``, ``RApertures``,
``EApertures``) may be infinite; they are written as the ``Infinity`` tokens that Python's
:mod:`json` reads. Other fields are kept as they are.

Round trip: ``read_lattice_json(p)`` after ``write_lattice_json(d, p)`` equals ``d`` field
by field (floats are written with :func:`repr`, so exactly), except ``source``, which
becomes the JSON file's path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .description import ELEMENT_CLASSES, RingDescription

__all__ = [
    "FORMAT",
    "REQUIRED_FIELDS",
    "VERSION",
    "read_lattice_json",
    "validate_description",
    "validate_element",
    "write_lattice_json",
]

FORMAT = "diffdesign-ring"
VERSION = 1

#: Particles known by name (as in pyAT); others need their rest energy and charge.
KNOWN_PARTICLES = (
    "relativistic",
    "electron",
    "positron",
    "proton",
    "antiproton",
    "posmuon",
    "negmuon",
)

_POLYNOMIALS = ("PolynomA", "PolynomB", "MaxOrder")

#: Fields each class needs besides ``Class``, ``FamName``, ``PassMethod`` and ``Length``.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "Drift": (),
    "Quadrupole": _POLYNOMIALS,
    "Sextupole": _POLYNOMIALS,
    "Octupole": _POLYNOMIALS,
    "Multipole": _POLYNOMIALS,
    "ThinMultipole": _POLYNOMIALS,
    "Dipole": (*_POLYNOMIALS, "BendingAngle"),
    "Corrector": ("KickAngle",),
    "Monitor": (),
    "Marker": (),
    "Aperture": ("Limits",),
    "RFCavity": ("Voltage", "Frequency", "HarmNumber"),
    "M66": ("M66",),
}

# Known fields: kind, and for vectors the required size (None: any).
FLOAT_FIELDS = frozenset(
    {
        "Length",
        "BendingAngle",
        "EntranceAngle",
        "ExitAngle",
        "FullGap",
        "FringeInt1",
        "FringeInt2",
        "K",
        "H",
        "FieldScaling",
        "Voltage",
        "Frequency",
        "Energy",
        "TimeLag",
    }
)
#: integer fields -> smallest allowed value (None: any)
INT_FIELDS: dict[str, int | None] = {
    "MaxOrder": 0,
    "NumIntSteps": 0,
    "HarmNumber": None,
    "FringeBendEntrance": None,
    "FringeBendExit": None,
    "FringeQuadEntrance": None,
    "FringeQuadExit": None,
}
#: vector fields -> required length (None: any)
VECTOR_FIELDS: dict[str, int | None] = {
    "PolynomA": None,
    "PolynomB": None,
    "T1": 6,
    "T2": 6,
    "KickAngle": 2,
    "Limits": 4,
    "RApertures": 4,
    "EApertures": 2,
}
MATRIX_FIELDS = frozenset({"R1", "R2", "M66", "M66Rad"})
STRING_FIELDS = frozenset({"Class", "FamName", "PassMethod"})
_MAY_BE_INFINITE = frozenset({"Limits", "RApertures", "EApertures"})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} items"
    return repr(value)


def _float(name: str, value: Any, owner: str) -> float:
    if not _is_number(value):
        raise ValueError(f"{name} must be a number; got {_shown(value)}{owner}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite; got {number}{owner}")
    return number


def _int(name: str, value: Any, owner: str, low: int | None) -> int:
    number = _float(name, value, owner)
    if number != int(number):
        raise ValueError(f"{name} must be an integer; got {value!r}{owner}")
    if low is not None and number < low:
        raise ValueError(f"{name} must be >= {low}; got {int(number)}{owner}")
    return int(number)


def _floats(name: str, values: Any, owner: str, allow_infinite: bool) -> list[float]:
    out = []
    for item in values:
        if not _is_number(item):
            raise ValueError(f"{name} must contain numbers only; got {_shown(item)}{owner}")
        number = float(item)
        if math.isnan(number) or (math.isinf(number) and not allow_infinite):
            raise ValueError(f"{name} must be finite; got {number}{owner}")
        out.append(number)
    return out


def _vector(name: str, value: Any, owner: str, size: int | None) -> list[float]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list of numbers; got {_shown(value)}{owner}")
    numbers = _floats(name, value, owner, name in _MAY_BE_INFINITE)
    if size is not None and len(numbers) != size:
        raise ValueError(f"{name} must have {size} numbers; got {len(numbers)}{owner}")
    return numbers


def _matrix(name: str, value: Any, owner: str) -> list[list[float]]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if (
        not isinstance(value, list | tuple)
        or len(value) != 6
        or not all(isinstance(row, list | tuple) and len(row) == 6 for row in value)
    ):
        raise ValueError(f"{name} must be a 6x6 matrix (6 rows of 6 numbers){owner}")
    return [_floats(name, row, owner, False) for row in value]


def plain(value: Any) -> Any:
    """``value`` with NumPy arrays and scalars turned into lists and Python numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    return value


def normalise_field(name: str, value: Any, owner: str = "") -> Any:
    """Check one element field and return it in its canonical Python form.

    Args:
        name: the AT field name.
        value: its value (Python or NumPy numbers, lists or arrays).
        owner: text appended to error messages, e.g. ``" for element 'QF1'"``.

    Returns:
        ``float`` for number fields, ``int`` for integer fields, ``list[float]`` for
        vectors, 6 lists of 6 floats for matrices, ``str`` for names; other fields with
        NumPy values turned into plain Python.

    Raises:
        ValueError: naming the field when the value has the wrong type, shape or is not
            finite.
    """
    if name in FLOAT_FIELDS:
        return _float(name, value, owner)
    if name in INT_FIELDS:
        return _int(name, value, owner, INT_FIELDS[name])
    if name in VECTOR_FIELDS:
        return _vector(name, value, owner, VECTOR_FIELDS[name])
    if name in MATRIX_FIELDS:
        return _matrix(name, value, owner)
    if name in STRING_FIELDS:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string; got {_shown(value)}{owner}")
        return value
    return plain(value)


def validate_element(
    element: Mapping[str, Any], where: str = "", *, owner: str | None = None
) -> dict[str, Any]:
    """Check an element dictionary and return a canonical copy.

    Args:
        element: AT field name -> value.
        where: text appended to error messages, e.g. ``" (element 12 in ring.json)"``.
        owner: replaces the default ``" for element 'NAME'" + where`` in messages.

    Returns:
        A new dict: ``Class``, ``FamName``, ``Length``, ``PassMethod`` first, the other
        fields sorted, each value in the form :func:`normalise_field` gives.

    Raises:
        ValueError: for a missing or unknown ``Class``, a missing required field, or a
            field of the wrong type or shape. ``PolynomA``/``PolynomB`` shorter than
            ``MaxOrder + 1`` are not errors: they are padded with zeros, as AT reads them.
        TypeError: if ``element`` is not a mapping.
    """
    if not isinstance(element, Mapping):
        raise TypeError(
            f"an element must be a mapping of AT field names; got {_shown(element)}{where}"
        )
    if owner is None:
        name = element.get("FamName")
        owner = f" for element {name!r}{where}" if isinstance(name, str) else where
    if "Class" not in element:
        raise ValueError(f"missing field 'Class'{owner}; allowed: {', '.join(ELEMENT_CLASSES)}")
    cls = element["Class"]
    if cls not in ELEMENT_CLASSES:
        raise ValueError(f"unknown Class {cls!r}{owner}; allowed: {', '.join(ELEMENT_CLASSES)}")
    for field in ("FamName", "PassMethod", "Length", *REQUIRED_FIELDS[cls]):
        if field not in element:
            raise ValueError(f"missing field {field!r}{owner} (required for Class {cls!r})")
    out = {key: normalise_field(key, element[key], owner) for key in ("Class", "FamName")}
    out["Length"] = normalise_field("Length", element["Length"], owner)
    out["PassMethod"] = normalise_field("PassMethod", element["PassMethod"], owner)
    for key in sorted(element):
        if key not in out:
            if not isinstance(key, str):
                raise ValueError(f"field names must be strings; got {key!r}{owner}")
            out[key] = normalise_field(key, element[key], owner)
    if "MaxOrder" in out:
        # AT reads MaxOrder + 1 coefficients; missing ones are zero (pyAT pads them).
        for key in ("PolynomA", "PolynomB"):
            if key in out and len(out[key]) <= out["MaxOrder"]:
                out[key] = out[key] + [0.0] * (out["MaxOrder"] + 1 - len(out[key]))
    return out


def _check_particle(particle: Any, extra: Mapping[str, Any], where: str) -> str:
    if not isinstance(particle, str) or not particle:
        raise ValueError(f"particle must be a non-empty string; got {_shown(particle)}{where}")
    if particle not in KNOWN_PARTICLES:
        details = extra.get("particle")
        if not (
            isinstance(details, Mapping)
            and _is_number(details.get("rest_energy"))
            and _is_number(details.get("charge"))
        ):
            raise ValueError(
                f"particle {particle!r} is not one of {', '.join(KNOWN_PARTICLES)}; give its "
                f"rest energy (eV) and charge (e) in extra['particle']{where}"
            )
    return particle


def validate_description(description: RingDescription, where: str = "") -> RingDescription:
    """Check a :class:`RingDescription` and return it with canonical element values.

    Raises:
        ValueError: naming the field (energy, periodicity, particle, element fields).
        TypeError: if ``description`` is not a :class:`RingDescription`.
    """
    if not isinstance(description, RingDescription):
        raise TypeError(f"expected a RingDescription; got {type(description).__name__}")
    energy = _float("energy", description.energy, where)
    if energy <= 0:
        raise ValueError(f"energy must be > 0 eV; got {energy}{where}")
    periodicity = _int("periodicity", description.periodicity, where, 1)
    if not isinstance(description.extra, Mapping):
        raise TypeError(f"extra must be a dict; got {_shown(description.extra)}{where}")
    particle = _check_particle(description.particle, description.extra, where)
    if not isinstance(description.name, str):
        raise ValueError(f"name must be a string; got {_shown(description.name)}{where}")
    if not isinstance(description.elements, list | tuple):
        raise ValueError(f"elements must be a list; got {_shown(description.elements)}{where}")
    elements = [
        validate_element(element, f"{where} (element {index})")
        for index, element in enumerate(description.elements)
    ]
    return RingDescription(
        elements=elements,
        energy=energy,
        periodicity=periodicity,
        particle=particle,
        name=description.name,
        source=description.source,
        extra=plain(dict(description.extra)),
    )


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=True)
    except TypeError as err:
        raise TypeError(f"{what} cannot be written as JSON: {err}") from None


def write_lattice_json(description: RingDescription, path: str | Path) -> Path:
    """Write a ring description as a ``diffdesign-ring`` JSON file (one element per line).

    Args:
        description: the lattice; it is validated first, so invalid files are never written.
        path: the output file.

    Returns:
        The path written.

    Raises:
        ValueError, TypeError: if the description is invalid or ``extra`` holds values
            JSON cannot represent.

    Example:
        >>> write_lattice_json(read_at_file("esrf.m"), "esrf.json")  # doctest: +SKIP
    """
    path = Path(path)
    checked = validate_description(description)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "name": checked.name,
        "energy": checked.energy,
        "periodicity": checked.periodicity,
        "particle": checked.particle,
        "extra": checked.extra,
    }
    lines = [f"  {json.dumps(key)}: {_dumps(value, key)}," for key, value in header.items()]
    elements = [
        "    " + _dumps(element, f"element {index} ({element['FamName']!r})")
        for index, element in enumerate(checked.elements)
    ]
    body = ",\n".join(elements)
    text = "{\n" + "\n".join(lines) + '\n  "elements": [\n' + body + "\n  ]\n}\n"
    path.write_text(text, encoding="utf-8")
    return path


_TOP_LEVEL = ("format", "version", "name", "energy", "periodicity", "particle", "elements")


def read_lattice_json(path: str | Path) -> RingDescription:
    """Read a ``diffdesign-ring`` JSON lattice file.

    Args:
        path: the file.

    Returns:
        The :class:`RingDescription`, with ``source`` set to ``path``.

    Raises:
        ValueError: naming the file and the key or element at fault: not JSON, wrong
            ``format``/``version``, missing or unknown keys, wrong types, unknown ``Class``.

    Example:
        >>> ring = read_lattice_json("esrf.json")  # doctest: +SKIP
        >>> ring.energy  # doctest: +SKIP
        6040000000.0
    """
    path = Path(path)
    where = f" in {path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at the top; got {_shown(data)}")
    if data.get("format") != FORMAT:
        got = repr(data["format"]) if "format" in data else "no 'format' key"
        raise ValueError(f"{path}: expected 'format': {FORMAT!r}; got {got}")
    version = data.get("version")
    if version != VERSION or isinstance(version, bool):
        raise ValueError(
            f"{path}: this reader knows 'version': {VERSION}; got {version!r} "
            "(a newer file needs a newer diffdesign)"
        )
    missing = [key for key in _TOP_LEVEL if key not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(map(repr, missing))}")
    unknown = sorted(set(data) - {*_TOP_LEVEL, "extra"})
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
            f"{', '.join(_TOP_LEVEL)}, extra"
        )
    extra = data.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError(f"extra must be a JSON object; got {_shown(extra)}{where}")
    if not isinstance(data["elements"], list):
        raise ValueError(f"elements must be a JSON array; got {_shown(data['elements'])}{where}")
    for index, element in enumerate(data["elements"]):
        if not isinstance(element, dict):
            raise ValueError(f"element {index} must be a JSON object; got {_shown(element)}{where}")
    if not isinstance(data["periodicity"], int) or isinstance(data["periodicity"], bool):
        raise ValueError(f"periodicity must be an integer; got {data['periodicity']!r}{where}")
    description = RingDescription(
        elements=data["elements"],
        energy=data["energy"],
        periodicity=data["periodicity"],
        particle=data["particle"],
        name=data["name"],
        source=str(path),
        extra=extra,
    )
    return validate_description(description, where)
