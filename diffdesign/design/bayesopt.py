"""Sequential black-box minimisation over a box: Bayesian optimisation and random search.

The objective is any Python callable ``objective(x) -> float`` (``x`` a ``(d,)`` NumPy array
in the caller's units), typically an expensive measurement that cannot be jitted. Each
search is an immutable configuration (:class:`BayesianOptimisation`, :class:`RandomSearch`)
with ``init``/``step``/``run`` over an explicit :class:`SearchState`, so a run can be
inspected, checkpointed (``.npz``) after every evaluation and resumed exactly.

Inside, the box ``[lower, upper]`` is mapped to the unit cube, so the GP lengthscales are
fractions of each input's range however different the input scales (quadrupole strengths in
1/m², corrector angles in rad). A physics model enters as the GP prior mean
``mean_fn(mean_params, X)``, with ``X`` an ``(n, d)`` array in the caller's units.
"""

from __future__ import annotations

import abc
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, PyTree

from diffdesign._checkpoint import load_checkpoint, save_checkpoint
from diffdesign._sampling import latin_hypercube
from diffdesign.inference.gp import (
    DEFAULT_PRIOR,
    GPHyperparameters,
    GPPosterior,
    HyperparameterPrior,
    LogExpectedImprovement,
    MeanFn,
    UpperConfidenceBound,
    check_mean_params_bounds,
    default_hyperparameters,
    fit_hyperparameters,
    matern52,
    maximize_acquisition,
    posterior,
    rbf,
)

Objective = Callable[[np.ndarray], float]

_KERNELS = {"matern52": matern52, "rbf": rbf}


class StepRecord(NamedTuple):
    """What chose one evaluated point (all ``None`` for initial-design and random points).

    Attributes:
        hyperparameters: GP hyperparameters fitted before choosing the point (y units;
            lengthscales as fractions of the box width), including the fitted
            ``mean_params`` when they are fitted.
        marginal_log_likelihood: their exact log marginal likelihood (nats).
        acquisition_value: the maximised acquisition (log EI, or the negated LCB in y units).
    """

    hyperparameters: GPHyperparameters | None = None
    marginal_log_likelihood: float | None = None
    acquisition_value: float | None = None


class SearchState(NamedTuple):
    """State of a sequential search; every array in the caller's units.

    Attributes:
        initial_design: ``(n_initial, d)`` points evaluated first, in order.
        X: ``(n, d)`` points evaluated so far.
        y: ``(n,)`` objective values at them.
        key: PRNG key for the next step.
        history: one :class:`StepRecord` per evaluated point.
    """

    initial_design: np.ndarray
    X: np.ndarray
    y: np.ndarray
    key: PRNGKeyArray
    history: tuple[StepRecord, ...]

    @property
    def iteration(self) -> int:
        """Number of evaluations done."""
        return len(self.y)

    @property
    def best_x(self) -> np.ndarray:
        """The evaluated point with the lowest objective value, ``(d,)``."""
        return self.X[int(np.argmin(self.y))]

    @property
    def best_y(self) -> float:
        """The lowest objective value so far."""
        return float(np.min(self.y))


def _as_typed_key(key: ArrayLike) -> PRNGKeyArray:
    if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(jnp.asarray(key, dtype=jnp.uint32))


def _as_bound(value: ArrayLike) -> np.ndarray:
    return np.array(value, dtype=float, ndmin=1)


def _evaluate(objective: Objective, x: np.ndarray) -> float:
    value = objective(x.copy())
    array = np.asarray(value, dtype=float)
    if array.size != 1:
        raise ValueError(
            f"objective must return a scalar; got shape {array.shape} at x={x.tolist()}"
        )
    value = float(array.reshape(()))
    if not math.isfinite(value):
        raise ValueError(
            f"objective returned {value} at x={x.tolist()}; only finite values can be modelled"
        )
    return value


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _leaves_to_json(tree: PyTree) -> list:
    return [np.asarray(leaf, dtype=float).tolist() for leaf in jax.tree_util.tree_leaves(tree)]


