"""Normal-mode (Edwards-Teng) Twiss algebra of 4-D transfer matrices, shared by rings and
beamlines: the periodic solution of a one-period matrix (Sagan & Rubin) and the Twiss
parameters carried along by the transfer matrices from the start to each point.

Transfer matrices need not be symplectic: a matrix with determinant below one (adiabatic
damping in a cavity) is normalised per mode, which gives the Twiss parameters of the
damped beam (its emittance shrinks by the determinant).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from diffdesign._validation import refuse_traced_or_known

_TWO_PI = 2.0 * np.pi


class Twiss(NamedTuple):
    """Normal-mode Twiss parameters at the one-turn start (Edwards-Teng, Sagan-Rubin).

    Mode a is the one that reduces to the horizontal motion without coupling, mode b to the
    vertical. Without coupling ``gamma = 1`` and ``coupling = 0`` exactly.
    """

    beta: Array  # (2,) m
    alpha: Array  # (2,)
    mu: Array  # (2,) rad in [0, 2 pi)
    gamma: Array  # () coupling normalisation, 1 without coupling
    coupling: Array  # (2, 2) Sagan-Rubin coupling matrix C


def _conjugate(m: Array) -> Array:
    """Symplectic conjugate of (a stack of) 2x2 matrices: S m^T S^T."""
    top = jnp.stack([m[..., 1, 1], -m[..., 0, 1]], -1)
    bottom = jnp.stack([-m[..., 1, 0], m[..., 0, 0]], -1)
    return jnp.stack([top, bottom], -2)


def _det2(m: Array) -> Array:
    return m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]


def _block_twiss(m: Array) -> tuple[Array, Array, Array]:
    cos_mu = (m[0, 0] + m[1, 1]) / 2.0
    sin_mu = jnp.sign(m[0, 1]) * jnp.sqrt(1.0 - cos_mu**2)
    mu = jnp.mod(jnp.arctan2(sin_mu, cos_mu), _TWO_PI)
    return m[0, 1] / sin_mu, (m[0, 0] - m[1, 1]) / (2.0 * sin_mu), mu


def periodic_twiss(one_turn: Float[Array, "6 6"]) -> Twiss:
    """Periodic normal-mode Twiss parameters of a 4-D one-turn matrix.

    The one-turn matrix T = [[M, m], [n, N]] is decoupled as T = V diag(A, B) V^-1 with
    V = [[gamma I, C], [-conj(C), gamma I]] (Sagan & Rubin, PRST-AB 2, 074001, 1999; AT's
    ``linopt4``); A and B give the Twiss parameters of modes a and b. NaN where the motion
    is unstable.
    """
    t = one_turn[:4, :4]
    big_m, small_m, small_n, big_n = t[:2, :2], t[:2, 2:], t[2:, :2], t[2:, 2:]
    h = small_m + _conjugate(small_n)
    trace_difference = jnp.trace(big_m) - jnp.trace(big_n)
    t2 = trace_difference * trace_difference
    t2h = t2 + 4.0 * _det2(h)
    gamma2 = (1.0 + jnp.sqrt(t2 / t2h)) / 2.0
    gamma = jnp.sqrt(gamma2)
    c = -h * jnp.sign(trace_difference) / (gamma * jnp.sqrt(t2h))
    cb = _conjugate(c)
    mode_a = gamma2 * big_m - gamma * (small_m @ cb + c @ small_n) + c @ big_n @ cb
    mode_b = gamma2 * big_n + gamma * (cb @ small_m + small_n @ c) + cb @ big_m @ c
    (beta_a, alpha_a, mu_a), (beta_b, alpha_b, mu_b) = _block_twiss(mode_a), _block_twiss(mode_b)
    return Twiss(
        jnp.stack([beta_a, beta_b]),
        jnp.stack([alpha_a, alpha_b]),
        jnp.stack([mu_a, mu_b]),
        gamma,
        c,
    )


def mode_transfer(transfer: Array, twiss: Twiss) -> tuple[Array, Array]:
    """2x2 transfer matrices of modes a and b from the start to each matrix's end."""
    big_m, small_m = transfer[:, :2, :2], transfer[:, :2, 2:4]
    small_n, big_n = transfer[:, 2:4, :2], transfer[:, 2:4, 2:4]
    c, g = twiss.coupling, twiss.gamma
    e_a = g * big_m - small_m @ _conjugate(c)
    e_b = g * big_n + small_n @ c
    return (
        e_a / jnp.sqrt(_det2(e_a))[:, None, None],
        e_b / jnp.sqrt(_det2(e_b))[:, None, None],
    )


def twiss_along(transfer: Array, twiss: Twiss) -> tuple[Array, Array, Array]:
    """Normal-mode beta, alpha (k, 2) and phase wrapped to (-pi, pi] (k, 2) at each
    matrix's end (mode a in column 0, mode b in column 1)."""
    betas, alphas, phases = [], [], []
    for i, r in enumerate(mode_transfer(transfer, twiss)):
        r11, r12, r21, r22 = r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1]
        b0, a0 = twiss.beta[i], twiss.alpha[i]
        u = r11 * b0 - r12 * a0
        w = r21 * b0 - r22 * a0
        betas.append((u * u + r12 * r12) / b0)
        alphas.append(-(u * w + r12 * r22) / b0)
        phases.append(jnp.arctan2(r12, u))
    return jnp.stack(betas, -1), jnp.stack(alphas, -1), jnp.stack(phases, -1)


def refuse_unstable(value, tunes: Array, one_turn: Array):
    """``value``, unless the linear motion is unstable (a mode without periodic solution: NaN
    tunes and Twiss functions): known tunes raise a ValueError naming the mode and the
    one-turn traces, traced ones fail when the program runs, so a jitted or vmapped call on
    an unstable ring fails instead of returning NaN."""

    def explain(values: np.ndarray) -> None:
        for mode, tune in zip(("a (x)", "b (y)"), values, strict=True):
            if not np.isfinite(tune):
                m = np.asarray(one_turn)
                traces = [float(np.trace(m[p : p + 2, p : p + 2])) for p in (0, 2)]
                raise ValueError(
                    f"{UNSTABLE}: mode {mode} has no periodic solution (one-turn block traces "
                    f"{traces[0]:.6g}, {traces[1]:.6g}; stable motion needs |trace| < 2 per mode)"
                )

    return refuse_traced_or_known(
        value, tunes, lambda t: ~jnp.all(jnp.isfinite(t)),
        UNSTABLE + " (|trace| >= 2 of a one-turn block)", explain,
    )  # fmt: skip


UNSTABLE = "unstable optics: check quadrupole strengths"
