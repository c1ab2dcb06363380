"""The space-charge kick of a particle bunch: charge on a grid, an integrated Green function,
FFT convolution with open boundaries, fields back to the particles.

The method (the one of Cheetah's ``SpaceChargeKick`` and Ocelot's, after Qiang et al.,
PRST-AB 9, 044204 (2006), and Hockney's doubled grid):

1. The macro-particles' charges are shared among the eight nearest nodes of a 3-D grid
   (cloud in cell). The grid is centred on the bunch's (survival-weighted) centroid and
   spans ``extent`` rms sizes either side in x, y and z; its nodes sit at the cell centres.
2. The potential on the nodes is the convolution of the charge density with the integral
   of 1/r over one cell (the integrated Green function), in the bunch's rest frame, where
   the bunch is gamma times longer: the longitudinal cell is stretched by gamma. The
   convolution is circular on a grid twice as large in every direction, which makes it
   the open-boundary (free-space) one on the physical half.
3. The fields are central differences of the potential (one-sided at the grid's faces);
   in the lab the electric and magnetic forces of the moving bunch combine to
   ``F = -|q| grad(phi) / gamma^2`` with ``phi`` the potential computed this way
   (``phi = gamma phi_rest``); the force is interpolated back with the same eight weights.
4. Each particle's momentum changes by F dt, dt = L / (beta c) for an effect length L;
   positions are unchanged (a neighbouring drift moves them).

Like charges repel whatever sign the macro-particles' charges are given with (Cheetah
gives electron bunches positive charges); charge outside the grid is left out, as in
Cheetah. Differences from Cheetah 0.8.4, on purpose: Cheetah's grid is centred on the
axis, not on the bunch, and it reads the force half a cell away from where it deposits
the charge (a symmetric bunch gets a net kick); it drops the charge of a particle outside
the grid whole (here its share on the nodes inside is kept) and sets the field on the
grid's faces to zero (here one-sided differences); its longitudinal extent is in units of
``sigma_tau`` where the positions are z = -beta tau (the same for beta = 1).

Coordinates are Cheetah's (x, px, y, py, tau, p, 1), with z = -beta0 tau the distance
ahead of the reference particle and the longitudinal momentum rebuilt from the energy
deviation p = dE / (P0 c) and the transverse momenta.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy.constants import epsilon_0

#: the eight corners (0 or 1 in x, y, z) of a cell, for cloud-in-cell weights.
_CORNERS = np.array(list(itertools.product((0, 1), repeat=3)))


def antiderivative(x: Array, y: Array, z: Array) -> Array:
    """F(x, y, z) with d^3 F / dx dy dz = 1 / sqrt(x^2 + y^2 + z^2).

    No two of x, y, z may be zero together (the grid evaluates it at half-integer
    multiples of the cell size only)."""
    r = jnp.sqrt(x**2 + y**2 + z**2)
    return (
        y * z * jnp.arcsinh(x / jnp.sqrt(y**2 + z**2))
        + x * z * jnp.arcsinh(y / jnp.sqrt(x**2 + z**2))
        + x * y * jnp.arcsinh(z / jnp.sqrt(x**2 + y**2))
        - 0.5 * x**2 * jnp.arctan(y * z / (x * r))
        - 0.5 * y**2 * jnp.arctan(x * z / (y * r))
        - 0.5 * z**2 * jnp.arctan(x * y / (z * r))
    )


def _mirrored(table: Array, axis: int) -> Array:
    """Offsets 0..n-1 along ``axis`` laid out on a doubled circular axis of 2n points:
    offset k at position k, offset -k at position 2n - k; position n (never read by the
    physical half of the convolution) is zero. Concatenation, not a gather (fast on CPU)."""
    rest = jnp.flip(jax.lax.slice_in_dim(table, 1, table.shape[axis], axis=axis), axis)
    gap = jnp.zeros_like(jax.lax.slice_in_dim(table, 0, 1, axis=axis))
    return jnp.concatenate([table, gap, rest], axis)


def integrated_green_function(
    cell: Float[Array, 3], shape: tuple[int, int, int]
) -> Float[Array, "2nx 2ny 2nz"]:
    """The integral of 1/r over the cell at each offset (i, j, k) cells from a source node,
    laid out on the doubled grid for a circular convolution (units m^2)."""
    corners = [(jnp.arange(n + 1) - 0.5) * cell[axis] for axis, n in enumerate(shape)]
    table = antiderivative(*jnp.meshgrid(*corners, indexing="ij"))
    for axis in range(3):
        table = _mirrored(jnp.diff(table, axis=axis), axis)  # offsets 0..n-1, then mirrored
    return table


def cloud_in_cell(node_position: Float[Array, "n 3"], shape: tuple[int, int, int]):
    """Flat node indices (n, 8) and weights (n, 8) of the eight nodes around each particle;
    ``node_position`` is the particle's position in cells from the first node. Nodes off
    the grid get weight 0."""
    base = jnp.floor(node_position)
    fraction = node_position - base
    index = base.astype(int)[:, None, :] + _CORNERS[None, :, :]
    upper = fraction[:, None, :]
    weight = jnp.prod(jnp.where(_CORNERS[None] == 1, upper, 1.0 - upper), -1)
    upper_bound = np.array(shape)[None, None, :]
    inside = jnp.all((index >= 0) & (index < upper_bound), axis=-1)
    clipped = jnp.clip(index, 0, upper_bound - 1)
    flat = (clipped[..., 0] * shape[1] + clipped[..., 1]) * shape[2] + clipped[..., 2]
    return flat, jnp.where(inside, weight, 0.0)


def field_on_grid(
    node_position: Float[Array, "n 3"],
    charge: Float[Array, " n"],
    cell: Float[Array, 3],
    gamma: Array,
    shape: tuple[int, int, int],
) -> Float[Array, "nx ny nz 3"]:
    """-grad(phi) / gamma^2 (V/m) on the nodes, for charges (C, >= 0) at ``node_position``
    (cells from the first node) on nodes ``cell`` (m) apart in the lab frame."""
    flat, corner = cloud_in_cell(node_position, shape)
    density = jnp.zeros(math.prod(shape)).at[flat.ravel()].add((charge[:, None] * corner).ravel())
    density = density.reshape(shape) / jnp.prod(cell)
    green = integrated_green_function(cell * jnp.array([1.0, 1.0, gamma]), shape)
    doubled = tuple(2 * n for n in shape)
    potential = jnp.fft.irfftn(jnp.fft.rfftn(density, doubled) * jnp.fft.rfftn(green), doubled)
    potential = potential[: shape[0], : shape[1], : shape[2]] / (4.0 * math.pi * epsilon_0)
    return -jnp.stack(jnp.gradient(potential, cell[0], cell[1], cell[2]), -1) / gamma**2


def at_particles(
    field: Float[Array, "nx ny nz 3"], node_position: Float[Array, "n 3"]
) -> Float[Array, "n 3"]:
    """The field interpolated to the particles with the cloud-in-cell weights (0 off the
    grid)."""
    flat, corner = cloud_in_cell(node_position, field.shape[:3])
    return jnp.einsum("nc,nci->ni", corner, field.reshape(-1, 3)[flat])


@functools.partial(jax.jit, static_argnames=("shape", "mass_eV", "num_elementary_charges"))
def kick(
    particles: Float[Array, "n 7"],
    charges: Float[Array, " n"],
    survival: Float[Array, " n"],
    energy: Array,
    effect_length: Array,
    extent: Float[Array, 3],
    *,
    shape: tuple[int, int, int],
    mass_eV: float,
    num_elementary_charges: float,
) -> Float[Array, "n 7"]:
    """The particles after the space-charge kick of ``effect_length`` (m) of one bunch.

    ``charges`` in C (their sign is ignored), ``survival`` the particles' weights,
    ``energy`` the reference total energy in eV, ``extent`` the grid's half-widths in rms
    sizes (x, y, z)."""
    gamma = energy / mass_eV
    beta = jnp.sqrt(1.0 - 1.0 / gamma**2)
    position = jnp.stack([particles[:, 0], particles[:, 2], -beta * particles[:, 4]], -1)

    weight = survival / survival.sum()
    centre = weight @ position
    spread = jnp.sqrt((weight @ (position - centre[None]) ** 2) / (1.0 - (weight**2).sum()))
    half_width = jnp.asarray(extent) * spread
    cell = 2.0 * half_width / np.array(shape)
    node_position = (position - (centre - half_width)[None]) / cell[
        None
    ] - 0.5  # nodes at cell centres

    field = field_on_grid(node_position, jnp.abs(charges) * survival, cell, gamma, shape)
    force = at_particles(field, node_position)
    # momentum change in units of P0: |Z| e E dt / P0 = |Z| E L / (beta p0c[eV])
    dp = abs(num_elementary_charges) * force * effect_length / (beta * beta * gamma * mass_eV)

    return push(particles, dp, gamma)


def push(
    particles: Float[Array, "n 7"], dp: Float[Array, "n 3"], gamma: Array
) -> Float[Array, "n 7"]:
    """Particles whose momenta (px, py, pz in units of P0) changed by ``dp``; the energy
    deviation p follows the new total momentum P', without cancellation:
    gamma' - gamma_i = (P'^2 - P^2) (beta gamma)^2 / (gamma' + gamma_i)."""
    beta = jnp.sqrt(1.0 - 1.0 / gamma**2)
    px, py, p = particles[:, 1], particles[:, 3], particles[:, 5]
    gamma_i = gamma * (1.0 + beta * p)
    pz = jnp.sqrt((gamma_i**2 - 1.0) / (beta * gamma) ** 2 - px**2 - py**2)
    grown = dp[:, 0] * (2 * px + dp[:, 0]) + dp[:, 1] * (2 * py + dp[:, 1])
    grown = grown + dp[:, 2] * (2 * pz + dp[:, 2])
    gamma_new = jnp.sqrt(gamma_i**2 + grown * (beta * gamma) ** 2)
    p_new = p + grown * beta * gamma / (gamma_new + gamma_i)
    return particles.at[:, 1].add(dp[:, 0]).at[:, 3].add(dp[:, 1]).at[:, 5].set(p_new)
