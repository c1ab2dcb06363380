"""Beamline segments from lattice files of every format: one reader per format for both
domains (this module bridges them; neither domain package imports the other).

:func:`load_segment` reads any lattice file as a beamline
:class:`~diffdesign.beamline.Segment`: Cheetah's lattice JSON through
:func:`diffdesign.beamline.lattice_json.read_lattice_json`, and AT ``.m``/``.mat``,
Elegant ``.lte`` and diffdesign's ring JSON through the ring readers, then
:func:`segment_from_description`, which turns the elements of a
:class:`~diffdesign.ring.description.RingDescription` (from any ring reader: AT ``.m``,
``.mat``, JSON, Elegant ``.lte``) into a :class:`~diffdesign.beamline.Segment`, so one
lattice file gives both a ring :class:`~diffdesign.ring.Lattice` and a beamline.

Coordinates: AT tracks (x, px, y, py, delta, ct), Cheetah and this package
(x, px, y, py, tau, p) with p the energy deviation over p0 c; the transverse 4x4 blocks
of the maps are the same (px, py are momenta over p0 in both), the longitudinal parts and
the dispersive terms differ by these definitions. The maps here are closed-form (the
converged limit of AT's integrator, whose NumIntSteps are dropped).

==================  ==================================================================
AT ``Class``        beamline element
==================  ==================================================================
Drift               :class:`Drift`
Quadrupole          :class:`Quadrupole` (k1 = PolynomB[1])
Sextupole           :class:`Sextupole` (k2 = 2 PolynomB[2], MAD's K2)
Octupole            :class:`Drift`: an octupole acts at third order only
Multipole           Quadrupole, Sextupole or Octupole-as-Drift by its one nonzero order
                    (a Drift if all are zero)
ThinMultipole       :class:`Marker` if all coefficients are zero; else a
                    :class:`CustomTransferMap` of its dipole and quadrupole terms (normal
                    and skew), exact to first order; sextupole and higher terms refused
Dipole              :class:`Dipole` (angle, k1 = PolynomB[1], e1/e2 = Entrance/ExitAngle,
                    gap = FullGap, fringe integrals FringeInt1/2)
Corrector           :class:`HorizontalCorrector` / :class:`VerticalCorrector` when the
                    field ``origin`` is Elegant's HKICK / VKICK, else
                    :class:`CombinedCorrector`; KickAngle as the angles
Monitor             :class:`BPM`
Marker, Aperture    :class:`Marker` (apertures are not modelled)
RFCavity            :class:`Drift` (or :class:`Marker` if L = 0) when it is off (pass
                    method IdentityPass or DriftPass, or Voltage 0); refused otherwise
==================  ==================================================================

T1/T2 (pure transverse translations, T2 = -T1) give a Quadrupole's or Sextupole's
misalignment, and R1/R2 (pure rolls, R2 = R1 transposed) its tilt or a Dipole's tilt;
other misalignments, PolynomA/B terms the element cannot hold (PolynomB[0] of a
dipole, a sextupole term in a quadrupole, ...), M66 elements, fringe methods other than
AT's default and quadrupole fringes are refused by element name. A thick corrector kicks
at its exit here (Cheetah), in AT along its length: the 4x4 maps agree, the exit offset
differs by L times half the kick.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from diffdesign.beamline.elements import (
    BPM,
    CombinedCorrector,
    CustomTransferMap,
    Dipole,
    Drift,
    Element,
    HorizontalCorrector,
    Marker,
    Quadrupole,
    Sextupole,
    VerticalCorrector,
)
from diffdesign.beamline.segment import Segment
from diffdesign.ring.description import RingDescription
from diffdesign.ring.json_format import validate_element

__all__ = ["segment_from_description"]

_OFF_CAVITY_PASSES = ("IdentityPass", "DriftPass")


class _Refused(ValueError):
    pass


def _coefficients(element: dict[str, Any]) -> tuple[list[float], list[float]]:
    """PolynomA, PolynomB up to MaxOrder (AT ignores the coefficients beyond it)."""
    size = element.get("MaxOrder", len(element.get("PolynomB", [])) - 1) + 1
    a = list(element.get("PolynomA", []))[:size]
    b = list(element.get("PolynomB", []))[:size]
    return a + [0.0] * (size - len(a)), b + [0.0] * (size - len(b))


def _only(element: dict[str, Any], allowed_b: tuple[int, ...]) -> None:
    """Refuse nonzero PolynomA and PolynomB terms outside `allowed_b`."""
    a, b = _coefficients(element)
    extra = [f"PolynomA[{i}]={v}" for i, v in enumerate(a) if v != 0.0]
    extra += [f"PolynomB[{i}]={v}" for i, v in enumerate(b) if v != 0.0 and i not in allowed_b]
    if extra:
        raise _Refused(
            f"{', '.join(extra)} cannot be represented by a beamline "
            f"{'Dipole' if element['Class'] == 'Dipole' else 'element'} of this class"
        )


def _frame(element: dict[str, Any], *, shift: bool, roll: bool) -> dict[str, Any]:
    """Misalignment and tilt from T1/T2/R1/R2 (refused where the element cannot hold them)."""
    out: dict[str, Any] = {}
    t1 = np.asarray(element.get("T1", np.zeros(6)), dtype=float)
    t2 = np.asarray(element.get("T2", np.zeros(6)), dtype=float)
    if np.any(t1) or np.any(t2):
        pure = not np.any(t1[[1, 3, 4, 5]]) and np.array_equal(t2, -t1)
        if not (shift and pure):
            raise _Refused(
                "T1/T2 " + ("are not a transverse displacement (T2 = -T1, no angles)" if shift
                            else "(a displacement) cannot be held by this element")
            )  # fmt: skip
        out["misalignment"] = (-t1[0], -t1[2])
    r1 = np.asarray(element.get("R1", np.eye(6)), dtype=float)
    r2 = np.asarray(element.get("R2", np.eye(6)), dtype=float)
    if not (np.array_equal(r1, np.eye(6)) and np.array_equal(r2, np.eye(6))):
        tilt = math.atan2(r1[0, 2], r1[0, 0])
        c, s = math.cos(tilt), math.sin(tilt)
        rotation = np.eye(6)
        rotation[:4, :4] = [[c, 0, s, 0], [0, c, 0, s], [-s, 0, c, 0], [0, -s, 0, c]]
        pure = np.allclose(r1, rotation, rtol=0, atol=1e-14) and np.allclose(
            r2, rotation.T, rtol=0, atol=1e-14
        )
        if not (roll and pure):
            raise _Refused(
                "R1/R2 " + ("are not a roll about the beam axis (R2 = R1 transposed)" if roll
                            else "(a roll) cannot be held by this element")
            )  # fmt: skip
        out["tilt"] = tilt
    return out


def _thin_multipole(element: dict[str, Any], name: str) -> Element:
    a, b = _coefficients(element)
    a, b = [*a, 0.0, 0.0], [*b, 0.0, 0.0]
    if not any(a) and not any(b):
        return Marker(name=name)
    higher = [f"{key}[{i}]={v}" for key, c in (("PolynomA", a), ("PolynomB", b))
              for i, v in enumerate(c) if i >= 2 and v != 0.0]  # fmt: skip
    if higher:
        raise _Refused(
            f"{', '.join(higher)}: a thin multipole's sextupole and higher terms are not "
            "modelled (only its dipole and quadrupole terms)"
        )
    # AT's thin kick: px -= Re(sum (b_n + i a_n)(x + i y)^n), py += Im(...), n = 0, 1.
    matrix = np.eye(7)
    matrix[1, 6], matrix[3, 6] = -b[0], a[0]
    matrix[1, 0], matrix[1, 2] = -b[1], a[1]
    matrix[3, 0], matrix[3, 2] = a[1], b[1]
    return CustomTransferMap(matrix, 0.0, name=name)


def _corrector(element: dict[str, Any], name: str) -> Element:
    length = element["Length"]
    kx, ky = element["KickAngle"]
    origin = element.get("origin")
    if origin == "HKICK" and ky == 0.0:
        return HorizontalCorrector(length, kx, name=name)
    if origin == "VKICK" and kx == 0.0:
        return VerticalCorrector(length, ky, name=name)
    return CombinedCorrector(length, kx, ky, name=name)


def _dipole(element: dict[str, Any], name: str) -> Element:
    _only(element, (1,))
    for key in ("FringeQuadEntrance", "FringeQuadExit"):
        if element.get(key, 0) != 0:
            raise _Refused(f"{key}={element[key]} (quadrupole fringe fields) is not modelled")
    gap = element.get("FullGap", 0.0)
    fint1, fint2 = element.get("FringeInt1", 0.0), element.get("FringeInt2", 0.0)
    if gap * (fint1 or fint2):
        for key in ("FringeBendEntrance", "FringeBendExit"):
            if element.get(key, 1) != 1:
                raise _Refused(f"{key}={element[key]}: only AT's default linear fringe (1)")
    _, b = _coefficients(element)
    return Dipole(
        element["Length"],
        element["BendingAngle"],
        b[1] if len(b) > 1 else 0.0,
        element.get("EntranceAngle", 0.0),
        element.get("ExitAngle", 0.0),
        gap=gap,
        fringe_integral=fint1,
        fringe_integral_exit=fint2,
        name=name,
        **_frame(element, shift=False, roll=True),
    )


def _multipole(element: dict[str, Any], name: str) -> Element:
    _, b = _coefficients(element)
    orders = [i for i, v in enumerate(b) if v != 0.0]
    if not orders:
        _only(element, ())
        return Drift(element["Length"], name=name)
    _only(element, (orders[0],))
    if orders[0] == 1:
        return Quadrupole(
            element["Length"], b[1], name=name, **_frame(element, shift=True, roll=True)
        )
    if orders[0] == 2:
        return Sextupole(
            element["Length"], 2.0 * b[2], name=name, **_frame(element, shift=True, roll=True)
        )
    if orders[0] == 3:
        return Drift(element["Length"], name=name)
    raise _Refused(f"PolynomB[{orders[0]}] (a thick dipole term) cannot be represented")


def _element(element: dict[str, Any], name: str) -> Element:
    cls = element["Class"]
    if cls == "Drift":
        _frame(element, shift=False, roll=False)
        return Drift(element["Length"], name=name)
    if cls == "Quadrupole":
        _only(element, (1,))
        _, b = _coefficients(element)
        return Quadrupole(
            element["Length"], b[1], name=name, **_frame(element, shift=True, roll=True)
        )
    if cls == "Sextupole":
        _only(element, (2,))
        _, b = _coefficients(element)
        return Sextupole(
            element["Length"], 2.0 * b[2], name=name, **_frame(element, shift=True, roll=True)
        )
    if cls in ("Octupole", "Multipole"):
        if cls == "Octupole":
            _only(element, (3,))
        return _multipole(element, name)
    if cls == "ThinMultipole":
        _frame(element, shift=False, roll=False)
        return _thin_multipole(element, name)
    if cls == "Dipole":
        return _dipole(element, name)
    if cls == "Corrector":
        _frame(element, shift=False, roll=False)
        return _corrector(element, name)
    if cls == "Monitor":
        _frame(element, shift=False, roll=False)
        return BPM(name=name)
    if cls in ("Marker", "Aperture"):
        _frame(element, shift=False, roll=False)
        return Marker(name=name)
    if cls == "RFCavity":
        if element["PassMethod"] not in _OFF_CAVITY_PASSES and element["Voltage"] != 0.0:
            raise _Refused(
                f"an RF cavity that is on ({element['PassMethod']}, Voltage "
                f"{element['Voltage']} V) is not modelled by the beamline"
            )
        length = element["Length"]
        return Drift(length, name=name) if length else Marker(name=name)
    raise _Refused(f"Class {cls!r} has no beamline counterpart")


def _position(which: str | int | None, names: list[str], default: int, what: str) -> int:
    if which is None:
        return default
    if isinstance(which, int | np.integer) and not isinstance(which, bool):
        if not -len(names) <= which < len(names):
            raise ValueError(f"{what}={which} is outside the {len(names)} elements")
        return int(which) % len(names)
    if isinstance(which, str):
        # Segment's name lookup (repeated names, 'NAME[k]'), on markers standing in.
        try:
            return Segment([Marker(name) for name in names]).index(which)
        except KeyError as error:
            raise ValueError(f"{what}: {error.args[0]}") from None
    raise TypeError(f"{what} must be an element name, a position or None; got {which!r}")


def segment_from_description(
    description: RingDescription,
    *,
    start: str | int | None = None,
    end: str | int | None = None,
) -> Segment:
    """The beamline of a ring description's elements (see the module docstring).

    Args:
        description: a :class:`~diffdesign.ring.description.RingDescription` from any
            reader (``read_at_file``, ``read_mat_file``, ``read_lattice_json``,
            ``read_elegant_file``, ``from_pyat``).
        start: the first element: a name (``"NAME[k]"`` for the k-th of a name placed
            several times), a position, or None for the first.
        end: the last element (included), likewise; None for the last.

    Returns:
        A :class:`~diffdesign.beamline.Segment` named after the lattice, with the
        elements' names (names may repeat). The energy is the caller's to give
        (``segment.transfer_map(description.energy)``).

    Raises:
        ValueError: naming the element (position and name): a field the beamline
            element cannot hold, a class without counterpart, an invalid element dict;
            or a ``start``/``end`` that is not in the lattice or comes after ``end``.
        TypeError: a description that is not a RingDescription.

    Example:
        >>> ring = read_elegant_file("comm-ring.lte", energy=3e9)  # doctest: +SKIP
        >>> segment = segment_from_description(ring, end=59)  # doctest: +SKIP
        >>> segment.transfer_map(ring.energy)[:4, :4]  # doctest: +SKIP
    """
    if not isinstance(description, RingDescription):
        raise TypeError(f"expected a RingDescription; got {type(description).__name__}")
    raw = description.elements
    names = [e.get("FamName", "") if isinstance(e, dict) else "" for e in raw]
    if not raw:
        raise ValueError(f"lattice {description.source or description.name!r} has no elements")
    first = _position(start, names, 0, "start")
    last = _position(end, names, len(raw) - 1, "end")
    if first > last:
        raise ValueError(f"start (element {first}) comes after end (element {last})")
    elements = []
    for index in range(first, last + 1):
        where = f" (element {index} of {description.source or description.name or 'the lattice'})"
        element = validate_element(raw[index], where)
        try:
            elements.append(_element(element, element["FamName"]))
        except ValueError as error:  # _Refused, or an element constructor's check
            raise ValueError(
                f"element {index} {element['FamName']!r} (Class {element['Class']}) of "
                f"{description.source or description.name or 'the lattice'}: {error}"
            ) from None
    return Segment(elements, description.name)


def load_segment(
    path: str | os.PathLike, *, energy: float | None = None, start: str | int | None = None,
    end: str | int | None = None,
) -> Segment:
    """A beamline :class:`Segment` from a lattice file of any format this package reads.

    Args:
        path: Cheetah lattice JSON (``.json`` whose ``version`` starts with ``cheetah``),
            diffdesign ring JSON, AT ``.m`` or ``.mat``, or Elegant ``.lte``.
        energy: beam energy (eV) of an Elegant file (its format does not hold it).
        start, end: the first and last element kept (names, ``"NAME[k]"`` or positions;
            AT-style files only, see :func:`segment_from_description`).

    Raises:
        ValueError: ``"<file>: ..."`` for a file that cannot be read or an element that
            cannot be converted (named).
    """
    import json
    from pathlib import Path

    from diffdesign.beamline.lattice_json import read_lattice_json
    from diffdesign.ring.catalogue import lattice_path, read_description

    path = lattice_path(path)
    if path.suffix == ".json":
        try:
            version = json.loads(path.read_text(encoding="utf-8")).get("version", "")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            version = ""  # the ring reader names what is wrong
        if str(version).startswith("cheetah"):
            if start is not None or end is not None:
                raise ValueError(f"{Path(path).name}: start/end apply to AT-style files only")
            return read_lattice_json(path)
    return segment_from_description(read_description(path, energy), start=start, end=end)