class _SequentialSearch(eqx.Module):
    """Shared loop: ``init``/``step``/``run`` and checkpoints; subclasses propose points.

    Attributes:
        lower: ``(d,)`` lower box bounds in the caller's units.
        upper: ``(d,)`` upper box bounds, ``lower < upper``.
    """

    lower: np.ndarray = eqx.field(converter=_as_bound)
    upper: np.ndarray = eqx.field(converter=_as_bound)

    _label: ClassVar[str] = "search"
    _minimum_initial: ClassVar[int] = 0

    def __check_init__(self):
        if self.lower.ndim != 1 or self.lower.shape != self.upper.shape:
            raise ValueError(
                f"lower and upper must be (d,) arrays of one shape; got {self.lower.shape} "
                f"and {self.upper.shape}"
            )
        if not (np.all(np.isfinite(self.lower)) and np.all(np.isfinite(self.upper))):
            raise ValueError(
                f"lower and upper must be finite; got {self.lower.tolist()}, {self.upper.tolist()}"
            )
        if not np.all(self.lower < self.upper):
            i = int(np.argmin(self.lower < self.upper))
            raise ValueError(
                f"lower must be < upper in every dimension; got lower[{i}]={self.lower[i]}, "
                f"upper[{i}]={self.upper[i]}"
            )

    @property
    def dimension(self) -> int:
        return self.lower.shape[0]

    @abc.abstractmethod
    def _propose(
        self, state: SearchState, key: PRNGKeyArray, capacity: int | None
    ) -> tuple[np.ndarray, StepRecord]:
        """Next point in the unit cube ``(d,)`` and the record of how it was chosen
        (``capacity``: the number of evaluations the run will reach, if known)."""

    def _settings(self) -> dict[str, Any]:
        """JSON-able options that must match when a checkpoint is resumed."""
        return {}

    def _describe(self, record: StepRecord) -> str:
        """Extra text for the progress line of a proposed point."""
        del record
        return ""

    # ------------------------------------------------------------------ init / step / run

    def init(
        self,
        key: PRNGKeyArray,
        *,
        n_initial: int | None = None,
        initial_points: Float[ArrayLike, "n_initial d"] | None = None,
        design: str = "lhs",
    ) -> SearchState:
        """A state with no evaluations and the initial design to evaluate first.

        Args:
            key: PRNG key (typed or raw ``uint32``); all later randomness derives from it.
            n_initial: number of initial points (default ``d + 1``).
            initial_points: ``(n_initial, d)`` points in the box, caller's units, to use
                instead of a random design.
            design: ``"lhs"`` (Latin hypercube, default) or ``"uniform"``.

        Raises:
            ValueError: on a bad shape, a point outside the box or too few points.
        """
        key = _as_typed_key(key)
        d = self.dimension
        if initial_points is not None:
            points = np.array(initial_points, dtype=float, ndmin=2)
            if points.ndim != 2 or points.shape[1] != d:
                raise ValueError(f"initial_points must have shape (n, {d}); got {points.shape}")
            if n_initial is not None and n_initial != points.shape[0]:
                raise ValueError(
                    f"n_initial={n_initial} but initial_points has {points.shape[0]} rows"
                )
            self._check_in_box(points, "initial_points")
        else:
            n_initial = d + 1 if n_initial is None else n_initial
            if n_initial < 0:
                raise ValueError(f"n_initial must be >= 0; got {n_initial}")
            if design not in ("lhs", "uniform"):
                raise ValueError(f"design must be 'lhs' or 'uniform'; got {design!r}")
            key, design_key = jax.random.split(key)
            if n_initial == 0:
                unit = np.zeros((0, d))
            elif design == "lhs":
                unit = latin_hypercube(design_key, n_initial, d)
            else:
                unit = np.asarray(jax.random.uniform(design_key, (n_initial, d)))
            points = self._from_unit(unit)
        if points.shape[0] < self._minimum_initial:
            raise ValueError(
                f"{type(self).__name__} needs at least {self._minimum_initial} initial points; "
                f"got {points.shape[0]}"
            )
        return SearchState(
            initial_design=points,
            X=np.zeros((0, d)),
            y=np.zeros(0),
            key=key,
            history=(),
        )

    def step(
        self, state: SearchState, objective: Objective, *, capacity: int | None = None
    ) -> SearchState:
        """Choose one point (the next initial point, else a proposal), evaluate it, append.

        Args:
            state: current state.
            objective: ``objective(x) -> float`` with ``x`` a ``(d,)`` NumPy array in the
                caller's units; called exactly once.
            capacity: the number of evaluations the run will reach (:meth:`run` passes its
                budget): the GP pads its data to it, so that every step of a run of up to
                128 evaluations runs one compiled program. It does not change the result.

        Raises:
            ValueError: if the objective returns a non-scalar or non-finite value (the
                message names the point), or the state does not fit this problem.
        """
        d = self.dimension
        if state.X.shape != (len(state.y), d) or len(state.history) != len(state.y):
            raise ValueError(
                f"state does not fit a {d}-dimensional problem: X {state.X.shape}, "
                f"y {state.y.shape}, {len(state.history)} history records"
            )
        key, step_key = jax.random.split(state.key)
        n = len(state.y)
        if n < len(state.initial_design):
            x, record = state.initial_design[n], StepRecord()
        else:
            unit, record = self._propose(state, step_key, capacity)
            x = self._from_unit(unit[None, :])[0]
        value = _evaluate(objective, x)
        return SearchState(
            initial_design=state.initial_design,
            X=np.concatenate([state.X, x[None, :]]),
            y=np.append(state.y, value),
            key=key,
            history=(*state.history, record),
        )

    def run(
        self,
        objective: Objective,
        key: PRNGKeyArray,
        n_evaluations: int,
        *,
        checkpoint: str | os.PathLike | None = None,
        progress: Callable[[str], None] | None = print,
        n_initial: int | None = None,
        initial_points: Float[ArrayLike, "n_initial d"] | None = None,
        design: str = "lhs",
    ) -> SearchState:
        """Evaluate ``objective`` until ``n_evaluations`` (initial design included) are done.

        With ``checkpoint``, the state is written there (``.npz``, atomically) after every
        evaluation, and a run finding the file resumes from it: the key, initial design and
        fitted history come from the file, so the continued run repeats exactly what an
        uninterrupted one would have done. Stop a run at any time (e.g. Ctrl-C); at most the
        evaluation in progress is lost.

        Args:
            objective: ``objective(x) -> float``, ``x`` a ``(d,)`` NumPy array (caller's units).
            key: PRNG key for a fresh start (ignored when resuming).
            n_evaluations: total evaluation budget.
            checkpoint: ``.npz`` file to write and resume from.
            progress: called with one short line per evaluation (``None`` for silence).
            n_initial, initial_points, design: as for :meth:`init` (checked against the
                file when resuming).

        Returns:
            The final state.

        Raises:
            ValueError: on a malformed checkpoint or one from a different problem, and as
                :meth:`init` and :meth:`step`.

        Example:
            >>> search = BayesianOptimisation(lower, upper, mean_fn=model, mean_params=p0)
            >>> state = search.run(measure, jax.random.key(0), 50, checkpoint="bo.npz")
        """
        if isinstance(n_evaluations, bool) or not isinstance(n_evaluations, int | np.integer):
            raise TypeError(f"n_evaluations must be an int; got {n_evaluations!r}")
        if n_evaluations < 1:
            raise ValueError(f"n_evaluations must be >= 1; got {n_evaluations}")
        if checkpoint is not None and Path(checkpoint).exists():
            state = self.load_checkpoint(checkpoint)
            k = len(state.initial_design)
            if n_initial is not None and n_initial != k:
                raise ValueError(
                    f"checkpoint {checkpoint} has {k} initial points; n_initial={n_initial}"
                )
            if initial_points is not None and not np.array_equal(
                np.array(initial_points, dtype=float, ndmin=2), state.initial_design
            ):
                raise ValueError(f"checkpoint {checkpoint} has different initial_points")
            if progress is not None:
                progress(f"resumed {checkpoint}: {state.iteration}/{n_evaluations} evaluations")
        else:
            state = self.init(
                key, n_initial=n_initial, initial_points=initial_points, design=design
            )
        while state.iteration < n_evaluations:
            state = self.step(state, objective, capacity=n_evaluations)
            if checkpoint is not None:
                self.save_checkpoint(state, checkpoint)
            if progress is not None:
                progress(self._progress_line(state, n_evaluations))
        return state

    def _progress_line(self, state: SearchState, n_evaluations: int) -> str:
        record = state.history[-1]
        line = (
            f"{self._label} {state.iteration}/{n_evaluations} y={state.y[-1]:.4g} "
            f"best={state.best_y:.4g}"
        )
        if state.iteration <= len(state.initial_design):
            return line + " (initial design)"
        extra = self._describe(record)
        return f"{line} {extra}" if extra else line

    # ------------------------------------------------------------------------- geometry

    def _from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Unit cube -> box; the clip only removes round-off at the faces."""
        points = self.lower[None, :] + unit * (self.upper - self.lower)[None, :]
        return np.clip(points, self.lower[None, :], self.upper[None, :])

    def _to_unit(self, points: np.ndarray) -> np.ndarray:
        return (points - self.lower[None, :]) / (self.upper - self.lower)[None, :]

    def _check_in_box(self, points: np.ndarray, field: str) -> None:
        if not np.all(np.isfinite(points)):
            raise ValueError(f"{field} must be finite; got {points.tolist()}")
        outside = (points < self.lower[None, :]) | (points > self.upper[None, :])
        if np.any(outside):
            row, column = np.argwhere(outside)[0]
            raise ValueError(
                f"{field}[{row}, {column}] = {points[row, column]} lies outside "
                f"[{self.lower[column]}, {self.upper[column]}]"
            )

    # ---------------------------------------------------------------------- checkpoints

    def _mean_params_template(self) -> PyTree:
        return None

    def _checkpoint_settings(self) -> dict[str, Any]:
        """What a checkpoint must have been written with to be resumed here."""
        return {
            "method": type(self).__name__,
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            **self._settings(),
        }

    def _checkpoint_tree(self, state: SearchState) -> dict[str, Any]:
        """``state`` as arrays; the history stacked along a leading axis of one per record
        (NaN for a ``None`` value, zeros for the hyperparameters of an unfitted record)."""
        n, d = len(state.history), self.dimension
        mean_leaves = jax.tree_util.tree_leaves(self._mean_params_template())
        tree = {
            "initial_design": np.asarray(state.initial_design, dtype=float),
            "X": np.asarray(state.X, dtype=float),
            "y": np.asarray(state.y, dtype=float),
            "key": np.asarray(jax.random.key_data(state.key), dtype=np.uint32),
            "fitted": np.zeros(n, dtype=bool),
            "log_lengthscales": np.zeros((n, d)),
            "log_signal_variance": np.zeros(n),
            "log_noise_variance": np.zeros(n),
            "mean_offset": np.zeros(n),
            "marginal_log_likelihood": np.full(n, np.nan),
            "acquisition_value": np.full(n, np.nan),
            "mean_params": tuple(np.zeros((n, *np.shape(leaf))) for leaf in mean_leaves),
        }
        for i, record in enumerate(state.history):
            for name in ("marginal_log_likelihood", "acquisition_value"):
                value = getattr(record, name)
                tree[name][i] = np.nan if value is None else value
            hyper = record.hyperparameters
            if hyper is None:
                continue
            tree["fitted"][i] = True
            for name in _HYPER_FIELDS:
                tree[name][i] = getattr(hyper, name)
            leaves = jax.tree_util.tree_leaves(hyper.mean_params)
            if len(leaves) != len(mean_leaves):
                raise ValueError(
                    f"history[{i}] has {len(leaves)} mean_params leaves; mean_params here has "
                    f"{len(mean_leaves)}"
                )
            for stacked, leaf in zip(tree["mean_params"], leaves, strict=True):
                stacked[i] = leaf
        return tree

    def _checkpoint_template(self) -> dict[str, Any]:
        empty = SearchState(
            np.zeros((0, self.dimension)), np.zeros((0, self.dimension)), np.zeros(0),
            jax.random.key(0), (),
        )  # fmt: skip
        return self._checkpoint_tree(empty)

    def save_checkpoint(self, state: SearchState, path: str | os.PathLike) -> None:
        """Write ``state`` to ``path`` (``.npz``, atomically: see ``diffdesign._checkpoint``)."""
        metadata = {
            "settings": self._checkpoint_settings(),
            "key_impl": str(jax.random.key_impl(state.key)),
        }
        save_checkpoint(path, self._checkpoint_tree(state), metadata)

    def load_checkpoint(self, path: str | os.PathLike) -> SearchState:
        """Read and validate a checkpoint written by :meth:`save_checkpoint` for this problem.

        Raises:
            ValueError: if the file is not a readable checkpoint, does not fit this problem's
                arrays, was written with other settings (method, bounds, options; the
                message names them) or holds inconsistent or invalid values (the message
                names the field).
        """
        where = f"checkpoint {path}"
        tree, header = load_checkpoint(
            path, self._checkpoint_template(), self._checkpoint_settings(), growing=True
        )
        initial_design, X, y = tree["initial_design"], tree["X"], tree["y"]
        self._check_in_box(initial_design, f"{where}: initial_design")
        if len(y) != len(X):
            raise ValueError(f"{where}: 'X' has {len(X)} rows but 'y' has {len(y)} values")
        self._check_in_box(X, f"{where}: X")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{where}: 'y' must be finite; got {y.tolist()}")
        impl = header.get("key_impl")
        try:
            key = jax.random.wrap_key_data(tree["key"], impl=impl)
        except (ValueError, TypeError, KeyError):
            raise ValueError(
                f"{where}: 'key' {tree['key'].tolist()} with 'key_impl' {impl!r} is not a PRNG key"
            ) from None
        mean_params = tree["mean_params"]
        columns = {name: tree[name] for name in _HISTORY_FIELDS}
        columns |= {f"mean_params leaf {j}": leaf for j, leaf in enumerate(mean_params)}
        for name, column in columns.items():
            if len(column) != len(y):
                raise ValueError(
                    f"{where}: history field {name!r} has {len(column)} records for "
                    f"{len(y)} evaluations"
                )
        fitted = tree["fitted"]
        for name, column in columns.items():
            if name != "fitted" and not np.all(np.isfinite(column[fitted])):
                raise ValueError(f"{where}: history field {name!r} must be finite where fitted")
        treedef = jax.tree_util.tree_structure(self._mean_params_template())
        history = []
        for i in range(len(y)):
            values = [
                _finite_or_none(float(tree[name][i]))
                for name in ("marginal_log_likelihood", "acquisition_value")
            ]
            hyper = None
            if fitted[i]:
                hyper = GPHyperparameters(
                    **{name: np.array(tree[name][i]) for name in _HYPER_FIELDS},
                    mean_params=treedef.unflatten([np.array(leaf[i]) for leaf in mean_params]),
                )
            history.append(StepRecord(hyper, *values))
        return SearchState(initial_design, X, y, key, tuple(history))


_HYPER_FIELDS = ("log_lengthscales", "log_signal_variance", "log_noise_variance", "mean_offset")
_HISTORY_FIELDS = ("fitted", *_HYPER_FIELDS, "marginal_log_likelihood", "acquisition_value")


def _is_numeric(value: Any) -> bool:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return False
    return bool(np.all(np.isfinite(array)))


# -------------------------------------------------------------------------------- methods


class RandomSearch(_SequentialSearch):
    """Uniform random search over the box (after the initial design): the baseline.

    Same state, ``run`` and checkpoint format as :class:`BayesianOptimisation`.

    Attributes:
        lower: ``(d,)`` lower box bounds in the caller's units.
        upper: ``(d,)`` upper box bounds.

    Example:
        >>> state = RandomSearch(lower, upper).run(measure, jax.random.key(0), 50)
    """

    _label: ClassVar[str] = "random"

    def _propose(
        self, state: SearchState, key: PRNGKeyArray, capacity: int | None
    ) -> tuple[np.ndarray, StepRecord]:
        del capacity
        return np.asarray(jax.random.uniform(key, (self.dimension,))), StepRecord()


class _BoxMean(eqx.Module):
    """A caller's mean function of box coordinates, seen from the unit cube."""

    mean_fn: MeanFn
    lower: Float[Array, " d"]
    upper: Float[Array, " d"]

    def __call__(self, mean_params: PyTree, unit: Float[Array, "n d"]) -> Float[Array, " n"]:
        return self.mean_fn(
            mean_params, self.lower[None, :] + unit * (self.upper - self.lower)[None, :]
        )


