"""The ARES experimental area's screens as a detector with geometry.

A :class:`Diagnostics` is one or more screens, each placed in a free drift of the segment
(:class:`ScreenPlacement`: the drift, the distance from the drift's entrance, m, and the
resolution, m) and read through one :class:`~diffdesign.beamline.ares.screens.ScreenModel`.
The readings are differentiable in the settings, the offsets, the incoming beam, the
positions and the resolutions, so a design can move the screens while it chooses the
calibration settings. The calibration's whitened residuals
(:func:`~diffdesign.beamline.ares.calibration.whitened_residuals`) take a ``Diagnostics``:
the model of a measurement is its expected reading, its noise the reading's scatter.

Today's screen (:func:`today`) is AREABSCR1 at the end of the 0.45 m drift after AREAMCHM1
with the camera's binned pixel (13.28 um) as resolution; it gives exactly
:func:`~diffdesign.beamline.ares.screen_beam`. Observables of the first screen are named
``mu_x, sigma_x, mu_y, sigma_y`` as everywhere else; those of further screens are prefixed
with the screen's name (``"AREABSCR0.mu_x"``).

Example:
    >>> extra = ScreenPlacement("AREABSCR0", "Drift_AREAMQZM1", 0.2, 20e-6)
    >>> diagnostics = Diagnostics((today_screen(), extra))
    >>> mean, std = diagnostics.reading(settings, offsets, ares.incoming_beam())
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import check_finite, is_concrete
from diffdesign.beamline.ares._lattice import OBSERVABLES, SCREEN, segment
from diffdesign.beamline.ares.screens import (
    TODAY_RESOLUTION,
    IdealisedScreen,
    ScreenModel,
    check_resolution,
    screen_cost,
)
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.beamline.elements import Drift
from diffdesign.beamline.segment import Segment

#: The free drifts of the segment (m), in beam order: where a screen may stand.
DRIFTS = {
    "Drift_AREASOLA1": 0.17504,
    "Drift_AREAMQZM1": 0.428,
    "Drift_AREAMQZM2": 0.204,
    "Drift_AREAMCVM1": 0.204,
    "Drift_AREAMQZM3": 0.179,
    "Drift_AREAMCHM1": 0.45,
}
#: The last drift: its screen may stand at its very end (nothing follows it).
LAST_DRIFT = "Drift_AREAMCHM1"
#: Half the length of a screen station (m): the closest a screen's centre may come to a
#: magnet.
CLEARANCE = 0.05


def position_range(drift: str) -> tuple[float, float]:
    """Allowed distances (m) of a screen from the entrance of ``drift``."""
    if drift not in DRIFTS:
        raise ValueError(f"drift must be one of {list(DRIFTS)}; got {drift!r}")
    length = DRIFTS[drift]
    return CLEARANCE, length if drift == LAST_DRIFT else length - CLEARANCE


class ScreenPlacement(eqx.Module):
    """One screen: its name, the drift it stands in, its distance from the drift's entrance
    (m) and its resolution (m: binned pixel size = point-spread sigma).

    Raises:
        ValueError: an unknown drift; a position outside ``position_range(drift)`` (a
            screen inside a magnet or beyond the drift); a resolution outside
            ``screens.RESOLUTION_RANGE``; NaNs. Checked where the values are concrete.
    """

    name: str = eqx.field(static=True)
    drift: str = eqx.field(static=True)
    position: Array
    resolution: Array

    def __init__(self, name: str, drift: str, position: ArrayLike, resolution: ArrayLike):
        self.name, self.drift = name, drift
        low, high = position_range(drift)
        self.position = jnp.asarray(position, dtype=float)
        self.resolution = jnp.asarray(resolution, dtype=float)
        owner = f"screen {name!r}"
        check_finite(self.position, "position", owner)
        check_finite(self.resolution, "resolution", owner)
        if is_concrete(self.position):
            value = float(np.asarray(self.position))
            if not low - 1e-12 <= value <= high + 1e-12:
                raise ValueError(
                    f"{owner}: position must lie in [{low:g}, {high:g}] m from the entrance "
                    f"of {drift} ({DRIFTS[drift]:g} m long, {CLEARANCE:g} m clear of its "
                    f"magnets); got {value:g}"
                )
        if is_concrete(self.resolution):
            check_resolution(self.resolution, f"{owner}: resolution")


def today_screen(resolution: ArrayLike = TODAY_RESOLUTION) -> ScreenPlacement:
    """AREABSCR1 where it stands: the end of the drift after AREAMCHM1."""
    return ScreenPlacement(SCREEN, LAST_DRIFT, DRIFTS[LAST_DRIFT], resolution)


class Diagnostics(eqx.Module):
    """Screens along the segment and the model of what each reads.

    Attributes:
        screens: the placements; the first one's observables are unprefixed.
        model: the screen model (default :class:`IdealisedScreen`).
    """

    screens: tuple[ScreenPlacement, ...]
    model: ScreenModel = IdealisedScreen()

    def __check_init__(self):
        if not self.screens:
            raise ValueError("Diagnostics needs at least one screen")
        names = [s.name for s in self.screens]
        if len(set(names)) != len(names):
            raise ValueError(f"screen names must be unique; got {names}")

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the observables, screen by screen."""
        others = self.screens[1:]
        return OBSERVABLES + tuple(f"{s.name}.{k}" for s in others for k in OBSERVABLES)

    def true_moments(
        self,
        settings: Float[Array, "... 5"],
        offsets: Float[Array, "... 3 2"],
        incoming: ParameterBeam,
    ) -> dict[str, Array]:
        """The beam's ``mu_x, sigma_x, mu_y, sigma_y`` (m) at every screen, by observable
        name; broadcasts over the leading axes of settings and offsets."""
        batch = jnp.broadcast_shapes(settings.shape[:-1], offsets.shape[:-2])
        settings = jnp.broadcast_to(settings, (*batch, 5))
        offsets = jnp.broadcast_to(offsets, (*batch, 3, 2))
        elements = list(segment(settings, offsets))
        names = [e.name for e in elements]
        moments = {}
        for i, screen in enumerate(self.screens):
            host = names.index(screen.drift)
            upstream = [*elements[:host], Drift(screen.position, name=f"to_{screen.name}")]
            beam = Segment(upstream).track(incoming)
            prefix = "" if i == 0 else f"{screen.name}."
            for k in OBSERVABLES:
                moments[prefix + k] = getattr(beam, k)
        return moments

    def reading(
        self,
        settings: Float[Array, "... 5"],
        offsets: Float[Array, "... 3 2"],
        incoming: ParameterBeam,
    ) -> tuple[dict[str, Array], dict[str, Array]]:
        """Expected measured moments and their standard deviations (m), by observable."""
        true = self.true_moments(settings, offsets, incoming)
        mean, std = {}, {}
        for i, screen in enumerate(self.screens):
            prefix = "" if i == 0 else f"{screen.name}."
            m, s = self.model.reading({k: true[prefix + k] for k in OBSERVABLES}, screen.resolution)
            for k in OBSERVABLES:
                mean[prefix + k], std[prefix + k] = m[k], s[k]
        return mean, std

    def cost(self) -> Array:
        """Cost of the screens in kEUR (:func:`~diffdesign.beamline.ares.screens.screen_cost`)."""
        return sum(screen_cost(s.resolution) for s in self.screens)

    def with_geometry(self, positions: ArrayLike, resolutions: ArrayLike) -> Diagnostics:
        """The same screens at new positions and resolutions, (k,) each (m)."""
        screens = tuple(
            ScreenPlacement(s.name, s.drift, positions[i], resolutions[i])
            for i, s in enumerate(self.screens)
        )
        return Diagnostics(screens, self.model)

    @property
    def positions(self) -> Array:
        return jnp.stack([s.position for s in self.screens])

    @property
    def resolutions(self) -> Array:
        return jnp.stack([s.resolution for s in self.screens])


def today() -> Diagnostics:
    """Today's diagnostics: AREABSCR1 only, idealised."""
    return Diagnostics((today_screen(),))
