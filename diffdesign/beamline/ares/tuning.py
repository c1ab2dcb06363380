"""Tune the five ARES magnets towards a target screen beam.

Gradient-based tuning optimises through a (calibrated) model with Adam from many random
starts at once, inside the magnet ranges, and costs no machine evaluations: the design
layer's :func:`~diffdesign.core.multistart` on a
:class:`~diffdesign.beamline.ares.problems.TuningProblem`. The machine
itself is any callable from settings (5,) to the four screen observables; for studies,
`simulated_machine` plays the real accelerator (true offsets, screen noise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

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
    screen_beam,
)
from diffdesign.beamline.ares.problems import (
    MULTISTART_EPS,
    MULTISTART_STEP,
    TuningProblem,
    settings_starts,
)
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.core import Adam, CosineDecay, multistart

Machine = Callable[[np.ndarray], dict[str, float]]
_LOWER, _UPPER = jnp.asarray(SETTING_LOWER), jnp.asarray(SETTING_UPPER)


def noisy_screen(
    settings: Float[Array, " 5"],
    offsets: Float[Array, "3 2"],
    incoming: ParameterBeam,
    noise: Float[ArrayLike, ""],
    key: jax.Array,
) -> Float[Array, " 4"]:
    """The four screen observables (m; ``OBSERVABLES`` order) at settings (5,) with Gaussian
    screen noise of standard deviation ``noise`` (m), drawn from ``key`` folded with the
    settings' bits: the same point always gets the same draw. Pure, so it vmaps over
    settings, offsets, noise levels and keys (what :func:`simulated_machine` calls)."""
    beam = screen_beam(settings, offsets, incoming)
    bits = jax.lax.bitcast_convert_type(settings, jnp.uint32).reshape(-1)
    point_key = jax.random.fold_in(
        key, jnp.bitwise_xor.reduce(bits * jnp.arange(1, 11, dtype=jnp.uint32))
    )
    draws = noise * jax.random.normal(point_key, (4,))
    return jnp.stack([beam[k] for k in OBSERVABLES]) + draws


_noisy_screen = jax.jit(noisy_screen)  # one compiled program for every simulated machine


def simulated_machine(
    offsets: Float[ArrayLike, "3 2"],
    incoming: ParameterBeam | None = None,
    noise: float = 0.0,
    key: jax.Array | None = None,
) -> Machine:
    """A stand-in for the accelerator: our model with the true ``offsets`` (m).

    Each call returns the four screen observables (m) for settings (5,), with Gaussian
    screen noise of standard deviation ``noise`` (m) (:func:`noisy_screen`). The noise draw
    is a function of the key and the settings, so a study that is interrupted and resumed
    sees the same data.
    """
    offsets = jnp.asarray(offsets, dtype=float)
    check_trailing_shape(offsets, "offsets", (3, 2), "simulated_machine")
    incoming = incoming_beam() if incoming is None else incoming
    base_key = jax.random.key(0) if key is None else key

    def machine(settings: np.ndarray) -> dict[str, float]:
        settings = jnp.asarray(settings, dtype=float)
        check_trailing_shape(settings, "settings", (5,), "machine")
        check_finite(settings, "settings", "machine")
        values = np.asarray(_noisy_screen(settings, offsets, incoming, noise, base_key))
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


def tune_with_gradients(
    offsets: Float[ArrayLike, "3 2"],
    key: jax.Array,
    *,
    target: Mapping[str, float] | None = None,
    incoming: ParameterBeam | None = None,
    num_starts: int = 64,
    steps: int = 600,
    step: float = MULTISTART_STEP,
) -> TuningResult:
    """Minimise the screen-beam objective through the model with the given offsets.

    Settings stay inside the magnet ranges through the Box bijection of
    :func:`~diffdesign.beamline.ares.problems.settings_spec` (hard bounds); all starts run
    together in one vmapped, jitted Adam loop (:func:`diffdesign.core.multistart`) whose step
    decays by a cosine to 1e-3 of ``step``, so the non-smooth objective settles.

    Args:
        offsets: (3, 2) quadrupole displacements the model assumes (m).
        key: PRNG key for the random starts (see :func:`settings_starts`).
        target: target beam (see `ares.mae`); None for a centred, smallest beam.
        incoming: incoming beam; `ares.incoming_beam()` if None.
        num_starts: random starts of the multi-start Adam run.
        steps: Adam steps of each start.
        step: Adam step in the settings' Box coordinate (dimensionless, >= 0; 0 freezes).

    Raises:
        ValueError: offsets not (3, 2) or not finite, or a bad ``step``/``steps``.
    """
    offsets = jnp.asarray(offsets, dtype=float)
    check_trailing_shape(offsets, "offsets", (3, 2), "tune_with_gradients")
    check_finite(offsets, "offsets", "tune_with_gradients")
    problem = TuningProblem(offsets, target, incoming, step=step)
    starts = {"settings": settings_starts(key, (num_starts, 5))}
    optimiser = Adam(schedule=CosineDecay(steps, final_fraction=1e-3), eps=MULTISTART_EPS)
    result = multistart(problem, starts, steps=steps, key=key, optimiser=optimiser)
    best = int(result.best)
    return TuningResult(result.params["settings"][best], result.loss[best], result.history[best])
