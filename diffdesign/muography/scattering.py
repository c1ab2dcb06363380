"""Multiple Coulomb scattering of muons through the voxel grid (PDG/Highland), step by step.

Each muon's straight line above the volume is followed down through the grid in steps of
``size / substeps`` in z. In a step of path length ``l`` through a voxel of radiation length
``X0`` the material seen so far grows by ``l / X0``; the step's scattering variance in each of
the two projections is the *increase* of the Highland variance of the accumulated material,

    theta0(X)^2 = (13.6 MeV / (beta c p))^2 X (1 + 0.038 ln(X / beta^2))^2,   X = sum l / X0,

so the steps add up to Highland's width of the whole path for any step size (applying Highland
to each small step separately, as TomOpt does, underestimates the width: the log term of a
1 cm step is far more negative than that of the whole path).

The projections are the muon's own: two planes that contain its direction, spanned by the
direction and one of the unit vectors ``e1``, ``e2`` perpendicular to it of
:func:`track_frame`. In each a step draws the PDG's correlated angle and lateral
displacement, ``dtheta = z2 sigma`` and ``dperp = l sigma (z1 / sqrt(12) + z2 / 2)``: the
direction turns by ``dtheta`` in that plane and the muon moves ``dperp`` along the plane's
perpendicular, and the new direction and point go back to slopes and a crossing of the
step's lower plane. (Kicks to ``atan(tx)`` and ``atan(ty)`` in the fixed x-z and y-z planes
would scatter an inclined muon by only theta0 cos(zenith) across its plane of travel.)
With ``density`` the muon also loses energy at a constant mass stopping power (continuous,
minimum-ionising), and stops when it has none left.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from diffdesign._validation import is_concrete
from diffdesign.muography.materials import MATERIALS
from diffdesign.muography.source import MUON_MASS, MuonBatch
from diffdesign.muography.volume import Volume

HIGHLAND_SCALE = 13.6e6  # eV
HIGHLAND_LOG_TERM = 0.038
X0_AIR = MATERIALS["air"].x0
#: Mass stopping power of a minimum-ionising muon, eV m^2 / kg (1.7 MeV cm^2 / g).
STOPPING_POWER = 1.7e5


class Passage(NamedTuple):
    """Each muon's true straight lines where it enters (top) and leaves (bottom) the grid.

    Attributes:
        entry: (4, n) x, y, tx, ty at the grid's top plane (m, slopes dx/dz and dy/dz).
        exit: (4, n) the same at its bottom plane.
        p_exit: (n,) momentum on leaving (eV/c; the entry momentum without energy loss).
        material: (n,) sum of l / X0 along the path (radiation lengths).
        alive: (n,) the muon reached the bottom (False where it stopped).
    """

    entry: Float[Array, "4 n"]
    exit: Float[Array, "4 n"]
    p_exit: Float[Array, " n"]
    material: Float[Array, " n"]
    alive: Array


def highland_variance(material: Array, p: Array) -> Array:
    """theta0^2 (rad^2, one projection) for ``material`` radiation lengths at momentum p (eV/c)."""
    energy = jnp.sqrt(p**2 + MUON_MASS**2)
    beta2 = (p / energy) ** 2
    x = jnp.maximum(material, 1e-9)
    return (
        (HIGHLAND_SCALE / (p * jnp.sqrt(beta2))) ** 2
        * x
        * (1 + HIGHLAND_LOG_TERM * jnp.log(x / beta2)) ** 2
    )


def track_frame(tx: Array, ty: Array, stack: bool = True):
    """The unit direction ``u = (tx, ty, 1) / sqrt(1 + tx^2 + ty^2)`` of lines with slopes
    (tx, ty) and two unit vectors ``e1``, ``e2`` perpendicular to it and to each other: the
    images of x and y under the rotation about ``z x u`` that takes z to ``u``. The frame is
    smooth in the slopes, defined for every line that is not horizontal, and x, y for a
    vertical one (``e1 x e2 = u``). Each a (3, ...) array, or with ``stack=False`` a tuple
    of its three components.
    """
    norm = jnp.sqrt(1 + tx**2 + ty**2)
    ux, uy, uz = tx / norm, ty / norm, 1 / norm
    k = 1 / (1 + uz)
    kxy = -k * ux * uy
    frame = (ux, uy, uz), (1 - k * ux**2, kxy, -ux), (kxy, 1 - k * uy**2, -uy)
    return tuple(jnp.stack(v) for v in frame) if stack else frame


def scattering_angles(tx_in: Array, ty_in: Array, tx_out: Array, ty_out: Array) -> Array:
    """(2, ...) the angles between the lines of slopes (tx_in, ty_in) and (tx_out, ty_out)
    projected on the incoming line's own planes (``u``, ``e1``) and (``u``, ``e2``) of
    :func:`track_frame`: ``atan2(e_k . w, u . w)``, ``w = (tx_out, ty_out, 1)``. A turn by
    ``a_k`` in each plane, as :func:`propagate` draws them, gives back ``a_k``; for a
    vertical incoming line they are the changes of ``atan(tx)`` and ``atan(ty)``."""
    u, e1, e2 = track_frame(tx_in, ty_in)
    w = (tx_out, ty_out, 1.0)
    along = u[0] * w[0] + u[1] * w[1] + u[2]
    return jnp.stack([jnp.arctan2(e[0] * w[0] + e[1] * w[1] + e[2], along) for e in (e1, e2)])


def _column(volume: Volume, x: Array, y: Array) -> tuple[Array, Array, Array]:
    """Voxel column (i, j) under (x, y), clipped into the grid, and whether it is inside."""
    nx, ny, _ = volume.shape
    i = jnp.floor((x - volume.lower[0]) / volume.size).astype(int)
    j = jnp.floor((y - volume.lower[1]) / volume.size).astype(int)
    inside = (i >= 0) & (i < nx) & (j >= 0) & (j < ny)
    return jnp.clip(i, 0, nx - 1), jnp.clip(j, 0, ny - 1), inside


def voxel_x0(volume: Volume, x: Array, y: Array, layer: Array) -> Array:
    """X0 (m) of the voxel of layer ``layer`` under (x, y); air outside the grid."""
    i, j, inside = _column(volume, x, y)
    return jnp.where(inside, volume.x0[i, j, layer], X0_AIR)


def _standard_normals(key: PRNGKeyArray, n: int) -> Array:
    """(2, 2, n) independent standard normals by Box-Muller from uniforms. (The inverse-error-
    function polynomial of ``jax.random.normal`` is cheap per element, so XLA on CPU fuses it
    into every consumer and evaluates it again in each: in a step of :func:`propagate` the
    four coordinates each need all four normals. Box-Muller's log, cos and sin are computed
    once.)"""
    u1, u2 = jax.random.uniform(key, (2, 2, n))
    radius, phase = jnp.sqrt(-2 * jnp.log1p(-u1)), 2 * jnp.pi * u2
    return jnp.stack([radius * jnp.cos(phase), radius * jnp.sin(phase)])


def propagate(
    key: PRNGKeyArray,
    muons: MuonBatch,
    volume: Volume,
    substeps: int = 10,
    density: Float[Array, "nx ny nz"] | None = None,
) -> Passage:
    """Follow ``muons`` (above the grid) down through ``volume`` (one geometry, unbatched).

    Args:
        key: PRNG key of the scattering.
        muons: straight lines above the grid.
        volume: the grid.
        substeps: steps per voxel layer (10: 1 cm steps in 10 cm voxels).
        density: (nx, ny, nz) kg/m^3 for continuous energy loss; None for none.

    Raises:
        ValueError: no muons, or (when their values are known) momenta that are not finite
            and positive or lines that are not finite.
    """
    if muons.x.shape[0] < 1:
        raise ValueError("propagate needs at least one muon; the batch holds none")
    if is_concrete(muons.p):
        if not np.all(np.isfinite(muons.p) & (np.asarray(muons.p) > 0)):
            raise ValueError(f"muons.p must be finite and > 0 eV/c; got {muons.p}")
        for field in ("x", "y", "z", "tx", "ty"):
            if not np.all(np.isfinite(getattr(muons, field))):
                raise ValueError(f"muons.{field} must be finite; got {getattr(muons, field)}")
    z_top = volume.z_range[1]
    nz = volume.shape[2]
    h = volume.size / substeps
    n_steps = nz * substeps
    x = muons.x + muons.tx * (z_top - muons.z)
    y = muons.y + muons.ty * (z_top - muons.z)
    entry = jnp.stack([x, y, muons.tx, muons.ty])
    n = x.shape[0]
    if density is not None:
        density = jnp.asarray(density)

    def step(carry, index):
        x, y, tx, ty, p, material, alive = carry
        layer = nz - 1 - index // substeps
        xm, ym = x - 0.5 * h * tx, y - 0.5 * h * ty  # the step's midpoint
        x0 = voxel_x0(volume, xm, ym, layer)  # air outside the grid (density too)
        length = h * jnp.sqrt(1 + tx**2 + ty**2)
        added = material + length / x0
        variance = jnp.maximum(highland_variance(added, p) - highland_variance(material, p), 0.0)
        sigma = jnp.sqrt(variance)
        z1, z2 = _standard_normals(jax.random.fold_in(key, index), n)
        dtheta = z2 * sigma[None]
        dperp = (length * sigma)[None] * (z1 / jnp.sqrt(12.0) + z2 / 2)
        # the turn in the muon's own planes (u, e_k) and the move along -e_k: with z falling
        # along the flight (direction -u), a turn that raises u's e_k component moves the
        # muon towards -e_k, within the step as after it
        (ux, uy, uz), e1, e2 = track_frame(tx, ty, stack=False)
        a1, a2 = jnp.tan(dtheta[0]), jnp.tan(dtheta[1])
        # the new direction u + a1 e1 + a2 e2 (upwards, unnormalised) and the shift
        # -(dperp_1 e1 + dperp_2 e2), perpendicular to u
        wx, wy, wz = (u + a1 * f1 + a2 * f2 for u, f1, f2 in zip((ux, uy, uz), e1, e2, strict=True))
        sx, sy, sz = (-(dperp[0] * f1 + dperp[1] * f2) for f1, f2 in zip(e1, e2, strict=True))
        tx_new, ty_new = wx / wz, wy / wz
        # the point l along the line, shifted, and on along the new line to the step's plane
        x = x - h * tx + sx - sz * tx_new
        y = y - h * ty + sy - sz * ty_new
        tx, ty = tx_new, ty_new
        if density is not None:
            i, j, inside = _column(volume, xm, ym)
            rho = jnp.where(inside, density[i, j, layer], MATERIALS["air"].density)
            energy = jnp.sqrt(p**2 + MUON_MASS**2) - STOPPING_POWER * rho * length
            alive = alive & (energy > MUON_MASS * (1 + 1e-6))
            p = jnp.sqrt(jnp.maximum(energy**2 - MUON_MASS**2, (1e-3 * MUON_MASS) ** 2))
        return (x, y, tx, ty, p, added, alive), None

    start = (x, y, muons.tx, muons.ty, muons.p, jnp.zeros(n), jnp.ones(n, bool))
    (x, y, tx, ty, p, material, alive), _ = jax.lax.scan(step, start, jnp.arange(n_steps))
    return Passage(entry, jnp.stack([x, y, tx, ty]), p, material, alive)
