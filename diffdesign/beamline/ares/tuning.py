"""Tune the five ARES magnets towards a target screen beam.

Gradient-based tuning optimises through a (calibrated) model with Adam from many random
starts at once, inside the magnet ranges, and costs no machine evaluations. The machine
itself is any callable from settings (5,) to the four screen observables; for studies,
`simulated_machine` plays the real accelerator (true offsets, screen noise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import check_finite, check_trailing_shape
from diffdesign.beamline.ares._lattice import (
    OBSERVABLES,
    SETTING_LOWER,
    SETTING_UPPER,
    incoming_beam,
    mae,
    screen_beam,
)
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.design.multistart import minimise_multistart

Machine = Callable[[np.ndarray], dict[str, float]]
_LOWER, _UPPER = jnp.asarray(SETTING_LOWER), jnp.asarray(SETTING_UPPER)


def simulated_machine(
    offsets: Float[ArrayLike, "3 2"],
    incoming: ParameterBeam | None = None,
    noise: float = 0.0,
    key: jax.Array | None = None,
) -> Machine:
    """A stand-in for the accelerator: our model with the true ``offsets`` (m).

    Each call returns the four screen observables (m) for settings (5,), with Gaussian
    screen noise of standard deviation ``noise`` (m). The noise draw is a function of the
    key and the settings, so a study that is interrupted and resumed sees the same data.
    """
    offsets = jnp.asarray(offsets, dtype=float)
    check_trailing_shape(offsets, "offsets", (3, 2), "simulated_machine")
    incoming = incoming_beam() if incoming is None else incoming
    base_key = jax.random.key(0) if key is None else key

    @jax.jit
    def observe(settings):
        beam = screen_beam(settings, offsets, incoming)
        # Fold the settings' bits into the key: the same point always gets the same draw.
        bits = jax.lax.bitcast_convert_type(settings, jnp.uint32).reshape(-1)
        point_key = jax.random.fold_in(
            base_key, jnp.bitwise_xor.reduce(bits * jnp.arange(1, 11, dtype=jnp.uint32))
        )
        draws = noise * jax.random.normal(point_key, (4,))
        return jnp.stack([beam[k] for k in OBSERVABLES]) + draws

    def machine(settings: np.ndarray) -> dict[str, float]:
        settings = jnp.asarray(settings, dtype=float)
        check_trailing_shape(settings, "settings", (5,), "machine")
        check_finite(settings, "settings", "machine")
        values = np.asarray(observe(settings))
        return dict(zip(OBSERVABLES, values.tolist(), strict=True))

    return machine


class TuningResult(NamedTuple):
    """Attributes:
    settings: (5,) best settings found, inside the magnet ranges.
    predicted: the model's objective there (m).
    history: (steps,) objective of the best start along the optimisation (m).
    """

    settings: Array
    predicted: Array
    history: Array


def _to_settings(z: Float[Array, " 5"]) -> Float[Array, " 5"]:
    return _LOWER + (_UPPER - _LOWER) * jax.nn.sigmoid(z)


class _ModelObjective(eqx.Module):
    """The target-beam objective through the model, of unconstrained settings z (5,)."""

    offsets: Array
    incoming: ParameterBeam
    target: dict[str, float]

    def __call__(self, z: Float[Array, " 5"]) -> Array:
        return mae(screen_beam(_to_settings(z), self.offsets, self.incoming), self.target)


def tune_with_gradients(
    offsets: Float[ArrayLike, "3 2"],
    key: jax.Array,
    *,
    target: Mapping[str, float] | None = None,
    incoming: ParameterBeam | None = None,
    num_starts: int = 64,
    steps: int = 600,
    learning_rate: float = 0.05,
) -> TuningResult:
    """Minimise the screen-beam objective through the model with the given offsets.

    Settings are mapped through a sigmoid into the magnet ranges (hard bounds); all
    starts run together in one vmapped, jitted Adam loop.

    Args:
        offsets: (3, 2) quadrupole displacements the model assumes (m).
        key: PRNG key for the random starts.
        target: target beam (see `ares.mae`); None for a centred, smallest beam.
        incoming: incoming beam; `ares.incoming_beam()` if None.
        num_starts, steps, learning_rate: the multi-start Adam run.
    """
    offsets = jnp.asarray(offsets, dtype=float)
    check_trailing_shape(offsets, "offsets", (3, 2), "tune_with_gradients")
    check_finite(offsets, "offsets", "tune_with_gradients")
    incoming = incoming_beam() if incoming is None else incoming
    target = dict(target or {})

    objective = _ModelObjective(offsets, incoming, target)
    starts = jax.random.normal(key, (num_starts, 5))
    result = minimise_multistart(objective, starts, steps=steps, learning_rate=learning_rate)
    best = int(result.best)
    return TuningResult(_to_settings(result.params[best]), result.loss[best], result.history[best])
