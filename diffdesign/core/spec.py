"""Parameter specs: what a design or fit may change, within which bounds, in which steps.

A *spec* is a PyTree whose leaves are :class:`Param` objects; a domain publishes the spec of
its design variables (ARES settings and offsets, a muography detector, ring K1 errors, XPCS
parameters) with safe defaults, and a problem's loss receives the same tree with every
:class:`Param` replaced by its value array (the *params*). The optimiser moves each value
through its :mod:`~diffdesign.core.bounds` transform, with the step size of its label, so a
user combining domains never re-derives another domain's safe steps.

Example:
    >>> spec = {"k1": Param(jnp.zeros(3), -30.0, 30.0, step=0.5, label="k1", unit="1/m^2")}
    >>> values(spec)          # {"k1": Array([0., 0., 0.])}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PyTree

from diffdesign.core.bounds import Box, Identity, Log, Transform, as_float

__all__ = [
    "Box", "Identity", "Log", "Param", "check_params", "internal", "is_param", "labels", "merge",
    "param_names", "project", "step_sizes", "to_physical", "unbounded", "values", "with_values",
]  # fmt: skip


#: Relative slack of the bounds check at construction (a few ulps of rounding).
_ROUNDING = 1e-12


class Param(eqx.Module):
    """One design or fit variable: its value, bounds, transform, step size and label.

    Attributes:
        value: the (starting) value, any shape, in ``unit``; its floating dtype is kept
            (float32 network weights stay float32), integers become float64.
        lower, upper: bounds broadcast to ``value``'s shape (``-inf``/``inf``: none).
        step: the optimiser's step size in the transform's internal coordinate (``unit``
            for :class:`Identity`, relative for :class:`Log`, tanh-argument for :class:`Box`);
            0 freezes the parameter.
        transform: how the optimiser sees the bounds (:class:`Identity`, :class:`Log`,
            :class:`Box`).
        label: the step-size group (parameters sharing a label share ``step``); also the
            name shown in histories and plots.
        unit: the physical unit, for messages and plots.

    Raises:
        ValueError: non-finite value or step, ``lower >= upper``, a value outside its
            bounds, a negative step, or bounds the transform cannot represent.
    """

    value: Array
    lower: Array
    upper: Array
    step: Array
    transform: Transform
    label: str = eqx.field(static=True)
    unit: str = eqx.field(static=True)

    def __init__(
        self,
        value: ArrayLike,
        lower: ArrayLike = -math.inf,
        upper: ArrayLike = math.inf,
        *,
        step: float,
        label: str,
        transform: Transform | None = None,
        unit: str = "",
    ):
        value = as_float(value)
        self.value = value
        self.lower = jnp.broadcast_to(jnp.asarray(lower, dtype=value.dtype), value.shape)
        self.upper = jnp.broadcast_to(jnp.asarray(upper, dtype=value.dtype), value.shape)
        self.step = jnp.asarray(step, dtype=float)
        self.transform = Identity() if transform is None else transform
        self.label = label
        self.unit = unit
        if not isinstance(label, str) or not label:
            raise ValueError(f"Param label must be a non-empty string; got {label!r}")
        if not isinstance(self.transform, Transform):
            raise TypeError(f"{label}: transform must be Identity(), Log() or Box(); got "
                            f"{type(self.transform).__name__}")  # fmt: skip
        if _concrete(value, self.lower, self.upper, self.step):
            _check_param(self, label)

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return (f"{self.label}: shape {tuple(self.value.shape)}, bounds "
                f"[{np.min(self.lower):.6g}, {np.max(self.upper):.6g}]{unit}, "
                f"{type(self.transform).__name__}, step {float(self.step):.3g}")  # fmt: skip


def _concrete(*arrays) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def _check_param(p: Param, name: str) -> None:
    value, lower, upper = np.asarray(p.value), np.asarray(p.lower), np.asarray(p.upper)
    unit = f" {p.unit}" if p.unit else ""
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite; got {value}")
    if not np.all(lower < upper):
        raise ValueError(f"{name}: bounds need lower < upper; got [{lower}, {upper}]{unit}")
    # A value within rounding of a bound (e.g. 0.91 against 0.9 + 0.01) is on the bound.
    slack = _ROUNDING * np.maximum(1.0, np.abs(np.where(np.isfinite(value), value, 0.0)))
    outside = (value < lower - slack) | (value > upper + slack)
    if np.any(outside):
        i = tuple(int(k) for k in np.unravel_index(int(np.argmax(outside)), value.shape))
        where = list(i) if i else ""
        raise ValueError(
            f"{name}{where} = {value[i]:.6g}{unit} lies outside its bounds "
            f"[{lower[i]:.6g}, {upper[i]:.6g}]{unit}"
        )
    step = float(np.asarray(p.step))
    if not (math.isfinite(step) and step >= 0):
        raise ValueError(f"{name}: step must be finite and >= 0; got {step}")
    p.transform.check(p.lower, p.upper, name)


def is_param(x: Any) -> bool:
    return isinstance(x, Param)


def _map(f, spec: PyTree, *rest: PyTree) -> PyTree:
    return jax.tree.map(f, spec, *rest, is_leaf=is_param)


def unbounded(tree: PyTree, *, step: float, label: str, unit: str = "") -> PyTree:
    """Every array of ``tree`` (e.g. network weights) as an unbounded :class:`Param`."""
    return jax.tree.map(lambda x: Param(x, step=step, label=label, unit=unit), tree)


def param_names(spec: PyTree) -> PyTree:
    """The tree of dotted names of the spec's parameters (``"detector.above.z"``)."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(spec, is_leaf=is_param)
    names = [_path_name(path) for path, _ in paths]
    return jax.tree.unflatten(treedef, names)


