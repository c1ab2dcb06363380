"""A ring lattice as arrays: the PyTree the optics are pure functions of.

:class:`Lattice` holds every element's numerical fields in stacked arrays
(:class:`~diffdesign.ring._passes.ElementParams`) and, as static metadata, names, AT classes,
pass methods and the grouping of elements that share a map (so the optics vmap over groups
instead of looping over 1,600 elements). Change fields functionally
(:meth:`Lattice.with_field`, :meth:`Lattice.add_k1`); every optics function is then
differentiable with respect to them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from diffdesign.ring._passes import ElementParams
from diffdesign.ring.description import RingDescription

#: AT pass method -> the map the optics use. Radiation variants map to their plain
#: integrators: these optics are 4-D (fixed momentum, no radiation, RF off).
_PASS_KINDS = {
    "IdentityPass": "identity",
    "AperturePass": "identity",
    "EAperturePass": "identity",
    "DriftPass": "drift",
    "RFCavityPass": "drift",
    "CavityPass": "drift",
    "StrMPoleSymplectic4Pass": "straight",
    "StrMPoleSymplectic4RadPass": "straight",
    "BndMPoleSymplectic4Pass": "bend",
    "BndMPoleSymplectic4RadPass": "bend",
    "BndMPoleSymplectic4E2Pass": "bend",
    "BndMPoleSymplectic4E2RadPass": "bend",
    "ThinMPolePass": "thin",
    "CorrectorPass": "corrector",
    "Matrix66Pass": "matrix",
}

#: Bend pass methods with X. Huang's curvilinear body and second-order edges (ElementParams.e2).
_E2_PASSES = frozenset({"BndMPoleSymplectic4E2Pass", "BndMPoleSymplectic4E2RadPass"})

INTEGRATORS = ("at", "exact")

_FIELDS = {
    # ElementParams attribute: (AT field, default)
    "length": ("Length", 0.0),
    "bending_angle": ("BendingAngle", 0.0),
    "entrance_angle": ("EntranceAngle", 0.0),
    "exit_angle": ("ExitAngle", 0.0),
    "full_gap": ("FullGap", 0.0),
    "fringe_int1": ("FringeInt1", 0.0),
    "fringe_int2": ("FringeInt2", 0.0),
    "fringe_bend_entrance": ("FringeBendEntrance", 1),
    "fringe_bend_exit": ("FringeBendExit", 1),
    "fringe_quad_entrance": ("FringeQuadEntrance", 0),
    "fringe_quad_exit": ("FringeQuadExit", 0),
    "h1": ("H1", 0.0),
    "h2": ("H2", 0.0),
}


class Lattice(eqx.Module):
    """A ring: stacked element fields plus static structure.

    Attributes:
        params: numerical fields, one row per element.
        names: element names (AT ``FamName``), in beam order.
        classes: AT classes (``Quadrupole``, ``Dipole``, ``Monitor``, ...).
        kinds: the map used per element (``drift``, ``straight``, ``bend``, ...).
        steps: integrator steps per element (0 for elements without an integrator).
        nonlinear: per element, True for thick magnets with multipoles beyond quadrupole.
        energy: reference energy, eV. periodicity: copies of these elements in the ring.
        integrator: default integrator for thick magnets, ``"at"`` or ``"exact"``.
    """

    params: ElementParams
    names: tuple[str, ...] = eqx.field(static=True)
    classes: tuple[str, ...] = eqx.field(static=True)
    kinds: tuple[str, ...] = eqx.field(static=True)
    steps: tuple[int, ...] = eqx.field(static=True)
    nonlinear: tuple[bool, ...] = eqx.field(static=True)
    energy: float = eqx.field(static=True)
    periodicity: int = eqx.field(static=True)
    particle: str = eqx.field(static=True)
    integrator: str = eqx.field(static=True)
    name: str = eqx.field(static=True, default="")

    @classmethod
    def from_description(cls, description: RingDescription, integrator: str = "at") -> Lattice:
        """Build the arrays from a :class:`RingDescription`.

        Args:
            description: elements as AT field dictionaries.
            integrator: ``"at"`` (AT's 4th-order integrator with each element's
                NumIntSteps: agrees with pyAT) or ``"exact"`` (closed-form linear flows).

        Raises:
            ValueError: unknown pass method, missing or non-finite fields, no elements.
        """
        if integrator not in INTEGRATORS:
            raise ValueError(f"integrator must be one of {INTEGRATORS}; got {integrator!r}")
        elements = description.elements
        if not elements:
            raise ValueError(f"lattice {description.source or description.name!r} has no elements")
        width = 2  # the most coefficients any element's pass uses (AT's stop at MaxOrder)
        for e in elements:
            used = max(len(e.get("PolynomB", ())), len(e.get("PolynomA", ())))
            if "MaxOrder" in e:
                used = min(used, int(e["MaxOrder"]) + 1)
            width = max(width, used)
        n = len(elements)
        columns: dict[str, list[Any]] = {k: [] for k in _FIELDS}
        polynom_a = np.zeros((n, width))
        polynom_b = np.zeros((n, width))
        kick = np.zeros((n, 2))
        t1, t2 = np.zeros((n, 6)), np.zeros((n, 6))
        r1 = np.tile(np.eye(6), (n, 1, 1))
        r2 = np.tile(np.eye(6), (n, 1, 1))
        m66 = np.tile(np.eye(6), (n, 1, 1))
        kinds, steps_list, nonlinear_list, e2_list = [], [], [], []
        for i, e in enumerate(elements):
            label = f"element {i} ({e.get('FamName', '?')!r})"
            method = e.get("PassMethod", "IdentityPass")
            if method not in _PASS_KINDS:
                raise ValueError(
                    f"{label}: pass method {method!r} is not supported; supported: "
                    f"{sorted(_PASS_KINDS)}"
                )
            kind = _PASS_KINDS[method]
            kinds.append(kind)
            e2_list.append(int(method in _E2_PASSES))
            for attr, (at_name, default) in _FIELDS.items():
                columns[attr].append(_number(e.get(at_name, default), at_name, label))
            max_order = int(e.get("MaxOrder", max(len(e.get("PolynomB", ())) - 1, 0)))
            for target, key in ((polynom_a, "PolynomA"), (polynom_b, "PolynomB")):
                values = _vector(e.get(key, []), key, label)
                if "MaxOrder" in e:
                    values = values[: max_order + 1]  # AT's passes stop at MaxOrder
                target[i, : len(values)] = values
            if "KickAngle" in e:
                kick[i] = _vector(e["KickAngle"], "KickAngle", label, size=2)
            for target, key in ((t1, "T1"), (t2, "T2")):
                if key in e:
                    target[i] = _vector(e[key], key, label, size=6)
            for target, key in ((r1, "R1"), (r2, "R2"), (m66, "M66")):
                if key in e:
                    target[i] = _matrix(e[key], key, label)
            if kind == "straight":
                # AT's straight magnets ignore bend fields; zero them so one map serves both.
                for attr in ("bending_angle", "entrance_angle", "exit_angle"):
                    columns[attr][-1] = 0.0
            if kind in ("straight", "bend"):
                steps = int(e.get("NumIntSteps", 10))
                if steps < 1:
                    raise ValueError(f"{label}: NumIntSteps must be >= 1; got {steps}")
                if columns["length"][-1] <= 0.0:
                    raise ValueError(f"{label}: a thick magnet needs Length > 0")
            else:
                steps = 0
            if kind == "thin" and _number(e.get("BendingAngle", 0.0), "BendingAngle", label):
                raise ValueError(f"{label}: thin multipoles with a BendingAngle are not supported")
            steps_list.append(steps)
            nonlinear_list.append(kind in ("straight", "bend") and max_order >= 2)
        params = ElementParams(
            length=jnp.asarray(columns["length"], float),
            polynom_a=jnp.asarray(polynom_a),
            polynom_b=jnp.asarray(polynom_b),
            bending_angle=jnp.asarray(columns["bending_angle"], float),
            entrance_angle=jnp.asarray(columns["entrance_angle"], float),
            exit_angle=jnp.asarray(columns["exit_angle"], float),
            full_gap=jnp.asarray(columns["full_gap"], float),
            fringe_int1=jnp.asarray(columns["fringe_int1"], float),
            fringe_int2=jnp.asarray(columns["fringe_int2"], float),
            fringe_bend_entrance=jnp.asarray(columns["fringe_bend_entrance"], int),
            fringe_bend_exit=jnp.asarray(columns["fringe_bend_exit"], int),
            fringe_quad_entrance=jnp.asarray(columns["fringe_quad_entrance"], int),
            fringe_quad_exit=jnp.asarray(columns["fringe_quad_exit"], int),
            kick_angle=jnp.asarray(kick),
            t1=jnp.asarray(t1),
            t2=jnp.asarray(t2),
            r1=jnp.asarray(r1),
            r2=jnp.asarray(r2),
            m66=jnp.asarray(m66),
            # None without E2 bends: the maps then leave out the E2 terms (see _passes)
            h1=jnp.asarray(columns["h1"], float) if any(e2_list) else None,
            h2=jnp.asarray(columns["h2"], float) if any(e2_list) else None,
            e2=jnp.asarray(e2_list, int) if any(e2_list) else None,
        )
        if description.energy <= 0.0 or not np.isfinite(description.energy):
            raise ValueError(f"energy must be a positive number of eV; got {description.energy}")
        return cls(
            params=params,
            names=tuple(str(e.get("FamName", "")) for e in elements),
            classes=tuple(str(e.get("Class", "")) for e in elements),
            kinds=tuple(kinds),
            steps=tuple(steps_list),
            nonlinear=tuple(nonlinear_list),
            energy=float(description.energy),
            periodicity=int(description.periodicity),
            particle=description.particle,
            integrator=integrator,
            name=description.name,
        )

    # ------------------------------------------------------------------ structure

    @property
    def groups(self) -> tuple[tuple[tuple[str, int, bool], tuple[int, ...]], ...]:
        """((map, steps, nonlinear), element indices) for the elements that share one
        vmapped map. Straight and bent magnets share the ``magnet`` map; with AT's
        integrator, linear and nonlinear magnets share it too (only the exact integrator
        treats multipoles differently)."""
        found: dict[tuple[str, int, bool], list[int]] = {}
        for i, (kind, steps, nonlinear) in enumerate(
            zip(self.kinds, self.steps, self.nonlinear, strict=True)
        ):
            key = (
                "magnet" if kind in ("straight", "bend") else kind,
                steps,
                nonlinear and self.integrator == "exact",
            )
            found.setdefault(key, []).append(i)
        return tuple((key, tuple(idx)) for key, idx in found.items())

    @property
    def n_elements(self) -> int:
        return len(self.names)

    def s_positions(self) -> Array:
        """(n + 1,) longitudinal position of each element's entrance and of the ring's end, m."""
        return jnp.concatenate([jnp.zeros(1), jnp.cumsum(self.params.length)])

    @property
    def circumference(self) -> float:
        """Length of the whole ring (all periods), m."""
        return float(np.sum(np.asarray(self.params.length))) * self.periodicity

    def indices(self, selector: str | Sequence[int]) -> np.ndarray:
        """Element indices by AT class (``"Quadrupole"``, ``"Monitor"``), by name pattern
        (a regular expression matched against the whole name) or given explicitly.

        Raises:
            ValueError: no element matches, or an index is out of range.
        """
        if isinstance(selector, str):
            if selector in self.classes:
                found = [i for i, c in enumerate(self.classes) if c == selector]
            else:
                pattern = re.compile(selector)
                found = [i for i, n in enumerate(self.names) if pattern.fullmatch(n)]
            if not found:
                raise ValueError(
                    f"no element matches {selector!r} (classes: {sorted(set(self.classes))})"
                )
            return np.asarray(found, dtype=int)
        found = np.asarray(selector, dtype=int).reshape(-1)
        if found.size and (found.min() < 0 or found.max() >= self.n_elements):
            raise ValueError(f"element indices must lie in [0, {self.n_elements}); got {selector}")
        return found

    # ------------------------------------------------------------------ updates

    def with_field(self, field: str, indices: ArrayLike, values: ArrayLike) -> Lattice:
        """A copy with ``params.<field>[indices] = values`` (differentiable in `values`).

        Args:
            field: an :class:`ElementParams` attribute (``length``, ``polynom_b``, ...).
            indices: (k,) element indices.
            values: broadcastable to ``params.<field>[indices]``.
        """
        if not hasattr(self.params, field):
            raise ValueError(f"unknown element field {field!r}")
        current = getattr(self.params, field)
        if current is None:
            raise ValueError(f"field {field!r} exists only in lattices with E2 bends")
        updated = current.at[jnp.asarray(indices)].set(values)
        return eqx.tree_at(lambda lat: getattr(lat.params, field), self, updated)

    def k1(self, indices: ArrayLike) -> Array:
        """Normal quadrupole gradients PolynomB[1] of the given elements, 1/m^2."""
        return self.params.polynom_b[jnp.asarray(indices), 1]

    def add_k1(self, indices: ArrayLike, dk1: ArrayLike) -> Lattice:
        """A copy with PolynomB[1] of the given elements increased by `dk1` (1/m^2)."""
        idx = jnp.asarray(indices)
        updated = self.params.polynom_b.at[idx, 1].add(dk1)
        return eqx.tree_at(lambda lat: lat.params.polynom_b, self, updated)

    def add_k1_relative(self, indices: ArrayLike, relative: ArrayLike) -> Lattice:
        """A copy with PolynomB[1] scaled by (1 + relative): relative gradient errors."""
        idx = jnp.asarray(indices)
        updated = self.params.polynom_b.at[idx, 1].multiply(1.0 + jnp.asarray(relative))
        return eqx.tree_at(lambda lat: lat.params.polynom_b, self, updated)

    def with_integrator(self, integrator: str) -> Lattice:
        if integrator not in INTEGRATORS:
            raise ValueError(f"integrator must be one of {INTEGRATORS}; got {integrator!r}")
        return dataclasses.replace(self, integrator=integrator)


def _number(value: Any, field: str, label: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label}: {field} must be a number; got {value!r}") from None
    if not np.isfinite(number):
        raise ValueError(f"{label}: {field} must be finite; got {number}")
    return number


def _vector(value: Any, field: str, label: str, size: int | None = None) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{label}: {field} must be numbers; got {value!r}") from None
    if size is not None and array.size != size:
        raise ValueError(f"{label}: {field} must have {size} values; got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{label}: {field} must be finite; got {array}")
    return array


def _matrix(value: Any, field: str, label: str) -> np.ndarray:
    array = _vector(value, field, label, size=36)
    return array.reshape(6, 6)
