"""Cheetah's lattice JSON files, read and written without PyTorch or Cheetah.

Cheetah saves a segment with ``save_cheetah_model`` and reads it with
``load_cheetah_model``; the file is

.. code-block:: json

    {"version": "cheetah-0.8", "title": "...", "info": "...", "root": "ares",
     "elements": {"AREAMQZM1": ["Quadrupole", {"length": 0.122, "k1": 4.0, ...}], ...},
     "lattices": {"ares": ["AREAMQZM1", "Drift_AREAMQZM1", ...]}}

where a lattice lists element and lattice names (nested lattices are flattened here) and
each element's parameters are the keyword arguments of its Cheetah class (its
``defining_features``). :func:`element_from_features` turns one class name and parameter
dict into a diffdesign element; the same table converts live Cheetah objects
(:func:`diffdesign.beamline.convert.from_cheetah`), so a file and the segment it came from
convert alike.

Every parameter is honoured or refused: a value this package cannot represent
(``fringe_at`` other than ``"both"``, a different exit gap, an unknown parameter, shape or
class) is a ``ValueError`` naming the element, the parameter and its value.
A ``Cavity`` becomes a :class:`~diffdesign.beamline.Cavity` or, for
``cavity_type="traveling_wave"``, a :class:`~diffdesign.beamline.TravelingWaveCavity`
(with zero voltage either is a drift, and can be powered later with ``with_settings``);
an ``Aperture`` an :class:`~diffdesign.beamline.Aperture` or, for ``shape="elliptical"``, an
:class:`~diffdesign.beamline.EllipticalAperture` with Cheetah's hard edge (an inactive one is
a marker; a smooth edge or a misalignment has no counterpart in the file and is refused when
writing). ``tracking_method`` is kept as
:func:`~diffdesign.beamline.convert.from_cheetah` keeps it (``Segment.second_order``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diffdesign.beamline.elements import (
    BPM,
    Aperture,
    Cavity,
    CombinedCorrector,
    CustomTransferMap,
    Dipole,
    Drift,
    DriftKickDrift,
    Element,
    EllipticalAperture,
    HorizontalCorrector,
    Marker,
    Quadrupole,
    Screen,
    Sextupole,
    Solenoid,
    SpaceChargeKick,
    TransverseDeflectingCavity,
    TravelingWaveCavity,
    Undulator,
    VerticalCorrector,
    superimpose,
)
from diffdesign.beamline.segment import Segment

#: Cheetah tracking methods a converted segment cannot keep (for the classes below).
REFUSED_METHODS = ("drift_kick_drift",)
#: Cheetah classes whose drift-kick-drift tracking is kept: the deflecting cavity (its one
#: model, which our class tracks as Cheetah) and drifts, quadrupoles and bends
#: (DriftKickDrift).
DRIFT_KICK_DRIFT_NATIVE = ("TransverseDeflectingCavity", "Drift", "Quadrupole", "Dipole", "RBend")
#: Versions of Cheetah's format this reader knows (the layout is the same).
VERSIONS = ("cheetah-0.7", "cheetah-0.8")


class _Features:
    """One element's parameters: taken one by one, what is left over is refused."""

    def __init__(self, kind: str, features: Mapping[str, Any], name: str):
        self.kind, self.name = kind, name
        self.features = dict(features)
        self.left = dict(features)
        self.left.pop("metadata", None)  # not used by the simulation (Cheetah's own note)
        self.left.pop("name", None)

    def where(self) -> str:
        return f"element '{self.name}' ({self.kind})"

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.where()}: {message}")

    def take(self, key: str, default: Any = 0.0) -> Any:
        return self.left.pop(key, default)

    def array(self, key: str, default: Any = 0.0) -> np.ndarray:
        value = self.take(key, default)
        try:
            return np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise self.error(
                f"{key} must be a number or a list of numbers; got {value!r}"
            ) from None

    def tilt(self) -> np.ndarray | None:
        """Cheetah always stores a tilt; an exactly zero one is an unrolled magnet."""
        tilt = self.array("tilt")
        return None if np.all(tilt == 0.0) else tilt

    def require(self, key: str, allowed: Callable[[Any], bool], expected: str) -> None:
        """Refuse a parameter whose value this package cannot represent."""
        if key in self.left and not allowed(self.left[key]):
            raise self.error(f"{key} = {self.left[key]!r} cannot be represented; {expected}")
        self.left.pop(key, None)

    def done(self, element: Element) -> Element:
        if self.left:
            raise self.error(f"unknown parameters {sorted(self.left)}")
        return element