def _log_expected_improvement(posterior: GPPosterior, best: Array, beta: Array):
    del beta
    return LogExpectedImprovement(posterior, best)


def _upper_confidence_bound(posterior: GPPosterior, best: Array, beta: Array):
    del best
    return UpperConfidenceBound(posterior, beta)


_ACQUISITIONS = {"ei": _log_expected_improvement, "ucb": _upper_confidence_bound}


#: Runs of up to this many evaluations pad the GP's data to their budget from the start.
_MAX_PREPAD = 128


def _padded_size(n: int, capacity: int | None = None) -> int:
    """Rows the GP's data are padded to: a power of two >= 16, and >= the run's budget
    ``capacity`` when that is at most ``_MAX_PREPAD`` (one compiled program per run; a
    longer run compiles once per doubling rather than paying O(capacity^3) from its start)."""
    size = max(16, 1 << (n - 1).bit_length())
    if capacity is not None and capacity <= _MAX_PREPAD:
        size = max(size, 1 << (int(capacity) - 1).bit_length())
    return size


@eqx.filter_jit
def _acquisition(
    hyper: GPHyperparameters,
    unit: Float[Array, "n d"],
    y: Float[Array, " n"],
    mask: Bool[Array, " n"],
    beta: Float[Array, ""],
    *,
    mean_fn: MeanFn | None,
    kernel: Callable,
    make_acquisition: Callable,
) -> tuple[Callable[[Array], Array], Float[Array, "1 d"]]:
    """The acquisition function of the GP at ``hyper`` and the incumbent point (a start)."""
    post = posterior(hyper, mean_fn, unit, y, kernel=kernel, mask=mask)
    masked_y = jnp.where(mask, y, jnp.inf)
    best = jnp.argmin(masked_y)
    return make_acquisition(post, masked_y[best], beta), unit[best][None, :]