def _path_name(path) -> str:
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
    return ".".join(parts) or "params"


def values(spec: PyTree) -> PyTree:
    """The params: the spec with every :class:`Param` replaced by its value."""
    return _map(lambda p: p.value, spec)


def labels(spec: PyTree) -> PyTree:
    """The spec's labels, one per parameter (the tree ``optax.multi_transform`` takes)."""
    return _map(lambda p: p.label, spec)


def step_sizes(spec: PyTree) -> dict[str, Array]:
    """``{label: step}``; parameters sharing a label must share the step size."""
    steps: dict[str, Array] = {}
    for p in jax.tree.leaves(spec, is_leaf=is_param):
        if p.label in steps and _concrete(p.step, steps[p.label]):
            if float(steps[p.label]) != float(p.step):
                raise ValueError(
                    f"parameters labelled {p.label!r} have different steps "
                    f"({float(steps[p.label])} and {float(p.step)}); give them distinct labels"
                )
        steps.setdefault(p.label, p.step)
    return steps


def internal(spec: PyTree, params: PyTree | None = None) -> PyTree:
    """The optimiser's coordinates of ``params`` (default: the spec's values)."""
    params = values(spec) if params is None else params
    return _map(lambda p, x: p.transform.to_internal(x, p.lower, p.upper), spec, params)


def to_physical(spec: PyTree, z: PyTree) -> PyTree:
    """Params from the optimiser's coordinates ``z``."""
    return _map(lambda p, zi: p.transform.to_physical(zi, p.lower, p.upper), spec, z)


def project(spec: PyTree, z: PyTree) -> PyTree:
    """``z`` moved back inside every parameter's bounds (no-op for bijections)."""
    return _map(lambda p, zi: p.transform.project(zi, p.lower, p.upper), spec, z)


def check_params(spec: PyTree, params: PyTree) -> None:
    """Raise ``ValueError`` naming the parameter if ``params`` does not fit ``spec``: another
    structure, another shape, non-finite values or values outside the bounds."""
    try:
        names = param_names(spec)
        flat_spec = jax.tree.leaves(spec, is_leaf=is_param)
        flat_names = jax.tree.leaves(names)
        flat_values = jax.tree.structure(spec, is_leaf=is_param).flatten_up_to(params)
    except (ValueError, TypeError) as error:
        raise ValueError(f"params do not have the structure of the spec: {error}") from None
    for p, name, x in zip(flat_spec, flat_names, flat_values, strict=True):
        x = np.asarray(x, dtype=float)
        if x.shape != p.value.shape:
            raise ValueError(f"{name} must have shape {tuple(p.value.shape)}; got {x.shape}")
        _check_param(eqx.tree_at(lambda q: q.value, p, jnp.asarray(x, dtype=p.value.dtype)), name)


def with_values(spec: PyTree, params: PyTree) -> PyTree:
    """The spec with new values (checked against shapes and bounds)."""
    check_params(spec, params)
    return _map(lambda p, x: eqx.tree_at(lambda q: q.value, p, jnp.asarray(x, p.value.dtype)),
                spec, params)  # fmt: skip


def merge(*specs: Mapping[str, PyTree]) -> dict[str, PyTree]:
    """The union of dict specs. A name in several specs must mean the same parameter (same
    shapes, bounds, transforms, steps and labels; values may differ only if equal)."""
    merged: dict[str, PyTree] = {}
    for spec in specs:
        if not isinstance(spec, Mapping):
            raise TypeError(f"problems that add need dict specs; got {type(spec).__name__}")
        for name, tree in spec.items():
            if name in merged and not _same(merged[name], tree):
                raise ValueError(
                    f"spec entry {name!r} is defined differently by two problems; give one "
                    "of them another name or the same Param definition"
                )
            merged.setdefault(name, tree)
    return merged


def _same(a: PyTree, b: PyTree) -> bool:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    if ta != tb or any(np.shape(x) != np.shape(y) for x, y in zip(la, lb, strict=True)):
        return False
    if not _concrete(*la, *lb):  # inside jit: the structure was checked when the sum was built
        return True
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True))
