"""Binned Poisson likelihoods: Asimov Fisher information, constrained covariances, profiles.

A binned analysis is described by one function ``expected_counts(theta) -> (n_bins,)``, the
expected number of events per bin as a function of all parameters ``theta`` (parameter of
interest and nuisance parameters, in a fixed order), and an :class:`InferenceSetup` that says
which parameters are free, which carry Gaussian constraint terms and which is of interest.
Everything else derives from the one negative log-likelihood

    NLL(theta) = sum_i [nu_i(theta) - n_i log nu_i(theta)]
                 + sum_k (theta_k - theta0_k)^2 / (2 sigma_k^2),

with the *Asimov* data ``n = nu(theta0)`` (the expected counts at the nominal parameters):

* :func:`fisher_information` is its Hessian at ``theta0`` (by autodiff, in the exact
  Jacobian form that holds at the Asimov point);
* :func:`covariance` drops the fixed parameters and inverts (the Cramér-Rao bound);
* :func:`poi_variance` is the parameter-of-interest element: the INFERNO loss when the
  counts come from a soft histogram (:mod:`diffdesign.inference.inferno`);
* :func:`profile_nll` minimises over the free nuisances along a scan of the parameter of
  interest, and :func:`interval_half_width` reads the interval at a given ``Delta NLL``.

Shape nuisances of histograms that are not differentiable (hard bins) enter through
:class:`TemplateShapes`: per-bin quadratic interpolation between nominal, up and down
templates, linear beyond them (continuous value and slope).

Nothing here knows about the physics of the counts; units are those of the parameters.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import (
    check_finite,
    check_positive,
    check_range,
    refuse_traced_or_known,
)

ExpectedCounts = Callable[[Float[Array, " n_parameters"]], Float[Array, " n_bins"]]


@dataclasses.dataclass(frozen=True)
class InferenceSetup:
    """Which parameters of ``expected_counts(theta)`` are free, constrained, of interest.

    Attributes:
        names: every parameter of ``theta``, in order.
        nominal: their nominal values ``theta0`` (the Asimov point and the constraint centres).
        poi: name of the parameter of interest (must be free).
        free: names of the parameters fitted to the data (the others stay at nominal).
        constraints: Gaussian constraint widths ``{name: sigma}`` (parameter units) of free
            nuisance parameters with auxiliary measurements.

    Raises:
        ValueError: on unknown names, a fixed parameter of interest, a constraint on a fixed
            parameter or a non-positive width.

    Example:
        >>> InferenceSetup(("s", "b"), (50.0, 1000.0), poi="s", free=("s", "b"),
        ...                constraints={"b": 100.0})
    """

    names: tuple[str, ...]
    nominal: tuple[float, ...]
    poi: str
    free: tuple[str, ...]
    constraints: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for field in ("names", "free"):
            value = getattr(self, field)
            if isinstance(value, str) or not all(isinstance(n, str) for n in value):
                raise ValueError(
                    f"{field} must be a sequence of parameter names (strings); got {value!r}"
                )
        object.__setattr__(self, "names", tuple(self.names))
        try:
            object.__setattr__(self, "nominal", tuple(float(v) for v in self.nominal))
        except (TypeError, ValueError):
            raise ValueError(f"nominal values must be numbers; got {self.nominal!r}") from None
        object.__setattr__(self, "free", tuple(self.free))
        object.__setattr__(self, "constraints", dict(self.constraints))
        if len(self.names) != len(self.nominal):
            raise ValueError(
                f"names and nominal must have one length; got {len(self.names)} names and "
                f"{len(self.nominal)} nominal values"
            )
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"names must be distinct; got {self.names}")
        if not all(np.isfinite(self.nominal)):
            raise ValueError(f"nominal values must be finite; got {self.nominal}")
        unknown = sorted(set(self.free) - set(self.names))
        if unknown:
            raise ValueError(f"free names {unknown} are not parameters; known: {self.names}")
        if self.poi not in self.free:
            raise ValueError(
                f"the parameter of interest {self.poi!r} must be free; free: {self.free}"
            )
        for name, width in self.constraints.items():
            if name not in self.free:
                raise ValueError(
                    f"constraint on {name!r}: only free parameters can be constrained; "
                    f"free: {self.free}"
                )
            number = isinstance(width, int | float | np.number)
            if not (number and np.isfinite(width) and width > 0):
                raise ValueError(f"constraint width of {name!r} must be > 0; got {width}")

    @property
    def theta0(self) -> Float[Array, " n_parameters"]:
        return jnp.asarray(self.nominal, dtype=jnp.float64)

    @property
    def free_indices(self) -> np.ndarray:
        """Positions of the free parameters in ``theta``, in the order of ``names``."""
        return np.array([i for i, name in enumerate(self.names) if name in self.free])

    @property
    def poi_index(self) -> int:
        """Position of the parameter of interest among the free parameters."""
        return int(np.flatnonzero(self.names_free == self.poi)[0])

    @property
    def names_free(self) -> np.ndarray:
        return np.array(self.names)[self.free_indices]

    def constraint_precision(self) -> np.ndarray:
        """``(n_parameters,)`` 1/sigma^2 of the constraint terms (0 where unconstrained)."""
        return np.array([self.constraints.get(name, np.inf) ** -2.0 for name in self.names])


def poisson_nll(
    expected: Float[ArrayLike, " n_bins"], observed: Float[ArrayLike, " n_bins"]
) -> Float[Array, ""]:
    """``sum(nu - n log nu)``: the Poisson negative log-likelihood up to a data constant.

    Bins with no events observed contribute ``nu`` (no ``log 0``); non-positive expected
    counts where events are observed give ``inf``.
    """
    expected = jnp.asarray(expected)
    observed = jnp.asarray(observed)
    if expected.shape != observed.shape:
        raise ValueError(
            f"expected and observed counts must have one shape; got expected {expected.shape}, "
            f"observed {observed.shape}"
        )
    check_range(observed, "observed counts", low=0.0, owner="poisson_nll", unit="events")
    empty = observed == 0
    log_nu = jnp.log(jnp.where(empty, 1.0, expected))
    return jnp.sum(expected - jnp.where(empty, 0.0, observed * log_nu))


def asimov_nll(
    expected_counts: ExpectedCounts, setup: InferenceSetup
) -> Callable[[Float[Array, " n_parameters"]], Float[Array, ""]]:
    """The NLL of the Asimov data ``nu(theta0)`` with the setup's Gaussian constraints.

    The Asimov counts are computed once, here, so they are constants of ``theta`` (but keep
    their dependence on anything ``expected_counts`` closes over, e.g. network weights).
    """
    theta0 = setup.theta0
    observed = expected_counts(theta0)
    precision = jnp.asarray(setup.constraint_precision())

    def nll(theta):
        return poisson_nll(expected_counts(theta), observed) + 0.5 * jnp.sum(
            precision * (theta - theta0) ** 2
        )

    return nll


def fisher_information(
    expected_counts: ExpectedCounts, setup: InferenceSetup
) -> Float[Array, "n_parameters n_parameters"]:
    """The Hessian of the Asimov NLL at ``theta0`` over all parameters (constraints included).

    At the Asimov point the Hessian is exactly ``J^T diag(1/nu) J + diag(1/sigma^2)`` with
    ``J`` the Jacobian of the expected counts (the second derivatives of the counts are
    multiplied by ``1 - n/nu = 0``), so it is computed in that form, by forward-mode
    autodiff of the counts: half the cost of ``jax.hessian(asimov_nll(...))``, which it
    equals (tested). Bins with ``nu = 0`` carry no information.
    """
    return _fisher(expected_counts, setup, np.arange(len(setup.names)))


def _fisher(expected_counts, setup: InferenceSetup, indices: np.ndarray):
    """The ``indices`` block of :func:`fisher_information`, differentiating only along them."""
    theta0 = setup.theta0
    counts, tangents = jax.linearize(expected_counts, theta0)
    directions = jnp.eye(theta0.size, dtype=theta0.dtype)[indices]
    jacobian = jax.vmap(tangents, out_axes=1)(directions)
    weights = jnp.where(counts > 0, 1.0 / jnp.where(counts > 0, counts, 1.0), 0.0)
    precision = jnp.asarray(setup.constraint_precision()[indices])
    fisher = (jacobian.T * weights[None, :]) @ jacobian + jnp.diag(precision)
    # traced counts (a network's soft histogram inside a jitted training step) fail when it runs
    return refuse_traced_or_known(
        fisher, counts, lambda c: ~jnp.all(jnp.isfinite(c) & (c >= 0)), _BAD_COUNTS, _check_counts
    )


_BAD_COUNTS = "expected counts must be finite and >= 0 (events per bin) at theta0"


def _check_counts(counts) -> None:
    """Refuse known expected counts that are NaN, infinite or negative, naming the bin."""
    values = np.asarray(counts)
    for problem, bad in (("finite", ~np.isfinite(values)), (">= 0", values < 0)):
        if np.any(bad):
            i = int(np.flatnonzero(bad.ravel())[0])
            raise ValueError(
                f"expected counts must be {problem} (events per bin) at theta0; got "
                f"{values.ravel()[i]} in bin {i} of {values.size}"
            )


def covariance(
    fisher: Float[ArrayLike, "n_parameters n_parameters"], setup: InferenceSetup
) -> Float[Array, "n_free n_free"]:
    """Inverse of the free parameters' block of the Fisher information (fixed ones dropped)."""
    free = setup.free_indices
    block = jnp.asarray(fisher)[jnp.ix_(free, free)]
    return jnp.linalg.inv(block)