def _propose_gp(
    unit: Float[Array, "n d"],
    y: Float[Array, " n"],
    mask: Bool[Array, " n"],
    previous: Float[Array, "1 d"],
    key: PRNGKeyArray,
    init: GPHyperparameters,
    mean_params_bounds: tuple[PyTree, PyTree] | None,
    beta: Float[Array, ""],
    *,
    mean_fn: MeanFn | None,
    kernel: Callable,
    prior: HyperparameterPrior,
    make_acquisition: Callable,
    n_restarts: int,
    n_fit_steps: int,
    n_starts: int,
    n_raw_samples: int,
    n_acquisition_steps: int,
) -> tuple[Array, GPHyperparameters, Array, Array]:
    """Fit the hyperparameters and maximise the acquisition (each one compiled multistart).

    Both are warm-started: the fit's first start is ``init`` (the previous step's MAP), and
    the acquisition's gradient starts include the incumbent and ``previous`` (the last
    evaluated point: the previous step's acquisition optimum) beside the best random ones.
    """
    fit_key, acquisition_key = jax.random.split(key)
    fit = fit_hyperparameters(
        unit,
        y,
        fit_key,
        mean_fn=mean_fn,
        mean_params_bounds=mean_params_bounds,
        init=init,
        kernel=kernel,
        prior=prior,
        mask=mask,
        n_restarts=n_restarts,
        n_steps=n_fit_steps,
    )
    acquisition, incumbent = _acquisition(
        fit.hyperparameters,
        unit,
        y,
        mask,
        beta,
        mean_fn=mean_fn,
        kernel=kernel,
        make_acquisition=make_acquisition,
    )
    x, value = maximize_acquisition(
        acquisition,
        acquisition_key,
        unit.shape[1],
        initial_points=jnp.concatenate([incumbent, previous]),
        n_starts=n_starts,
        n_raw_samples=n_raw_samples,
        n_steps=n_acquisition_steps,
    )
    return x, fit.hyperparameters, fit.marginal_log_likelihood, value


