"""A learned screen model: a generative surrogate of the camera readout, read by sampling.

:class:`SurrogateScreen` holds a trained conditional sampler of the measured moments given
the resolution and the true beam (a normalising flow of :mod:`diffdesign.surrogates`,
trained on :mod:`~diffdesign.beamline.ares.camera` shots) and a fixed set of base samples
``z`` (common random numbers). Its :meth:`~SurrogateScreen.reading` pushes every ``z``
through the sampler and returns the sample mean and standard deviation per observable, so
gradients reach the true beam moments and the resolution by reparameterisation.

The sampler works in well-scaled coordinates, so it learns shapes, not units:

* context (:func:`screen_context`): ``psi = [log(r / 1 um)]`` and per plane
  ``mu / half``, ``log(sigma / r)`` and ``asinh((half - |mu|) / b)``, with ``half`` the
  field of view's half width and ``b = sqrt(sigma^2 + r^2)`` the blurred size;
* outputs (:func:`residual_coordinates`): ``asinh((measured - true) / b)`` per observable.

This module knows no surrogate library: the sampler is any static callable
``(weights, z (m, 4), psi (m, 1), x (m, 6)) -> (m, 4)`` (float32 is fine), built where a
flow is trained.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

from diffdesign.beamline.ares.screens import OBSERVABLES, ScreenModel, field_of_view

#: Number of context inputs ``x`` per row (three per plane) and of outputs.
CONTEXT_DIM = 6
OUTPUT_DIM = len(OBSERVABLES)


def _blurred(beam: Mapping[str, Array], resolution: Array) -> tuple[Array, Array]:
    return (
        jnp.sqrt(beam["sigma_x"] ** 2 + resolution**2),
        jnp.sqrt(beam["sigma_y"] ** 2 + resolution**2),
    )


def screen_context(
    beam: Mapping[str, Float[ArrayLike, " n"]], resolution: Float[ArrayLike, " n"]
) -> tuple[Float[Array, "n 1"], Float[Array, "n 6"]]:
    """Well-scaled context ``(psi, x)`` of rows of true beams (m) at resolutions (m)."""
    resolution = jnp.asarray(resolution)
    blurred = _blurred(beam, resolution)
    columns = []
    for plane, half, b in zip("xy", field_of_view(resolution), blurred, strict=True):
        mu, sigma = jnp.asarray(beam[f"mu_{plane}"]), jnp.asarray(beam[f"sigma_{plane}"])
        columns += [mu / half, jnp.log(sigma / resolution), jnp.arcsinh((half - jnp.abs(mu)) / b)]
    psi = jnp.log(resolution / 1e-6)[:, None]
    return psi, jnp.stack(columns, axis=-1)


def residual_coordinates(
    measured: Mapping[str, ArrayLike], beam: Mapping[str, ArrayLike], resolution: ArrayLike
) -> Float[Array, "n 4"]:
    """``asinh((measured - true) / b)`` per observable (columns in ``OBSERVABLES`` order)."""
    resolution = jnp.asarray(resolution)
    b_x, b_y = _blurred(beam, resolution)
    scale = {"mu_x": b_x, "sigma_x": b_x, "mu_y": b_y, "sigma_y": b_y}
    return jnp.stack(
        [jnp.arcsinh((jnp.asarray(measured[k]) - beam[k]) / scale[k]) for k in OBSERVABLES],
        axis=-1,
    )


def measured_from_residuals(
    residuals: Float[Array, "... 4"], beam: Mapping[str, Array], resolution: Array
) -> dict[str, Array]:
    """Inverse of :func:`residual_coordinates`: measured moments (m); the beam's arrays
    broadcast against ``residuals[..., k]``."""
    b_x, b_y = _blurred(beam, resolution)
    scale = {"mu_x": b_x, "sigma_x": b_x, "mu_y": b_y, "sigma_y": b_y}
    return {
        k: beam[k] + scale[k] * jnp.sinh(residuals[..., i].astype(scale[k].dtype))
        for i, k in enumerate(OBSERVABLES)
    }


class SurrogateScreen(ScreenModel):
    """A screen read through a learned sampler of the measured moments (see the module doc).

    Attributes:
        sampler: static callable ``(weights, z (m, 4), psi (m, 1), x (m, 6)) -> (m, 4)``
            residual coordinates; must be hashable (e.g. a frozen dataclass of the flow).
        weights: the sampler's trained parameters (a PyTree of arrays).
        z: ``(k, 4)`` base samples shared by every call (common random numbers).
    """

    sampler: Callable = eqx.field(static=True)
    weights: PyTree
    z: Float[Array, "k 4"]

    def samples(
        self, beam: Mapping[str, Float[ArrayLike, ...]], resolution: Float[ArrayLike, ""]
    ) -> dict[str, Float[Array, "k ..."]]:
        """Measured moments (m) for every base sample: ``(k, *beam shape)`` arrays."""
        beam = {key: jnp.asarray(beam[key]) for key in OBSERVABLES}
        shape = jnp.broadcast_shapes(*(value.shape for value in beam.values()))
        flat = {key: jnp.broadcast_to(value, shape).reshape(-1) for key, value in beam.items()}
        n, k = flat["mu_x"].shape[0], self.z.shape[0]
        resolution = jnp.broadcast_to(jnp.asarray(resolution, flat["mu_x"].dtype), (n,))
        psi, x = screen_context(flat, resolution)
        rows = self.sampler(
            self.weights,
            jnp.tile(self.z, (n, 1)),
            jnp.repeat(psi, k, axis=0),
            jnp.repeat(x, k, axis=0),
        ).reshape(n, k, OUTPUT_DIM)
        measured = measured_from_residuals(
            jnp.moveaxis(rows, 1, 0),
            {key: value[None, :] for key, value in flat.items()},
            resolution[None, :],
        )
        return {key: value.reshape(k, *shape) for key, value in measured.items()}

    def reading(self, beam, resolution):
        drawn = self.samples(beam, resolution)
        mean = {key: jnp.mean(value, axis=0) for key, value in drawn.items()}
        std = {key: jnp.std(value, axis=0, ddof=1) for key, value in drawn.items()}
        return mean, std
