"""The L-GSO paper's benchmark simulators (Shirobokov et al. 2020), as NumPy black boxes.

Each problem is a stochastic simulator ``y = F(x, psi)`` with inputs ``x ~ q(x)`` and a
known, differentiable objective ``R(y)`` (a JAX function); the task is
``min_psi E[R(F(x, psi))]`` without looking inside ``F``. The definitions follow the
authors' code (``shir994/L-GSO``, ``model.py``), where it and the paper's text differ:

* :class:`ThreeHump` (2-D): ``h = 2 p1^2 - 1.05 p1^4 + p1^6/6 + p1 p2 + p2^2``;
  ``x1 ~ U(-2, 2)``, ``x2 ~ U(0, 5)``; ``mu_i ~ N(x_i h, 1)``; component ``i`` drawn with
  probabilities ``(|p1|, |p2|) / (|p1| + |p2|)``; ``y ~ N(mu_i, 1)``;
  ``R(y) = sigmoid(y - 10) - sigmoid(y)``.
* :class:`Rosenbrock` (10-D): ``x ~ U(-10, 10)``, ``l ~ N(x, 1)``,
  ``y ~ N(l + g(psi), 0.1 + 0.5 |l|)`` with ``g`` Rosenbrock's function *without* the usual
  factor 100; ``R(y) = y``, so ``E[R] = g(psi)`` exactly.
* :class:`SubmanifoldRosenbrock`: 100-D ``psi`` acting through ``psi Q``, ``Q`` a fixed
  100 x 10 matrix with orthonormal columns (``QR`` of ``RandomState(1337).randn(100, 10)``,
  the authors' draw).
* :class:`NonlinearSubmanifoldHump`: 40-D ``psi`` acting through
  ``B tanh(A psi)``, ``A`` 16 x 40 and ``B`` 2 x 16 with orthonormal rows, on the three-hump
  model. The authors' draw of ``A`` and ``B`` was unseeded; ours is seeded.

Also :func:`paper_problem` with the paper's start, trust-region size ``epsilon`` and number
of parameter points ``N`` per L-GSO iteration.
"""

from __future__ import annotations

import abc
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffdesign.surrogates.blackbox import BlackBoxSimulator


def three_hump_camel(psi: np.ndarray) -> np.ndarray:
    """The three-hump camel function of ``psi (..., 2)``."""
    p1, p2 = psi[..., 0], psi[..., 1]
    return 2 * p1**2 - 1.05 * p1**4 + p1**6 / 6 + p1 * p2 + p2**2


def rosenbrock(psi: np.ndarray) -> np.ndarray:
    """``sum_i (psi_{i+1} - psi_i^2)^2 + (1 - psi_i)^2`` (no factor 100), over the last axis."""
    return np.sum((psi[..., 1:] - psi[..., :-1] ** 2) ** 2 + (1 - psi[..., :-1]) ** 2, axis=-1)


def sigmoid_window(y: jnp.ndarray) -> jnp.ndarray:
    """``R(y) = sigmoid(y - 10) - sigmoid(y)`` of ``y (..., 1)``: lowest for ``0 < y < 10``."""
    return jax.nn.sigmoid(y[..., 0] - 10.0) - jax.nn.sigmoid(y[..., 0])


def identity_objective(y: jnp.ndarray) -> jnp.ndarray:
    """``R(y) = y`` of ``y (..., 1)``."""
    return y[..., 0]


class _Problem(BlackBoxSimulator):
    """A simulator with a known objective ``R(y)`` and, where it exists, an exact mean."""

    @abc.abstractmethod
    def objective(self, y: jnp.ndarray) -> jnp.ndarray:
        """``R(y)`` of outputs ``y (..., y_dim)`` (JAX, differentiable)."""

    def expected_objective(self, psi: np.ndarray) -> float | None:
        """``E[R(F(x, psi))]`` in closed form, or ``None`` where there is none."""
        del psi
        return None

    def effective(self, psi: np.ndarray) -> np.ndarray:
        """The parameters the simulator actually sees (identity here)."""
        return psi


