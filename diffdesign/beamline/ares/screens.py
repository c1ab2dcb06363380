"""What a screen reads: the measured beam moments and their scatter, given the true beam.

A screen model maps the true beam moments at the screen (``mu_x, sigma_x, mu_y, sigma_y``,
m) and the screen's resolution ``r`` (m: the object-plane size of one binned camera pixel,
which is also the point-spread sigma of its optics) to the expected measured moments and
their standard deviations. The calibration's whitened residuals divide by those standard
deviations, and its Fisher information uses both, so any model here can be designed with.

- :class:`IdealisedScreen` is the differentiable idealisation: unbiased moments, photon and
  jitter noise, and information lost smoothly where the beam leaves the camera's field of
  view. Its field of view is the ARES camera's 612 x 510 binned pixels (2448 x 2040 pixels,
  binning 4) at the pixel size ``r``: finer resolution means higher magnification and a
  smaller field of view.
- Learned screen models (a surrogate of a black-box camera readout) implement the same
  :meth:`ScreenModel.reading`.

The cost of a screen station (:func:`screen_cost`) is in kEUR (thousands of euros).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import check_positive

#: Binned camera pixels (width, height) of AREABSCR1: 2448 x 2040 pixels, binning 4.
SENSOR_PIXELS = (612, 510)
#: Today's binned pixel of AREABSCR1 in x (4 x 3.3198 um), the reference resolution (m).
TODAY_RESOLUTION = 4 * 3.3198e-6
#: Allowed resolutions (m): 2 um (a microscope objective) to 100 um (a wide-angle lens).
RESOLUTION_RANGE = (2e-6, 100e-6)

OBSERVABLES = ("mu_x", "sigma_x", "mu_y", "sigma_y")


class ScreenModel(eqx.Module):
    """The measurement a screen makes of a beam (an object, so models can be swapped)."""

    @abc.abstractmethod
    def reading(
        self, beam: Mapping[str, Float[Array, ...]], resolution: Float[ArrayLike, ""]
    ) -> tuple[dict[str, Array], dict[str, Array]]:
        """Expected measured moments and their standard deviations (m).

        Args:
            beam: true ``mu_x, sigma_x, mu_y, sigma_y`` at the screen (m), arrays of one
                shape.
            resolution: binned pixel size = point-spread sigma (m), a scalar.

        Returns:
            ``(mean, std)``: dicts over ``OBSERVABLES`` with the beam's shape. Where the
            beam is off the screen the std grows without bound (no information).
        """


def field_of_view(resolution: Float[ArrayLike, ""]) -> tuple[Array, Array]:
    """Half widths (x, y) in m of the camera's field of view at this resolution."""
    resolution = jnp.asarray(resolution)
    return 0.5 * SENSOR_PIXELS[0] * resolution, 0.5 * SENSOR_PIXELS[1] * resolution


def on_screen(beam: Mapping[str, Array], resolution, *, margin: float = 3.0) -> Array:
    """Smooth fraction in (0, 1) saying whether the beam's ``margin``-sigma ellipse lies
    within the field of view: 1 well inside, 0 well outside, with a transition one
    beam sigma wide (a product over the two planes)."""
    half_x, half_y = field_of_view(resolution)
    fraction = 1.0
    for mu, sigma, half in (
        (beam["mu_x"], beam["sigma_x"], half_x),
        (beam["mu_y"], beam["sigma_y"], half_y),
    ):
        slack = (half - jnp.abs(mu) - margin * sigma) / sigma
        fraction = fraction * jax.nn.sigmoid(4.0 * slack)
    return fraction


#: Floor of the on-screen fraction that divides the scatter (a beam far off the screen gets
#: a scatter 1e8 times its on-screen one, not an infinite one, so gradients stay finite).
MIN_ON_SCREEN = 1e-8


class IdealisedScreen(ScreenModel):
    """Unbiased moments with photon-statistics and jitter noise (m).

    std(mu)^2 = floor_mu^2 + (sigma^2 + r^2) / photons and
    std(sigma)^2 = floor_sigma^2 + (relative_sigma sigma)^2 + (sigma^2 + r^2)^2 /
    (2 photons sigma^2): the centroid and the point-spread-deconvolved size of ``photons``
    detected photons of a Gaussian blurred by the point spread ``r``, plus shot-to-shot
    jitter. Divided by :func:`on_screen` (squared), so a beam off the screen carries no
    information.

    Attributes:
        photons: detected photons per image.
        floor_mu: centroid jitter (m).
        floor_sigma: size floor (m).
        relative_sigma: relative size jitter.
    """

    photons: float = 2e4
    floor_mu: float = 5e-6
    floor_sigma: float = 2e-6
    relative_sigma: float = 0.02

    def reading(self, beam, resolution):
        resolution = jnp.asarray(resolution)
        inside = jnp.maximum(on_screen(beam, resolution), MIN_ON_SCREEN)
        mean, std = {}, {}
        for plane in ("x", "y"):
            mu, sigma = beam[f"mu_{plane}"], beam[f"sigma_{plane}"]
            blurred = sigma**2 + resolution**2
            var_mu = self.floor_mu**2 + blurred / self.photons
            var_sigma = (
                self.floor_sigma**2
                + (self.relative_sigma * sigma) ** 2
                + blurred**2 / (2.0 * self.photons * sigma**2)
            )
            mean[f"mu_{plane}"], mean[f"sigma_{plane}"] = mu, sigma
            std[f"mu_{plane}"] = jnp.sqrt(var_mu) / inside
            std[f"sigma_{plane}"] = jnp.sqrt(var_sigma) / inside
        return {k: mean[k] for k in OBSERVABLES}, {k: std[k] for k in OBSERVABLES}


#: Cost of a screen station without its camera optics (kEUR): chamber, actuator, screen.
STATION_COST = 20.0
#: Cost of the optics at today's resolution (kEUR); it scales as (TODAY_RESOLUTION / r)^2.
OPTICS_COST = 10.0


def screen_cost(resolution: Float[ArrayLike, ...]) -> Array:
    """Cost of one screen station in kEUR: ``STATION_COST + OPTICS_COST (r0 / r)^2`` with
    r0 = ``TODAY_RESOLUTION`` (finer optics need more magnification and light)."""
    return STATION_COST + OPTICS_COST * (TODAY_RESOLUTION / jnp.asarray(resolution)) ** 2


def check_resolution(resolution, field: str = "resolution") -> None:
    """Refuse a concrete resolution outside ``RESOLUTION_RANGE`` (m)."""
    check_positive(resolution, field, "ARES screen", "m")
    low, high = RESOLUTION_RANGE
    value = float(jnp.min(jnp.asarray(resolution))), float(jnp.max(jnp.asarray(resolution)))
    slack = 1e-9  # relative: a design that ends on a bound may be a few ulps beyond it
    if value[0] < low * (1 - slack) or value[1] > high * (1 + slack):
        raise ValueError(
            f"{field} must lie in [{low:g}, {high:g}] m (binned pixel = point-spread sigma); "
            f"got {value[0]:g} .. {value[1]:g}"
        )
