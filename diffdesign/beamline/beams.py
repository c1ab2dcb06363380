"""Beams as PyTrees: Gaussian moments (`ParameterBeam`) and macro-particles (`ParticleBeam`).

Phase-space coordinates are Cheetah's (x, px, y, py, tau, p) plus a constant 1; units m and
dimensionless momenta; ``energy`` is the reference particle's total energy in eV. Both
beams expose the same derived quantities (``mu_x``, ``sigma_x``, ``emittance_x``,
``beta_x``, ``dispersion_x``, ...), computed from the first and second moments.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from diffdesign._validation import (
    check_finite,
    check_positive,
    check_range,
    check_trailing_shape,
    float_array,
    is_concrete,
)
from diffdesign.beamline.species import ELECTRON, Species

COORDINATES = ("x", "px", "y", "py", "tau", "p")
_INDEX = {name: i for i, name in enumerate(COORDINATES)}

# Cheetah's defaults for unspecified beam parameters.
_DEFAULT_SIGMAS = {
    "sigma_x": 175e-6,
    "sigma_px": 4e-6,
    "sigma_y": 175e-6,
    "sigma_py": 4e-6,
    "sigma_tau": 8e-6,
    "sigma_p": 2e-3,
}
_COVARIANCE_NAMES = (
    "cov_xpx",
    "cov_ypy",
    "cov_taup",
    "cov_xp",
    "cov_pxp",
    "cov_yp",
    "cov_pyp",
    "cov_xy",
    "cov_xpy",
    "cov_xtau",
    "cov_pxy",
    "cov_pxpy",
    "cov_pxtau",
    "cov_ytau",
    "cov_pytau",
)


def _pair(name: str) -> tuple[int, int]:
    """Indices of a covariance name such as ``cov_xpx`` -> (0, 1)."""
    body = name.removeprefix("cov_")
    for split in range(1, len(body)):
        first, second = body[:split], body[split:]
        if first in _INDEX and second in _INDEX:
            return _INDEX[first], _INDEX[second]
    raise ValueError(f"not a covariance name: {name}")


def moments_from_parameters(**parameters) -> tuple[Array, Array]:
    """Mean (..., 6) and covariance (..., 6, 6) from Cheetah-style named parameters.

    Accepts ``mu_<c>``, ``sigma_<c>`` and ``cov_<c1><c2>`` for the coordinates
    x, px, y, py, tau, p; unspecified means are 0, sigmas take Cheetah's defaults and
    covariances are 0. Raises ``TypeError`` for unknown names and ``ValueError`` for NaNs,
    negative sigmas and a covariance that is not positive definite.
    """
    known = {f"mu_{c}" for c in COORDINATES} | set(_DEFAULT_SIGMAS) | set(_COVARIANCE_NAMES)
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise TypeError(f"unknown beam parameter(s) {unknown}; known: {sorted(known)}")
    values = {}
    for name, value in parameters.items():
        value = float_array(value, name, "beam")
        check_finite(value, name, "beam")
        if name.startswith("sigma_"):
            check_range(value, name, low=0.0, owner="beam")
        values[name] = value
    mean = [values.get(f"mu_{c}", 0.0) for c in COORDINATES]
    entries = [[0.0] * 6 for _ in range(6)]
    for c in COORDINATES:
        entries[_INDEX[c]][_INDEX[c]] = values.get(f"sigma_{c}", _DEFAULT_SIGMAS[f"sigma_{c}"]) ** 2
    for name in _COVARIANCE_NAMES:
        if name in values:
            i, j = _pair(name)
            entries[i][j] = entries[j][i] = values[name]
    shape = jnp.broadcast_shapes(*(jnp.shape(v) for v in values.values()))
    mean = jnp.stack([jnp.broadcast_to(m, shape) for m in mean], -1)
    cov = jnp.stack(
        [jnp.stack([jnp.broadcast_to(e, shape) for e in row], -1) for row in entries], -2
    )
    _check_positive_definite(cov)
    return mean, cov


def moments_from_twiss(
    beta_x: ArrayLike = 1.0,
    alpha_x: ArrayLike = 0.0,
    emittance_x: ArrayLike = 7.1971891e-13,
    beta_y: ArrayLike = 1.0,
    alpha_y: ArrayLike = 0.0,
    emittance_y: ArrayLike = 7.1971891e-13,
    sigma_tau: ArrayLike = 1e-6,
    sigma_p: ArrayLike = 1e-6,
    cov_taup: ArrayLike = 0.0,
    dispersion_x: ArrayLike = 0.0,
    dispersion_px: ArrayLike = 0.0,
    dispersion_y: ArrayLike = 0.0,
    dispersion_py: ArrayLike = 0.0,
) -> tuple[Array, Array]:
    """Mean and covariance of an uncoupled beam from Twiss parameters and dispersion.

    beta in m, alpha dimensionless, emittance (geometric) in m, dispersion in m (x, y) and
    dimensionless (px, py). Defaults are Cheetah's.
    """
    arguments = dict(locals())
    for name, value in arguments.items():
        check_finite(float_array(value, name, "beam"), name, "beam")
    for name, value in (("beta_x", beta_x), ("beta_y", beta_y)):
        check_range(value, name, low=0.0, owner="beam", unit="m")
        if is_concrete(value) and np.any(np.asarray(value) == 0.0):
            raise ValueError(f"{name} must be > 0 m; got 0.0 m for beam")
    for name, value in (("emittance_x", emittance_x), ("emittance_y", emittance_y)):
        check_range(value, name, low=0.0, owner="beam", unit="m")
    check_range(sigma_p, "sigma_p", low=0.0, owner="beam")
    sp2 = jnp.asarray(sigma_p) ** 2

    def plane(beta, alpha, emittance, d, dp):
        beta, alpha, emittance = (jnp.asarray(v, dtype=float) for v in (beta, alpha, emittance))
        return (
            jnp.sqrt(emittance * beta + d**2 * sp2),
            jnp.sqrt(emittance * (1.0 + alpha**2) / beta + dp**2 * sp2),
            -emittance * alpha + d * dp * sp2,
        )

    sx, spx, cxpx = plane(beta_x, alpha_x, emittance_x, dispersion_x, dispersion_px)
    sy, spy, cypy = plane(beta_y, alpha_y, emittance_y, dispersion_y, dispersion_py)
    return moments_from_parameters(
        sigma_x=sx,
        sigma_px=spx,
        sigma_y=sy,
        sigma_py=spy,
        sigma_tau=sigma_tau,
        sigma_p=sigma_p,
        cov_xpx=cxpx,
        cov_ypy=cypy,
        cov_taup=cov_taup,
        cov_xp=dispersion_x * sp2,
        cov_pxp=dispersion_px * sp2,
        cov_yp=dispersion_y * sp2,
        cov_pyp=dispersion_py * sp2,
    )


def _check_positive_definite(cov: Array) -> None:
    if not is_concrete(cov):
        return
    variances = np.diagonal(np.asarray(cov), axis1=-2, axis2=-1)
    for i, coordinate in enumerate(COORDINATES):
        if not np.all(np.isfinite(variances[..., i])):
            raise ValueError(
                f"sigma_{coordinate} is too large: its square overflows float64; got variance "
                f"{np.max(variances[..., i])} for beam"
            )
        if np.any(variances[..., i] <= 0.0):
            raise ValueError(
                f"sigma_{coordinate} must be > 0 with a square that does not underflow (a "
                f"beam of zero size in {coordinate} has a singular covariance); got variance "
                f"{np.min(variances[..., i])} for beam"
            )
    if not np.all(np.isfinite(np.asarray(cov))):
        raise ValueError("the beam covariance has non-finite entries: a cov_ab overflows float64")
    eigenvalues = np.linalg.eigvalsh(np.asarray(cov))
    if np.any(eigenvalues <= 0.0):
        raise ValueError(
            "the beam covariance must be positive definite; smallest eigenvalue "
            f"{eigenvalues.min():.3e}: check that |cov_ab| < sigma_a * sigma_b"
        )


def _augment(mean: Array, cov: Array) -> tuple[Array, Array]:
    """(..., 6) mean and (..., 6, 6) covariance -> Cheetah's 7-vector and 7x7 matrix."""
    mu = jnp.concatenate([mean, jnp.ones((*mean.shape[:-1], 1))], -1)
    cov7 = jnp.zeros((*cov.shape[:-2], 7, 7)).at[..., :6, :6].set(cov)
    return mu, cov7