def poi_variance(expected_counts: ExpectedCounts, setup: InferenceSetup) -> Float[Array, ""]:
    """Expected variance of the parameter of interest, ``[I_free^-1]_poi,poi``.

    With counts from a soft histogram of a network's output this is the INFERNO loss; its
    square root is the expected (Cramér-Rao) uncertainty on the parameter of interest. Only
    the free parameters' derivatives are computed (fixed nuisances cost nothing).
    """
    index = setup.poi_index
    return jnp.linalg.inv(_fisher(expected_counts, setup, setup.free_indices))[index, index]


def profile_nll(
    expected_counts: ExpectedCounts,
    setup: InferenceSetup,
    poi_values: Float[ArrayLike, " n_scan"],
    *,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    max_steps: int = 256,
) -> Float[Array, " n_scan"]:
    """``Delta NLL`` of the Asimov data along a scan of the parameter of interest.

    At each value the free nuisance parameters are minimised over (BFGS from the nominal
    point); the result is relative to the NLL at ``theta0``, so it is 0 at the nominal value
    of the parameter of interest and about ``(poi - poi0)^2 / (2 variance)`` near it.

    Args:
        expected_counts: ``theta -> (n_bins,)`` expected counts.
        setup: parameters; the scan replaces the parameter of interest.
        poi_values: ``(n_scan,)`` values of the parameter of interest.
        rtol: BFGS relative tolerance.
        atol: BFGS absolute tolerance.
        max_steps: BFGS iteration limit.

    Returns:
        ``(n_scan,)`` profiled ``Delta NLL`` (not ``-2 Delta log L``).
    """
    nll = asimov_nll(expected_counts, setup)
    theta0 = setup.theta0
    poi = setup.names.index(setup.poi)
    nuisances = np.array([i for i in setup.free_indices if i != poi], dtype=int)
    nll0 = nll(theta0)

    def at(poi_value):
        base = theta0.at[poi].set(poi_value)
        if nuisances.size == 0:
            return nll(base) - nll0

        def objective(free, _):
            return nll(base.at[nuisances].set(free))

        solution = optx.minimise(
            objective,
            optx.BFGS(rtol=rtol, atol=atol),
            theta0[nuisances],
            max_steps=max_steps,
            throw=False,
        )
        return objective(solution.value, None) - nll0

    return jax.vmap(at)(jnp.asarray(poi_values, dtype=jnp.float64))