@dataclasses.dataclass(frozen=True)
class ThreeHump(_Problem):
    """The probabilistic three-hump problem (see the module doc)."""

    psi_dim: int = 2
    x_dim: int = 2
    y_dim: int = 1

    def objective(self, y: jnp.ndarray) -> jnp.ndarray:
        return sigmoid_window(y)

    def sample_inputs(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.stack([rng.uniform(-2.0, 2.0, n), rng.uniform(0.0, 5.0, n)], axis=1)

    def simulate(self, psi: np.ndarray, x: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        p = self.effective(psi)
        h = three_hump_camel(p)
        mu = rng.normal(x * h[:, None], 1.0)
        weights = np.abs(p)
        total = weights.sum(axis=1)
        first = np.where(total > 0, weights[:, 0] / np.where(total > 0, total, 1.0), 0.5)
        component = (rng.uniform(size=len(p)) >= first).astype(int)
        chosen = np.take_along_axis(mu, component[:, None], axis=1)
        return rng.normal(chosen, 1.0)


@dataclasses.dataclass(frozen=True)
class Rosenbrock(_Problem):
    """The probabilistic Rosenbrock problem (see the module doc)."""

    psi_dim: int = 10
    x_dim: int = 1
    y_dim: int = 1

    def objective(self, y: jnp.ndarray) -> jnp.ndarray:
        return identity_objective(y)

    def sample_inputs(self, n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).uniform(-10.0, 10.0, (n, 1))

    def simulate(self, psi: np.ndarray, x: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        latent = rng.normal(x, 1.0)
        mean = latent + rosenbrock(self.effective(psi))[:, None]
        return rng.normal(mean, 0.1 + 0.5 * np.abs(latent))

    def expected_objective(self, psi: np.ndarray) -> float:
        return float(rosenbrock(self.effective(np.asarray(psi, dtype=float))))


def _orthonormal_columns(rng: np.random.RandomState, rows: int, columns: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.randn(rows, columns))
    return q


@dataclasses.dataclass(frozen=True)
class SubmanifoldRosenbrock(Rosenbrock):
    """Rosenbrock of ``psi Q``: ``psi_dim`` parameters, ``effective_dim`` effective ones."""

    psi_dim: int = 100
    effective_dim: int = 10
    seed: int = 1337

    @functools.cached_property
    def embedding(self) -> np.ndarray:
        """``(psi_dim, effective_dim)`` matrix with orthonormal columns."""
        return _orthonormal_columns(
            np.random.RandomState(self.seed), self.psi_dim, self.effective_dim
        )

    def effective(self, psi: np.ndarray) -> np.ndarray:
        return psi @ self.embedding


@dataclasses.dataclass(frozen=True)
class NonlinearSubmanifoldHump(ThreeHump):
    """The three-hump model of ``B tanh(A psi)`` (40 -> 16 -> 2)."""

    psi_dim: int = 40
    hidden_dim: int = 16
    seed: int = 1337

    @functools.cached_property
    def embedding(self) -> tuple[np.ndarray, np.ndarray]:
        """``A (hidden, psi_dim)`` and ``B (2, hidden)``, both with orthonormal rows."""
        rng = np.random.RandomState(self.seed)
        a = _orthonormal_columns(rng, self.psi_dim, self.hidden_dim).T
        b = _orthonormal_columns(rng, self.hidden_dim, 2).T
        return a, b

    def effective(self, psi: np.ndarray) -> np.ndarray:
        a, b = self.embedding
        return np.tanh(psi @ a.T) @ b.T


@dataclasses.dataclass(frozen=True)
class PaperSettings:
    """A problem with the paper's L-GSO settings.

    Attributes:
        problem: the simulator.
        start: ``(psi_dim,)`` initial parameters.
        epsilon: half-width of the trust region (and the largest step).
        n_points: parameter points sampled per iteration (``N``).
        optimum: the best achievable objective (for the targets).
        target: objective value counted as "reached" (our choice; the paper states none).
        step: finite-difference step of the numerical-differentiation baseline (the
            authors' value).
    """

    problem: _Problem
    start: tuple[float, ...]
    epsilon: float
    n_points: int
    optimum: float
    target: float
    step: float


def paper_problem(name: str) -> PaperSettings:
    """The settings of one of ``three_hump``, ``rosenbrock_10d``, ``submanifold_rosenbrock``,
    ``nonlinear_hump``."""
    if name == "three_hump":
        return PaperSettings(ThreeHump(), (2.0, 0.0), 0.5, 4, -0.858, -0.8, 0.1)
    if name == "rosenbrock_10d":
        return PaperSettings(Rosenbrock(), (2.0,) * 10, 0.2, 15, 0.0, 1.0, 0.1)
    if name == "submanifold_rosenbrock":
        return PaperSettings(SubmanifoldRosenbrock(), (0.0,) * 100, 0.2, 20, 0.0, 1.0, 0.05)
    if name == "nonlinear_hump":
        return PaperSettings(
            NonlinearSubmanifoldHump(), (2.0,) + (0.0,) * 39, 0.2, 10, -0.858, -0.8, 0.2
        )
    raise ValueError(f"problem must be one of {PROBLEMS}; got {name!r}")


PROBLEMS = ("three_hump", "rosenbrock_10d", "submanifold_rosenbrock", "nonlinear_hump")
