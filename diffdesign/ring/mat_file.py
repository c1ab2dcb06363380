"""Read Accelerator Toolbox (AT) lattices saved as MATLAB ``.mat`` files, without pyAT.

AT saves a ring as a variable (usually ``RING``) holding a cell array of element structs
(``save('ring.mat', 'RING')``). :func:`read_mat_file` reads it with :func:`scipy.io.loadmat`
(MATLAB v4 to v7 files; nothing in them is executed or unpickled) and gives the same
:class:`~diffdesign.ring.description.RingDescription` as pyAT's ``at.load_mat``, with the
field semantics of :func:`~diffdesign.ring.at_file.read_at_file` (``PolynomA``/``PolynomB``
padded to ``MaxOrder + 1``, ``K`` of quadrupoles and dipoles equal to ``PolynomB[1]``,
pyAT's class names).

An element's class is its ``Class`` field (AT's names: ``Bend``, ``Quadrupole``,
``RingParam``...; case-insensitive, with pyAT's aliases such as ``quad`` or ``bpm``); without
one it is guessed as pyAT guesses it: from the element's name, then its pass method, then
its fields (e.g. ``FullGap`` or ``EntranceAngle`` make a ``Dipole``, ``Voltage`` an
``RFCavity``). As pyAT, a ``K`` (``H``) that contradicts ``PolynomB[1]`` (``PolynomB[2]``) of a
saved quadrupole or dipole (sextupole) is ignored with a warning: AT's passes read only
``PolynomB``.

MATLAB v7.3 files are HDF5 files, which scipy cannot read: save with ``'-v7'``, or read them
with pyAT and :func:`~diffdesign.ring.pyat_import.from_pyat`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from scipy.io import matlab

from .at_file import (
    _AT_CLASSES,
    _add_element,
    _Collected,
    _Context,
    _describe,
    _ring_description,
)
from .description import RingDescription

__all__ = ["read_mat_file"]

# Class field (lower case) -> our class; pyAT's aliases included. "RingParam" holds the
# ring's energy and periodicity and is not an element.
_CLASS_NAMES = {
    **{name.lower(): cls for name, cls in _AT_CLASSES.items()},
    "rbend": "Dipole",
    "sbend": "Dipole",
    "quad": "Quadrupole",
    "sext": "Sextupole",
    "rf": "RFCavity",
    "bpm": "Monitor",
    "ap": "Aperture",
    "ringparam": "RingParam",
}
# pyAT's pass method -> class table, for the classes modelled here.
_PASS_CLASSES = {
    "BendLinearPass": "Dipole",
    "BndMPoleSymplectic4Pass": "Dipole",
    "BndMPoleSymplectic4RadPass": "Dipole",
    "QuadLinearPass": "Quadrupole",
    "StrMPoleSymplectic4Pass": "Multipole",
    "StrMPoleSymplectic4RadPass": "Multipole",
    "CorrectorPass": "Corrector",
    "CavityPass": "RFCavity",
    "RFCavityPass": "RFCavity",
    "ThinMPolePass": "ThinMultipole",
    "Matrix66Pass": "M66",
    "AperturePass": "Aperture",
}
# Fields that make a class, in the order pyAT tries them.
_CONTENT_CLASSES = (
    (("FullGap", "FringeInt1", "FringeInt2", "gK", "EntranceAngle", "ExitAngle"), "Dipole"),
    (("Voltage", "Frequency", "HarmNumber", "PhaseLag", "TimeLag"), "RFCavity"),
    (("Periodicity",), "RingParam"),
    (("Limits",), "Aperture"),
    (("M66",), "M66"),
    (("K",), "Quadrupole"),
)
_ORDER_CLASSES = {1: "Quadrupole", 2: "Sextupole", 3: "Octupole"}
_UNREADABLE = (matlab.MatlabOpaque, matlab.MatlabFunction, matlab.MatlabObject)


def _load(path: Path) -> dict[str, Any]:
    """The file's variables, or a ValueError that says why they cannot be read."""
    try:
        major, _ = matlab.matfile_version(str(path))
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror or err})") from None
    except Exception as err:  # scipy raises several types for a file that is not a .mat
        raise ValueError(f"{path}: not a MATLAB .mat file ({err})") from None
    if major == 2:
        raise ValueError(
            f"{path}: a MATLAB v7.3 (HDF5) .mat file, which scipy cannot read; save the ring "
            "with save(FILE, 'RING', '-v7'), or read it with pyAT (at.load_mat) and "
            "diffdesign.ring.from_pyat"
        )
    try:
        # mat_dtype: numbers as MATLAB holds them (doubles), not as they were compressed
        return scipy.io.loadmat(str(path), mat_dtype=True)
    except Exception as err:  # corrupt or truncated data: zlib, struct, value errors...
        raise ValueError(
            f"{path}: a damaged or unsupported .mat file ({type(err).__name__}: {err})"
        ) from None