def _cov_property(first: str, second: str) -> property:
    i, j = _INDEX[first], _INDEX[second]
    return property(
        lambda self: self.covariance[..., i, j], doc=f"Covariance of {first} and {second}."
    )


def _mean_property(coordinate: str) -> property:
    i = _INDEX[coordinate]
    return property(lambda self: self.mean[..., i], doc=f"Mean of {coordinate}.")


def _sigma_property(coordinate: str) -> property:
    i = _INDEX[coordinate]
    return property(
        lambda self: jnp.sqrt(self.covariance[..., i, i]),
        doc=f"Standard deviation of {coordinate}.",
    )


class Beam(eqx.Module):
    """Common interface: moments and the quantities derived from them.

    Subclasses provide ``mean`` (..., 6), ``covariance`` (..., 6, 6), ``energy`` (eV),
    ``species``, ``total_charge`` (C) and ``s`` (m).
    """

    energy: eqx.AbstractVar[Array]
    s: eqx.AbstractVar[Array]
    species: eqx.AbstractVar[Species]

    @property
    @abc.abstractmethod
    def mean(self) -> Float[Array, "... 6"]:
        """Centroid (x, px, y, py, tau, p)."""

    @property
    @abc.abstractmethod
    def covariance(self) -> Float[Array, "... 6 6"]:
        """Second central moments of (x, px, y, py, tau, p)."""

    mu_x = _mean_property("x")
    mu_px = _mean_property("px")
    mu_y = _mean_property("y")
    mu_py = _mean_property("py")
    mu_tau = _mean_property("tau")
    mu_p = _mean_property("p")
    sigma_x = _sigma_property("x")
    sigma_px = _sigma_property("px")
    sigma_y = _sigma_property("y")
    sigma_py = _sigma_property("py")
    sigma_tau = _sigma_property("tau")
    sigma_p = _sigma_property("p")
    cov_xpx = _cov_property("x", "px")
    cov_ypy = _cov_property("y", "py")
    cov_taup = _cov_property("tau", "p")
    cov_xp = _cov_property("x", "p")
    cov_pxp = _cov_property("px", "p")
    cov_yp = _cov_property("y", "p")
    cov_pyp = _cov_property("py", "p")
    cov_xy = _cov_property("x", "y")
    cov_xpy = _cov_property("x", "py")
    cov_xtau = _cov_property("x", "tau")
    cov_pxy = _cov_property("px", "y")
    cov_pxpy = _cov_property("px", "py")
    cov_pxtau = _cov_property("px", "tau")
    cov_ytau = _cov_property("y", "tau")
    cov_pytau = _cov_property("py", "tau")

    @property
    def relativistic_gamma(self) -> Array:
        """Lorentz factor of the reference particle."""
        return self.energy / self.species.mass_eV

    @property
    def relativistic_beta(self) -> Array:
        """Speed of the reference particle over c."""
        return jnp.sqrt(1.0 - 1.0 / self.relativistic_gamma**2)

    @property
    def p0c(self) -> Array:
        """Reference momentum times c, in eV."""
        return self.relativistic_beta * self.relativistic_gamma * self.species.mass_eV

    def _betatron(self, plane: str) -> tuple[Array, Array, Array]:
        """Dispersion-corrected <u u>, <u u'>, <u' u'> of the x or y plane."""
        u, up = _INDEX[plane], _INDEX["p" + plane]
        c, p = self.covariance, _INDEX["p"]
        inverse_var_p = self._inverse_var_p()
        uu = c[..., u, u] - c[..., u, p] ** 2 * inverse_var_p
        uup = c[..., u, up] - c[..., u, p] * c[..., up, p] * inverse_var_p
        upup = c[..., up, up] - c[..., up, p] ** 2 * inverse_var_p
        return uu, uup, upup

    def _inverse_var_p(self) -> Array:
        """1 / var(p), or 0 for a beam without energy spread (no dispersion to remove)."""
        var_p = self.covariance[..., _INDEX["p"], _INDEX["p"]]
        positive = var_p > 0.0
        return jnp.where(positive, 1.0 / jnp.where(positive, var_p, 1.0), 0.0)

    def _emittance(self, plane: str) -> Array:
        uu, uup, upup = self._betatron(plane)
        # The tiny floor keeps sqrt differentiable for a beam of zero emittance.
        return jnp.sqrt(jnp.maximum(uu * upup - uup**2, np.finfo(float).tiny))

    def _projected_emittance(self, plane: str) -> Array:
        u, up = _INDEX[plane], _INDEX["p" + plane]
        c = self.covariance
        return jnp.sqrt(
            jnp.maximum(c[..., u, u] * c[..., up, up] - c[..., u, up] ** 2, np.finfo(float).tiny)
        )

    @property
    def emittance_x(self) -> Array:
        """Geometric betatron emittance in x (dispersion removed), m."""
        return self._emittance("x")

    @property
    def emittance_y(self) -> Array:
        """Geometric betatron emittance in y (dispersion removed), m."""
        return self._emittance("y")

    @property
    def projected_emittance_x(self) -> Array:
        """Geometric emittance of the projected x-px distribution, m."""
        return self._projected_emittance("x")

    @property
    def projected_emittance_y(self) -> Array:
        """Geometric emittance of the projected y-py distribution, m."""
        return self._projected_emittance("y")

    @property
    def normalized_emittance_x(self) -> Array:
        """Normalised betatron emittance in x, m."""
        return self.emittance_x * self.relativistic_beta * self.relativistic_gamma

    @property
    def normalized_emittance_y(self) -> Array:
        """Normalised betatron emittance in y, m."""
        return self.emittance_y * self.relativistic_beta * self.relativistic_gamma

    @property
    def beta_x(self) -> Array:
        """Twiss beta in x, m."""
        return self._betatron("x")[0] / self.emittance_x

    @property
    def beta_y(self) -> Array:
        """Twiss beta in y, m."""
        return self._betatron("y")[0] / self.emittance_y

    @property
    def alpha_x(self) -> Array:
        """Twiss alpha in x."""
        return -self._betatron("x")[1] / self.emittance_x

    @property
    def alpha_y(self) -> Array:
        """Twiss alpha in y."""
        return -self._betatron("y")[1] / self.emittance_y

    def _dispersion(self, coordinate: str) -> Array:
        return self.covariance[..., _INDEX[coordinate], _INDEX["p"]] * self._inverse_var_p()

    @property
    def dispersion_x(self) -> Array:
        """Dispersion in x, m."""
        return self._dispersion("x")

    @property
    def dispersion_px(self) -> Array:
        """Dispersion in px."""
        return self._dispersion("px")

    @property
    def dispersion_y(self) -> Array:
        """Dispersion in y, m."""
        return self._dispersion("y")

    @property
    def dispersion_py(self) -> Array:
        """Dispersion in py."""
        return self._dispersion("py")