def _dipole(f: _Features, e1: np.ndarray, e2: np.ndarray) -> Dipole:
    gap = f.array("gap")
    f.require("gap_exit", lambda v: v is None or np.all(np.asarray(v, float) == gap),
              "an exit gap different from the entrance gap is not supported")  # fmt: skip
    f.require("fringe_at", lambda v: v == "both", "only fringe fields at both ends are")
    f.require("fringe_type", lambda v: v == "linear_edge", "only 'linear_edge' is supported")
    exit_integral = f.take("fringe_integral_exit", None)
    return Dipole(
        f.array("length"), f.array("angle"), f.array("k1"), e1, e2, f.tilt(), gap,
        f.array("fringe_integral"),
        None if exit_integral is None else np.asarray(exit_integral, dtype=float), f.name,
    )  # fmt: skip


def _rbend(f: _Features) -> Dipole:
    # an RBend's pole faces are measured from the rectangle: half the angle added (Cheetah)
    half = np.asarray(f.left.get("angle", 0.0), dtype=float) / 2.0
    return _dipole(f, f.array("rbend_e1") + half, f.array("rbend_e2") + half)


def _quadrupole(f: _Features) -> Quadrupole:
    f.take("num_steps", None)  # slices of drift-kick-drift tracking, not of a first-order map
    return Quadrupole(
        f.array("length"), f.array("k1"), f.array("misalignment", (0.0, 0.0)), f.tilt(), f.name
    )


#: Cheetah's ``cavity_type`` -> our class.
_CAVITY_TYPES = {cls.cavity_type: cls for cls in (Cavity, TravelingWaveCavity)}


def _cavity(f: _Features) -> Element:
    f.require("cavity_type", lambda v: v in _CAVITY_TYPES, f"one of {sorted(_CAVITY_TYPES)}")
    cls = _CAVITY_TYPES[f.features.get("cavity_type", "standing_wave")]
    return cls(
        f.array("length"), f.array("voltage"), f.array("phase"), f.array("frequency"),
        name=f.name,
    )  # fmt: skip


def _deflecting_cavity(f: _Features) -> TransverseDeflectingCavity:
    f.take("num_steps", None)  # Cheetah 0.8.4 stores it and kicks once
    return TransverseDeflectingCavity(
        f.array("length"), f.array("voltage"), f.array("phase"), f.array("frequency"),
        f.array("misalignment", (0.0, 0.0)), f.array("tilt"), f.name,
    )  # fmt: skip


#: Cheetah's aperture ``shape`` -> our class.
_APERTURE_SHAPES = {cls.shape: cls for cls in (Aperture, EllipticalAperture)}


def _aperture(f: _Features) -> Element:
    f.require("shape", lambda v: v in _APERTURE_SHAPES, f"one of {sorted(_APERTURE_SHAPES)}")
    cls = _APERTURE_SHAPES[f.features.get("shape", "rectangular")]
    return cls(
        f.array("x_max", math.inf), f.array("y_max", math.inf),
        is_active=bool(f.take("is_active", True)), name=f.name,
    )  # fmt: skip


def _screen(f: _Features) -> Screen:
    # how Cheetah renders its images; ours are differentiable by construction (Screen)
    f.take("method", None)
    f.take("kde_bandwidth", None)
    return Screen(
        tuple(int(r) for r in f.take("resolution", (1024, 1024))),
        f.array("pixel_size", (1e-3, 1e-3)), int(f.take("binning", 1)),
        f.array("misalignment", (0.0, 0.0)), bool(f.take("is_active", False)), f.name,
    )  # fmt: skip


def _missing(f: _Features, key: str):
    raise f.error(f"{key} is required (Cheetah's constructor has no default)")