def _variable(variables: dict[str, Any], use: str | None, path: Path) -> str:
    """The variable holding the ring: `use`, else the only one, else RING, else the only
    cell array (pyAT: `use`, else the only one, else RING)."""
    names = [name for name in variables if not name.startswith("__")]
    if use is None:
        cells = [name for name in names if _is_cell_array(variables[name])]
        if len(names) == 1:
            use = names[0]
        elif "RING" in names or len(cells) != 1:
            use = "RING"
        else:
            use = cells[0]
    if use not in names:
        raise ValueError(
            f"{path}: no variable {use!r} (the file holds {names or 'no variables'}); give "
            "the one holding the ring's cell array with use=NAME"
        )
    return use


def _is_cell_array(value: Any) -> bool:
    return (
        isinstance(value, np.ndarray)
        and not isinstance(value, _UNREADABLE)
        and value.dtype == object
    )


def _shown(value: Any) -> str:
    if isinstance(value, _UNREADABLE):
        return f"a MATLAB {type(value).__name__[6:].lower()} object"
    if isinstance(value, np.ndarray) and value.dtype.names is not None:
        return "a struct array of shape " + "x".join(map(str, value.shape))
    if isinstance(value, np.ndarray) and value.ndim != 2:
        return "an array of shape " + "x".join(map(str, value.shape))
    return _describe(value)


def _value(name: str, value: Any, context: _Context) -> Any:
    """A loadmat value as the ``.m`` reader's parser gives it: str, Python scalars, 2-D
    float arrays, dicts for structs, lists for cell arrays and struct arrays."""
    if isinstance(value, _UNREADABLE) or not isinstance(value, np.ndarray):
        raise context.error(f"field {name!r}: {_shown(value)} is not supported")
    if value.dtype.kind == "U":  # one string per row of a char matrix
        strings = [str(item) for item in value.ravel()]
        return strings[0] if len(strings) == 1 else strings or ""
    if value.dtype.names is not None:  # struct array
        records = [
            {key: _value(f"{name}.{key}", record[key], context) for key in value.dtype.names}
            for record in value.ravel(order="F")
        ]
        return records[0] if len(records) == 1 else records
    if value.dtype == object:  # cell array
        return [_value(name, item, context) for item in value.ravel(order="F")]
    if value.dtype.kind not in "biuf":
        raise context.error(f"field {name!r}: {value.dtype} values are not supported")
    if value.size == 1:
        return value.item()
    return value.astype(float)


def _number(fields: dict[str, Any], name: str) -> float:
    value = fields.get(name, 0.0)
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    return float(value) if isinstance(value, int | float) else math.nan


def _guessed_class(fields: dict[str, Any], context: _Context) -> str:
    """pyAT's guess for an element without a Class: its name, pass method, then fields."""
    by_name = _CLASS_NAMES.get(context.famname.lower())
    if by_name is not None:
        return by_name
    if fields["PassMethod"] in _PASS_CLASSES:
        return _PASS_CLASSES[fields["PassMethod"]]
    for names, cls in _CONTENT_CLASSES:
        if any(name in fields for name in names):
            return cls
    if "PolynomA" in fields or "PolynomB" in fields:
        polynom_b = np.ravel(fields.get("PolynomB", []))
        nonzero = np.flatnonzero(polynom_b) if polynom_b.dtype.kind in "biuf" else []
        if len(nonzero) and int(nonzero[0]) in _ORDER_CLASSES:
            return _ORDER_CLASSES[int(nonzero[0])]
        thick = fields["PassMethod"].startswith("StrMPoleSymplectic4")
        return "Multipole" if thick or _number(fields, "Length") > 0 else "ThinMultipole"
    if "KickAngle" in fields:
        return "Corrector"
    if _number(fields, "Length") > 0:
        return "Drift"
    if "GCR" in fields:
        return "Monitor"
    if fields["PassMethod"] == "IdentityPass":
        return "Marker"
    raise context.error(
        f"no Class field, and neither its name, its pass method {fields['PassMethod']!r} nor "
        f"its fields say which element it is; add a Class "
        f"({', '.join(sorted(set(_AT_CLASSES) - {'Bend', 'Matrix66'}))})"
    )


