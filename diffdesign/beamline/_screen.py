"""Screen images of beams, differentiable in the beam (used by `Screen.reading`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from diffdesign.beamline.beams import Beam, ParameterBeam, ParticleBeam


def image(screen, beam: Beam) -> Float[Array, "... height width"]:
    """Fraction of the beam's charge on each (binned) pixel of ``screen``.

    Rows run from -y to +y and columns from -x to +x, in the screen's own frame (the
    screen's misalignment is subtracted from the beam positions).
    """
    x_centres, y_centres = screen.pixel_centres()
    step = screen.pixel_size * screen.binning
    if isinstance(beam, ParameterBeam):
        return _gaussian_image(beam, screen.misalignment, x_centres, y_centres, step)
    if isinstance(beam, ParticleBeam):
        return _deposit(beam, screen.misalignment, x_centres, y_centres, step)
    raise TypeError(f"beam must be a ParameterBeam or ParticleBeam; got {type(beam).__name__}")


def _gaussian_image(beam, misalignment, x_centres, y_centres, step):
    """Bivariate normal density at the pixel centres times the pixel area."""
    mx = (beam.mu_x - misalignment[..., 0])[..., None, None]
    my = (beam.mu_y - misalignment[..., 1])[..., None, None]
    sxx = beam.covariance[..., 0, 0][..., None, None]
    syy = beam.covariance[..., 2, 2][..., None, None]
    sxy = beam.covariance[..., 0, 2][..., None, None]
    det = sxx * syy - sxy**2
    dx = x_centres[None, :] - mx
    dy = y_centres[:, None] - my
    quadratic = (syy * dx**2 - 2.0 * sxy * dx * dy + sxx * dy**2) / det
    density = jnp.exp(-0.5 * quadratic) / (2.0 * jnp.pi * jnp.sqrt(det))
    return density * step[0] * step[1]


def _deposit(beam, misalignment, x_centres, y_centres, step):
    """Cloud-in-cell (bilinear) deposition of the particles' charge weights."""
    x = beam.particles[..., 0] - misalignment[..., 0, None]
    y = beam.particles[..., 2] - misalignment[..., 1, None]
    width, height = x_centres.shape[0], y_centres.shape[0]
    # Positions in units of pixels, measured from the centre of the first pixel.
    u = (x - x_centres[0]) / step[0]
    v = (y - y_centres[0]) / step[1]
    weights = jnp.abs(beam.particle_charges) * beam.survival_probabilities
    weights = weights / jnp.abs(beam.particle_charges).sum(-1, keepdims=True)
    weights = jnp.broadcast_to(weights, u.shape)

    def one(u, v, w):
        i0, j0 = jnp.floor(u), jnp.floor(v)
        fu, fv = u - i0, v - j0
        i0, j0 = i0.astype(int), j0.astype(int)
        canvas = jnp.zeros((height, width))
        for di, dj, share in (
            (0, 0, (1 - fu) * (1 - fv)),
            (1, 0, fu * (1 - fv)),
            (0, 1, (1 - fu) * fv),
            (1, 1, fu * fv),
        ):
            i, j = i0 + di, j0 + dj
            inside = (i >= 0) & (i < width) & (j >= 0) & (j < height)
            canvas = canvas.at[jnp.where(inside, j, height), jnp.where(inside, i, width)].add(
                share * w, mode="drop"
            )
        return canvas

    batch = u.shape[:-1]
    flat = [a.reshape(-1, a.shape[-1]) for a in (u, v, weights)]
    return jax.vmap(one)(*flat).reshape(*batch, height, width)
