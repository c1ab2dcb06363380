"""Cosmic muons at sea level: energy and zenith angle from Guan et al. (2015), sampled with a key.

The flux is the modified Gaisser formula of Guan, Lin, Lee, Zhang & Jiang, "A parametrization
of the cosmic-ray muon flux at sea-level" (arXiv:1509.06176), valid from ~1 GeV and at large
zenith angles:

    dI/dE dOmega = 0.14 [E (1 + 3.64 / (E cos*^1.29))]^-2.7
                   [1 / (1 + 1.1 E cos* / 115) + 0.054 / (1 + 1.1 E cos* / 850)]

(E in GeV, per cm^2 s sr GeV), with cos* the zenith cosine corrected for the Earth's curvature
(their eq. 2, parameters P1..P5). Muons crossing a horizontal plane are distributed as this
flux times cos(zenith) (projected area). Sampling draws a cell of a fine (log E, cos zenith)
table of that density (inverse CDF), then a uniform point inside it; azimuth is uniform and
the crossing point uniform over the footprint. Energies are total energies; momenta
p = sqrt(E^2 - m^2).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

MUON_MASS = 105.6583755e6  # eV/c^2
_P = (0.102573, -0.068287, 0.958633, 0.0407253, 0.817285)  # Guan et al. eq. 2


class MuonBatch(NamedTuple):
    """Muons crossing the plane ``z`` (m), travelling down.

    Attributes:
        x, y: (n,) crossing point (m).
        tx, ty: (n,) slopes dx/dz, dy/dz of the straight line (the direction is
            (tx, ty, 1) / norm with z decreasing along the flight).
        p: (n,) momentum (eV/c).
        z: the plane's height (m).
    """

    x: Float[Array, " n"]
    y: Float[Array, " n"]
    tx: Float[Array, " n"]
    ty: Float[Array, " n"]
    p: Float[Array, " n"]
    z: float


def corrected_cos_zenith(cos_theta: Array) -> Array:
    """cos* of Guan et al. (2015) eq. 2 (Earth-curvature correction)."""
    p1, p2, p3, p4, p5 = _P
    num = cos_theta**2 + p1**2 + p2 * cos_theta**p3 + p4 * cos_theta**p5
    return jnp.sqrt(num / (1 + p1**2 + p2 + p4))


def guan_flux(energy_gev: Array, cos_theta: Array) -> Array:
    """Differential flux dI/dE dOmega (cm^-2 s^-1 sr^-1 GeV^-1) at total energy E (GeV)."""
    c = corrected_cos_zenith(cos_theta)
    e = energy_gev
    base = (e * (1 + 3.64 / (e * c**1.29))) ** -2.7
    return 0.14 * base * (1 / (1 + 1.1 * e * c / 115) + 0.054 / (1 + 1.1 * e * c / 850))


def _table(energy_range, max_zenith, n_energy: int, n_cos: int):
    log_e = jnp.linspace(math.log(energy_range[0]), math.log(energy_range[1]), n_energy + 1)
    cos_t = jnp.linspace(math.cos(max_zenith), 1.0, n_cos + 1)
    le_c, ct_c = 0.5 * (log_e[1:] + log_e[:-1]), 0.5 * (cos_t[1:] + cos_t[:-1])
    e_gev = jnp.exp(le_c)[:, None] / 1e9
    # density in (log E, cos theta): flux * E (d log E) * cos theta (horizontal plane)
    density = guan_flux(e_gev, ct_c[None, :]) * e_gev * ct_c[None, :]
    return log_e, cos_t, jnp.log(density)


def generate_muons(
    key: PRNGKeyArray,
    n: int,
    *,
    footprint: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 1.0), (0.0, 1.0)),
    z: float = 1.0,
    energy_range: tuple[float, float] = (1e9, 1e12),
    max_zenith: float = math.radians(70.0),
    momentum: float | None = None,
    table_size: tuple[int, int] = (256, 128),
) -> MuonBatch:
    """``n`` cosmic muons crossing the plane ``z`` inside ``footprint``.

    Args:
        key: PRNG key.
        n: number of muons.
        footprint: ((x_lo, x_hi), (y_lo, y_hi)) of the crossing points (m).
        z: height of the plane (m).
        energy_range: total energies sampled (eV), within the formula's validity (> ~1 GeV).
        max_zenith: largest zenith angle (rad), < pi/2.
        momentum: a fixed momentum for every muon (eV/c) instead of the spectrum (TomOpt's
            default is 5 GeV/c); the angles still follow the flux.
        table_size: cells of the (log E, cos zenith) table.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n (the number of muons) must be an integer >= 1; got {n!r}")
    if not math.isfinite(z):
        raise ValueError(f"z (the height of the muons' plane) must be finite (m); got {z}")
    (x_lo, x_hi), (y_lo, y_hi) = footprint
    if not all(map(math.isfinite, (x_lo, x_hi, y_lo, y_hi))) or not (x_hi > x_lo and y_hi > y_lo):
        raise ValueError(
            f"footprint must be ((x_lo, x_hi), (y_lo, y_hi)) with lo < hi; got {footprint}"
        )
    if not (MUON_MASS < energy_range[0] < energy_range[1] < math.inf):
        raise ValueError(
            f"energy_range must satisfy {MUON_MASS:.4g} eV < low < high; got {energy_range}"
        )
    if not 0 < max_zenith < math.pi / 2:
        raise ValueError(f"max_zenith must lie in (0, pi/2) rad; got {max_zenith}")
    if momentum is not None and not (math.isfinite(momentum) and momentum > 0):
        raise ValueError(f"momentum must be finite and > 0 eV/c; got {momentum}")
    return _generate(key, int(n), footprint, float(z), tuple(energy_range), float(max_zenith),
                     momentum, tuple(table_size))  # fmt: skip


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7))
def _generate(key, n, footprint, z, energy_range, max_zenith, momentum, table_size):
    log_e, cos_t, log_density = _table(energy_range, max_zenith, *table_size)
    k_cell, k_e, k_c, k_phi, k_x, k_y = jax.random.split(key, 6)
    # inverse CDF of the cells (categorical's Gumbel trick would draw n x cells numbers)
    weights = jnp.exp(log_density.ravel() - jnp.max(log_density))
    cdf = jnp.cumsum(weights) / jnp.sum(weights)
    cell = jnp.searchsorted(cdf, jax.random.uniform(k_cell, (n,)), side="right")
    cell = jnp.minimum(cell, cdf.shape[0] - 1)
    i, j = jnp.divmod(cell, table_size[1])
    u_e, u_c = jax.random.uniform(k_e, (n,)), jax.random.uniform(k_c, (n,))
    energy = jnp.exp(log_e[i] + u_e * (log_e[i + 1] - log_e[i]))
    cos_theta = cos_t[j] + u_c * (cos_t[j + 1] - cos_t[j])
    phi = jax.random.uniform(k_phi, (n,), maxval=2 * jnp.pi)
    tan_theta = jnp.sqrt(1 - cos_theta**2) / cos_theta
    # down-going: dx/dz = -tan(theta) cos(phi) (x grows as z falls for phi = 0)
    tx, ty = -tan_theta * jnp.cos(phi), -tan_theta * jnp.sin(phi)
    p = jnp.sqrt(energy**2 - MUON_MASS**2) if momentum is None else jnp.full(n, momentum)
    (x_lo, x_hi), (y_lo, y_hi) = footprint
    x = jax.random.uniform(k_x, (n,), minval=x_lo, maxval=x_hi)
    y = jax.random.uniform(k_y, (n,), minval=y_lo, maxval=y_hi)
    return MuonBatch(x, y, tx, ty, p, z)