def _element_class(fields: dict[str, Any], context: _Context) -> str:
    given = fields.pop("Class", "")
    if not isinstance(given, str):
        raise context.error(f"Class must be a string; got {_shown(given)}")
    if not given:
        return _guessed_class(fields, context)
    if given.lower() not in _CLASS_NAMES:
        allowed = ", ".join(sorted({*_AT_CLASSES, "RingParam"}))
        raise context.error(f"Class {given!r} is not supported; allowed: {allowed}")
    return _CLASS_NAMES[given.lower()]


def _read_element(cell: Any, where: str, path: Path, out: _Collected, notes: list[str]) -> None:
    context = _Context(str(path), where, notes=notes)
    if not (
        isinstance(cell, np.ndarray)
        and not isinstance(cell, _UNREADABLE)
        and cell.dtype.names is not None
        and cell.size == 1
    ):
        raise ValueError(f"{path}, {where}: expected an element struct; got {_shown(cell)}")
    record = cell.reshape(-1)[0]
    fields = {name: _value(name, record[name], context) for name in cell.dtype.names}
    for name in ("FamName", "PassMethod"):
        if not isinstance(fields.get(name), str):
            got = _shown(fields[name]) if name in fields else "no such field"
            raise context.error(f"{name} must be a string; got {got}")
        if name == "FamName":
            context.famname = fields["FamName"]
    cls = _element_class(fields, context)
    if cls == "RingParam":
        if "Energy" not in fields:
            raise context.error("a RingParam element needs Energy (eV, or NaN)")
        out.ringparams.append((fields, context))
    else:
        _add_element(cls, fields, context, out)


def read_mat_file(
    path: str | Path, *, use: str | None = None, energy: float | None = None
) -> RingDescription:
    """Read an AT lattice saved in a MATLAB ``.mat`` file (v4 to v7, not v7.3).

    Args:
        path: the ``.mat`` file.
        use: the variable holding the ring's cell array (pyAT's ``use``); default: the
            file's only variable, else ``RING``, else its only cell array.
        energy: reference energy, eV, overriding the file's; needed when no RingParam and
            no element carries an ``Energy``.

    Returns:
        The :class:`RingDescription`: the elements (RingParam removed) with pyAT's fields
        and values; the energy from `energy`, else the RingParam, else the RF cavities'
        ``Energy`` (else other elements' ``Energy``); the periodicity from the RingParam,
        else the number of cells the bending angles make a turn of; the particle, name and
        other attributes from the RingParam (name default: the file's stem).

    Raises:
        ValueError: naming the file (and the element, as ``RING{5}``, 1-based): not a .mat
            file, a v7.3 (HDF5) file, no such variable, a variable that is not a cell array
            of structs, an element without FamName or PassMethod, an unsupported class, a
            field of the wrong type, shape or a non-finite value, or no energy anywhere.

    Example:
        >>> ring = read_mat_file("hmba.mat")  # doctest: +SKIP
        >>> ring.periodicity, ring.elements[2]["Class"]  # doctest: +SKIP
        (32, 'Quadrupole')
    """
    path = Path(path)
    variables = _load(path)
    key = _variable(variables, use, path)
    cells = variables[key]
    if not _is_cell_array(cells):
        raise ValueError(
            f"{path}: variable {key!r} is not a cell array of element structs; got {_shown(cells)}"
        )
    if cells.size == 0:
        raise ValueError(f"{path}: the cell array {key!r} is empty")
    out = _Collected()
    notes: list[str] = []
    for index, cell in enumerate(cells.ravel(order="F")):
        _read_element(cell, f"{key}{{{index + 1}}}", path, out, notes)
    if notes:
        shown = "; ".join(notes[:3]) + ("; ..." if len(notes) > 3 else "")
        warnings.warn(
            f"{path}: {len(notes)} fields that AT's passes ignore (a K or H that contradicts "
            f"PolynomB is dropped and set from PolynomB, as pyAT does): {shown}",
            stacklevel=2,
        )
    return _ring_description(
        out,
        path,
        path.stem,
        energy,
        f"no RingParam element and no element with an Energy field in {key!r}; call "
        "read_mat_file(path, energy=ENERGY_eV)",
    )
