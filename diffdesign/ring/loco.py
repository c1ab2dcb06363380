"""LOCO: quadrupole errors, BPM gains and corrector calibrations from an orbit response matrix.

The model of a measured response matrix (Safranek 1997), per plane:

    measured[i, j] = g_i * ORM(K1 + dk)[i, j] * c_j + noise,

with ``g`` the BPM gains, ``c`` the corrector calibrations and ``ORM`` the exact 4-D linear
response of the closed orbit (:func:`~diffdesign.ring.orbit_response`). The fit is the
Bayesian one of the optics correction: Gaussian likelihood with the BPM noise, Gaussian
priors on the gradient errors, gains and calibrations, so the regularisation is
sigma_noise^2 / sigma_prior^2 per parameter block rather than an SVD cut chosen by hand.
Gauss-Newton iterations (:func:`~diffdesign.inference.gauss_newton.gauss_newton`)
re-linearise the ORM with exact autodiff Jacobians
(:func:`~diffdesign.ring.jacobians.k1_orm_jacobian`); gains and calibrations enter bilinearly
and their derivatives are the model's entries. Uncoupled: horizontal kicks seen in x,
vertical kicks in y (BPM rolls and corrector tilts are not fitted).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from diffdesign.inference.gauss_newton import gauss_newton
from diffdesign.ring.jacobians import k1_orm_jacobian
from diffdesign.ring.lattice import Lattice


class LocoSetup(NamedTuple):
    """Which elements take part: indices into the lattice (hashable, static under jit).

    Attributes:
        quadrupoles: (q,) elements whose K1 (PolynomB[1]) errors are fitted.
        bpms: (b,) monitors.
        horizontal: (h,) correctors kicking in x. vertical: (v,) correctors kicking in y.
    """

    quadrupoles: tuple[int, ...]
    bpms: tuple[int, ...]
    horizontal: tuple[int, ...]
    vertical: tuple[int, ...]

    @classmethod
    def from_lattice(
        cls,
        lattice: Lattice,
        quadrupoles: ArrayLike | str = "Quadrupole",
        bpms: ArrayLike | str = "Monitor",
        horizontal: ArrayLike | str = "Corrector",
        vertical: ArrayLike | str = "Corrector",
    ) -> LocoSetup:
        return cls(
            *(
                tuple(int(i) for i in lattice.indices(s))
                for s in (quadrupoles, bpms, horizontal, vertical)
            )
        )

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        return len(self.quadrupoles), len(self.bpms), len(self.horizontal), len(self.vertical)


class LocoParameters(NamedTuple):
    """dk1 (q,) 1/m^2; gain_x, gain_y (b,) and calibration_x (h,), calibration_y (v,):
    relative deviations from 1 (a gain of 1.02 is 0.02)."""

    dk1: Array
    gain_x: Array
    gain_y: Array
    calibration_x: Array
    calibration_y: Array

    def flat(self) -> Array:
        return jnp.concatenate(list(self))

    @classmethod
    def unflat(cls, vector: Array, sizes: tuple[int, int, int, int]) -> LocoParameters:
        q, b, h, _ = sizes
        cuts = np.cumsum([q, b, b, h])
        return cls(*jnp.split(vector, cuts))

    @classmethod
    def zeros(cls, sizes: tuple[int, int, int, int]) -> LocoParameters:
        q, b, h, v = sizes
        return cls(jnp.zeros(q), jnp.zeros(b), jnp.zeros(b), jnp.zeros(h), jnp.zeros(v))


class LocoResult(NamedTuple):
    """Attributes:
    parameters: the posterior mean (:class:`LocoParameters`).
    std: posterior standard deviations, same structure.
    covariance: (p, p) posterior covariance of the flat parameters (dk1, gains, calibrations),
        linearised at the estimate.
    chi2: per iteration, the noise-normalised sum of squared residuals before the step.
    residual_rms: per iteration, rms of measured minus model (m/rad) before the step.
    final_chi2, final_residual_rms: after the last step.
    n_data: number of fitted response-matrix entries.
    """

    parameters: LocoParameters
    std: LocoParameters
    covariance: Array
    chi2: Array
    residual_rms: Array
    final_chi2: Array
    final_residual_rms: Array
    n_data: int


def model_response(
    lattice: Lattice, setup: LocoSetup, parameters: LocoParameters
) -> tuple[Array, Array]:
    """Model response blocks (x from horizontal kicks (b, h), y from vertical (b, v)), m/rad."""
    blocks, _ = _model_and_jacobian_jit(lattice, setup, parameters, jacobian=False)
    return blocks


def _model_and_jacobian(lattice, setup, parameters, *, jacobian=True):
    _, b, h, v = setup.sizes
    correctors = np.asarray(setup.horizontal + setup.vertical, dtype=int)
    quads = np.asarray(setup.quadrupoles, dtype=int)
    shifted = lattice.add_k1(quads, parameters.dk1)
    orm, d_orm = k1_orm_jacobian(shifted, quads, np.asarray(setup.bpms, dtype=int), correctors)
    base_x, base_y = orm[0, :, 0, :h], orm[1, :, 1, h:]
    gx, gy = 1.0 + parameters.gain_x, 1.0 + parameters.gain_y
    cx, cy = 1.0 + parameters.calibration_x, 1.0 + parameters.calibration_y
    model_x = gx[:, None] * base_x * cx[None, :]
    model_y = gy[:, None] * base_y * cy[None, :]
    if not jacobian:
        return (model_x, model_y), None
    dk_x = gx[:, None, None] * d_orm[0, :, 0, :h, :] * cx[None, :, None]  # (b, h, q)
    dk_y = gy[:, None, None] * d_orm[1, :, 1, h:, :] * cy[None, :, None]
    eye_b, eye_h, eye_v = jnp.eye(b), jnp.eye(h), jnp.eye(v)
    # d model_x / d gain_x[k] = delta_ik base_x[i, j] cx[j], etc.
    rows_x = [
        dk_x,
        (base_x * cx[None, :])[:, :, None] * eye_b[:, None, :],
        jnp.zeros((b, h, b)),
        (gx[:, None] * base_x)[:, :, None] * eye_h[None, :, :],
        jnp.zeros((b, h, v)),
    ]
    rows_y = [
        dk_y,
        jnp.zeros((b, v, b)),
        (base_y * cy[None, :])[:, :, None] * eye_b[:, None, :],
        jnp.zeros((b, v, h)),
        (gy[:, None] * base_y)[:, :, None] * eye_v[None, :, :],
    ]
    jac = jnp.concatenate(
        [
            jnp.concatenate(rows_x, axis=-1).reshape(b * h, -1),
            jnp.concatenate(rows_y, axis=-1).reshape(b * v, -1),
        ]
    )
    return (model_x, model_y), jac


_model_and_jacobian_jit = jax.jit(_model_and_jacobian, static_argnames=("setup", "jacobian"))


def loco_fit(
    lattice: Lattice,
    setup: LocoSetup,
    measured_x: ArrayLike,
    measured_y: ArrayLike,
    *,
    noise_sigma: float,
    prior_k1_sigma: ArrayLike,
    prior_gain_sigma: float = 0.05,
    prior_calibration_sigma: float = 0.05,
    iterations: int = 4,
) -> LocoResult:
    """Fit quadrupole errors, BPM gains and corrector calibrations to a measured ORM.

    Args:
        lattice: the model ring (design strengths).
        setup: the quadrupoles, BPMs and correctors (:class:`LocoSetup`).
        measured_x: (b, h) measured x response to the horizontal correctors, m/rad.
        measured_y: (b, v) measured y response to the vertical correctors, m/rad.
        noise_sigma: standard deviation of one measured entry, m/rad (BPM noise over kick).
        prior_k1_sigma: prior standard deviation of the K1 errors, scalar or (q,), 1/m^2.
        prior_gain_sigma: prior standard deviation of the relative BPM gains.
        prior_calibration_sigma: prior standard deviation of the relative corrector
            calibrations.
        iterations: Gauss-Newton steps (each re-linearises at the current estimate).

    Returns:
        :class:`LocoResult`; the covariance is linearised at the estimate (the ORM and its
        Jacobian are computed ``iterations + 1`` times).

    Raises:
        ValueError: shapes that do not match the setup, non-finite data, sigmas <= 0.
    """
    q, b, h, v = setup.sizes
    measured_x = jnp.asarray(measured_x, dtype=float)
    measured_y = jnp.asarray(measured_y, dtype=float)
    for name, value, shape in (
        ("measured_x", measured_x, (b, h)),
        ("measured_y", measured_y, (b, v)),
    ):
        if value.shape != shape:
            raise ValueError(
                f"{name} must have shape {shape} (BPMs, correctors); got {value.shape}"
            )
        if not bool(jnp.all(jnp.isfinite(value))):
            raise ValueError(f"{name} must be finite")
    for name, value in (
        ("noise_sigma", noise_sigma),
        ("prior_gain_sigma", prior_gain_sigma),
        ("prior_calibration_sigma", prior_calibration_sigma),
    ):
        if not float(value) > 0.0:
            raise ValueError(f"{name} must be > 0; got {value}")
    k1_sigma = jnp.broadcast_to(jnp.asarray(prior_k1_sigma, dtype=float), (q,))
    if not bool(jnp.all(k1_sigma > 0.0)):
        raise ValueError("prior_k1_sigma must be > 0")
    prior_sigma = jnp.concatenate(
        [k1_sigma, jnp.full(2 * b, prior_gain_sigma), jnp.full(h + v, prior_calibration_sigma)]
    )
    measured = jnp.concatenate([measured_x.reshape(-1), measured_y.reshape(-1)])

    def linearise(theta):
        params = LocoParameters.unflat(theta, setup.sizes)
        (model_x, model_y), jac = _model_and_jacobian_jit(lattice, setup, params)
        return measured - jnp.concatenate([model_x.reshape(-1), model_y.reshape(-1)]), jac

    # The prior is on the total parameters (mean zero), the Jacobian the model's own.
    result = gauss_newton(
        linearise,
        LocoParameters.zeros(setup.sizes).flat(),
        noise_sigma=noise_sigma,
        prior_sigma=prior_sigma,
        has_jacobian=True,
        n_iter=iterations,
    )
    chi2 = result.history.chi2
    rms = jnp.sqrt(chi2 / measured.size) * noise_sigma  # rms of measured - model, m/rad
    return LocoResult(
        parameters=LocoParameters.unflat(result.x, setup.sizes),
        std=LocoParameters.unflat(result.std, setup.sizes),
        covariance=result.covariance,
        chi2=chi2[:-1],
        residual_rms=rms[:-1],
        final_chi2=chi2[-1],
        final_residual_rms=rms[-1],
        n_data=int(measured.size),
    )
