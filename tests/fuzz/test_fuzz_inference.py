"""Bad inputs to diffdesign.inference: binned likelihoods, INFERNO, least squares, GP,
linear-Gaussian posteriors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from diffdesign.inference import binned, gauss_newton, gp, inferno, linear_gaussian
from diffdesign.inference.identifiability import identifiability
from diffdesign.inference.least_squares import bounded_least_squares
from tests.fuzz._harness import Case, finite_everywhere, handled, parametrize, raises, run_case

NAN, INF = float("nan"), float("inf")

SETUP = binned.InferenceSetup(("s", "b"), (50.0, 1000.0), poi="s", free=("s", "b"))


def _counts(signal_shape):
    signal_shape = jnp.asarray(signal_shape, dtype=float)

    def counts(theta):
        return theta[0] * signal_shape + theta[1] * jnp.array([0.5, 0.3, 0.2])

    return counts


def _setup(**changes):
    fields = {"names": ("s", "b"), "nominal": (50.0, 1000.0), "poi": "s", "free": ("s", "b")}
    return binned.InferenceSetup(**(fields | changes))


def _templates(**changes):
    fields = {
        "nominal": jnp.array([1.0, 2.0, 3.0]),
        "up": jnp.array([[1.1, 2.0, 2.9]]),
        "down": jnp.array([[0.9, 2.0, 3.1]]),
        "step": jnp.array([1.0]),
    }
    return binned.TemplateShapes(**(fields | changes))


X = jnp.linspace(0.0, 1.0, 8)[:, None]
Y = jnp.sin(3.0 * X[:, 0])
HYPER = gp.GPHyperparameters.create(jnp.full(1, 0.3), 1.0, 1e-4)

CASES = [
    Case(
        "poi variance with negative expected counts",
        lambda: binned.poi_variance(_counts([-20.0, 0.2, 0.1]), SETUP),
        raises(r"expected counts must be >= 0 .*got -500.0 in bin 0"),
    ),
    Case(
        "fisher information with nan counts",
        lambda: binned.fisher_information(_counts([NAN, 0.2, 0.1]), SETUP),
        raises(r"expected counts must be finite"),
    ),
    Case(
        "poi variance of sensible counts",
        lambda: binned.poi_variance(_counts([0.6, 0.3, 0.1]), SETUP),
        handled(lambda v: np.isfinite(float(v)) and float(v) > 0),
    ),
    Case(
        "poisson nll shapes differ",
        lambda: binned.poisson_nll(jnp.ones(3), jnp.ones(4)),
        raises(r"expected \(3,\), observed \(4,\)"),
    ),
    Case(
        "poisson nll negative observed",
        lambda: binned.poisson_nll(jnp.ones(3), -jnp.ones(3)),
        raises(r"observed counts must lie in \[0.0, inf\] events; got -1"),
    ),
    Case(
        "setup nominal not numbers",
        lambda: _setup(nominal=("fifty", 1000.0)),
        raises(r"nominal", ValueError, TypeError),
    ),
    Case(
        "setup nominal nan",
        lambda: _setup(nominal=(NAN, 1000.0)),
        raises(r"nominal values must be finite"),
    ),
    Case(
        "setup lengths differ",
        lambda: _setup(nominal=(1.0,)),
        raises(r"names and nominal must have one length"),
    ),
    Case(
        "setup poi not free",
        lambda: _setup(free=("b",)),
        raises(r"parameter of interest 's' must be free"),
    ),
    Case(
        "setup unknown free name",
        lambda: _setup(free=("s", "c")),
        raises(r"free names \['c'\] are not parameters"),
    ),
    Case(
        "setup zero constraint width",
        lambda: _setup(constraints={"b": 0.0}),
        raises(r"constraint width of 'b' must be > 0"),
    ),
    Case(
        "setup constraint width string",
        lambda: _setup(constraints={"b": "wide"}),
        raises(r"constraint width of 'b'", ValueError, TypeError),
    ),
    Case(
        "setup names a string", lambda: _setup(names="sb"), raises(r"names", ValueError, TypeError)
    ),
    Case(
        "templates zero step",
        lambda: _templates(step=jnp.array([0.0])),
        raises(r"step must be > 0"),
    ),
    Case(
        "templates nan",
        lambda: _templates(up=jnp.array([[NAN, 2.0, 2.9]])),
        raises(r"up must be finite"),
    ),
    Case(
        "templates shapes",
        lambda: _templates(up=jnp.ones((1, 4))),
        raises(r"up and down must be \(n_nuisances, 3\)"),
    ),
    Case(
        "interval half width short scan",
        lambda: binned.interval_half_width([0.0, 1.0], [0.0, 1.0]),
        raises(r"poi_values and delta_nll must be \(n,\) with n >= 3"),
    ),
    Case(
        "interval half width decreasing",
        lambda: binned.interval_half_width([2.0, 1.0, 0.0], [1.0, 0.0, 1.0]),
        raises(r"poi_values must increase"),
    ),
    Case(
        "interval half width nan",
        lambda: binned.interval_half_width([0.0, 1.0, 2.0], [1.0, NAN, 1.0]),
        raises(r"delta_nll must be finite"),
    ),
    Case(
        "soft histogram temperature inf",
        lambda: inferno.soft_histogram(jnp.zeros((4, 3)), INF),
        raises(r"temperature must be finite"),
    ),
    Case(
        "soft histogram temperature 0",
        lambda: inferno.soft_histogram(jnp.zeros((4, 3)), 0.0),
        raises(r"temperature must be > 0"),
    ),
    Case(
        "soft histogram temperature negative",
        lambda: inferno.soft_histogram(jnp.zeros((4, 3)), -1.0),
        raises(r"temperature must lie in \[0"),
    ),
    Case(
        "soft histogram scores 1-d",
        lambda: inferno.soft_histogram(jnp.zeros(4), 1.0),
        raises(r"scores must have shape \(n_events, n_bins\)"),
    ),
    Case(
        "soft histogram negative weights",
        lambda: inferno.soft_histogram(jnp.zeros((4, 3)), 1.0, -jnp.ones(4)),
        raises(r"weights must lie in \[0"),
    ),
    Case(
        "soft histogram weights shape",
        lambda: inferno.soft_histogram(jnp.zeros((4, 3)), 1.0, jnp.ones(5)),
        raises(r"weights must have shape \(4,\)"),
    ),
    Case(
        "hard histogram zero bins",
        lambda: inferno.hard_histogram(jnp.array([0, 1]), 0),
        raises(r"n_bins must be an integer >= 1"),
    ),
    Case(
        "hard histogram zero total weight",
        lambda: inferno.hard_histogram(jnp.array([0, 1]), 2, jnp.zeros(2)),
        raises(r"weights must not all be 0"),
    ),
    Case(
        "least squares x0 outside box",
        lambda: bounded_least_squares(
            lambda x: x, jnp.array([2.0]), jnp.array([0.0]), jnp.array([1.0])
        ),
        raises(r"x0\[0\]=2.0 lies outside \[0.0, 1.0\]"),
    ),
    Case(
        "least squares inverted box",
        lambda: bounded_least_squares(
            lambda x: x, jnp.array([0.5]), jnp.array([1.0]), jnp.array([0.0])
        ),
        raises(r"lower must be < upper"),
    ),
    Case(
        "least squares nan x0",
        lambda: bounded_least_squares(
            lambda x: x, jnp.array([NAN]), jnp.array([0.0]), jnp.array([1.0])
        ),
        raises(r"x0 must be finite"),
    ),
    Case(
        "least squares shapes differ",
        lambda: bounded_least_squares(
            lambda x: x, jnp.array([0.5, 0.5]), jnp.array([0.0]), jnp.array([1.0])
        ),
        raises(r"x0.*\(2,\).*lower.*\(1,\)"),
    ),
    Case(
        "least squares residuals nan at the start",
        lambda: bounded_least_squares(
            lambda x: x * jnp.nan, jnp.array([0.5]), jnp.array([0.0]), jnp.array([1.0])
        ),
        raises(r"residual_fn.*not finite at x0"),
    ),
    Case(
        "identifiability of a vector",
        lambda: identifiability(jnp.ones(3)),
        raises(r"jacobian must have shape \(m, p\)"),
    ),
    Case(
        "identifiability with nan",
        lambda: identifiability(jnp.full((3, 2), NAN)),
        raises(r"jacobian must be finite"),
    ),
    Case(
        "gp hyperparameters zero lengthscale",
        lambda: gp.GPHyperparameters.create(jnp.zeros(1), 1.0, 1e-4),
        raises(r"lengthscales"),
    ),
    Case(
        "gp hyperparameters nan noise",
        lambda: gp.GPHyperparameters.create(jnp.ones(1), 1.0, NAN),
        raises(r"noise_variance"),
    ),
    Case(
        "gp posterior y shape",
        lambda: gp.posterior(HYPER, None, X, Y[:5]),
        raises(r"\by\b.*\(8,\)"),
    ),
    Case(
        "gp posterior X nan",
        lambda: gp.posterior(HYPER, None, X.at[0, 0].set(NAN), Y),
        raises(r"\bX\b.*finite"),
    ),
    Case(
        "gp posterior X 1-d",
        lambda: gp.posterior(HYPER, None, X[:, 0], Y),
        raises(r"\bX\b.*\(n, d\)"),
    ),
    Case(
        "gp posterior lengthscales of another dimension",
        lambda: gp.posterior(gp.GPHyperparameters.create(jnp.ones(2), 1.0, 1e-4), None, X, Y),
        raises(r"\(2,\) lengthscales; X has d = 1 columns"),
    ),
    Case(
        "gp marginal likelihood y inf",
        lambda: gp.marginal_log_likelihood(HYPER, None, X, Y.at[2].set(INF)),
        raises(r"\by\b.*finite"),
    ),
    Case(
        "gp fit no data",
        lambda: gp.fit_hyperparameters(jnp.zeros((0, 1)), jnp.zeros(0), jax.random.key(0)),
        raises(r"X and y must hold at least one data point"),
    ),
    Case(
        "gp fit zero steps",
        lambda: gp.fit_hyperparameters(X, Y, jax.random.key(0), n_steps=0),
        raises(r"n_steps"),
    ),
    Case(
        "gp fit negative learning rate",
        lambda: gp.fit_hyperparameters(X, Y, jax.random.key(0), learning_rate=-0.1),
        raises(r"learning_rate"),
    ),
    Case(
        "linear gaussian zero noise",
        lambda: linear_gaussian.posterior(jnp.eye(2), jnp.ones(2), 0.0, 1.0),
        raises(r"noise_sigma"),
    ),
    Case(
        "linear gaussian residual shape",
        lambda: linear_gaussian.posterior(jnp.eye(2), jnp.ones(3), 1.0, 1.0),
        raises(r"residual"),
    ),
    Case(
        "linear gaussian prior nan",
        lambda: linear_gaussian.posterior(jnp.eye(2), jnp.ones(2), 1.0, NAN),
        raises(r"prior_sigma"),
    ),
    Case(
        "tikhonov negative alpha",
        lambda: linear_gaussian.tikhonov(jnp.eye(2), jnp.ones(2), 1.0, -1.0),
        raises(r"alpha"),
    ),
    Case(
        "tikhonov negative weights",
        lambda: linear_gaussian.tikhonov(jnp.eye(2), jnp.ones(2), -1.0, 1.0),
        raises(r"weights"),
    ),
    Case(
        "truncated svd negative count",
        lambda: linear_gaussian.truncated_svd(jnp.eye(2), jnp.ones(2), 1.0, -1),
        raises(r"n_singular"),
    ),
    Case(
        "gauss newton zero iterations",
        lambda: gauss_newton.gauss_newton(
            lambda x: x, jnp.zeros(2), noise_sigma=1.0, prior_sigma=1.0, n_iter=0
        ),
        raises(r"n_iter"),
    ),
    Case(
        "gauss newton negative noise",
        lambda: gauss_newton.gauss_newton(
            lambda x: x, jnp.zeros(2), noise_sigma=-1.0, prior_sigma=1.0
        ),
        raises(r"noise_sigma"),
    ),
    Case(
        "gauss newton nan x0",
        lambda: gauss_newton.gauss_newton(
            lambda x: x, jnp.array([NAN, 0.0]), noise_sigma=1.0, prior_sigma=1.0
        ),
        raises(r"x0"),
    ),
]


@parametrize(CASES)
def test_case(case):
    run_case(case)


@settings(max_examples=20, deadline=None)
@given(
    temperature=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, 1e-300, NAN, INF, -INF]),
    )
)
def test_soft_histogram_temperature(temperature):
    """Any temperature gives normalised fractions or an error naming ``temperature``."""
    scores = jnp.array([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0]])
    if np.isfinite(temperature) and temperature > 0 and np.isfinite(2.0 / temperature):
        expect = handled(
            lambda h: finite_everywhere(h) and abs(float(jnp.sum(h)) - 1.0) < 1e-9,
            "fractions sum to 1",
        )
    else:
        expect = raises(r"\btemperature\b")
    run_case(
        Case(
            f"temperature {temperature}",
            lambda: inferno.soft_histogram(scores, temperature),
            expect,
        ),
        record=False,
    )


@settings(max_examples=20, deadline=None)
@given(counts=st.lists(st.floats(-10.0, 10.0) | st.just(NAN), min_size=3, max_size=3))
def test_poi_variance_counts(counts):
    """Counts >= 0 (with information) give a finite variance; negative or NaN counts an error
    that names the counts."""
    counts = np.asarray(counts)
    call = lambda: binned.poi_variance(_counts(counts), SETUP)
    total = 50.0 * counts + 1000.0 * np.array([0.5, 0.3, 0.2])
    if np.all(np.isfinite(total)) and np.all(total >= 0):
        expect = handled(lambda v: not np.isnan(float(v)), "not NaN")
    else:
        expect = raises(r"expected counts must be")
    run_case(Case(f"counts {counts}", call, expect), record=False)