def interval_half_width(
    poi_values: Float[ArrayLike, " n_scan"],
    delta_nll: Float[ArrayLike, " n_scan"],
    level: float = 0.5,
) -> float:
    """Half the width of ``{poi : Delta NLL <= level}`` by linear interpolation of a scan.

    ``level = 0.5`` gives the 68.3 % interval of a one-parameter profile. Returns ``nan``
    if the scan does not cross ``level`` on both sides of its minimum.
    """
    x = np.asarray(poi_values, dtype=float)
    y = np.asarray(delta_nll, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size < 3:
        raise ValueError(
            f"poi_values and delta_nll must be (n,) with n >= 3; got {x.shape}, {y.shape}"
        )
    check_finite(x, "poi_values", "interval_half_width")
    check_finite(y, "delta_nll", "interval_half_width")
    if np.any(np.diff(x) <= 0):
        raise ValueError("poi_values must increase")
    best = int(np.argmin(y))

    def crossing(indices):
        for a, b in itertools.pairwise(indices):
            if y[a] <= level < y[b]:
                return x[a] + (level - y[a]) * (x[b] - x[a]) / (y[b] - y[a])
        return np.nan

    upper = crossing(np.arange(best, x.size))
    lower = crossing(np.arange(best, -1, -1))
    return float(0.5 * (upper - lower))


class TemplateShapes(eqx.Module):
    """A histogram's shape under shape nuisances, from templates at nominal, up and down.

    Each nuisance ``k`` moves the histogram by ``delta_k(alpha_k)`` with ``alpha_k =
    (theta_k - theta0_k) / step_k``: the quadratic through the down, nominal and up templates
    for ``|alpha| <= 1`` and its tangent beyond, so value and slope are continuous. The
    deltas add. At ``theta0`` the derivative is the central difference
    ``(up - down) / (2 step)``.

    Attributes:
        nominal: ``(n_bins,)`` histogram at ``theta0``.
        up, down: ``(n_nuisances, n_bins)`` histograms at ``theta0_k +- step_k``.
        step: ``(n_nuisances,)`` the shifts of the templates (parameter units).
    """

    nominal: Float[Array, " n_bins"]
    up: Float[Array, "n_nuisances n_bins"]
    down: Float[Array, "n_nuisances n_bins"]
    step: Float[Array, " n_nuisances"]

    def __check_init__(self):
        n_bins = self.nominal.shape[-1]
        if self.up.shape != self.down.shape or self.up.shape[-1:] != (n_bins,):
            raise ValueError(
                f"up and down must be (n_nuisances, {n_bins}); got {self.up.shape} and "
                f"{self.down.shape}"
            )
        if self.step.shape != self.up.shape[:1]:
            raise ValueError(f"step must be ({self.up.shape[0]},); got {self.step.shape}")
        for field in ("nominal", "up", "down"):
            check_finite(getattr(self, field), field, "TemplateShapes")
        check_positive(self.step, "step", "TemplateShapes", "parameter units")

    def __call__(self, shifts: Float[Array, " n_nuisances"]) -> Float[Array, " n_bins"]:
        """The histogram at ``theta0 + shifts`` (``shifts`` in parameter units)."""
        alpha = (shifts / self.step)[:, None]
        half_difference = 0.5 * (self.up - self.down)
        nominal = self.nominal[None, :]
        curvature = self.up + self.down - 2.0 * nominal
        inside = alpha * half_difference + 0.5 * alpha**2 * curvature
        above = (self.up - nominal) + (alpha - 1.0) * (half_difference + curvature)
        below = (self.down - nominal) + (alpha + 1.0) * (half_difference - curvature)
        delta = jnp.where(alpha > 1.0, above, jnp.where(alpha < -1.0, below, inside))
        return self.nominal + jnp.sum(delta, axis=0)
