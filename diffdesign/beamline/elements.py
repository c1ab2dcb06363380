"""Beamline elements as immutable PyTrees, with Cheetah's names, units and conventions.

Every numeric field is a float64 array and may carry leading batch axes (one value per
setting), so ``Quadrupole(length=0.122, k1=jnp.linspace(-30, 30, 1000))`` is a batch of
1,000 quadrupoles. Change a field with :meth:`Segment.with_settings` or ``eqx.tree_at``.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import (
    check_finite,
    check_positive,
    check_range,
    check_trailing_shape,
    float_array,
    is_concrete,
    known_zero,
    refuse_traced_or_known,
)
from diffdesign.beamline import (
    _affine,
    _aperture,
    _bmad,
    _cavity,
    _deflector,
    _maps,
    _poisson,
    _screen,
    _second_order,
)
from diffdesign.beamline._affine import Map
from diffdesign.beamline.beams import Beam, ParameterBeam, ParticleBeam
from diffdesign.beamline.species import ELECTRON, Species


def _scalar(value: ArrayLike, field: str, name: str) -> Array:
    value = float_array(value, field, f"element '{name}'")
    check_finite(value, field, f"element '{name}'")
    return value


def _non_negative(value: ArrayLike, field: str, name: str, unit: str = "") -> Array:
    value = float_array(value, field, f"element '{name}'")
    check_range(value, field, low=0.0, owner=f"element '{name}'", unit=unit)
    return value


def _pole_face(value: ArrayLike, field: str, name: str) -> Array:
    """A pole-face rotation in rad, inside (-pi/2, pi/2): at +-pi/2 the face is parallel to
    the beam and its edge focusing (tan e) infinite."""
    value = _scalar(value, field, name)
    if is_concrete(value) and np.any(np.abs(np.asarray(value)) >= np.pi / 2):
        bad = np.asarray(value)[np.abs(np.asarray(value)) >= np.pi / 2].ravel()[0]
        raise ValueError(
            f"{field} must lie in (-pi/2, pi/2) rad (a pole face parallel to the beam has "
            f"infinite edge focusing); got {bad:.9g} rad for element '{name}'"
        )
    return value


def _length(value: ArrayLike, name: str, *, positive: bool = False) -> Array:
    value = float_array(value, "length", f"element '{name}'")
    check = check_positive if positive else functools.partial(check_range, low=0.0)
    check(value, "length", owner=f"element '{name}'", unit="m")
    return value


def _signed_length(value: ArrayLike, name: str) -> Array:
    """A length that may be negative (a drift backwards over overlapping elements)."""
    value = float_array(value, "length", f"element '{name}'")
    check_finite(value, "length", f"element '{name}'")
    return value


def _offset(value: ArrayLike | None, field: str, name: str) -> Array:
    value = jnp.zeros(2) if value is None else float_array(value, field, f"element '{name}'")
    check_trailing_shape(value, field, (2,), f"element '{name}'")
    check_finite(value, field, f"element '{name}'")
    return value


def _piece_name(name: str, i: int) -> str:
    """Name of piece i of a split element (unnamed elements give unnamed pieces)."""
    return f"{name}#{i}" if name else ""


def _tilt(value: ArrayLike | None, name: str) -> Array | None:
    return None if value is None else _scalar(value, "tilt", name)


class Element(eqx.Module):
    """A beamline element: a first-order (and, where defined, second-order) map.

    Subclasses define ``name`` and ``length`` (m) and implement :meth:`linear_map`.
    """

    name: eqx.AbstractVar[str]
    length: eqx.AbstractVar[Array]

    #: the numeric fields that `Segment.with_settings` may set (all are differentiable).
    settings: ClassVar[tuple[str, ...]] = ("length",)

    def tracks_itself(self, incoming: Beam) -> bool:
        """Whether ``incoming`` through this element is more than the element's first-order
        map at the beam's reference energy (a powered cavity changes the energy and kicks tau
        nonlinearly): a segment then calls :meth:`track` instead of composing the map with
        its neighbours'. Decided from the element's static fields and concrete values (a
        setting under tracing counts as nonzero), so the answer is never wrong, only
        sometimes cautious."""
        del incoming
        return False

    @abc.abstractmethod
    def linear_map(self, energy: ArrayLike, species: Species) -> Map:
        """The first-order map as a structured 7x7 table (see ``_affine``)."""

    def map_and_energy(self, energy: ArrayLike, species: Species) -> tuple[Map, Array]:
        """:meth:`linear_map` and :meth:`outgoing_energy` together (one reference orbit
        where the element computes one)."""
        return self.linear_map(energy, species), self.outgoing_energy(energy, species)

    def transfer_map(
        self, energy: ArrayLike, species: Species = ELECTRON
    ) -> Float[Array, "... 7 7"]:
        """First-order transfer map at reference ``energy`` (eV) as a (..., 7, 7) array."""
        return _affine.to_array(self.linear_map(energy, species))

    def outgoing_energy(self, energy: ArrayLike, species: Species = ELECTRON) -> Array:
        """Reference total energy (eV) after the element for ``energy`` (eV) before it."""
        del species
        return jnp.asarray(energy, dtype=float)

    def track(self, incoming: Beam) -> Beam:
        """The beam after this element alone (first order; see :class:`Segment` for lines)."""
        return apply_map(self.linear_map(incoming.energy, incoming.species), incoming, self.length)

    def second_order_map(
        self, energy: ArrayLike, species: Species = ELECTRON, *, reproduce_cheetah: bool = False
    ) -> Float[Array, "... 7 7 7"]:
        """Second-order map T with out_i = sum_jk T_ijk v_j v_k, v = (x, px, y, py, tau, p, 1).

        The first-order map sits in T[:, 6, :]; elements without second-order terms
        return just that. Magnet bodies follow MAD8's TMSECT; ``reproduce_cheetah=True``
        reproduces Cheetah 0.8.4's second-order integrals instead, which differ from MAD8
        (and fail T(L) = T(L/2) o T(L/2)) for sextupoles and combined-function bends;
        see `_second_order.element_tensor`.
        """
        del reproduce_cheetah
        return _second_order.lift(self.transfer_map(energy, species))

    def replace(self, **changes) -> Element:
        """A copy with some fields changed, validated like a new element.

        Example:
            >>> Quadrupole(0.122, k1=10.0, name="Q1").replace(k1=-5.0).k1
        """
        accepted = inspect.signature(type(self).__init__).parameters
        # a field the constructor does not take (a thin element's length) is derived
        fields = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in accepted
        }
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' has no field(s) {unknown}; "
                f"settable: {list(self.settings)}"
            )
        return type(self)(**(fields | changes))


class Drift(Element):
    """Field-free drift space.

    Args:
        length: length in m, any finite value. A negative length is a drift backwards,
            as AT, Elegant, Bmad and Cheetah allow for overlapping elements; its maps are
            the same formulas, so ``Drift(-L)`` undoes ``Drift(L)`` exactly.
        name: unique name within a segment.

    Raises:
        ValueError: if ``length`` is NaN or infinite.
    """

    length: Array
    name: str = eqx.field(static=True)

    def __init__(self, length: ArrayLike, name: str = ""):
        self.name = name
        self.length = _signed_length(length, name)

    def linear_map(self, energy, species):
        return _maps.drift(self.length, energy, species.mass_eV)

    def second_order_map(self, energy, species=ELECTRON, *, reproduce_cheetah=False):
        return _second_order.element_tensor(
            self.length, 0.0, 0.0, 0.0, energy, species.mass_eV,
            self.transfer_map(energy, species), reproduce_cheetah=reproduce_cheetah,
        )  # fmt: skip

    def split(self, n: int) -> list[Element]:
        return [Drift(self.length / n, _piece_name(self.name, i)) for i in range(n)]


class Quadrupole(Element):
    """Quadrupole magnet, optionally displaced and rolled.

    Args:
        length: magnetic length in m, >= 0.
        k1: normalised gradient in 1/m^2 (> 0 focuses in x).
        misalignment: displacement (dx, dy) of the magnet in m; a magnet displaced by
            +dx with k1 > 0 pulls the beam centroid towards +x.
        tilt: roll about the beam axis in rad (pi/4 for a skew quadrupole), or None
            (the default) for an unrolled magnet; give 0.0 to differentiate w.r.t. tilt.
        name: unique name within a segment.
    """

    length: Array
    k1: Array
    misalignment: Array
    tilt: Array | None
    name: str = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = ("length", "k1", "misalignment", "tilt")

    def __init__(
        self,
        length: ArrayLike,
        k1: ArrayLike = 0.0,
        misalignment: ArrayLike | None = None,
        tilt: ArrayLike | None = None,
        name: str = "",
    ):
        self.name = name
        self.length = _length(length, name)
        self.k1 = _scalar(k1, "k1", name)
        self.misalignment = _offset(misalignment, "misalignment", name)
        self.tilt = _tilt(tilt, name)

    def linear_map(self, energy, species):
        body = _maps.body(self.length, self.k1, 0.0, energy, species.mass_eV)
        return _maps.in_magnet_frame(body, self.misalignment, self.tilt)

    def second_order_map(self, energy, species=ELECTRON, *, reproduce_cheetah=False):
        body = _maps.body(self.length, self.k1, 0.0, energy, species.mass_eV)
        tensor = _second_order.element_tensor(
            self.length, self.k1, 0.0, 0.0, energy, species.mass_eV, _affine.to_array(body),
            reproduce_cheetah=reproduce_cheetah,
        )  # fmt: skip
        entry, leave = _frame_arrays(self.misalignment, self.tilt)
        return _second_order.sandwich(leave, tensor, entry)

    def split(self, n: int) -> list[Element]:
        return [
            Quadrupole(
                self.length / n, self.k1, self.misalignment, self.tilt, _piece_name(self.name, i)
            )
            for i in range(n)
        ]


class Sextupole(Element):
    """Sextupole magnet: a drift at first order, k2 acts at second order.

    Args:
        length: length in m, >= 0.
        k2: normalised strength in 1/m^3.
        misalignment: displacement (dx, dy) in m.
        tilt: roll in rad, or None for an unrolled magnet.
        name: unique name within a segment.
    """

    length: Array
    k2: Array
    misalignment: Array
    tilt: Array | None
    name: str = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = ("length", "k2", "misalignment", "tilt")

    def __init__(
        self,
        length: ArrayLike,
        k2: ArrayLike = 0.0,
        misalignment: ArrayLike | None = None,
        tilt: ArrayLike | None = None,
        name: str = "",
    ):
        self.name = name
        self.length = _length(length, name)
        self.k2 = _scalar(k2, "k2", name)
        self.misalignment = _offset(misalignment, "misalignment", name)
        self.tilt = _tilt(tilt, name)

    def linear_map(self, energy, species):
        return _maps.drift(self.length, energy, species.mass_eV)

    def second_order_map(self, energy, species=ELECTRON, *, reproduce_cheetah=False):
        tensor = _second_order.element_tensor(
            self.length,
            0.0,
            self.k2,
            0.0,
            energy,
            species.mass_eV,
            _affine.to_array(_maps.drift(self.length, energy, species.mass_eV)),
            reproduce_cheetah=reproduce_cheetah,
        )
        entry, leave = _frame_arrays(self.misalignment, self.tilt)
        return _second_order.sandwich(leave, tensor, entry)


class Dipole(Element):
    """Sector bending magnet with edge focusing (MAD's SBEND), optionally rolled.

    Args:
        length: arc length in m, > 0.
        angle: bending angle in rad.
        k1: normalised gradient in 1/m^2 (combined-function magnet).
        e1: entrance pole-face rotation in rad (Cheetah's ``dipole_e1``), in (-pi/2, pi/2).
        e2: exit pole-face rotation in rad (Cheetah's ``dipole_e2``), in (-pi/2, pi/2).
        tilt: roll in rad (pi/2 bends vertically), or None for a horizontal bend.
        gap: full magnet gap in m (MAD's 2*HGAP), >= 0, for the fringe-field correction.
        fringe_integral: fringe field integral of the entrance face (MAD's FINT), >= 0.
        fringe_integral_exit: that of the exit face, >= 0; defaults to ``fringe_integral``.
        name: unique name within a segment.

    Raises:
        ValueError: naming the field, for NaN or infinite values, length <= 0, a pole face
            with |e| >= pi/2, a negative gap or fringe integral.
    """

    length: Array
    angle: Array
    k1: Array
    e1: Array
    e2: Array
    tilt: Array | None
    gap: Array
    fringe_integral: Array
    fringe_integral_exit: Array | None
    name: str = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = (
        "length",
        "angle",
        "k1",
        "e1",
        "e2",
        "tilt",
        "gap",
        "fringe_integral",
        "fringe_integral_exit",
    )

    def __init__(
        self,
        length: ArrayLike,
        angle: ArrayLike = 0.0,
        k1: ArrayLike = 0.0,
        e1: ArrayLike = 0.0,
        e2: ArrayLike = 0.0,
        tilt: ArrayLike | None = None,
        gap: ArrayLike = 0.0,
        fringe_integral: ArrayLike = 0.0,
        fringe_integral_exit: ArrayLike | None = None,
        name: str = "",
    ):
        self.name = name
        self.length = _length(length, name, positive=True)
        self.angle = _scalar(angle, "angle", name)
        self.k1 = _scalar(k1, "k1", name)
        self.e1 = _pole_face(e1, "e1", name)
        self.e2 = _pole_face(e2, "e2", name)
        self.tilt = _tilt(tilt, name)
        self.gap = _non_negative(gap, "gap", name, "m")
        self.fringe_integral = _non_negative(fringe_integral, "fringe_integral", name)
        # None: the exit face follows the entrance's integral, also after `replace`.
        self.fringe_integral_exit = (
            None
            if fringe_integral_exit is None
            else _non_negative(fringe_integral_exit, "fringe_integral_exit", name)
        )

    @property
    def hx(self) -> Array:
        """Curvature of the reference orbit in 1/m."""
        return self.angle / self.length

    def _edges(self) -> tuple[Map, Map]:
        hx = self.hx
        entrance = _maps.dipole_edge(
            hx, self.e1, _maps.fringe_phase(hx, self.e1, self.gap, self.fringe_integral)
        )
        exit_integral = (
            self.fringe_integral if self.fringe_integral_exit is None else self.fringe_integral_exit
        )
        exit_ = _maps.dipole_edge(
            hx, self.e2, _maps.fringe_phase(hx, self.e2, self.gap, exit_integral)
        )
        return entrance, exit_

    def linear_map(self, energy, species):
        entrance, exit_ = self._edges()
        body = _maps.body(self.length, self.k1, self.hx, energy, species.mass_eV)
        result = _affine.compose_all([entrance, body, exit_])
        if self.tilt is None:
            return result
        roll = _maps.rotation(self.tilt)
        return _affine.compose_all([roll, result, _affine.transpose(roll)])

    def second_order_map(self, energy, species=ELECTRON, *, reproduce_cheetah=False):
        entrance, exit_ = self._edges()
        body = _affine.to_array(_maps.body(self.length, self.k1, self.hx, energy, species.mass_eV))
        tensor = _second_order.element_tensor(
            self.length, self.k1, 0.0, self.hx, energy, species.mass_eV, body,
            reproduce_cheetah=reproduce_cheetah,
        )  # fmt: skip
        tensor = _second_order.sandwich(_affine.to_array(exit_), tensor, _affine.to_array(entrance))
        if self.tilt is None:
            return tensor
        roll = _affine.to_array(_maps.rotation(self.tilt))
        return _second_order.sandwich(jnp.swapaxes(roll, -1, -2), tensor, roll)

    def split(self, n: int) -> list[Element]:
        """``n`` pieces of the body (length and angle / n), the entrance face (e1 and its
        fringe integral) on the first and the exit face on the last: at first order they
        compose to the whole (the inner faces are square, without fringe correction)."""
        exit_integral = (
            self.fringe_integral if self.fringe_integral_exit is None else self.fringe_integral_exit
        )
        return [
            Dipole(
                self.length / n,
                self.angle / n,
                self.k1,
                e1=self.e1 if i == 0 else 0.0,
                e2=self.e2 if i == n - 1 else 0.0,
                tilt=self.tilt,
                gap=self.gap,
                fringe_integral=self.fringe_integral if i == 0 else 0.0,
                fringe_integral_exit=exit_integral if i == n - 1 else 0.0,
                name=_piece_name(self.name, i),
            )
            for i in range(n)
        ]


def RBend(
    length: ArrayLike,
    angle: ArrayLike = 0.0,
    k1: ArrayLike = 0.0,
    e1: ArrayLike = 0.0,
    e2: ArrayLike = 0.0,
    **kwargs,
) -> Dipole:
    """Rectangular bend: a :class:`Dipole` whose pole faces are rotated by angle/2 more.

    ``e1``/``e2`` are the pole-face rotations relative to the rectangular magnet (Cheetah's
    ``rbend_e1``/``rbend_e2``). The result is a plain Dipole with absolute pole faces, as in
    Cheetah: changing its angle later keeps the faces, so build a new RBend instead.
    """
    angle = float_array(angle, "angle", "RBend")
    return Dipole(
        length, angle, k1, jnp.asarray(e1) + angle / 2, jnp.asarray(e2) + angle / 2, **kwargs
    )


class _Corrector(Element):
    length: eqx.AbstractVar[Array]
    angle: eqx.AbstractVar[Array]
    settings: ClassVar[tuple[str, ...]] = ("length", "angle")
    #: the plane the kick acts in
    _plane: ClassVar[str]

    def linear_map(self, energy, species):
        horizontal, vertical = (self.angle, 0.0) if self._plane == "x" else (0.0, self.angle)
        return _maps.steerer(self.length, horizontal, vertical, energy, species.mass_eV)


class HorizontalCorrector(_Corrector):
    """Horizontal steering magnet: a drift plus a kick of ``angle`` (rad) in px.

    Args:
        length: length in m, >= 0.
        angle: kick in rad.
        name: unique name within a segment.
    """

    length: Array
    angle: Array
    name: str = eqx.field(static=True)
    _plane: ClassVar[str] = "x"

    def __init__(self, length: ArrayLike = 0.0, angle: ArrayLike = 0.0, name: str = ""):
        self.name = name
        self.length = _length(length, name)
        self.angle = _scalar(angle, "angle", name)


class VerticalCorrector(_Corrector):
    """Vertical steering magnet: a drift plus a kick of ``angle`` (rad) in py.

    Args:
        length: length in m, >= 0.
        angle: kick in rad.
        name: unique name within a segment.
    """

    length: Array
    angle: Array
    name: str = eqx.field(static=True)
    _plane: ClassVar[str] = "y"

    def __init__(self, length: ArrayLike = 0.0, angle: ArrayLike = 0.0, name: str = ""):
        self.name = name
        self.length = _length(length, name)
        self.angle = _scalar(angle, "angle", name)


class CombinedCorrector(Element):
    """Steering magnet kicking in both planes: a drift plus kicks in px and py.

    Args:
        length: length in m, >= 0.
        horizontal_angle: kick in px, rad.
        vertical_angle: kick in py, rad.
        name: unique name within a segment.
    """

    length: Array
    horizontal_angle: Array
    vertical_angle: Array
    name: str = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = ("length", "horizontal_angle", "vertical_angle")

    def __init__(
        self,
        length: ArrayLike = 0.0,
        horizontal_angle: ArrayLike = 0.0,
        vertical_angle: ArrayLike = 0.0,
        name: str = "",
    ):
        self.name = name
        self.length = _length(length, name)
        self.horizontal_angle = _scalar(horizontal_angle, "horizontal_angle", name)
        self.vertical_angle = _scalar(vertical_angle, "vertical_angle", name)

    def linear_map(self, energy, species):
        return _maps.steerer(
            self.length, self.horizontal_angle, self.vertical_angle, energy, species.mass_eV
        )


class Solenoid(Element):
    """Solenoid: couples x and y, focusing in both planes.

    Args:
        length: length in m, >= 0.
        k: strength B_s / (2 B rho) in 1/m.
        misalignment: displacement (dx, dy) of the magnet in m.
        name: unique name within a segment.
    """

    length: Array
    k: Array
    misalignment: Array
    name: str = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = ("length", "k", "misalignment")

    def __init__(
        self,
        length: ArrayLike,
        k: ArrayLike = 0.0,
        misalignment: ArrayLike | None = None,
        name: str = "",
    ):
        self.name = name
        self.length = _length(length, name)
        self.k = _scalar(k, "k", name)
        self.misalignment = _offset(misalignment, "misalignment", name)

    def linear_map(self, energy, species):
        body = _maps.solenoid(self.length, self.k, energy, species.mass_eV)
        return _maps.in_magnet_frame(body, self.misalignment, None)


class CustomTransferMap(Element):
    """An element given by its first-order map.

    Args:
        transfer_map_array: (..., 7, 7) map acting on (x, px, y, py, tau, p, 1); its last row
            must be (0, ..., 0, 1).
        length: length in m, >= 0 (only moves the beam's s).
        name: unique name within a segment.
    """

    transfer_map_array: Float[Array, "... 7 7"]
    length: Array
    name: str = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = ("transfer_map_array", "length")

    def __init__(self, transfer_map_array: ArrayLike, length: ArrayLike = 0.0, name: str = ""):
        self.name = name
        matrix = float_array(transfer_map_array, "transfer_map_array", f"element '{name}'")
        owner = f"element '{name}'"
        check_trailing_shape(matrix, "transfer_map_array", (7, 7), owner)
        check_finite(matrix, "transfer_map_array", owner)
        if is_concrete(matrix) and not (
            np.all(np.asarray(matrix)[..., 6, :6] == 0.0)
            and np.all(np.asarray(matrix)[..., 6, 6] == 1.0)
        ):
            raise ValueError(
                f"transfer_map_array must have last row (0, 0, 0, 0, 0, 0, 1) for {owner}"
            )
        self.transfer_map_array = matrix
        self.length = _length(length, name)

    def linear_map(self, energy, species):
        return _affine.from_array(self.transfer_map_array)


#: The settings every RF structure has (cavities, the deflecting cavity).
_RF_SETTINGS = ("length", "voltage", "phase", "frequency", "misalignment")


def _set_rf_fields(element, length, voltage, phase, frequency, misalignment, name, *, positive):
    """Validate and set the fields of :data:`_RF_SETTINGS` and the name (inside __init__);
    ``positive``: the length must be > 0, not only >= 0."""
    element.name = name
    element.length = _length(length, name, positive=positive)
    element.voltage = _scalar(voltage, "voltage", name)
    element.phase = _scalar(phase, "phase", name)
    element.frequency = _non_negative(frequency, "frequency", name, "Hz")
    element.misalignment = _offset(misalignment, "misalignment", name)


class _RFCavity(Element):
    """An RF cavity; subclasses give the first-order map of their cavity type."""

    length: Array
    voltage: Array
    phase: Array
    frequency: Array
    misalignment: Array
    name: str = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = _RF_SETTINGS
    #: Cheetah's ``cavity_type`` of this class.
    cavity_type: ClassVar[str]

    def __init__(
        self,
        length: ArrayLike,
        voltage: ArrayLike = 0.0,
        phase: ArrayLike = 0.0,
        frequency: ArrayLike = 0.0,
        misalignment: ArrayLike | None = None,
        name: str = "",
    ):
        _set_rf_fields(self, length, voltage, phase, frequency, misalignment, name, positive=True)

    @staticmethod
    @abc.abstractmethod
    def _body(rf: _cavity.RF) -> Map:
        """The first-order map of the cavity body in its own frame."""

    def _reference(self, energy: ArrayLike, species: Species) -> _cavity.RF:
        def check_outgoing(energy1):
            return refuse_traced_or_known(
                energy1,
                energy1 - species.mass_eV,
                lambda margin: margin <= 0.0,
                f"the cavity '{self.name}' stops the beam: outgoing energy <= rest energy",
                functools.partial(_check_not_stopped, name=self.name, mass_eV=species.mass_eV),
            )

        return _cavity.reference(
            self.length, self.voltage, self.phase, self.frequency, energy, species.mass_eV,
            species.num_elementary_charges, check_outgoing,
        )  # fmt: skip

    def tracks_itself(self, incoming):
        del incoming
        return not known_zero(self.voltage)  # unpowered: a drift (see _cavity)

    def map_and_energy(self, energy, species):
        rf = self._reference(energy, species)
        return _maps.in_magnet_frame(self._body(rf), self.misalignment, None), rf.energy1

    def linear_map(self, energy, species):
        return self.map_and_energy(energy, species)[0]

    def outgoing_energy(self, energy, species=ELECTRON):
        return self._reference(energy, species).energy1

    def track(self, incoming: Beam) -> Beam:
        """The beam after the cavity: the first-order map transversely, Cheetah's RF kick and
        path-length terms longitudinally (see ``_cavity``), and the new reference energy.

        A ParameterBeam's mean goes through that map; its covariance through the
        first-order map. (Cheetah 0.8.4 instead keeps cov_pp unchanged and overwrites
        cov_tautau and cov_taup with second-order terms; every other moment agrees.)
        """
        rf = self._reference(incoming.energy, incoming.species)
        linear = _maps.in_magnet_frame(self._body(rf), self.misalignment, None)
        r55, r56 = linear[4][4], linear[4][5]
        beam = apply_map(linear, incoming, self.length)
        if isinstance(incoming, ParameterBeam):
            tau, p = _cavity.longitudinal_kick(
                rf, r55, r56, incoming.mu[..., 4], incoming.mu[..., 5]
            )
            mu = beam.mu.at[..., 4].set(tau).at[..., 5].set(p)
            return eqx.tree_at(lambda b: (b.mu, b.energy), beam, (mu, rf.energy1))
        shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in (*rf, r55, r56)))

        def per_particle(a):
            return jnp.broadcast_to(a, shape)[..., None]

        columns = jnp.broadcast_to(incoming.particles, beam.particles.shape)
        tau, p = _cavity.longitudinal_kick(
            jax.tree_util.tree_map(per_particle, rf), per_particle(r55), per_particle(r56),
            columns[..., 4], columns[..., 5],
        )  # fmt: skip
        particles = beam.particles.at[..., 4].set(tau).at[..., 5].set(p)
        return eqx.tree_at(lambda b: (b.particles, b.energy), beam, (particles, rf.energy1))


def _check_not_stopped(margin: np.ndarray, name: str, mass_eV: float) -> None:
    if np.any(margin <= 0.0):
        raise ValueError(
            f"voltage and phase of cavity '{name}' would stop the beam: its outgoing energy "
            f"must exceed the rest energy {mass_eV:.9g} eV; got {np.min(margin) + mass_eV:.9g} eV"
        )


class Cavity(_RFCavity):
    """Standing-wave RF cavity (Cheetah's ``Cavity`` with its default ``cavity_type``).

    Energy gain ``-q V cos(phase)`` for a particle of charge ``q e``, with the adiabatic
    damping and ponderomotive focusing of Rosenzweig & Serafini's standing-wave map; the
    particles' energies get the exact RF kick (see ``_cavity``). With ``voltage = 0`` it is
    a drift. Tracked in a segment, it changes the reference energy of everything after it.

    Args:
        length: length in m, > 0.
        voltage: cavity voltage in V (positive accelerates electrons).
        phase: RF phase in degrees, 0 on crest.
        frequency: RF frequency in Hz, >= 0.
        misalignment: displacement (dx, dy) of the cavity in m (Cheetah's cavities have
            none: a segment with a displaced cavity has no Cheetah counterpart).
        name: unique name within a segment.

    Raises:
        ValueError: naming the field, for NaN or infinite values, length <= 0, a negative
            frequency, a misalignment not of shape (..., 2); and when tracked, a voltage
            and phase that would stop the beam.

    Example:
        >>> cavity = Cavity(4.139, voltage=1.6e7, phase=-10.0, frequency=2.998e9, name="C1")
    """

    cavity_type: ClassVar[str] = "standing_wave"

    @staticmethod
    def _body(rf):
        return _cavity.standing_wave_map(rf)


class TravelingWaveCavity(_RFCavity):
    """Travelling-wave RF cavity (Cheetah's ``Cavity(cavity_type="traveling_wave")``).

    A body of constant accelerating gradient between the focusing lenses of its entrance
    and exit fringe fields (see ``_cavity``); arguments, energies and errors as
    :class:`Cavity`.
    """

    cavity_type: ClassVar[str] = "traveling_wave"

    @staticmethod
    def _body(rf):
        return _cavity.traveling_wave_map(rf)


def _half_width(value: ArrayLike, field: str, name: str) -> Array:
    """An aperture half-width in m: >= 0, +inf for an open side, never NaN."""
    value = float_array(value, field, f"element '{name}'")
    if is_concrete(value):
        array = np.asarray(value)
        bad = np.isnan(array) | (array < 0.0)
        if np.any(bad):
            raise ValueError(
                f"{field} must lie in [0, inf] m (inf for an open side); got "
                f"{array[bad].ravel()[0]} m for element '{name}'"
            )
    return value


class _Aperture(Element):
    """A physical aperture; subclasses give the shape (who survives where)."""

    x_max: Array
    y_max: Array
    misalignment: Array
    edge_width: Array | None
    name: str = eqx.field(static=True)
    is_active: bool = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = ("x_max", "y_max", "misalignment", "edge_width")
    #: Cheetah's ``shape`` of this class.
    shape: ClassVar[str]

    def __init__(
        self,
        x_max: ArrayLike = np.inf,
        y_max: ArrayLike = np.inf,
        edge_width: ArrayLike | None = None,
        misalignment: ArrayLike | None = None,
        is_active: bool = True,
        name: str = "",
    ):
        self.name = name
        self.x_max = _half_width(x_max, "x_max", name)
        self.y_max = _half_width(y_max, "y_max", name)
        self.misalignment = _offset(misalignment, "misalignment", name)
        if edge_width is None:
            self.edge_width = None
        else:
            self.edge_width = float_array(edge_width, "edge_width", f"element '{name}'")
            check_positive(self.edge_width, "edge_width", f"element '{name}'", "m")
            self._check_smooth()
        self.is_active = bool(is_active)

    def _check_smooth(self) -> None:
        """Refuse half-widths the smooth survival cannot use (none by default)."""

    @property
    def length(self) -> Array:
        return jnp.zeros(())

    def tracks_itself(self, incoming):
        return self.is_active and isinstance(incoming, ParticleBeam)

    def linear_map(self, energy, species):
        return _affine.identity()

    @staticmethod
    @abc.abstractmethod
    def _hard(x: Array, y: Array, x_max: Array, y_max: Array) -> Array:
        """1 for a particle at (x, y) that passes, 0 for one that is lost."""

    @staticmethod
    @abc.abstractmethod
    def _smooth(x: Array, y: Array, x_max: Array, y_max: Array, edge_width: Array) -> Array:
        """Survival weight in (0, 1), smooth in the position and the half-widths."""

    def track(self, incoming: Beam) -> Beam:
        """Particles outside lose their survival probability (multiplied by 0 in the hard
        mode, by the smooth weight with ``edge_width``); a ParameterBeam, or any beam
        through an inactive aperture, passes unchanged (as in Cheetah)."""
        if not self.tracks_itself(incoming):
            return incoming
        settings = [self.x_max, self.y_max, self.misalignment[..., 0]]
        settings += [] if self.edge_width is None else [self.edge_width]
        particles, per_particle = _over_batch(incoming.particles, *settings)

        x = particles[..., 0] - per_particle(self.misalignment[..., 0])
        y = particles[..., 2] - per_particle(self.misalignment[..., 1])
        x_max, y_max = per_particle(self.x_max), per_particle(self.y_max)
        if self.edge_width is None:
            survival = self._hard(x, y, x_max, y_max)
        else:
            survival = self._smooth(x, y, x_max, y_max, per_particle(self.edge_width))
        probabilities = jnp.broadcast_to(incoming.survival_probabilities, survival.shape)
        charges = jnp.broadcast_to(incoming.particle_charges, survival.shape)
        return eqx.tree_at(
            lambda b: (b.particles, b.survival_probabilities, b.particle_charges),
            incoming,
            (particles, probabilities * survival, charges),
        )


class Aperture(_Aperture):
    """Rectangular physical aperture (Cheetah's ``Aperture`` with its default ``shape``).

    A particle survives strictly inside |x - dx| < x_max and |y - dy| < y_max. Losses are
    survival probabilities, as in Cheetah: particles keep their coordinates and beam
    statistics are weighted by the probabilities. By default (``edge_width=None``) the edge
    is hard, as Cheetah's, and no gradient reaches the half-widths; with ``edge_width`` (m)
    each side multiplies the survival by sigmoid(distance inside / edge_width), which tends
    to the hard edge as edge_width -> 0 and is differentiable w.r.t. x_max, y_max, the
    misalignment and the particles. A ParameterBeam passes unchanged (as in Cheetah); an
    inactive aperture is a marker.

    Args:
        x_max: horizontal half-width in m, >= 0 (inf: open).
        y_max: vertical half-width in m, >= 0 (inf: open).
        edge_width: None for a hard edge, or the width (m, > 0) of the smooth edge.
        misalignment: displacement (dx, dy) of the aperture in m (Cheetah's apertures have
            none).
        is_active: whether it removes particles.
        name: unique name within a segment.

    Raises:
        ValueError: naming the field, for a NaN or negative half-width, an edge_width that
            is not finite and > 0, a misalignment not of shape (..., 2).

    Example:
        >>> Aperture(x_max=2e-3, y_max=1e-3, edge_width=1e-5, name="SLIT")
    """

    shape: ClassVar[str] = "rectangular"
    _hard = staticmethod(_aperture.rectangular_hard)
    _smooth = staticmethod(_aperture.rectangular_smooth)


class EllipticalAperture(_Aperture):
    """Elliptical physical aperture (Cheetah's ``Aperture(shape="elliptical")``).

    A particle survives inside or on ((x - dx) / x_max)^2 + ((y - dy) / y_max)^2 <= 1;
    the smooth edge (``edge_width``) is the sigmoid of (1 - q) R / 2 over edge_width, with
    q that sum and R the ellipse's radius along the particle's direction (near the edge,
    the distance to it), and needs finite half-widths. Otherwise as :class:`Aperture`.
    """

    shape: ClassVar[str] = "elliptical"
    _hard = staticmethod(_aperture.elliptical_hard)
    _smooth = staticmethod(_aperture.elliptical_smooth)

    def _check_smooth(self) -> None:
        for field in ("x_max", "y_max"):
            value = getattr(self, field)
            if is_concrete(value) and not np.all(np.isfinite(np.asarray(value))):
                raise ValueError(
                    f"{field} must be finite for a smooth elliptical aperture (edge_width); "
                    f"got inf for element '{self.name}'"
                )


class Undulator(Element):
    """Planar undulator with its natural focusing (Cheetah 0.8.4's ``Undulator``).

    At first order a horizontal deflection parameter ``kx`` focuses vertically with
    wave number sqrt2 pi kx / (period gamma beta), ``ky`` horizontally; the path length
    grows by the wiggle, r56 = -L / gamma^2 (1 / beta^2 + (kx^2 + ky^2) / 2). With
    kx = ky = 0 it is a drift. No radiation is modelled.

    Args:
        length: length in m, >= 0.
        period: undulator period in m, > 0.
        kx: horizontal deflection parameter K (dimensionless).
        ky: vertical deflection parameter K (dimensionless).
        misalignment: displacement (dx, dy) of the undulator in m (Cheetah's undulators
            have none).
        name: unique name within a segment.

    Raises:
        ValueError: naming the field, for NaN or infinite values, a negative length, a
            period <= 0, a misalignment not of shape (..., 2).
    """

    length: Array
    period: Array
    kx: Array
    ky: Array
    misalignment: Array
    name: str = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = ("length", "period", "kx", "ky", "misalignment")

    def __init__(
        self,
        length: ArrayLike,
        period: ArrayLike = 1.0,
        kx: ArrayLike = 0.0,
        ky: ArrayLike = 0.0,
        misalignment: ArrayLike | None = None,
        name: str = "",
    ):
        self.name = name
        self.length = _length(length, name)
        self.period = float_array(period, "period", f"element '{name}'")
        check_positive(self.period, "period", f"element '{name}'", "m")
        self.kx = _scalar(kx, "kx", name)
        self.ky = _scalar(ky, "ky", name)
        self.misalignment = _offset(misalignment, "misalignment", name)

    def linear_map(self, energy, species):
        body = _maps.undulator(self.length, self.period, self.kx, self.ky, energy, species.mass_eV)
        return _maps.in_magnet_frame(body, self.misalignment, None)


class TransverseDeflectingCavity(Element):
    """Transverse deflecting cavity, tracked drift-kick-drift as Cheetah 0.8.4 does.

    A ParticleBeam is tracked through Bmad's model (see ``_deflector``): exact drifts of
    half the length around a kick ``-q V / P0 sin(2 pi (phase - t f))`` in px and its
    Panofsky-Wenzel energy change, nonlinear in the particles' arrival times. A
    ParameterBeam (which Cheetah refuses) goes through the first-order (affine) map of that
    model about the reference particle, its Jacobian by automatic differentiation. It does
    not change the reference energy.

    Args:
        length: length in m, >= 0.
        voltage: deflecting voltage in V (positive deflects electrons, as in Cheetah).
        phase: RF phase in units of 2 pi (Cheetah's; 0 is the zero crossing that streaks
            the bunch).
        frequency: RF frequency in Hz, >= 0.
        misalignment: displacement (dx, dy) of the cavity in m.
        tilt: roll about the beam axis in rad (pi/2 deflects vertically).
        name: unique name within a segment.

    Raises:
        ValueError: naming the field, for NaN or infinite values, a negative length or
            frequency, a misalignment not of shape (..., 2).
    """

    length: Array
    voltage: Array
    phase: Array
    frequency: Array
    misalignment: Array
    tilt: Array
    name: str = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = (*_RF_SETTINGS, "tilt")

    def __init__(
        self,
        length: ArrayLike,
        voltage: ArrayLike = 0.0,
        phase: ArrayLike = 0.0,
        frequency: ArrayLike = 0.0,
        misalignment: ArrayLike | None = None,
        tilt: ArrayLike = 0.0,
        name: str = "",
    ):
        _set_rf_fields(self, length, voltage, phase, frequency, misalignment, name, positive=False)
        self.tilt = _scalar(tilt, "tilt", name)

    def _coordinates_after(self, coordinates, energy, species, expand=lambda a: a):
        return _deflector.track(
            coordinates,
            length=expand(self.length), voltage=expand(self.voltage),
            phase=expand(self.phase), frequency=expand(self.frequency),
            misalignment=(expand(self.misalignment[..., 0]), expand(self.misalignment[..., 1])),
            tilt=expand(self.tilt), energy=expand(jnp.asarray(energy, dtype=float)),
            mass_eV=species.mass_eV, num_elementary_charges=species.num_elementary_charges,
        )  # fmt: skip

    def linear_map(self, energy, species):
        def after(vector):
            return jnp.stack(self._coordinates_after(tuple(vector), energy, species), -1)

        origin = jnp.zeros(6)
        jacobian = jax.jacfwd(after)(origin)  # (..., 6, 6)
        offset = after(origin)  # where the reference particle leaves: (..., 6)
        top = jnp.concatenate([jacobian, offset[..., None]], -1)
        bottom = jnp.broadcast_to(jnp.eye(7)[6], (*top.shape[:-2], 1, 7))
        return _affine.from_array(jnp.concatenate([top, bottom], -2))

    def tracks_itself(self, incoming):
        return isinstance(incoming, ParticleBeam)

    def track(self, incoming: Beam) -> Beam:
        """Particles drift-kick-drift (Cheetah's model); moments through :meth:`linear_map`."""
        if not self.tracks_itself(incoming):
            return super().track(incoming)
        particles, per_particle = _over_batch(
            incoming.particles, incoming.energy, self.misalignment[..., 0], self.length,
            self.voltage, self.phase, self.frequency, self.tilt,
        )  # fmt: skip

        coordinates = tuple(particles[..., i] for i in range(6))
        out = self._coordinates_after(coordinates, incoming.energy, incoming.species, per_particle)
        particles = jnp.stack([*out, particles[..., 6]], -1)
        return eqx.tree_at(
            lambda b: (b.particles, b.s), incoming, (particles, incoming.s + self.length)
        )


class DriftKickDrift(Element):
    """A drift, quadrupole or bend tracked nonlinearly (Cheetah's ``tracking_method=
    "drift_kick_drift"``, Bmad's model; see ``_bmad``): the drift exactly, the quadrupole in
    ``num_steps`` steps with each particle's own strength k1 / (1 + pz) and its path length,
    the bend's body exactly (each particle on its own helix from face to face) between
    linear edges. A ParameterBeam passes through the element's first-order map, as the
    neighbours' do.

    Fields and settings are the wrapped element's: ``segment.with_settings({"Q1.k1": 3.0})``
    reaches it, and ``name`` and ``length`` are its own.

    Args:
        element: a :class:`Drift`, :class:`Quadrupole` or :class:`Dipole` (k1 = 0: Bmad's
            exact bend has no gradient; Cheetah ignores a dipole's k1 in this mode).
        num_steps: steps through a quadrupole, an integer >= 1 (Cheetah's default 1; a drift
            and a bend are exact in one).

    Raises:
        TypeError: another element (Cheetah tracks only these and its deflecting cavity so).
        ValueError: a num_steps that is not an integer >= 1; a dipole with k1 != 0 (also
            when it is set later inside ``jit``: the tracked call then fails).

    Example:
        >>> DriftKickDrift(Quadrupole(0.2, 8.0, name="Q1"), num_steps=5)
    """

    element: Element
    num_steps: int = eqx.field(static=True)

    def __init__(self, element: Element, num_steps: int = 1):
        if not isinstance(element, Drift | Quadrupole | Dipole):
            raise TypeError(
                f"drift-kick-drift tracking is built for Drift, Quadrupole and Dipole; got "
                f"{type(element).__name__} '{getattr(element, 'name', '')}'"
            )
        integral = isinstance(num_steps, int | np.integer) and not isinstance(num_steps, bool)
        if not integral or num_steps < 1:
            raise ValueError(
                f"num_steps must be an integer >= 1; got {num_steps!r} for element '{element.name}'"
            )
        if isinstance(element, Dipole) and is_concrete(element.k1):
            _no_gradient(np.asarray(element.k1), element.name)
        self.element = element
        self.num_steps = int(num_steps)

    @property
    def name(self) -> str:
        return self.element.name

    @property
    def length(self) -> Array:
        return self.element.length

    @property
    def settings(self) -> tuple[str, ...]:
        return type(self.element).settings

    def replace(self, **changes) -> DriftKickDrift:
        num_steps = changes.pop("num_steps", self.num_steps)
        return DriftKickDrift(self.element.replace(**changes), num_steps)

    def linear_map(self, energy, species):
        return self.element.linear_map(energy, species)

    def second_order_map(self, energy, species=ELECTRON, *, reproduce_cheetah=False):
        return self.element.second_order_map(energy, species, reproduce_cheetah=reproduce_cheetah)

    def tracks_itself(self, incoming):
        return isinstance(incoming, ParticleBeam)

    def track(self, incoming: Beam) -> Beam:
        """Particles nonlinearly (Bmad's drift or quadrupole); moments at first order."""
        if not self.tracks_itself(incoming):
            return super().track(incoming)
        element = self.element
        misalignment = getattr(element, "misalignment", jnp.zeros(2))
        tilt = getattr(element, "tilt", None)
        tilt = jnp.zeros(()) if tilt is None else tilt
        particles, per_particle = _over_batch(
            incoming.particles, incoming.energy, misalignment[..., 0], element.length,
            getattr(element, "k1", jnp.zeros(())), tilt,
        )  # fmt: skip

        coordinates = tuple(particles[..., i] for i in range(6))
        energy = per_particle(jnp.asarray(incoming.energy, dtype=float))
        mass = incoming.species.mass_eV
        if isinstance(element, Drift):
            out = _bmad.drift(coordinates, length=per_particle(element.length), energy=energy,
                              mass_eV=mass)  # fmt: skip
        elif isinstance(element, Dipole):
            out = self._track_bend(coordinates, per_particle, tilt, energy, mass)
        else:
            out = _bmad.quadrupole(
                coordinates, length=per_particle(element.length), k1=per_particle(element.k1),
                dx=per_particle(misalignment[..., 0]), dy=per_particle(misalignment[..., 1]),
                tilt=per_particle(tilt), num_steps=self.num_steps, energy=energy, mass_eV=mass,
            )  # fmt: skip
        particles = jnp.stack([*out, particles[..., 6]], -1)
        return eqx.tree_at(
            lambda b: (b.particles, b.s), incoming, (particles, incoming.s + element.length)
        )

    def _track_bend(self, coordinates, per_particle, tilt, energy, mass):
        bend = self.element
        k1 = refuse_traced_or_known(
            bend.k1, bend.k1, lambda k1: jnp.any(k1 != 0.0),
            f"drift-kick-drift tracking of dipole '{bend.name}' needs k1 = 0",
            lambda k1: _no_gradient(k1, bend.name),
        )  # fmt: skip
        exit_integral = (
            bend.fringe_integral if bend.fringe_integral_exit is None else bend.fringe_integral_exit
        )
        hx = bend.hx + 0.0 * k1  # carries the traced check into the program
        return _bmad.bend(
            coordinates, length=per_particle(bend.length), angle=per_particle(bend.angle),
            e1=per_particle(bend.e1), e2=per_particle(bend.e2),
            phase1=per_particle(_maps.fringe_phase(hx, bend.e1, bend.gap, bend.fringe_integral)),
            phase2=per_particle(_maps.fringe_phase(hx, bend.e2, bend.gap, exit_integral)),
            tilt=per_particle(tilt), energy=energy, mass_eV=mass,
        )  # fmt: skip


def _no_gradient(k1: np.ndarray, name: str) -> None:
    if np.any(k1 != 0.0):
        raise ValueError(
            f"drift-kick-drift tracking of dipole '{name}' needs k1 = 0 (Bmad's exact bend has "
            f"no gradient); got k1 = {k1} 1/m^2: track it with its first-order map instead"
        )


class SpaceChargeKick(Element):
    """Space charge of a ParticleBeam over ``effect_length``, as one momentum kick
    (Cheetah's ``SpaceChargeKick``): the bunch's field from its charge on a 3-D grid, an
    integrated Green function and an FFT convolution with open boundaries (``_poisson``).

    The kick changes momenta only; place it between the halves of a drift or magnet
    (e.g. ``Drift(L / 2), SpaceChargeKick(L), Drift(L / 2)``). The grid is centred on the
    bunch and spans ``grid_extent_*`` rms sizes either side; charge outside it exerts no
    force and particles outside feel none. A ParameterBeam has no particles to kick:
    :func:`diffdesign.beamline.space_charge.track_envelope` integrates its envelope
    equations instead (and passes these elements by). Its first-order map is the identity
    (space charge depends on the beam, not on the lattice).

    Args:
        effect_length: length in m over which the space charge acts, >= 0.
        grid_shape: number of nodes in x, y and z (each >= 4).
        grid_extent_x: grid half-width in rms beam sizes, > 0 (Cheetah's default 3).
        grid_extent_y: likewise in y.
        grid_extent_tau: likewise along the bunch.
        name: name within a segment.

    Raises:
        ValueError: naming the field, for a negative or NaN effect_length, extents that are
            not finite and > 0, a grid_shape that is not three integers >= 4.
    """

    effect_length: Array
    grid_extent_x: Array
    grid_extent_y: Array
    grid_extent_tau: Array
    grid_shape: tuple[int, int, int] = eqx.field(static=True)
    name: str = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = (
        "effect_length", "grid_extent_x", "grid_extent_y", "grid_extent_tau",
    )  # fmt: skip

    def __init__(
        self,
        effect_length: ArrayLike,
        grid_shape: tuple[int, int, int] = (32, 32, 32),
        grid_extent_x: ArrayLike = 3.0,
        grid_extent_y: ArrayLike = 3.0,
        grid_extent_tau: ArrayLike = 3.0,
        name: str = "",
    ):
        self.name = name
        self.effect_length = _non_negative(effect_length, "effect_length", name, "m")
        for field, value in (("grid_extent_x", grid_extent_x), ("grid_extent_y", grid_extent_y),
                             ("grid_extent_tau", grid_extent_tau)):  # fmt: skip
            value = float_array(value, field, f"element '{name}'")
            check_positive(value, field, f"element '{name}'")
            check_finite(value, field, f"element '{name}'")
            setattr(self, field, value)
        shape = tuple(np.ravel(np.asarray(grid_shape)).tolist())
        if len(shape) != 3 or any(int(n) != n or n < 4 for n in shape):
            raise ValueError(
                f"grid_shape must be three integers >= 4 (nodes in x, y, z); got {grid_shape!r} "
                f"for element '{name}'"
            )
        self.grid_shape = tuple(int(n) for n in shape)

    @property
    def length(self) -> Array:
        return jnp.zeros(())

    def tracks_itself(self, incoming):
        return True

    def linear_map(self, energy, species):
        return _affine.identity()

    def track(self, incoming: Beam) -> Beam:
        """The particles with their momenta kicked by the bunch's own field; batched
        settings, energies and beams broadcast.

        Raises:
            TypeError: a ParameterBeam (use ``space_charge.track_envelope``).
            ValueError: a beam with no spread in x, y or tau (the grid would have no size).
        """
        if not isinstance(incoming, ParticleBeam):
            raise TypeError(
                f"SpaceChargeKick '{self.name}' needs a ParticleBeam; got "
                f"{type(incoming).__name__} (for moments, space_charge.track_envelope(segment, "
                "beam) integrates the envelope equations with space charge)"
            )
        species = incoming.species
        check_spread(incoming, f"SpaceChargeKick '{self.name}'")
        kick = functools.partial(
            _poisson.kick, shape=self.grid_shape, mass_eV=species.mass_eV,
            num_elementary_charges=species.num_elementary_charges,
        )  # fmt: skip
        extent = jnp.stack(
            jnp.broadcast_arrays(self.grid_extent_x, self.grid_extent_y, self.grid_extent_tau), -1
        )
        beam = (incoming.particles, incoming.particle_charges, incoming.survival_probabilities)
        settings = (incoming.energy, self.effect_length, extent)
        cores = (2, 1, 1, 0, 0, 1)
        batch = jnp.broadcast_shapes(
            *(
                jnp.shape(a)[: jnp.ndim(a) - core]
                for a, core in zip(beam + settings, cores, strict=True)
            )
        )
        args = [
            jnp.broadcast_to(a, batch + jnp.shape(a)[jnp.ndim(a) - core :])
            for a, core in zip(beam + settings, cores, strict=True)
        ]
        particles = jnp.vectorize(kick, signature="(n,k),(n),(n),(),(),(d)->(n,k)")(*args)
        return eqx.tree_at(lambda b: b.particles, incoming, particles)


def check_spread(beam: ParticleBeam, owner: str) -> None:
    """Refuse (concrete) beams whose surviving particles have no spread in x, y or tau, or
    fewer than two survivors: a space-charge grid spans a multiple of the rms sizes."""
    if not (is_concrete(beam.particles) and is_concrete(beam.survival_probabilities)):
        return
    particles = np.asarray(beam.particles)[..., [0, 2, 4]]
    alive = np.broadcast_to(np.asarray(beam.survival_probabilities) > 0, particles.shape[:-1])
    if np.any(alive.sum(-1) < 2):
        raise ValueError(f"{owner}: fewer than two surviving particles; space charge needs a bunch")
    for i, plane in enumerate(("x", "y", "tau")):
        values = np.where(alive, particles[..., i], np.nan)
        if np.any(np.nanmax(values, -1) == np.nanmin(values, -1)):
            raise ValueError(
                f"{owner}: the beam has no spread in {plane}; the grid spans a multiple of "
                "the rms size in each plane"
            )


class _ThinDiagnostic(Element):
    """A zero-length element that leaves the beam unchanged."""

    @property
    def length(self) -> Array:
        return np.zeros(())  # known also inside jit (a traced zero would stage operations)

    def linear_map(self, energy, species):
        return _affine.identity()


class Marker(_ThinDiagnostic):
    """A named position along the beamline."""

    name: str = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str = ""):
        self.name = name


class BPM(_ThinDiagnostic):
    """Beam position monitor: reads the beam centroid (x, y) in its own frame.

    Args:
        misalignment: displacement (dx, dy) of the monitor in m.
        is_active: whether `Segment.readings` reports it.
        name: unique name within a segment.
    """

    misalignment: Array
    name: str = eqx.field(static=True)
    is_active: bool = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = ("misalignment",)

    def __init__(
        self, misalignment: ArrayLike | None = None, is_active: bool = True, name: str = ""
    ):
        self.name = name
        self.misalignment = _offset(misalignment, "misalignment", name)
        self.is_active = bool(is_active)

    def reading(self, beam) -> Float[Array, "... 2"]:
        """Centroid (x, y) in m, relative to the monitor's centre."""
        return jnp.stack([beam.mu_x, beam.mu_y], -1) - self.misalignment


class Screen(_ThinDiagnostic):
    """Diagnostic screen with a camera: images the transverse beam distribution.

    Args:
        resolution: camera (width, height) in pixels.
        pixel_size: (width, height) of a pixel in m.
        binning: camera binning factor (pixels are merged binning x binning).
        misalignment: displacement (dx, dy) of the screen in m.
        is_active: whether `Segment.readings` reports it.
        name: unique name within a segment.
    """

    pixel_size: Array
    misalignment: Array
    name: str = eqx.field(static=True)
    resolution: tuple[int, int] = eqx.field(static=True)
    binning: int = eqx.field(static=True)
    is_active: bool = eqx.field(static=True)
    settings: ClassVar[tuple[str, ...]] = ("misalignment",)

    def __init__(
        self,
        resolution: tuple[int, int] = (1024, 1024),
        pixel_size: ArrayLike = (1e-3, 1e-3),
        binning: int = 1,
        misalignment: ArrayLike | None = None,
        is_active: bool = False,
        name: str = "",
    ):
        self.name = name
        if len(resolution) != 2 or any(int(r) != r or r <= 0 for r in resolution):
            raise ValueError(
                f"resolution must be two positive integers (width, height); got {resolution} "
                f"for element '{name}'"
            )
        if int(binning) != binning or binning < 1 or any(r % binning for r in resolution):
            raise ValueError(
                f"binning must be a positive integer dividing the resolution {resolution}; "
                f"got {binning} for element '{name}'"
            )
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.binning = int(binning)
        self.pixel_size = float_array(pixel_size, "pixel_size", f"element '{name}'")
        if self.pixel_size.shape != (2,):
            raise ValueError(
                f"pixel_size must be (width, height) in m; got shape {self.pixel_size.shape} "
                f"for element '{name}'"
            )
        check_positive(self.pixel_size, "pixel_size", owner=f"element '{name}'", unit="m")
        self.misalignment = _offset(misalignment, "misalignment", name)
        self.is_active = bool(is_active)

    @property
    def effective_resolution(self) -> tuple[int, int]:
        """(width, height) of the image after binning, in pixels."""
        return (self.resolution[0] // self.binning, self.resolution[1] // self.binning)

    def pixel_centres(self) -> tuple[Array, Array]:
        """Centres of the (binned) pixel columns and rows in m, in the screen's frame."""
        width, height = self.effective_resolution
        step = self.pixel_size * self.binning
        x = (jnp.arange(width) - (width - 1) / 2) * step[0]
        y = (jnp.arange(height) - (height - 1) / 2) * step[1]
        return x, y

    def reading(self, beam) -> Float[Array, "... height width"]:
        """Image of ``beam``: the fraction of its charge on each pixel, rows from -y to +y.

        A :class:`ParameterBeam` is its Gaussian density at each pixel centre times the
        pixel area (accurate when the beam spans several pixels); a :class:`ParticleBeam`
        is deposited cloud-in-cell (bilinear), smooth in the particle positions, so
        images are differentiable either way. Multiply by the beam's charge for coulombs.
        """
        return _screen.image(self, beam)


def _over_batch(particles: Array, *settings: ArrayLike):
    """``particles`` (..., n, 7) broadcast over the batch of theirs and the settings', and a
    function giving a setting (or any array of the batch) one value per particle (..., 1)."""
    batch = jnp.broadcast_shapes(particles.shape[:-2], *(jnp.shape(a) for a in settings))
    particles = jnp.broadcast_to(particles, (*batch, *particles.shape[-2:]))

    def per_particle(a):
        return jnp.broadcast_to(a, batch)[..., None]

    return particles, per_particle


def apply_map(linear_map: Map, incoming: Beam, length: Array) -> Beam:
    """``incoming`` through a first-order map over ``length`` (m): moments or particles."""
    s = incoming.s + length
    if isinstance(incoming, ParameterBeam):
        mu = _affine.apply_to_vector(linear_map, incoming.mu)
        cov = _affine.apply_to_covariance(linear_map, incoming.cov)
        return eqx.tree_at(lambda b: (b.mu, b.cov, b.s), incoming, (mu, cov, s))
    if isinstance(incoming, ParticleBeam):
        matrix = _affine.to_array(linear_map)
        particles = jnp.einsum("...ij,...nj->...ni", matrix, incoming.particles)
        return eqx.tree_at(lambda b: (b.particles, b.s), incoming, (particles, s))
    raise TypeError(
        f"incoming must be a ParameterBeam or ParticleBeam; got {type(incoming).__name__}"
    )


def _frame_arrays(misalignment: Array, tilt: Array | None) -> tuple[Array, Array]:
    """Entry and exit frames of a displaced, rolled magnet as (..., 7, 7) arrays."""
    entry, leave = _maps.magnet_frames(misalignment, tilt)
    return _affine.to_array(entry), _affine.to_array(leave)


#: Elements uniform along their length (half of one is the same element over half the length):
#: the bases a zero-length element can be superimposed on.
UNIFORM = (Drift, Quadrupole, Sextupole, Solenoid)


def superimpose(base: Element, element: Element) -> tuple[Element, Element, Element]:
    """``element`` (of zero length) placed at the centre of ``base``: the first half of
    ``base``, ``element``, the second half (Cheetah's ``Superimposed``, as its
    ``flattened()`` lays it out). Both halves keep ``base``'s name, so
    ``segment.with_settings({"Q1.k1": ...})`` sets both.

    Raises:
        TypeError: a base that is not uniform along its length (:data:`UNIFORM`).
        ValueError: an ``element`` of nonzero length.

    Example:
        >>> Segment([Drift(1.0), *superimpose(Quadrupole(0.2, 4.0, name="Q1"), BPM(name="B"))])
    """
    if isinstance(base, DriftKickDrift):  # Cheetah's split keeps the tracking method
        first, middle, _ = superimpose(base.element, element)
        half = DriftKickDrift(first, base.num_steps)
        return half, middle, half
    if not isinstance(base, UNIFORM):
        raise TypeError(
            f"cannot superimpose '{element.name}' on '{base.name}' ({type(base).__name__}): "
            f"only elements uniform along their length split in halves "
            f"({', '.join(cls.__name__ for cls in UNIFORM)})"
        )
    length = element.length
    if not is_concrete(length):
        raise ValueError(
            f"the superimposed element '{element.name}' must have a concrete zero length; "
            "got a traced one"
        )
    if np.any(np.asarray(length) != 0.0):
        raise ValueError(
            f"the superimposed element '{element.name}' must have zero length; got {length} m"
        )
    half = base.replace(length=base.length / 2.0)
    return half, element, half