def _finite(value: ArrayLike, field: str, owner: str) -> Array:
    value = float_array(value, field, owner)
    check_finite(value, field, owner)
    return value


def _energy(value: ArrayLike, species: Species) -> Array:
    """Total energy in eV; it must exceed the rest energy of the species."""
    value = float_array(value, "energy", "beam")
    check_finite(value, "energy", "beam")
    check_positive(
        value - species.mass_eV, f"energy - rest energy ({species.mass_eV:.6g} eV)", "beam", "eV"
    )
    return value


class ParameterBeam(Beam):
    """A beam described by its first and second moments (a Gaussian in phase space).

    Args:
        mu: centroid as Cheetah's 7-vector (x, px, y, py, tau, p, 1), shape (..., 7).
        cov: covariance as a 7x7 matrix with zero seventh row and column, (..., 7, 7).
        energy: reference total energy in eV.
        total_charge: bunch charge in C.
        s: position along the beamline in m.
        species: particle species (electrons by default).
    """

    mu: Float[Array, "... 7"]
    cov: Float[Array, "... 7 7"]
    energy: Array
    total_charge: Array
    s: Array
    species: Species = eqx.field(static=True)

    def __init__(
        self,
        mu: ArrayLike,
        cov: ArrayLike,
        energy: ArrayLike,
        total_charge: ArrayLike = 0.0,
        s: ArrayLike = 0.0,
        species: Species = ELECTRON,
    ):
        self.mu = float_array(mu, "mu", "ParameterBeam")
        self.cov = float_array(cov, "cov", "ParameterBeam")
        check_trailing_shape(self.mu, "mu", (7,), "ParameterBeam")
        check_trailing_shape(self.cov, "cov", (7, 7), "ParameterBeam")
        check_finite(self.mu, "mu", "ParameterBeam")
        check_finite(self.cov, "cov", "ParameterBeam")
        self.energy = _energy(energy, species)
        self.total_charge = _finite(total_charge, "total_charge", "ParameterBeam")
        self.s = _finite(s, "s", "ParameterBeam")
        self.species = species

    @classmethod
    def from_parameters(
        cls,
        *,
        energy: ArrayLike = 1e8,
        total_charge: ArrayLike = 0.0,
        s: ArrayLike = 0.0,
        species: Species = ELECTRON,
        **parameters: ArrayLike,
    ) -> ParameterBeam:
        """A beam from named moments, as Cheetah's ``ParameterBeam.from_parameters``.

        Keyword arguments ``mu_x, mu_px, ..., sigma_x (m), sigma_px, ..., cov_xpx, ...``
        (see :func:`moments_from_parameters`), ``energy`` (eV), ``total_charge`` (C).

        Example:
            >>> beam = ParameterBeam.from_parameters(sigma_x=2e-4, energy=107.32e6)
        """
        mean, cov = moments_from_parameters(**parameters)
        return cls(*_augment(mean, cov), energy, total_charge, s, species)

    @classmethod
    def from_twiss(
        cls,
        *,
        energy: ArrayLike = 1e8,
        total_charge: ArrayLike = 0.0,
        s: ArrayLike = 0.0,
        species: Species = ELECTRON,
        **twiss: ArrayLike,
    ) -> ParameterBeam:
        """A beam from Twiss parameters, emittances and dispersion (:func:`moments_from_twiss`)."""
        mean, cov = moments_from_twiss(**twiss)
        return cls(*_augment(mean, cov), energy, total_charge, s, species)

    @property
    def mean(self) -> Array:
        return self.mu[..., :6]

    @property
    def covariance(self) -> Array:
        return self.cov[..., :6, :6]


