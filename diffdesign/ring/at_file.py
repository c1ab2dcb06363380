"""Read Accelerator Toolbox (AT) MATLAB lattice files (``.m``) without MATLAB or pyAT.

:func:`read_at_file` parses the file with a small literal-only parser (nothing is
evaluated) and applies the element constructors' semantics, giving the same element fields
and values as pyAT's ``at.load_lattice(path)``: the same names, defaults (``PassMethod``,
``NumIntSteps`` = 10 for thick multipoles, ``TimeLag`` = 0, ...), ``PolynomA``/``PolynomB``
padded to ``MaxOrder + 1`` coefficients, ``K`` for quadrupoles and dipoles, and ``Class``
named after pyAT's element classes (``Dipole``, ``M66``, ...). One difference: pyAT keeps
a corrector's short ``PolynomA``/``PolynomB`` (``atcorrector(..., 'PolynomA', 0,
'MaxOrder', 1)``, unused by its pass) as given; here they are padded like every other.

Supported constructors, with their positional arguments (``[...]``: optional) and an
optional pass method after them; keyword/value pairs may follow and set any field::

    atdrift(FamName, Length)
    atquadrupole(FamName, Length, [K])
    atsbend(FamName, Length, BendingAngle, [K])
    atrbend(FamName, Length, BendingAngle, [K])      edge angles default to BendingAngle/2
    atsextupole(FamName, Length, [H])
    atoctupole(FamName, Length, PolynomA, PolynomB)
    atmultipole(FamName, Length, PolynomA, PolynomB)
    atthinmultipole(FamName, PolynomA, PolynomB)
    atskewquad(FamName, Length, Qs)                  a Multipole with PolynomA = [0 Qs 0 0]
    atcorrector(FamName, Length, KickAngle)
    atmonitor(FamName)
    atmarker(FamName)
    ataperture(FamName, Limits)
    atrfcavity(FamName, Length, Voltage, Frequency, HarmNumber, Energy)
    atM66(FamName, M66)
    atringparam(FamName, Energy, [Periodicity])      ring energy, periodicity, 'Particle'
    atbaselem(FamName, PassMethod, 'Class', class, field, value, ...)

As in AT, a positional argument may instead be given by keyword (``'Length', 0.5``), and a
keyword given twice or after its positional value wins.

Rings saved by MATLAB (``.mat``) are read by :mod:`diffdesign.ring.mat_file` with the same
field semantics.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._matlab import Call, parse_lattice_file
from .description import RingDescription
from .json_format import (
    FLOAT_FIELDS,
    INT_FIELDS,
    KNOWN_PARTICLES,
    MATRIX_FIELDS,
    REQUIRED_FIELDS,
    VECTOR_FIELDS,
    validate_element,
)

__all__ = ["SUPPORTED_CONSTRUCTORS", "read_at_file"]


@dataclass(frozen=True)
class _Constructor:
    """How an AT constructor reads its arguments.

    Attributes:
        element_class: the ``Class`` it makes (pyAT's class name).
        arguments: AT field names of the positional arguments after ``FamName``.
        required: how many leading ``arguments`` must be given (by position or keyword).
    """

    element_class: str
    arguments: tuple[str, ...]
    required: int


_CONSTRUCTORS: dict[str, _Constructor] = {
    "atdrift": _Constructor("Drift", ("Length",), 1),
    "atquadrupole": _Constructor("Quadrupole", ("Length", "K"), 1),
    "atsbend": _Constructor("Dipole", ("Length", "BendingAngle", "K"), 2),
    "atrbend": _Constructor("Dipole", ("Length", "BendingAngle", "K"), 2),
    "atsextupole": _Constructor("Sextupole", ("Length", "H"), 1),
    "atoctupole": _Constructor("Octupole", ("Length", "PolynomA", "PolynomB"), 3),
    "atmultipole": _Constructor("Multipole", ("Length", "PolynomA", "PolynomB"), 3),
    "atthinmultipole": _Constructor("ThinMultipole", ("PolynomA", "PolynomB"), 2),
    "atskewquad": _Constructor("Multipole", ("Length", "Qs"), 2),
    "atcorrector": _Constructor("Corrector", ("Length", "KickAngle"), 2),
    "atmonitor": _Constructor("Monitor", (), 0),
    "atmarker": _Constructor("Marker", (), 0),
    "ataperture": _Constructor("Aperture", ("Limits",), 1),
    "atrfcavity": _Constructor(
        "RFCavity", ("Length", "Voltage", "Frequency", "HarmNumber", "Energy"), 5
    ),
    "atM66": _Constructor("M66", ("M66",), 1),
    "atringparam": _Constructor("RingParam", ("Energy", "Periodicity"), 1),
    # atbaselem(FamName, PassMethod, 'Class', ...): the class comes from the keyword.
    "atbaselem": _Constructor("", ("PassMethod",), 1),
}

#: The constructor names :func:`read_at_file` understands.
SUPPORTED_CONSTRUCTORS = tuple(_CONSTRUCTORS)

# AT MATLAB class names (the 'Class' field of atbaselem and of AT structs) -> our Class.
_AT_CLASSES = {
    "Bend": "Dipole",
    "Matrix66": "M66",
    **{name: name for name in REQUIRED_FIELDS},
}
# Default PassMethod of each class (pyAT's element classes; AT MATLAB's older
# constructors defaulted to e.g. QuadLinearPass and BendLinearPass).
_PASS_METHODS = {
    "Drift": "DriftPass",
    "Quadrupole": "StrMPoleSymplectic4Pass",
    "Sextupole": "StrMPoleSymplectic4Pass",
    "Octupole": "StrMPoleSymplectic4Pass",
    "Multipole": "StrMPoleSymplectic4Pass",
    "ThinMultipole": "ThinMPolePass",
    "Dipole": "BndMPoleSymplectic4Pass",
    "Corrector": "CorrectorPass",
    "Monitor": "IdentityPass",
    "Marker": "IdentityPass",
    "Aperture": "AperturePass",
    "RFCavity": "RFCavityPass",
    "M66": "Matrix66Pass",
}
# Lowest multipole order each class keeps in PolynomA/B (pyAT's DefaultOrder).
_DEFAULT_ORDER = {"Dipole": 1, "Quadrupole": 1, "Sextupole": 2, "Octupole": 3}
# The PolynomB index a class takes positionally as a strength ('K' or 'H').
_NATIVE_STRENGTH = {"Quadrupole": "K", "Dipole": "K", "Sextupole": "H"}
_STRENGTH_INDEX = {"K": 1, "H": 2}
_THICK_MULTIPOLES = ("Quadrupole", "Sextupole", "Octupole", "Multipole", "Dipole")
# pyAT moves elements by these keywords; they would be silently lost here.
_TRANSFORM_FIELDS = ("dx", "dy", "dz", "pitch", "yaw", "tilt", "tilt_frame", "reference")
# atringparam fields that pyAT drops (MATLAB leftovers).
_RINGPARAM_IGNORED = {
    "PassMethod",
    "Length",
    "cavpts",
    "Mat_File",
    "Mat_Key",
    "Beam_Current",
    "Nbunch",
    "Class",
}


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


@dataclass
class _Context:
    """Where an element comes from, for messages, and how its fields are read.

    Attributes:
        path: the file.
        where: the place in it: ``"line 12"`` (``.m``) or ``"RING{5}"`` (``.mat``).
        maker: the constructor that made the element (``.m``; empty for ``.mat`` structs).
        famname: the element's name, once known.
        notes: None (``.m`` constructors): a K (H) that contradicts PolynomB[1]
            (PolynomB[2]) of the class that takes it is an error, and coefficients beyond
            MaxOrder warn. A list (saved ``.mat`` structs): such a K (H) is dropped and
            PolynomB kept, as pyAT does, and both get a line in the list, for the caller
            to warn once per file.
    """

    path: str
    where: str
    maker: str = ""
    famname: str = "?"
    notes: list[str] | None = None

    def place(self) -> str:
        return f"{self.path}, {self.where}: element {self.famname!r}"

    def error(self, message: str) -> ValueError:
        maker = f" ({self.maker})" if self.maker else ""
        return ValueError(f"{self.place()}{maker}: {message}")


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, np.ndarray):
        return f"a {value.shape[0]}x{value.shape[1]} matrix"
    if isinstance(value, list):
        return "a cell array"
    if isinstance(value, dict):
        return "a struct"
    if isinstance(value, Call):
        return f"a call to {value.name}"
    return repr(value)


def _scalar(name: str, value: Any, context: _Context) -> float | int:
    """A MATLAB number (1x1 matrices included) for a number field."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = float(value.item())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise context.error(f"{name} must be a number; got {_describe(value)}")
    if (name in FLOAT_FIELDS or name in INT_FIELDS) and not math.isfinite(value):
        raise context.error(f"{name} must be finite; got {value}")
    return value


def _array(name: str, value: Any, context: _Context) -> np.ndarray:
    """A MATLAB numeric value as a float array (scalars become 1x1)."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise context.error(f"{name} must be numeric; got {_describe(value)}")
    return np.array([[float(value)]])


def _vector(name: str, value: Any, context: _Context) -> list[float]:
    # AT stores vectors in MATLAB's column-major order, whatever their orientation.
    return _array(name, value, context).ravel(order="F").tolist()


def _matrix66(name: str, value: Any, context: _Context) -> list[list[float]]:
    array = _array(name, value, context)
    if array.size != 36:
        raise context.error(f"{name} must be a 6x6 matrix; got {_describe(array)}")
    return array.reshape((6, 6), order="F").tolist()


def _plain(name: str, value: Any, context: _Context) -> Any:
    """An unknown field's value, as pyAT keeps it (matrices squeezed to lists)."""
    if isinstance(value, Call):
        raise context.error(
            f"field {name!r}: nested calls ({value.name}(...)) are not supported as values"
        )
    if isinstance(value, np.ndarray):
        squeezed = np.squeeze(value)
        return squeezed.item() if squeezed.ndim == 0 else squeezed.tolist()
    if isinstance(value, list):
        return [_plain(name, item, context) for item in value]
    if isinstance(value, dict):
        return {key: _plain(name, item, context) for key, item in value.items()}
    return value


def _convert(name: str, value: Any, context: _Context) -> Any:
    if name in FLOAT_FIELDS or name in INT_FIELDS:
        return _scalar(name, value, context)
    if name in VECTOR_FIELDS:
        return _vector(name, value, context)
    if name in MATRIX_FIELDS:
        return _matrix66(name, value, context)
    return _plain(name, value, context)


# --------------------------------------------------------------------------- arguments


def _split_arguments(call: Call, spec: _Constructor, context: _Context) -> dict[str, Any]:
    """AT's argument convention: positional values, an optional '...Pass' string, pairs.

    Returns the raw fields; keywords override positional values, later keywords earlier
    ones (as AT's ``getoption`` does).
    """
    args = list(call.args)
    if not args or not isinstance(args[0], str):
        got = _describe(args[0]) if args else "no arguments"
        raise context.error(f"the 1st argument must be the element name (FamName); got {got}")
    context.famname = args[0]
    fields: dict[str, Any] = {"FamName": args[0]}
    index = 1
    positional: list[Any] = []
    # A string ends the positional arguments: either the pass method or the first key.
    while index < len(args) and not isinstance(args[index], str):
        positional.append(args[index])
        index += 1
    if spec.element_class == "" and index < len(args) and not positional:
        positional.append(args[index])  # atbaselem(FamName, PassMethod, ...)
        index += 1
    elif index < len(args) and args[index].endswith("Pass"):
        fields["PassMethod"] = args[index]
        index += 1
    if len(positional) > len(spec.arguments):
        names = ", ".join(spec.arguments) or "none"
        raise context.error(
            f"too many positional arguments: {call.name} takes FamName then {names}; "
            f"got {len(positional)} values after the name"
        )
    fields.update(zip(spec.arguments, positional, strict=False))
    rest = args[index:]
    if len(rest) % 2:
        raise context.error(
            f"expected field/value pairs after the positional arguments; "
            f"{_describe(rest[-1])} has no value"
        )
    for key, value in zip(rest[::2], rest[1::2], strict=True):
        if not isinstance(key, str):
            raise context.error(f"expected a field name (string); got {_describe(key)}")
        fields[key] = value
    for position, name in enumerate(spec.arguments[: spec.required], start=2):
        if name not in fields:
            raise context.error(
                f"missing required argument {name} of {call.name} (give it as the "
                f"{_ordinal(position)} argument or as '{name}', value)"
            )
    return fields


# --------------------------------------------------------------------------- classes


def _multipole(cls: str, fields: dict[str, Any], context: _Context) -> None:
    """PolynomA/B, MaxOrder and strengths as pyAT's multipole classes set them."""
    native = _NATIVE_STRENGTH.get(cls)
    if native is not None:
        strength = _scalar(native, fields.pop(native, 0.0), context)
        index = _STRENGTH_INDEX[native]
        polynom_b = [0.0] * index + [float(strength)]
        polynom_a: list[float] = []
        if "PolynomB" in fields:
            given = _vector("PolynomB", fields.pop("PolynomB"), context)
            if strength != 0 and (len(given) <= index or given[index] != strength):
                shown = given[index] if len(given) > index else "absent"
                message = f"{native}={strength} conflicts with PolynomB[{index}]={shown}"
                if context.notes is None:
                    raise context.error(f"{message}; give only one of them, or equal values")
                context.notes.append(f"{context.where} {context.famname!r}: {message}, ignored")
            polynom_b = given + [0.0] * (len(polynom_b) - len(given))
        if "PolynomA" in fields:
            polynom_a = _vector("PolynomA", fields.pop("PolynomA"), context)
    else:
        for name in ("PolynomA", "PolynomB"):
            if name not in fields:
                raise context.error(f"missing field {name} (required for Class {cls!r})")
        polynom_a = _vector("PolynomA", fields.pop("PolynomA"), context)
        polynom_b = _vector("PolynomB", fields.pop("PolynomB"), context)
    # A strength keyword that is not the class's own must agree with PolynomB (pyAT).
    for name, index in _STRENGTH_INDEX.items():
        if name != native and name in fields:
            value = _scalar(name, fields.pop(name), context)
            if len(polynom_b) <= index or (value != 0 and value != polynom_b[index]):
                shown = polynom_b[index] if len(polynom_b) > index else "absent"
                raise context.error(
                    f"{name}={value} conflicts with PolynomB[{index}]={shown} for Class {cls!r}"
                )
    default_order = max(_DEFAULT_ORDER.get(cls, 0), len(polynom_a) - 1, len(polynom_b) - 1)
    if "MaxOrder" in fields:
        max_order = _scalar("MaxOrder", fields.pop("MaxOrder"), context)
        if max_order != int(max_order) or max_order < 0:
            raise context.error(f"MaxOrder must be an integer >= 0; got {max_order}")
        max_order = int(max_order)
    else:
        max_order = default_order
    size = max(max_order, default_order) + 1
    polynom_a += [0.0] * (size - len(polynom_a))
    polynom_b += [0.0] * (size - len(polynom_b))
    for name, polynom in (("PolynomA", polynom_a), ("PolynomB", polynom_b)):
        nonzero = [i for i, value in enumerate(polynom) if value != 0.0]
        if nonzero and nonzero[-1] > max_order:
            message = f"{name}[{nonzero[-1]}] is beyond MaxOrder={max_order}; AT ignores it"
            if context.notes is None:
                warnings.warn(f"{context.place()}: {message}", stacklevel=5)
            else:
                context.notes.append(f"{context.where} {context.famname!r}: {message}")
    fields.update(
        PolynomA=np.array([polynom_a]), PolynomB=np.array([polynom_b]), MaxOrder=max_order
    )
    if cls in _THICK_MULTIPOLES:
        fields.setdefault("NumIntSteps", 10)
    if native == "K":
        fields["K"] = polynom_b[1]


def _dipole(fields: dict[str, Any], context: _Context) -> None:
    fields.setdefault("EntranceAngle", 0.0)
    fields.setdefault("ExitAngle", 0.0)


def _rf_cavity(fields: dict[str, Any], context: _Context) -> None:
    fields.setdefault("TimeLag", 0.0)


def _m66(fields: dict[str, Any], context: _Context) -> None:
    if "M66" not in fields:
        raise context.error("missing field M66 (required for Class 'M66')")
    fields.setdefault("M66Rad", fields["M66"])  # pyAT's M66 keeps a radiating copy


_CLASS_SETUP: dict[str, Callable[[dict[str, Any], _Context], None]] = {
    "Dipole": _dipole,
    "RFCavity": _rf_cavity,
    "M66": _m66,
}


def _element(cls: str, fields: dict[str, Any], context: _Context) -> dict[str, Any]:
    """Apply a class's defaults and conversions to raw fields; return the element dict."""
    for name in _TRANSFORM_FIELDS:
        if name in fields:
            raise context.error(
                f"field {name!r} (a pyAT displacement) is not supported; write the "
                "misalignment as T1/T2/R1/R2"
            )
    if cls in _CLASS_SETUP:
        _CLASS_SETUP[cls](fields, context)
    if cls in _THICK_MULTIPOLES or cls == "ThinMultipole":
        _multipole(cls, fields, context)
    for name in REQUIRED_FIELDS[cls]:
        if name not in fields:
            raise context.error(f"missing field {name} (required for Class {cls!r})")
    fields.setdefault("Length", 0.0)
    fields.setdefault("PassMethod", _PASS_METHODS[cls])
    if not isinstance(fields["PassMethod"], str):
        raise context.error(f"PassMethod must be a string; got {_describe(fields['PassMethod'])}")
    element = {"Class": cls}
    for name, value in fields.items():
        element[name] = _convert(name, value, context)
    try:
        return validate_element(element, owner="")
    except ValueError as err:
        raise context.error(str(err)) from None


def _class_keyword(fields: dict[str, Any], expected: str, context: _Context) -> str:
    """Check an explicit 'Class' keyword against the constructor's class."""
    value = fields.pop("Class", None)
    if value is None:
        return expected
    if not isinstance(value, str) or value not in _AT_CLASSES:
        allowed = ", ".join(sorted(_AT_CLASSES))
        raise context.error(f"unknown Class {value!r}; allowed: {allowed}")
    if expected and _AT_CLASSES[value] != expected:
        raise context.error(
            f"Class {value!r} contradicts {context.maker}, which makes {expected!r}"
        )
    return _AT_CLASSES[value]


# --------------------------------------------------------------------------- lattice


@dataclass
class _Collected:
    elements: list[dict[str, Any]] = field(default_factory=list)
    ringparams: list[tuple[dict[str, Any], _Context]] = field(default_factory=list)
    cavity_energies: list[float] = field(default_factory=list)
    other_energies: list[float] = field(default_factory=list)


def _read_entry(call: Call, path: str, out: _Collected) -> None:
    context = _Context(path, f"line {call.line}", call.name)
    spec = _CONSTRUCTORS.get(call.name)
    if spec is None:
        raise ValueError(
            f"{path}, line {call.line}: unknown element constructor {call.name!r}; "
            f"supported: {', '.join(SUPPORTED_CONSTRUCTORS)}"
        )
    fields = _split_arguments(call, spec, context)
    if call.name == "atringparam":
        out.ringparams.append((fields, context))
        return
    cls = _class_keyword(fields, spec.element_class, context)
    if call.name == "atbaselem":
        if not cls:
            raise context.error(
                f"atbaselem needs a 'Class' keyword; allowed: {', '.join(sorted(_AT_CLASSES))}"
            )
    elif call.name == "atskewquad":
        strength = _scalar("Qs", fields.pop("Qs"), context)
        fields.setdefault("PolynomA", np.array([[0.0, strength, 0.0, 0.0]]))
        fields.setdefault("PolynomB", np.zeros((1, 4)))
    elif call.name == "atrbend":
        # A rectangular bend: its edges default to half the bending angle each (AT).
        half = 0.5 * _scalar("BendingAngle", fields["BendingAngle"], context)
        fields.setdefault("EntranceAngle", half)
        fields.setdefault("ExitAngle", half)
    _add_element(cls, fields, context, out)


def _add_element(cls: str, fields: dict[str, Any], context: _Context, out: _Collected) -> None:
    """Apply the class's semantics to raw fields and append the element to `out`."""
    element = _element(cls, fields, context)
    if "Energy" in element:
        if cls == "RFCavity":
            out.cavity_energies.append(element["Energy"])
        else:
            # pyAT keeps Energy only on cavities; elsewhere it only hints at the ring energy.
            out.other_energies.append(element.pop("Energy"))
    out.elements.append(element)


def _ring_parameters(
    fields: dict[str, Any], context: _Context
) -> tuple[str, float | None, int, str, dict[str, Any]]:
    """Name, energy (eV, None if NaN), periodicity, particle and other attributes."""
    raw = fields.pop("Energy")
    if isinstance(raw, float) and math.isnan(raw):
        energy = None  # AT's way of saying "not set"
    else:
        energy = float(_scalar("Energy", raw, context))
        if energy <= 0:
            raise context.error(f"Energy must be > 0 eV; got {energy}")
    periodicity = _scalar("Periodicity", fields.pop("Periodicity", 1), context)
    if not math.isfinite(periodicity) or periodicity != int(periodicity):
        raise context.error(f"Periodicity must be an integer; got {periodicity}")
    extra: dict[str, Any] = {}
    particle = "relativistic"
    if "Particle" in fields:
        value = fields.pop("Particle")
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise context.error(
                "Particle must be a name or struct('name', NAME, 'rest_energy', eV, "
                f"'charge', e); got {_describe(value)}"
            )
        particle = value["name"]
        if particle not in KNOWN_PARTICLES:
            for key in ("rest_energy", "charge"):
                if key not in value:
                    raise context.error(
                        f"Particle {particle!r} is not one of {', '.join(KNOWN_PARTICLES)}; "
                        f"its struct needs '{key}'"
                    )
            extra["particle"] = _plain("Particle", value, context)
    for name, value in fields.items():
        if name not in _RINGPARAM_IGNORED and name != "FamName":
            extra[name] = _plain(name, value, context)
    cell_harmnumber = extra.get("cell_harmnumber")
    if isinstance(cell_harmnumber, float) and not math.isfinite(cell_harmnumber):
        del extra["cell_harmnumber"]
    return fields["FamName"], energy, int(periodicity), particle, extra


def _energy_from(values: list[float], what: str, path: str) -> float:
    energy = max(values)
    if min(values) < energy:
        warnings.warn(
            f"{path}: the {what} disagree on the energy ({min(values)} to {energy} eV); "
            f"using {energy} eV. Add atringparam(NAME, ENERGY, PERIODICITY) to settle it.",
            stacklevel=3,
        )
    return energy


def _guess_periodicity(elements: list[dict[str, Any]], path: str) -> int:
    """As pyAT: the number of cells whose bending angles make a full turn."""
    total = sum(e["BendingAngle"] for e in elements if e["Class"] == "Dipole")
    if total == 0:
        warnings.warn(f"{path}: no atringparam and no bending; periodicity set to 1", stacklevel=3)
        return 1
    cells = 2 * math.pi / total
    periodicity = round(cells)
    if abs(periodicity - cells) > 1e-4 or periodicity < 1:
        warnings.warn(
            f"{path}: the bending angles make {cells} cells per turn, not a whole number; "
            f"periodicity set to {max(periodicity, 1)}. Give it with atringparam.",
            stacklevel=3,
        )
    return max(periodicity, 1)


def read_at_file(path: str | Path, *, energy: float | None = None) -> RingDescription:
    """Read an AT MATLAB lattice file (``function ring = name() ring = {...}; end``).

    Args:
        path: the ``.m`` file.
        energy: reference energy, eV, overriding the file's; needed when the file has
            neither ``atringparam`` nor RF cavities with an ``Energy``.

    Returns:
        The :class:`RingDescription`: the elements (``atringparam`` removed) with pyAT's
        fields and values; the energy from ``energy``, else ``atringparam``, else the RF
        cavities' ``Energy`` (else other elements' ``Energy``); the periodicity from
        ``atringparam``, else the number of cells the bending angles make a turn of; the
        particle from ``atringparam``'s ``Particle`` (default ``"relativistic"``); the name
        from ``atringparam``, else the function name; other ``atringparam`` fields in
        ``extra``.

    Raises:
        ValueError: naming the file and line: syntax outside the supported subset, an
            unknown constructor, a missing argument, a non-numeric or non-finite value
            where a finite number is needed, or no energy anywhere.

    Example:
        >>> ring = read_at_file("esrf.m")  # doctest: +SKIP
        >>> ring.elements[5]["Class"], ring.elements[5]["K"]  # doctest: +SKIP
        ('Quadrupole', 0.39100749)
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a text file in UTF-8 (byte {err.start})") from None
    parsed = parse_lattice_file(text, str(path))
    out = _Collected()
    for entry in parsed.entries:
        _read_entry(entry, str(path), out)
    return _ring_description(
        out,
        path,
        parsed.function_name or path.stem,
        energy,
        "add atringparam('NAME', ENERGY_eV, PERIODICITY) as the first element, give an RF "
        "cavity its Energy, or call read_at_file(path, energy=ENERGY_eV)",
    )


def _ring_description(
    out: _Collected, path: Path, name: str, energy: float | None, energy_hint: str
) -> RingDescription:
    """The ring from its collected elements, as pyAT builds its Lattice.

    The name, energy, periodicity, particle and other attributes come from the first
    RingParam element; an `energy` given overrides the file's; without one the energy is
    the RF cavities' (else the other elements') Energy, and the periodicity is guessed
    from the bending angles. `energy_hint` says how to give a missing energy.
    """
    periodicity = None
    particle = "relativistic"
    extra: dict[str, Any] = {}
    file_energy = None
    if out.ringparams:
        if len(out.ringparams) > 1:
            warnings.warn(
                f"{path}: {len(out.ringparams)} RingParam elements; the first is used",
                stacklevel=3,
            )
        name, file_energy, periodicity, particle, extra = _ring_parameters(*out.ringparams[0])
        if periodicity <= 0:
            periodicity = None
    if energy is None:
        if file_energy is not None:
            energy = file_energy
        elif out.cavity_energies:
            energy = _energy_from(out.cavity_energies, "RF cavities", str(path))
        elif out.other_energies:
            energy = _energy_from(out.other_energies, "elements' Energy fields", str(path))
        else:
            raise ValueError(f"{path}: the ring energy is not given: {energy_hint}")
    elif not (math.isfinite(energy) and energy > 0):
        raise ValueError(f"energy must be a finite energy > 0 eV; got {energy}")
    if periodicity is None:
        periodicity = _guess_periodicity(out.elements, str(path))
    return RingDescription(
        elements=out.elements,
        energy=float(energy),
        periodicity=periodicity,
        particle=particle,
        name=name,
        source=str(path),
        extra=extra,
    )
