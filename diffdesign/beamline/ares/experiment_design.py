"""Choose calibration settings that tell the most about the quadrupole offsets.

The Fisher information of the offsets is F = J^T J with J the Jacobian of the whitened
screen residuals (see `calibration.whitened_residuals`). At first order the centroids are
affine in the offsets, so F depends on the settings but not on the offsets, and
sqrt(diag F^-1) is the Cramer-Rao bound on the offset errors. D-optimal design maximises
log det F over the settings, by gradient, inside the magnet ranges: the design layer's
:func:`~diffdesign.core.multistart` on a :class:`DOptimalProblem`.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from diffdesign.beamline.ares._lattice import (
    INCOMING_PARAMETERS,
    OBSERVABLES,
    SETTING_LOWER,
    SETTING_UPPER,
    incoming_beam,
)
from diffdesign.beamline.ares._likelihood import (
    BEAM_PARAMETERS,
    DEFAULT_BOUND,
    NUISANCE,
    _validate_noise,
    beam_from_nuisance,
    beam_residuals,
    flat_residuals,
)
from diffdesign.beamline.ares.diagnostics import (
    Diagnostics,
    position_range,
    today,
)
from diffdesign.beamline.ares.problems import (
    MULTISTART_EPS,
    MULTISTART_STEP,
    settings_spec,
    settings_starts,
)
from diffdesign.beamline.ares.screens import RESOLUTION_RANGE
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.core import Adam, Box, CosineDecay, Log, Param, Problem, multistart
from diffdesign.inference.identifiability import gaussian_covariance

_LOWER, _UPPER = jnp.asarray(SETTING_LOWER), jnp.asarray(SETTING_UPPER)


def fisher_information(
    settings: Float[Array, "n 5"],
    noise: Mapping[str, ArrayLike] | None = None,
    incoming: ParameterBeam | None = None,
    offsets: Float[Array, "3 2"] | None = None,
    active: Bool[ArrayLike, " n"] | None = None,
) -> Float[Array, "6 6"]:
    """F = J^T J of the calibration's whitened residuals w.r.t. the flattened offsets (1/m^2).

    The residuals are `calibration.whitened_residuals`, the likelihood the fit uses; the
    measured values drop out of the Jacobian. ``noise`` as in `calibrate_offsets`.
    ``active`` (n,) marks the settings that are measured; the others (padding, so that
    designs of several sizes share one compiled program) contribute nothing.
    """
    jacobian = _whitened_jacobian(settings, noise, incoming, offsets, active)
    return jacobian.T @ jacobian


def _whitened_jacobian(settings, noise, incoming, offsets, active=None) -> Float[Array, "4n 6"]:
    n = settings.shape[0]
    sigmas = _validate_noise(noise, n)
    incoming = incoming_beam() if incoming is None else incoming
    offsets = jnp.zeros((3, 2)) if offsets is None else offsets
    unused = {k: jnp.zeros(n) for k in OBSERVABLES}
    jacobian = jax.jacfwd(flat_residuals(settings, unused, sigmas, incoming))(offsets.reshape(6))
    if active is None:
        return jacobian
    # Rows are observable-major: each observable's n residuals in turn.
    rows = jnp.tile(jnp.asarray(active, dtype=jacobian.dtype), jacobian.shape[0] // n)
    return jacobian * rows[:, None]


def cramer_rao_std(settings, noise=None, incoming=None, active=None) -> Float[Array, "3 2"]:
    """Smallest achievable one-sigma error of each offset (m) from these settings (those
    marked ``active``, all by default); inf for offsets these settings cannot determine."""
    jacobian = _whitened_jacobian(settings, noise, incoming, None, active)
    covariance, _ = gaussian_covariance(jacobian)
    return jnp.sqrt(jnp.diagonal(covariance)).reshape(3, 2)


def rms_cramer_rao(settings, noise=None, incoming=None, active=None) -> Array:
    """Root-mean-square of the Cramer-Rao bounds of the six offsets (m)."""
    return jnp.sqrt(jnp.mean(cramer_rao_std(settings, noise, incoming, active) ** 2))


@eqx.filter_jit
def _random_designs_rms(keys, active, noise, incoming) -> Float[Array, " draws"]:
    def one(key):
        return rms_cramer_rao(random_settings(active.shape[0], key), noise, incoming, active)

    return jax.vmap(one)(keys)


def random_designs_rms_cramer_rao(
    n: int,
    keys: PRNGKeyArray,
    *,
    noise: Mapping[str, ArrayLike] | None = None,
    incoming: ParameterBeam | None = None,
    capacity: int | None = None,
) -> Float[Array, " draws"]:
    """RMS Cramer-Rao bound (m) of one random design of ``n`` settings per key (the
    published strategy, :func:`random_settings`), all draws in one vmapped call.

    Each design is drawn as ``capacity`` settings of which the first ``n`` are measured, so
    every ``n <= capacity`` runs the same compiled program (default ``capacity = n``).
    """
    capacity = _capacity(n, capacity)
    active = jnp.arange(capacity) < n
    noise = _validate_noise(noise, capacity)
    incoming = incoming_beam() if incoming is None else incoming
    return _random_designs_rms(keys, active, noise, incoming)


def _capacity(n: int, capacity: int | None) -> int:
    if isinstance(n, bool) or int(n) != n or n < 3:
        raise ValueError(f"n must be an integer >= 3 (three offsets per plane); got {n}")
    if capacity is None:
        return int(n)
    if isinstance(capacity, bool) or int(capacity) != capacity or capacity < n:
        raise ValueError(f"capacity must be an integer >= n = {n}; got {capacity}")
    return int(capacity)


#: log det F given to singular designs (1/m^2 units inside the log), far below any design.
SINGULAR_LOG_DET = -1e3


class DOptimalProblem(Problem):
    """Calibration settings that maximise the information on the offsets: the loss is
    -log det F (F in 1/m^2, :func:`fisher_information` of the calibration's
    ``whitened_residuals``), and ``-SINGULAR_LOG_DET`` where F is singular.

    Spec ``{"settings"}``: (n, 5) settings inside the magnet ranges
    (:func:`~diffdesign.beamline.ares.problems.settings_spec`). Aux: ``log_det``.

    Args:
        n: number of settings (>= 3: each plane has three offsets and one centroid).
        noise: screen noise per observable (m), as in `calibrate_offsets`.
        incoming: the incoming beam (default ``incoming_beam()``).
        settings: (capacity, 5) starting settings (default zero).
        step: Adam step of the settings in their Box coordinate.
        capacity: rows of the settings array (default ``n``); rows ``n..capacity-1`` are
            padding that carries no information and no gradient, so designs of every
            ``n <= capacity`` share one compiled program.
    """

    noise: dict[str, Array]
    incoming: ParameterBeam
    start: Param
    active: Bool[Array, " capacity"]

    def __init__(
        self,
        n: int,
        noise: Mapping[str, ArrayLike] | None = None,
        incoming: ParameterBeam | None = None,
        settings: Float[ArrayLike, "n 5"] | None = None,
        *,
        step: float = MULTISTART_STEP,
        capacity: int | None = None,
    ):
        capacity = _capacity(n, capacity)
        settings = (
            jnp.zeros((capacity, 5)) if settings is None else jnp.asarray(settings, dtype=float)
        )
        if settings.shape != (capacity, 5):
            raise ValueError(f"settings must have shape ({capacity}, 5); got {settings.shape}")
        self.noise = _validate_noise(noise, capacity)
        self.incoming = incoming_beam() if incoming is None else incoming
        self.start = settings_spec(settings, step=step)
        self.active = jnp.arange(capacity) < n

    @property
    def spec(self):
        return {"settings": self.start}

    @property
    def name(self):
        return "d_optimal"

    def loss(self, params, key):
        fisher = fisher_information(
            params["settings"], self.noise, self.incoming, active=self.active
        )
        sign, log_det = jnp.linalg.slogdet(fisher)
        log_det = jnp.where(sign > 0, log_det, SINGULAR_LOG_DET)
        return -log_det, {"log_det": log_det}


def design_calibration_settings(
    n: int,
    key: jax.Array,
    *,
    noise: Mapping[str, ArrayLike] | None = None,
    incoming: ParameterBeam | None = None,
    num_starts: int = 16,
    steps: int = 400,
    step: float = MULTISTART_STEP,
    capacity: int | None = None,
) -> tuple[Float[Array, "n 5"], Array]:
    """D-optimal calibration settings: maximise log det F by Adam from random starts.

    Settings stay inside the magnet ranges through the Box bijection of ``settings_spec``;
    the step decays by a cosine to 1e-3 of ``step``. Corrector kicks do not change F at
    first order; they are returned as optimised (they remain in range).

    Args:
        n: number of settings (>= 3: each plane has three offsets and one centroid).
        key: PRNG key for the random starts (see ``problems.settings_starts``).
        noise: per observable, the screens' noise (m), as in `calibrate_offsets`.
        incoming: incoming beam, as in `calibrate_offsets`.
        num_starts: random starts of the multi-start Adam run.
        steps: Adam steps of each start.
        step: Adam step in the settings' Box coordinate (dimensionless).
        capacity: optimise inside a (capacity, 5) array whose extra rows are inert
            padding (see :class:`DOptimalProblem`): a study of several ``n`` then compiles
            once. The random starts of the first ``n`` rows, and so the result, are the same
            as without padding.

    Returns:
        settings: (n, 5) the best start's settings (1/m^2 and rad).
        log_det: log det F of the best start, F in 1/m^2.

    Raises:
        ValueError: n not an integer >= 3, capacity < n, bad noise, or a bad
            ``step``/``steps``.
    """
    problem = DOptimalProblem(n, noise, incoming, step=step, capacity=capacity)
    capacity = problem.active.shape[0]
    starts = settings_starts(key, (num_starts, int(n), 5))
    starts = jnp.pad(starts, ((0, 0), (0, capacity - int(n)), (0, 0)))  # zero: inside ranges
    optimiser = Adam(schedule=CosineDecay(steps, final_fraction=1e-3), eps=MULTISTART_EPS)
    result = multistart(
        problem, {"settings": starts}, steps=steps, key=key, optimiser=optimiser
    )
    best = int(result.best)
    return result.params["settings"][best][: int(n)], -result.loss[best]


def random_settings(n: int, key: jax.Array) -> Float[Array, "n 5"]:
    """n settings drawn uniformly in the magnet ranges (the published study's strategy)."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n (the number of settings) must be an integer >= 1; got {n!r}")
    return jax.random.uniform(key, (n, 5), minval=_LOWER[None, :], maxval=_UPPER[None, :])


def offsets_covariance(
    settings: Float[Array, "n 5"],
    diagnostics: Diagnostics | None = None,
    nominal: Mapping[str, float] | None = None,
    nuisance: tuple[str, ...] = NUISANCE,
    at: Float[Array, " p"] | None = None,
) -> Float[Array, "6 6"]:
    """Covariance (m^2) that a calibration can reach for the six offsets from ``settings``
    read by ``diagnostics``, with the incoming beam's ``nuisance`` parameters profiled out:
    ``[F^-1]`` restricted to the offsets, F = J^T J + 1 of the calibration's whitened
    residuals (:func:`~diffdesign.beamline.ares._likelihood.beam_residuals`, the likelihood
    the fits use) in units of the weak prior's widths (the "+ 1": offsets +-DEFAULT_BOUND,
    centroids 1 mm and 100 urad, sizes a factor e), which keeps a design that leaves a
    direction undetermined finite and differentiable.

    Args:
        at: the point x = (offsets / DEFAULT_BOUND, nuisances in the units of
            ``beam_from_nuisance``), (6 + len(nuisance),); zero offsets and the nominal
            beam if None. The screens' scatter there is the noise (held fixed in x, not in
            the design).

    Order of the result: (q1 dx, q1 dy, q2 dx, q2 dy, q3 dx, q3 dy).
    """
    diagnostics = today() if diagnostics is None else diagnostics
    nominal = dict(INCOMING_PARAMETERS if nominal is None else nominal)
    n = settings.shape[0]
    x0 = jnp.zeros(6 + len(nuisance)) if at is None else jnp.asarray(at, dtype=float)
    offsets = jnp.broadcast_to(DEFAULT_BOUND * x0[:6].reshape(3, 2), (n, 3, 2))
    _, noise = diagnostics.reading(settings, offsets, beam_from_nuisance(x0[6:], nominal, nuisance))
    unused = {k: jnp.zeros(n) for k in diagnostics.names}
    residuals = beam_residuals(settings, unused, noise, diagnostics, nominal, nuisance)
    jacobian = jax.jacfwd(residuals)(x0)
    fisher = jacobian.T @ jacobian + jnp.eye(x0.shape[0])
    factor = jax.scipy.linalg.cho_factor(fisher)
    covariance = jax.scipy.linalg.cho_solve(factor, jnp.eye(x0.shape[0]))
    return DEFAULT_BOUND**2 * covariance[:6, :6]


def expected_offsets_covariance(settings, diagnostics, nominal, nuisance, points) -> Array:
    """The mean of :func:`offsets_covariance` over ``points`` (k, 6 + len(nuisance)): the
    expected posterior covariance over draws of the unknowns (m^2)."""
    one = lambda x: offsets_covariance(settings, diagnostics, nominal, nuisance, x)
    return jnp.mean(jax.vmap(one)(points), axis=0)


def rms_bound(covariance: Float[Array, "6 6"]) -> Array:
    """Root-mean-square one-sigma bound (m) of the six offsets from their covariance."""
    return jnp.sqrt(jnp.trace(covariance) / 6.0)


#: The design variables :class:`CalibrationDesign` may vary.
DESIGN_VARIABLES = frozenset({"settings", "positions", "resolutions"})
#: Adam steps of the screens' positions (Box) and resolutions (log) in the design.
POSITION_STEP = 0.05
RESOLUTION_STEP = 0.05


def positions_spec(diagnostics: Diagnostics, *, step: float = POSITION_STEP) -> Param:
    """The screens' positions (m from their drifts' entrances) inside their drifts."""
    low, high = zip(*(position_range(s.drift) for s in diagnostics.screens), strict=True)
    return Param(diagnostics.positions, np.array(low), np.array(high), step=step,
                 label="positions", transform=Box(), unit="m")  # fmt: skip


def resolutions_spec(diagnostics: Diagnostics, *, step: float = RESOLUTION_STEP) -> Param:
    """The screens' resolutions (m) inside ``screens.RESOLUTION_RANGE``, moved in log."""
    k = len(diagnostics.screens)
    return Param(diagnostics.resolutions, np.full(k, RESOLUTION_RANGE[0]),
                 np.full(k, RESOLUTION_RANGE[1]), step=step, label="resolutions",
                 transform=Log(), unit="m")  # fmt: skip


class CalibrationDesign(Problem):
    """Calibration settings and screens chosen together for the offsets' accuracy and the
    screens' cost: loss = ln(RMS bound / 1 um) + ``cost_weight`` x cost (kEUR), the bound
    from :func:`expected_offsets_covariance` (the incoming beam profiled out, averaged over
    ``points``).

    Spec: the ``free`` subset of ``{"settings"}`` ((n, 5), inside the magnet ranges),
    ``{"positions"}`` (per screen, m inside its drift) and ``{"resolutions"}`` (per screen,
    m); the others stay at their starting values. Aux: ``rms_bound`` (m), ``cost`` (kEUR).

    Args:
        settings: (n, 5) starting (or fixed) settings; n >= 6, the number of offsets.
        diagnostics: the screens (default ``diagnostics.today()``).
        free: which design variables vary.
        cost_weight: lambda in 1/kEUR: paying 1 kEUR is worth a fraction lambda of the
            bound.
        nominal: the nominal incoming beam's parameters (default ``INCOMING_PARAMETERS``).
        nuisance: incoming-beam parameters profiled out.
        points: (k, 6 + len(nuisance)) draws of the unknowns (offsets / DEFAULT_BOUND and
            nuisances, units of ``beam_from_nuisance``) over which the covariance is
            averaged (:func:`expected_offsets_covariance`); default the nominal point only.
        settings_step: Adam step of the settings (Box coordinate).

    Raises:
        ValueError: n < 6, settings outside the magnet ranges, an unknown design variable,
            a negative cost weight, or unknown nuisance names.
    """

    start_settings: Param
    diagnostics: Diagnostics
    free: frozenset = eqx.field(static=True)
    cost_weight: Array
    nominal: dict
    nuisance: tuple[str, ...] = eqx.field(static=True)
    points: Array
    positions: Param
    resolutions: Param

    def __init__(
        self,
        settings: Float[ArrayLike, "n 5"],
        diagnostics: Diagnostics | None = None,
        *,
        free: Set[str] = DESIGN_VARIABLES,
        cost_weight: float = 0.0,
        nominal: Mapping[str, float] | None = None,
        nuisance: tuple[str, ...] = NUISANCE,
        points: Float[ArrayLike, "k p"] | None = None,
        settings_step: float = MULTISTART_STEP,
    ):
        settings = np.asarray(settings, dtype=float)
        if settings.ndim != 2 or settings.shape[1] != 5 or settings.shape[0] < 6:
            raise ValueError(
                "settings must have shape (n, 5) with n >= 6 (one measurement per offset at "
                f"least; the incoming beam is fitted too); got {settings.shape}"
            )
        unknown = set(free) - DESIGN_VARIABLES
        if unknown or not free:
            raise ValueError(
                f"free must be a non-empty subset of {sorted(DESIGN_VARIABLES)}; got {sorted(free)}"
            )
        if not cost_weight >= 0:
            raise ValueError(f"cost_weight must be >= 0 (1/kEUR); got {cost_weight}")
        bad = sorted(set(nuisance) - set(BEAM_PARAMETERS))
        if bad:
            raise ValueError(f"nuisance must be among {list(BEAM_PARAMETERS)}; got {bad}")
        self.start_settings = settings_spec(settings, step=settings_step)
        self.diagnostics = today() if diagnostics is None else diagnostics
        self.free = frozenset(free)
        self.cost_weight = jnp.asarray(cost_weight, dtype=float)
        self.nominal = dict(INCOMING_PARAMETERS if nominal is None else nominal)
        self.nuisance = tuple(nuisance)
        size = 6 + len(self.nuisance)
        points = np.zeros((1, size)) if points is None else np.asarray(points, dtype=float)
        if points.ndim != 2 or points.shape[1] != size or not np.all(np.isfinite(points)):
            raise ValueError(
                f"points must be finite with shape (k, {size}) (offsets / DEFAULT_BOUND and "
                f"the nuisances {list(self.nuisance)}); got shape {points.shape}"
            )
        self.points = jnp.asarray(points)
        self.positions = positions_spec(self.diagnostics)
        self.resolutions = resolutions_spec(self.diagnostics)

    @property
    def spec(self):
        every = {"settings": self.start_settings, "positions": self.positions,
                 "resolutions": self.resolutions}  # fmt: skip
        return {k: v for k, v in every.items() if k in self.free}

    @property
    def name(self):
        return "calibration_design"

    def design(self, params) -> tuple[Array, Diagnostics]:
        """The settings and screens of ``params`` (fixed variables at their start)."""
        settings = params.get("settings", self.start_settings.value)
        positions = params.get("positions", self.positions.value)
        resolutions = params.get("resolutions", self.resolutions.value)
        return settings, self.diagnostics.with_geometry(positions, resolutions)

    def loss(self, params, key):
        settings, diagnostics = self.design(params)
        covariance = expected_offsets_covariance(
            settings, diagnostics, self.nominal, self.nuisance, self.points
        )
        bound = rms_bound(covariance)
        cost = diagnostics.cost()
        loss = jnp.log(bound / 1e-6) + self.cost_weight * cost
        return loss, {"rms_bound": bound, "cost": cost}