_BUILDERS: dict[str, Callable[[_Features], Element]] = {
    "Drift": lambda f: Drift(f.array("length"), f.name),
    "Quadrupole": _quadrupole,
    "Sextupole": lambda f: Sextupole(
        f.array("length"), f.array("k2"), f.array("misalignment", (0.0, 0.0)), f.tilt(), f.name
    ),
    "Dipole": lambda f: _dipole(f, f.array("dipole_e1"), f.array("dipole_e2")),
    "RBend": _rbend,
    "HorizontalCorrector": lambda f: HorizontalCorrector(
        f.array("length"), f.array("angle"), f.name
    ),
    "VerticalCorrector": lambda f: VerticalCorrector(f.array("length"), f.array("angle"), f.name),
    "CombinedCorrector": lambda f: CombinedCorrector(
        f.array("length"), f.array("horizontal_angle"), f.array("vertical_angle"), f.name
    ),
    "Solenoid": lambda f: Solenoid(
        f.array("length"), f.array("k"), f.array("misalignment", (0.0, 0.0)), f.name
    ),
    "CustomTransferMap": lambda f: CustomTransferMap(
        f.array("predefined_transfer_map"), f.array("length"), f.name
    ),
    "Marker": lambda f: Marker(f.name),
    "BPM": lambda f: BPM(
        f.array("misalignment", (0.0, 0.0)), bool(f.take("is_active", True)), f.name
    ),
    "Screen": _screen,
    "Cavity": _cavity,
    "TransverseDeflectingCavity": lambda f: _deflecting_cavity(f),
    "Undulator": lambda f: Undulator(
        f.array("length"), f.array("period", 1.0), f.array("kx"), f.array("ky"), name=f.name
    ),
    "Aperture": _aperture,
    "SpaceChargeKick": lambda f: SpaceChargeKick(
        f.array("effect_length") if "effect_length" in f.left else _missing(f, "effect_length"),
        tuple(f.take("grid_shape", (32, 32, 32))),
        f.array("grid_extent_x", 3.0),
        f.array("grid_extent_y", 3.0),
        f.array("grid_extent_tau", 3.0),
        f.name,
    ),
}


def element_from_features(kind: str, features: Mapping[str, Any], name: str) -> Element:
    """A diffdesign element from a Cheetah class name and its parameters (the keyword
    arguments of the Cheetah constructor, as in a lattice JSON file); ``tracking_method``
    is ignored here (see :func:`tracking_methods`).

    Raises:
        ValueError: an unknown class or parameter, or a value that cannot be represented,
            naming the element, the parameter and the value.
    """
    if kind not in _BUILDERS:
        raise ValueError(
            f"element '{name}' of Cheetah type {kind} has no diffdesign counterpart yet; "
            f"supported: {', '.join(sorted(_BUILDERS))} (and nested Segments)"
        )
    f = _Features(kind, features, name)
    f.take("tracking_method", None)
    return f.done(_BUILDERS[kind](f))


