"""Checks at the public boundary: clear errors that name the field, the value and what is allowed.

Inside ``jit``/``vmap`` values are tracers whose contents are unknown; these checks then
look at shapes only and leave values alone (see :func:`is_concrete`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np


def is_concrete(value) -> bool:
    """True when ``value`` holds numbers we can look at now (not a JAX tracer)."""
    return not isinstance(value, jax.core.Tracer)


def known_zero(value) -> bool:
    """True for a concrete value that is zero everywhere (False under tracing)."""
    return is_concrete(value) and not np.any(np.asarray(value))


def refuse_traced_or_known(value, probe, bad, message: str, explain):
    """``value``, refused where ``probe`` is invalid — one rule for checks that must also hold
    under ``jit``/``vmap``. A known ``probe`` is handed to ``explain(probe_as_numpy)``, which
    raises a ``ValueError`` naming the field, the entry and what is allowed; a traced one is
    checked when the program runs (``equinox.error_if`` with ``message`` where
    ``bad(probe)`` is true), so a jitted call fails instead of returning a silent bad result.
    """
    if is_concrete(probe):
        explain(np.asarray(probe))
        return value
    import equinox as eqx

    return eqx.error_if(value, bad(probe), message)


def _where(owner: str | None) -> str:
    return f" for {owner}" if owner else ""


def float_array(value, field: str, owner: str | None = None):
    """``value`` as a float64 JAX array (tracers pass through), or a ``ValueError`` naming
    ``field`` when it is no number (a string, None, a ragged list): not NumPy's bare
    "could not convert string to float"."""
    import jax.numpy as jnp

    try:
        return jnp.asarray(value, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{field} must be a number or an array of numbers; got {_shown(value)}{_where(owner)}"
            f" ({error})"
        ) from None


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_finite(value, field: str, owner: str | None = None) -> None:
    """Raise ``ValueError`` if a concrete ``value`` has NaN or infinite entries."""
    if not is_concrete(value):
        return
    array = np.asarray(value)
    if not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)].ravel()[0]
        raise ValueError(f"{field} must be finite; got {bad}{_where(owner)}")


def check_range(
    value,
    field: str,
    *,
    low: float | None = None,
    high: float | None = None,
    owner: str | None = None,
    unit: str = "",
) -> None:
    """Raise ``ValueError`` unless every concrete entry of ``value`` lies in ``[low, high]``."""
    check_finite(value, field, owner)
    if not is_concrete(value):
        return
    array = np.asarray(value)
    lo = -np.inf if low is None else low
    hi = np.inf if high is None else high
    outside = (array < lo) | (array > hi)
    if np.any(outside):
        bad = array[outside].ravel()[0]
        allowed = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        unit_text = f" {unit}" if unit else ""
        raise ValueError(
            f"{field} must lie in {allowed}{unit_text}; got {bad}{unit_text}{_where(owner)}"
        )


def check_positive(value, field: str, owner: str | None = None, unit: str = "") -> None:
    """Raise ``ValueError`` unless every concrete entry of ``value`` is > 0."""
    check_range(value, field, low=0.0, owner=owner, unit=unit)
    if is_concrete(value) and np.any(np.asarray(value) == 0.0):
        unit_text = f" {unit}" if unit else ""
        raise ValueError(f"{field} must be > 0{unit_text}; got 0.0{unit_text}{_where(owner)}")


def check_trailing_shape(
    value, field: str, trailing: Sequence[int], owner: str | None = None
) -> None:
    """Raise ``ValueError`` unless ``value.shape`` ends with ``trailing``."""
    shape = np.shape(value)
    trailing = tuple(trailing)
    n = len(trailing)
    if len(shape) < n or tuple(shape[len(shape) - n :]) != trailing:
        expected = "(..., " + ", ".join(str(t) for t in trailing) + ")"
        raise ValueError(f"{field} must have shape {expected}; got {shape}{_where(owner)}")


def broadcast_leading_shapes(shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """Broadcast batch shapes, naming the fields if they do not fit together."""
    try:
        return np.broadcast_shapes(*shapes.values())
    except ValueError:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"leading (batch) shapes do not broadcast: {listed}") from None