class ParticleBeam(Beam):
    """A beam of macro-particles.

    Args:
        particles: (..., n, 7) coordinates (x, px, y, py, tau, p, 1).
        energy: reference total energy in eV.
        particle_charges: (..., n) charge of each macro-particle in C.
        survival_probabilities: (..., n) weights in [0, 1] (1 = not lost); statistics are
            weighted by them, so losses stay differentiable.
        s: position along the beamline in m.
        species: particle species (electrons by default).
    """

    particles: Float[Array, "... n 7"]
    energy: Array
    particle_charges: Float[Array, "... n"]
    survival_probabilities: Float[Array, "... n"]
    s: Array
    species: Species = eqx.field(static=True)

    def __init__(
        self,
        particles: ArrayLike,
        energy: ArrayLike,
        particle_charges: ArrayLike | None = None,
        survival_probabilities: ArrayLike | None = None,
        s: ArrayLike = 0.0,
        species: Species = ELECTRON,
    ):
        self.particles = float_array(particles, "particles", "ParticleBeam")
        check_trailing_shape(self.particles, "particles", (7,), "ParticleBeam")
        if self.particles.ndim < 2 or self.particles.shape[-2] < 2:
            raise ValueError(
                f"particles must have shape (..., n, 7) with n >= 2; got {self.particles.shape}"
            )
        check_finite(self.particles, "particles", "ParticleBeam")
        if is_concrete(self.particles) and not np.all(np.asarray(self.particles)[..., 6] == 1.0):
            raise ValueError(
                "particles[..., 6] must be 1 (the constant coordinate that carries kicks and "
                "misalignments); append a column of ones to (x, px, y, py, tau, p)"
            )
        n = self.particles.shape[-2]
        self.energy = _energy(energy, species)
        self.particle_charges = (
            jnp.full((n,), species.charge_coulomb)
            if particle_charges is None
            else jnp.asarray(particle_charges, dtype=float)
        )
        self.survival_probabilities = (
            jnp.ones((n,))
            if survival_probabilities is None
            else jnp.asarray(survival_probabilities, dtype=float)
        )
        for field in ("particle_charges", "survival_probabilities"):
            value = getattr(self, field)
            if value.shape[-1:] != (n,):
                raise ValueError(f"{field} must have shape (..., {n}); got {value.shape}")
            check_finite(value, field, "ParticleBeam")
        check_range(
            self.survival_probabilities, "survival_probabilities", low=0.0, high=1.0,
            owner="ParticleBeam",
        )  # fmt: skip
        self.s = _finite(s, "s", "ParticleBeam")
        self.species = species

    @classmethod
    def from_parameters(
        cls,
        num_particles: int,
        key: PRNGKeyArray,
        *,
        energy: ArrayLike = 1e8,
        total_charge: ArrayLike | None = None,
        s: ArrayLike = 0.0,
        species: Species = ELECTRON,
        **parameters: ArrayLike,
    ) -> ParticleBeam:
        """Sample ``num_particles`` from a Gaussian with the given named moments.

        The sample is transformed so that its mean and (unbiased) covariance equal the
        requested ones exactly, as Cheetah does. ``total_charge`` (C) defaults to the
        species' charge times ``num_particles``.

        Example:
            >>> beam = ParticleBeam.from_parameters(100_000, jax.random.key(0), sigma_x=2e-4)
        """
        mean, cov = moments_from_parameters(**parameters)
        return cls.from_moments(num_particles, key, mean, cov, energy, total_charge, s, species)

    @classmethod
    def from_twiss(
        cls,
        num_particles: int,
        key: PRNGKeyArray,
        *,
        energy: ArrayLike = 1e8,
        total_charge: ArrayLike | None = None,
        s: ArrayLike = 0.0,
        species: Species = ELECTRON,
        **twiss: ArrayLike,
    ) -> ParticleBeam:
        """Sample ``num_particles`` from Twiss parameters (:func:`moments_from_twiss`)."""
        mean, cov = moments_from_twiss(**twiss)
        return cls.from_moments(num_particles, key, mean, cov, energy, total_charge, s, species)

    @classmethod
    def from_moments(
        cls,
        num_particles: int,
        key: PRNGKeyArray,
        mean: Float[Array, 6],
        covariance: Float[Array, "6 6"],
        energy: ArrayLike = 1e8,
        total_charge: ArrayLike | None = None,
        s: ArrayLike = 0.0,
        species: Species = ELECTRON,
    ) -> ParticleBeam:
        """Sample a beam whose sample mean and covariance equal ``mean`` and ``covariance``."""
        if int(num_particles) != num_particles or num_particles < 7:
            raise ValueError(f"num_particles must be an integer >= 7; got {num_particles}")
        standard = jax.random.normal(key, (int(num_particles), 6))
        centred = standard - standard.mean(0, keepdims=True)
        sample_cov = centred.T @ centred / (num_particles - 1)
        whitened = jax.scipy.linalg.solve_triangular(
            jnp.linalg.cholesky(sample_cov), centred.T, lower=True
        ).T
        coordinates = jnp.asarray(mean)[None, :] + whitened @ jnp.linalg.cholesky(covariance).T
        particles = jnp.concatenate([coordinates, jnp.ones((int(num_particles), 1))], -1)
        charge = (
            species.charge_coulomb * num_particles
            if total_charge is None
            else _finite(total_charge, "total_charge", "ParticleBeam")
        )
        charges = jnp.full((int(num_particles),), jnp.asarray(charge) / num_particles)
        return cls(particles, energy, charges, None, s, species)

    @property
    def num_particles(self) -> int:
        return self.particles.shape[-2]

    @property
    def total_charge(self) -> Array:
        """Charge of the surviving particles in C."""
        return (self.particle_charges * self.survival_probabilities).sum(-1)

    @property
    def mean(self) -> Array:
        w = self.survival_probabilities[..., None]
        return (self.particles[..., :6] * w).sum(-2) / w.sum(-2)

    @property
    def covariance(self) -> Array:
        """Unbiased weighted covariance (weights: survival probabilities), as Cheetah."""
        w = self.survival_probabilities
        centred = self.particles[..., :6] - self.mean[..., None, :]
        total = w.sum(-1)
        correction = total - (w**2).sum(-1) / total
        weighted = centred * w[..., None]
        return jnp.einsum("...ni,...nj->...ij", weighted, centred) / correction[..., None, None]

    def as_parameter_beam(self) -> ParameterBeam:
        """The Gaussian beam with this beam's moments."""
        return ParameterBeam(
            *_augment(self.mean, self.covariance),
            self.energy,
            self.total_charge,
            self.s,
            self.species,
        )