def _steps(value: Any, kind: str, name: str) -> int:
    """Cheetah's num_steps, refused unless an integer >= 1 (not truncated)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(
            f"element '{name}' ({kind}): num_steps must be an integer >= 1; got {value!r}"
        )
    return int(value)


def _placed(kind: str, name: str, features: Mapping[str, Any]) -> list[tuple[Element, str, str]]:
    """The elements one entry places, each with its tracking method and Cheetah class: one,
    or for a ``Superimposed`` its base's halves around the superimposed element, whose
    entries are ``(class, name, parameters)`` triples."""
    if kind != "Superimposed":
        method = str(features.get("tracking_method", "linear"))
        element = element_from_features(kind, features, name)
        if method == "drift_kick_drift" and isinstance(element, Drift | Quadrupole | Dipole):
            element = DriftKickDrift(element, _steps(features.get("num_steps", 1), kind, name))
        return [(element, method, kind)]
    f = _Features(kind, features, name)
    parts = []
    for key in ("base_element", "superimposed_element"):
        entry = f.take(key, None)
        if not (isinstance(entry, tuple) and len(entry) == 3 and isinstance(entry[2], Mapping)):
            raise f.error(f"{key} must name an element of the file; got {entry!r}")
        placed = _placed(*entry)
        if len(placed) != 1:
            raise f.error(f"{key} must be one element; got a {entry[0]}")
        parts.append(placed[0])
    if f.left:
        raise f.error(f"unknown parameters {sorted(f.left)}")
    (base, base_method, base_kind), (on_top, method, top_kind) = parts
    try:
        first, middle, second = superimpose(base, on_top)
    except (TypeError, ValueError) as error:
        raise f.error(str(error)) from None
    return [(first, base_method, base_kind), (middle, method, top_kind),
            (second, base_method, base_kind)]  # fmt: skip


def segment_from_features(
    items: list[tuple[str, str, Mapping[str, Any]]], name: str = ""
) -> Segment:
    """A segment from ``(class, name, parameters)`` triples in beam order, keeping each
    element's ``tracking_method`` (``"second_order"`` marks it in ``Segment.second_order``).
    A ``Superimposed`` entry's ``base_element`` and ``superimposed_element`` are triples too;
    it places the base's two halves (each with the base's name) around the other element,
    as Cheetah's ``flattened()`` does.

    Raises:
        ValueError: an element that cannot be converted, or elements tracked with a method
            that cannot be kept (drift-kick-drift), named.
    """
    placed = [part for kind, n, features in items for part in _placed(kind, n, features)]
    refused = [
        element.name
        for element, method, kind in placed
        if method in REFUSED_METHODS and kind not in DRIFT_KICK_DRIFT_NATIVE
    ]
    if refused:
        raise ValueError(
            f"elements {refused} use tracking methods "
            f"{sorted({m for _, m, _ in placed} & set(REFUSED_METHODS))}, which diffdesign "
            "cannot keep for them (drift-kick-drift tracking is built for drifts, "
            "quadrupoles, bends and deflecting cavities); set their "
            "tracking_method to 'linear' or 'second_order' to convert them"
        )
    marked = [i for i, (_, method, _) in enumerate(placed) if method == "second_order"]
    return Segment([element for element, _, _ in placed], name, second_order=marked)


def read_lattice_json(path: str | os.PathLike) -> Segment:
    """Read a Cheetah lattice JSON file (``save_cheetah_model``) as a :class:`Segment`.

    Raises:
        ValueError: ``"<file>: ..."`` for a file that is not UTF-8 JSON, a missing
            ``root``/``elements``/``lattices`` entry, an unknown version, a lattice naming
            an undefined element, a lattice that contains itself, or an element that cannot
            be converted (see :func:`element_from_features`).
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path.name}: no such file ({str(path)!r})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path.name}: not a UTF-8 JSON file ({error})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path.name}: a lattice JSON file holds an object; got a list or value")
    missing = [k for k in ("root", "elements", "lattices") if k not in document]
    if missing:
        raise ValueError(f"{path.name}: missing entries {missing} (Cheetah's lattice JSON)")
    version = document.get("version")
    if version not in VERSIONS:
        raise ValueError(f"{path.name}: version {version!r} is not one of {list(VERSIONS)}")
    elements, lattices = document["elements"], document["lattices"]
    if not isinstance(elements, dict) or not isinstance(lattices, dict):
        raise ValueError(f"{path.name}: 'elements' and 'lattices' must be objects")

    def flatten(name: str, stack: tuple[str, ...]) -> list[tuple[str, str, dict]]:
        if name in stack:
            raise ValueError(f"{path.name}: lattice {name!r} contains itself ({' > '.join(stack)})")
        items = []
        for child in lattices[name]:
            if child in lattices:
                items.extend(flatten(child, (*stack, name)))
            elif child in elements:
                entry = elements[child]
                if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
                    raise ValueError(
                        f"{path.name}: element {child!r} must be [CLASS, {{parameters}}]; "
                        f"got {entry!r}"
                    )
                items.append((str(entry[0]), child, _resolved(entry[1], child)))
            else:
                raise ValueError(f"{path.name}: lattice {name!r} names {child!r}, which is "
                                 "neither an element nor a lattice")  # fmt: skip
        return items

    def _resolved(features: dict, owner: str, within: tuple[str, ...] = ()) -> dict:
        """A Superimposed's element names replaced by their (class, name, parameters)."""
        out = dict(features)
        for key in ("base_element", "superimposed_element"):
            value = out.get(key)
            if isinstance(value, str) and value in (*within, owner):
                raise ValueError(f"{path.name}: element {owner!r} contains itself ({key})")
            if isinstance(value, str) and value in elements:
                entry = elements[value]
                if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
                    raise ValueError(f"{path.name}: element {value!r} (the {key} of {owner!r}) "
                                     f"must be [CLASS, {{parameters}}]; got {entry!r}")  # fmt: skip
                out[key] = (str(entry[0]), value, _resolved(entry[1], value, (*within, owner)))
        return out

    root = document["root"]
    if root not in lattices:
        raise ValueError(f"{path.name}: root {root!r} is not one of the lattices {list(lattices)}")
    try:
        return segment_from_features(flatten(root, ()), root)
    except ValueError as error:
        if str(error).startswith(f"{path.name}:"):
            raise
        raise ValueError(f"{path.name}: {error}") from None