_initial_hyperparameters = eqx.filter_jit(default_hyperparameters)


class BayesianOptimisation(_SequentialSearch):
    """Bayesian optimisation (minimisation) with a GP whose prior mean may be a physics model.

    Each step fits the GP hyperparameters to all evaluations (warm-started from the last
    fit, plus random restarts), maximises the acquisition over the box and evaluates the
    objective once there. The GP sees inputs mapped to the unit cube and a prior mean
    ``mean_offset + mean_fn(mean_params, X)``, ``X`` in the caller's units.

    Attributes:
        lower: ``(d,)`` lower box bounds in the caller's units.
        upper: ``(d,)`` upper box bounds, ``lower < upper``.
        mean_fn: jittable ``mean_fn(mean_params, X (n, d)) -> (n,)`` in the objective's
            units, or ``None`` for a constant mean.
        mean_params: PyTree of the mean function's parameters (fixed values, or the start
            of their fit).
        mean_params_bounds: ``(low, high)`` PyTrees (leaves broadcast to ``mean_params``'
            leaves), required when ``fit_mean_params``.
        fit_mean_params: fit ``mean_params`` by maximum marginal likelihood at every step,
            inside their bounds, jointly with the kernel hyperparameters (recorded in
            ``SearchState.history``).
        acquisition: ``"ei"`` (expected improvement, maximised as log EI) or ``"ucb"``
            (confidence bound ``-mean + √(beta var)``).
        beta: exploration weight of ``"ucb"`` (dimensionless).
        kernel: ``"matern52"`` or ``"rbf"``.
        prior: hyperparameter bounds and priors (see ``HyperparameterPrior``).
        n_restarts: hyperparameter fit: number of starts.
        n_fit_steps: hyperparameter fit: Adam steps per start.
        n_starts: acquisition maximisation: gradient starts (see ``maximize_acquisition``).
        n_raw_samples: acquisition maximisation: random points the starts are chosen from.
        n_acquisition_steps: acquisition maximisation: Adam steps per start.

    Example:
        >>> bo = BayesianOptimisation(lower, upper, mean_fn=model, mean_params=offsets,
        ...                           mean_params_bounds=(-2e-3, 2e-3), fit_mean_params=True)
        >>> state = bo.run(measure, jax.random.key(0), 50, checkpoint="bo.npz")
        >>> [r.hyperparameters.mean_params for r in state.history if r.hyperparameters]
    """

    mean_fn: MeanFn | None = None
    mean_params: PyTree = None
    mean_params_bounds: tuple[PyTree, PyTree] | None = None
    fit_mean_params: bool = False
    acquisition: str = "ei"
    beta: float = 2.0
    kernel: str = "matern52"
    prior: HyperparameterPrior = DEFAULT_PRIOR
    n_restarts: int = 4
    n_fit_steps: int = 200
    n_starts: int = 16
    n_raw_samples: int = 512
    n_acquisition_steps: int = 100

    _label: ClassVar[str] = "bayesopt"
    _minimum_initial: ClassVar[int] = 2

    def __check_init__(self):
        if self.acquisition not in _ACQUISITIONS:
            raise ValueError(
                f"acquisition must be one of {sorted(_ACQUISITIONS)}; got {self.acquisition!r}"
            )
        if self.kernel not in _KERNELS:
            raise ValueError(f"kernel must be one of {sorted(_KERNELS)}; got {self.kernel!r}")
        if not (math.isfinite(self.beta) and self.beta >= 0.0):
            raise ValueError(f"beta must be finite and >= 0; got {self.beta}")
        for name in (
            "n_restarts",
            "n_fit_steps",
            "n_starts",
            "n_raw_samples",
            "n_acquisition_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.n_starts > self.n_raw_samples:
            raise ValueError(
                f"n_starts ({self.n_starts}) must be <= n_raw_samples ({self.n_raw_samples})"
            )
        for i, leaf in enumerate(jax.tree_util.tree_leaves(self.mean_params)):
            if not _is_numeric(leaf):
                raise ValueError(f"mean_params leaf {i} must be finite numbers; got {leaf!r}")
        if self.fit_mean_params:
            if self.mean_fn is None:
                raise ValueError("fit_mean_params=True needs a mean_fn")
            if self.mean_params_bounds is None:
                raise ValueError("fit_mean_params=True needs mean_params_bounds=(low, high)")
        if self.mean_params_bounds is not None:
            check_mean_params_bounds(self.mean_params, self.mean_params_bounds)

    def _mean_params_template(self) -> PyTree:
        return self.mean_params

    def _settings(self) -> dict[str, Any]:
        bounds = self.mean_params_bounds
        if bounds is not None:
            bounds = [
                _leaves_to_json(b) for b in check_mean_params_bounds(self.mean_params, bounds)
            ]
        return {
            "mean_fn": None
            if self.mean_fn is None
            else getattr(self.mean_fn, "__qualname__", type(self.mean_fn).__name__),
            "mean_params": _leaves_to_json(self.mean_params),
            "mean_params_bounds": bounds,
            "fit_mean_params": self.fit_mean_params,
            "acquisition": self.acquisition,
            "beta": self.beta,
            "kernel": self.kernel,
            "prior": {k: None if v is None else list(v) for k, v in self.prior._asdict().items()},
            "n_restarts": self.n_restarts,
            "n_fit_steps": self.n_fit_steps,
            "n_starts": self.n_starts,
            "n_raw_samples": self.n_raw_samples,
            "n_acquisition_steps": self.n_acquisition_steps,
        }

    def _propose(
        self, state: SearchState, key: PRNGKeyArray, capacity: int | None
    ) -> tuple[np.ndarray, StepRecord]:
        n, d = state.X.shape
        size = _padded_size(n, capacity)
        unit = np.full((size, d), 0.5)
        unit[:n] = self._to_unit(state.X)
        y = np.zeros(size)
        y[:n] = state.y
        mask = np.arange(size) < n
        mean_fn = (
            None
            if self.mean_fn is None
            else _BoxMean(self.mean_fn, jnp.asarray(self.lower), jnp.asarray(self.upper))
        )
        mean_params = jax.tree_util.tree_map(
            lambda leaf: jnp.asarray(np.asarray(leaf, dtype=float)), self.mean_params
        )
        fitted = [r.hyperparameters for r in state.history if r.hyperparameters is not None]
        if fitted:
            init = fitted[-1]
        else:
            init = _initial_hyperparameters(
                unit, y, mean_fn=mean_fn, mean_params=mean_params, mask=mask
            )
        # Strongly typed float64 leaves, whether the start is fresh or read from a checkpoint.
        init = jax.tree_util.tree_map(lambda leaf: jnp.asarray(np.asarray(leaf, dtype=float)), init)
        bounds = (
            check_mean_params_bounds(self.mean_params, self.mean_params_bounds)
            if self.fit_mean_params
            else None
        )
        x, hyper, mll, value = _propose_gp(
            jnp.asarray(unit),
            jnp.asarray(y),
            jnp.asarray(mask),
            jnp.asarray(unit[n - 1 : n]),
            key,
            init,
            bounds,
            jnp.asarray(self.beta),
            mean_fn=mean_fn,
            kernel=_KERNELS[self.kernel],
            prior=self.prior,
            make_acquisition=_ACQUISITIONS[self.acquisition],
            n_restarts=self.n_restarts,
            n_fit_steps=self.n_fit_steps,
            n_starts=self.n_starts,
            n_raw_samples=self.n_raw_samples,
            n_acquisition_steps=self.n_acquisition_steps,
        )
        hyper = jax.tree_util.tree_map(np.asarray, hyper)
        return np.asarray(x), StepRecord(hyper, float(mll), float(value))

    def _describe(self, record: StepRecord) -> str:
        hyper = record.hyperparameters
        lengthscales = np.array2string(np.asarray(hyper.lengthscales), precision=2, separator=",")
        line = f"mll={record.marginal_log_likelihood:.4g} ls={lengthscales}"
        if self.fit_mean_params:
            leaves = [np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(hyper.mean_params)]
            values = np.concatenate(leaves) if leaves else np.zeros(0)
            if values.size <= 8:
                line += " mean_params=" + np.array2string(values, precision=3, separator=",")
        return line