def _value(array) -> Any:
    return np.asarray(array, dtype=float).tolist()


def _magnet_tilt(element) -> Any:
    return 0.0 if element.tilt is None else _value(element.tilt)


def _dipole_features(e: Dipole) -> dict[str, Any]:
    exit_integral = e.fringe_integral if e.fringe_integral_exit is None else e.fringe_integral_exit
    return {
        "length": _value(e.length), "angle": _value(e.angle), "k1": _value(e.k1),
        "dipole_e1": _value(e.e1), "dipole_e2": _value(e.e2), "tilt": _magnet_tilt(e),
        "gap": _value(e.gap), "fringe_integral": _value(e.fringe_integral),
        "fringe_integral_exit": _value(exit_integral),
    }  # fmt: skip


def _cavity_features(e: Cavity | TravelingWaveCavity) -> dict[str, Any]:
    _refuse_misalignment(e, "Cavity")
    return {
        "length": _value(e.length), "voltage": _value(e.voltage), "phase": _value(e.phase),
        "frequency": _value(e.frequency), "cavity_type": e.cavity_type,
    }  # fmt: skip


def _aperture_features(e: Aperture | EllipticalAperture) -> dict[str, Any]:
    if e.edge_width is not None:
        raise ValueError(
            f"element '{e.name}' ({type(e).__name__}): edge_width = {_value(e.edge_width)} m "
            "cannot be written: Cheetah's Aperture has a hard edge only (edge_width=None)"
        )
    _refuse_misalignment(e, "Aperture")
    return {
        "x_max": _value(e.x_max), "y_max": _value(e.y_max), "shape": e.shape,
        "is_active": bool(e.is_active),
    }  # fmt: skip


def _undulator_features(e: Undulator) -> dict[str, Any]:
    _refuse_misalignment(e, "Undulator")
    return {"length": _value(e.length), "period": _value(e.period), "kx": _value(e.kx),
            "ky": _value(e.ky)}  # fmt: skip


def _refuse_misalignment(e: Element, cheetah_class: str) -> None:
    if np.any(np.asarray(e.misalignment) != 0.0):
        raise ValueError(
            f"element '{e.name}' ({type(e).__name__}): misalignment = "
            f"{_value(e.misalignment)} m cannot be written: Cheetah's {cheetah_class} has "
            "no misalignment"
        )


#: Our element classes -> (Cheetah class, parameters); ``RBend`` is written as a Dipole.
_FEATURES: dict[type, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    Drift: ("Drift", lambda e: {"length": _value(e.length)}),
    Quadrupole: ("Quadrupole", lambda e: {
        "length": _value(e.length), "k1": _value(e.k1), "misalignment": _value(e.misalignment),
        "tilt": _magnet_tilt(e)}),
    Sextupole: ("Sextupole", lambda e: {
        "length": _value(e.length), "k2": _value(e.k2), "misalignment": _value(e.misalignment),
        "tilt": _magnet_tilt(e)}),
    Dipole: ("Dipole", _dipole_features),
    HorizontalCorrector: ("HorizontalCorrector",
                          lambda e: {"length": _value(e.length), "angle": _value(e.angle)}),
    VerticalCorrector: ("VerticalCorrector",
                        lambda e: {"length": _value(e.length), "angle": _value(e.angle)}),
    CombinedCorrector: ("CombinedCorrector", lambda e: {
        "length": _value(e.length), "horizontal_angle": _value(e.horizontal_angle),
        "vertical_angle": _value(e.vertical_angle)}),
    Solenoid: ("Solenoid", lambda e: {
        "length": _value(e.length), "k": _value(e.k), "misalignment": _value(e.misalignment)}),
    CustomTransferMap: ("CustomTransferMap", lambda e: {
        "length": _value(e.length), "predefined_transfer_map": _value(e.transfer_map_array)}),
    Cavity: ("Cavity", lambda e: _cavity_features(e)),
    TravelingWaveCavity: ("Cavity", lambda e: _cavity_features(e)),
    Aperture: ("Aperture", lambda e: _aperture_features(e)),
    EllipticalAperture: ("Aperture", lambda e: _aperture_features(e)),
    Undulator: ("Undulator", lambda e: _undulator_features(e)),
    TransverseDeflectingCavity: ("TransverseDeflectingCavity", lambda e: {
        "length": _value(e.length), "voltage": _value(e.voltage), "phase": _value(e.phase),
        "frequency": _value(e.frequency), "misalignment": _value(e.misalignment),
        "tilt": _value(e.tilt)}),
    SpaceChargeKick: ("SpaceChargeKick", lambda e: {
        "effect_length": _value(e.effect_length), "grid_shape": list(e.grid_shape),
        "grid_extent_x": _value(e.grid_extent_x), "grid_extent_y": _value(e.grid_extent_y),
        "grid_extent_tau": _value(e.grid_extent_tau)}),
    Marker: ("Marker", lambda e: {}),
    BPM: ("BPM", lambda e: {
        "misalignment": _value(e.misalignment), "is_active": bool(e.is_active)}),
    Screen: ("Screen", lambda e: {
        "resolution": list(e.resolution), "pixel_size": _value(e.pixel_size),
        "binning": e.binning, "misalignment": _value(e.misalignment),
        "is_active": bool(e.is_active)}),
}  # fmt: skip


def _drift_kick_drift_features(e: DriftKickDrift) -> dict[str, Any]:
    _, features = features_of(e.element)
    steps = {"num_steps": e.num_steps} if isinstance(e.element, Quadrupole) else {}
    return features | steps | {"tracking_method": "drift_kick_drift"}


_FEATURES[DriftKickDrift] = ("", _drift_kick_drift_features)  # the class: its element's


#: Constructor parameters of Cheetah classes that Cheetah keeps outside their
#: ``defining_features`` (so its own files drop them): read from live objects as well.
HIDDEN_FEATURES: dict[str, tuple[str, ...]] = {"BPM": ("misalignment",)}
#: Parameters that are vectors in one element (others with dimensions are batched settings).
_VECTOR = (
    "misalignment", "pixel_size", "resolution", "predefined_transfer_map", "grid_shape",
)  # fmt: skip
#: Cheetah classes whose constructor takes ``tracking_method``.
_TRACKED = ("Drift", "Quadrupole", "Sextupole", "Dipole")


def features_of(element: Element) -> tuple[str, dict[str, Any]]:
    """The Cheetah class name and constructor parameters (plain numbers and lists) of one
    of our elements: what :func:`write_lattice_json` writes and ``to_cheetah`` builds.

    Raises:
        TypeError: an object that is not one of the element classes above.
    """
    for kind in type(element).__mro__:
        if kind in _FEATURES:
            cheetah_class, features = _FEATURES[kind]
            if isinstance(element, DriftKickDrift):
                cheetah_class = features_of(element.element)[0]
            return cheetah_class, features(element)
    raise TypeError(f"no Cheetah counterpart for {type(element).__name__}")


def write_lattice_json(
    segment: Segment, path: str | os.PathLike, *, title: str = "", info: str = ""
) -> None:
    """Write ``segment`` as a Cheetah lattice JSON file (``cheetah-0.8``), readable by
    :func:`read_lattice_json` and by Cheetah's ``load_cheetah_model``. Repeated names are
    written once per distinct element (``NAME``, then ``NAME#1``, ...) so that no placement
    changes; each element's ``tracking_method`` follows ``segment.second_order``.

    Raises:
        ValueError: an element with batched (vector) settings, which a file cannot hold.
    """
    elements: dict[str, list] = {}
    cell: list[str] = []
    for position, element in enumerate(segment.elements):
        kind, features = features_of(element)
        batched = [k for k, v in features.items() if k not in _VECTOR and np.ndim(v) > 0]
        if batched:
            raise ValueError(
                f"element '{element.name}' has batched settings {batched}: write one setting"
            )
        if kind in _TRACKED and "tracking_method" not in features:
            marked = position in segment.second_order
            features["tracking_method"] = "second_order" if marked else "linear"
        entry = [kind, features]
        key = element.name or f"{kind}_{position}"
        suffix = 0
        while key in elements and elements[key] != entry:
            suffix += 1
            key = f"{element.name or kind}#{suffix}"
        elements[key] = entry
        cell.append(key)
    root = segment.name or "segment"
    document = {"version": VERSIONS[-1], "title": title or root, "info": info, "root": root,
                "elements": elements, "lattices": {root: cell}}  # fmt: skip
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=1))
    os.replace(tmp, path)
