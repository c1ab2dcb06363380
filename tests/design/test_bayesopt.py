"""Bayesian optimisation and random search: convergence, checkpoints/resume, validation."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign._checkpoint import load_checkpoint, save_checkpoint
from diffdesign.design import BayesianOptimisation, RandomSearch, latin_hypercube

# An ARES-like box: three "quadrupoles" in 1/m² and two "correctors" in rad.
LOWER = np.array([-30.0, -30.0, -6e-3, -30.0, -6e-3])
UPPER = -LOWER
CENTRE = np.array([10.0, -5.0, 2e-3, 20.0, -4e-3])
MINIMUM = 1e-4  # objective value at CENTRE, m


def quadratic(centre, X):
    """A shifted quadratic bowl in box-relative units, values ~1e-4..1e-3 like a beam size."""
    width = jnp.asarray(UPPER - LOWER)
    return MINIMUM + 1e-3 * jnp.sum(((X - centre[None, :]) / width[None, :]) ** 2, axis=1)


def perfect_mean(mean_params, X):
    del mean_params
    return quadratic(jnp.asarray(CENTRE), X)


def offset_mean(offsets, X):
    """The physics model with fitted "offsets" of the first two settings' centre."""
    return quadratic(jnp.asarray(CENTRE) + jnp.concatenate([offsets, jnp.zeros(3)]), X)


class Objective:
    """The 'machine': a plain Python callable that counts its calls."""

    def __init__(self, fail_at=None):
        self.calls = 0
        self.fail_at = fail_at

    def __call__(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        assert isinstance(x, np.ndarray)
        return float(np.asarray(quadratic(jnp.asarray(CENTRE), jnp.asarray(x)[None, :]))[0])


def regret(state):
    return state.best_y - MINIMUM


def test_bo_beats_random_search_on_the_same_budget(caplog):
    key, budget = jax.random.key(0), 16
    lines = []
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        bo = BayesianOptimisation(LOWER, UPPER).run(
            Objective(), key, budget, n_initial=6, progress=lines.append
        )
    # Data are padded to the run's budget, so the 10 BO steps share one compiled fit and one
    # compiled acquisition maximisation (two multistart programs in all).
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Compiling jit(_multistart)" in m for m in messages) == 2, messages
    assert sum("Compiling jit(_acquisition)" in m for m in messages) == 1
    random = RandomSearch(LOWER, UPPER).run(Objective(), key, budget, n_initial=6, progress=None)
    # Same initial design (the key), then the GP pays off.
    np.testing.assert_array_equal(bo.X[:6], random.X[:6])
    assert regret(bo) < 0.2 * regret(random), (regret(bo), regret(random))
    assert np.all((bo.X >= LOWER[None, :]) & (bo.X <= UPPER[None, :]))
    # One short progress line per evaluation.
    assert len(lines) == budget
    assert "initial design" in lines[0] and "mll=" in lines[-1]
    assert all(len(line) < 120 for line in lines)
    assert [r.hyperparameters is None for r in bo.history] == [True] * 6 + [False] * 10


def test_perfect_mean_finds_the_optimum_at_once():
    bo = BayesianOptimisation(LOWER, UPPER, mean_fn=perfect_mean)
    state = bo.run(Objective(), jax.random.key(1), 4, n_initial=2, progress=None)
    # Within 1% of the objective's range over the box (~1e-3) after two proposals; the
    # constant-mean GP needs ~16 evaluations for that.
    assert regret(state) < 1e-5, regret(state)


BOUNDS = (np.full(2, -2.0), np.full(2, 2.0))


def failure_mode():
    """The physics mean's parameters fitted as hyperparameters, inside +-2."""
    return BayesianOptimisation(
        LOWER,
        UPPER,
        mean_fn=offset_mean,
        mean_params=np.zeros(2),
        mean_params_bounds=BOUNDS,
        fit_mean_params=True,
        acquisition="ucb",
        n_restarts=2,
        n_fit_steps=100,
    )


def test_interrupted_run_resumes_exactly(tmp_path):
    bo, key, budget = failure_mode(), jax.random.key(2), 9
    reference = bo.run(Objective(), key, budget, n_initial=4, progress=None)

    checkpoint = tmp_path / "bo.npz"
    with pytest.raises(KeyboardInterrupt):
        bo.run(Objective(fail_at=7), key, budget, n_initial=4, checkpoint=checkpoint, progress=None)
    np.testing.assert_array_equal(bo.load_checkpoint(checkpoint).y, reference.y[:6])
    objective = Objective()
    lines = []
    resumed = bo.run(objective, key, budget, checkpoint=checkpoint, progress=lines.append)
    assert objective.calls == budget - 6
    assert lines[0].startswith("resumed")

    np.testing.assert_array_equal(resumed.X, reference.X)
    np.testing.assert_array_equal(resumed.y, reference.y)
    np.testing.assert_array_equal(
        jax.random.key_data(resumed.key), jax.random.key_data(reference.key)
    )
    for got, want in zip(resumed.history, reference.history, strict=True):
        assert got.marginal_log_likelihood == want.marginal_log_likelihood
        assert got.acquisition_value == want.acquisition_value
        leaves = jax.tree_util.tree_leaves
        for a, b in zip(leaves(got.hyperparameters), leaves(want.hyperparameters), strict=True):
            np.testing.assert_array_equal(a, b)
    # The fitted mean parameters are recorded at every BO step, inside their bounds.
    offsets = np.array([r.hyperparameters.mean_params for r in resumed.history[4:]])
    assert offsets.shape == (5, 2)
    assert np.all((offsets >= -2.0) & (offsets <= 2.0))
    # A finished run resumes to itself without calling the objective.
    again = bo.run(Objective(fail_at=1), key, budget, checkpoint=checkpoint, progress=None)
    np.testing.assert_array_equal(again.y, reference.y)
    # The checkpoint of the whole run reads back bit for bit, None where nothing was fitted.
    assert_same_state(bo.load_checkpoint(checkpoint), reference)


def assert_same_state(got, want):
    for name in ("initial_design", "X", "y"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    assert jax.random.key_impl(got.key) == jax.random.key_impl(want.key)
    np.testing.assert_array_equal(jax.random.key_data(got.key), jax.random.key_data(want.key))
    assert len(got.history) == len(want.history)
    for a, b in zip(got.history, want.history, strict=True):
        assert a.marginal_log_likelihood == b.marginal_log_likelihood
        assert a.acquisition_value == b.acquisition_value
        assert (a.hyperparameters is None) == (b.hyperparameters is None)
        if a.hyperparameters is None:
            continue
        leaves = jax.tree_util.tree_leaves
        for u, v in zip(leaves(a.hyperparameters), leaves(b.hyperparameters), strict=True):
            u, v = np.asarray(u), np.asarray(v)
            assert u.shape == v.shape and u.astype(float).tobytes() == v.astype(float).tobytes()


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint of a BO run that has evaluated part of its initial design (no GP)."""
    path = tmp_path / "bo.npz"
    BayesianOptimisation(LOWER, UPPER).run(
        Objective(), jax.random.key(3), 3, n_initial=4, checkpoint=path, progress=None
    )
    return path


def edit(path, change):
    """Rewrite a checkpoint with ``change(arrays, header)`` applied (a dict of named arrays)."""
    template = BayesianOptimisation(LOWER, UPPER)._checkpoint_template()
    tree, header = load_checkpoint(path, template, growing=True)
    for name in ("format", "version", "n_leaves"):
        header.pop(name)
    change(tree, header)
    save_checkpoint(path, tree, header)


def test_checkpoint_round_trip(checkpoint):
    bo = BayesianOptimisation(LOWER, UPPER)
    state = bo.load_checkpoint(checkpoint)
    assert state.iteration == 3 and state.initial_design.shape == (4, 5)
    assert all(record == (None, None, None) for record in state.history)
    # Saved again it reads back bit for bit.
    again = checkpoint.with_name("again.npz")
    bo.save_checkpoint(state, again)
    assert_same_state(bo.load_checkpoint(again), state)
    with np.load(checkpoint, allow_pickle=False) as archive:  # only plain arrays inside
        assert all(archive[name].dtype != object for name in archive.files)


@pytest.mark.parametrize(
    ("change", "search", "message"),
    [
        (None, BayesianOptimisation(LOWER, 2 * UPPER), "other settings.*'upper'"),
        (None, BayesianOptimisation(LOWER[:3], UPPER[:3]), "other settings.*'lower'"),
        (
            None,
            BayesianOptimisation(LOWER, UPPER, acquisition="ucb"),
            "other settings.*'acquisition'",
        ),
        (
            None,
            RandomSearch(LOWER, UPPER),
            "other settings.*'method': {'saved': 'BayesianOptimisation'",
        ),
        (lambda t, h: t.pop("key"), None, "does not match the structure"),
        (lambda t, h: t.update(y=np.array([1.0, np.nan, 2.0])), None, "'y' must be finite"),
        (lambda t, h: t.update(y=t["y"][:2]), None, "'X' has 3 rows but 'y' has 2"),
        (lambda t, h: t.update(X=t["X"][:, :4]), None, "does not match the structure"),
        (lambda t, h: t.update(fitted=t["fitted"][:2]), None, "'fitted' has 2 records for 3"),
        (lambda t, h: h.update(format="other"), None, "not a diffdesign checkpoint"),
        (lambda t, h: h.update(key_impl="nothing"), None, "'key_impl' 'nothing' is not a PRNG"),
        (lambda t, h: t["X"].__setitem__((0, 0), 1e3), None, r"X\[0, 0\] = 1000.0 lies outside"),
    ],
)
def test_bad_checkpoints_are_named(checkpoint, change, search, message):
    if change is not None:
        edit(checkpoint, change)
    search = search or BayesianOptimisation(LOWER, UPPER)
    with pytest.raises(ValueError, match=message):
        search.run(Objective(), jax.random.key(3), 5, checkpoint=checkpoint, progress=None)


def test_malformed_file_is_named(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_text('{"format": ')
    with pytest.raises(ValueError, match=r"broken\.npz is not a readable diffdesign checkpoint"):
        RandomSearch(LOWER, UPPER).load_checkpoint(path)


def test_random_search_checkpoints_like_bo(tmp_path):
    path = tmp_path / "random.npz"
    search = RandomSearch(LOWER, UPPER)
    state = search.run(
        Objective(), jax.random.key(4), 8, n_initial=0, checkpoint=path, progress=None
    )
    loaded = search.load_checkpoint(path)
    np.testing.assert_array_equal(loaded.X, state.X)
    assert loaded.history == state.history
    assert_same_state(loaded, state)


def test_inputs_are_validated():
    with pytest.raises(ValueError, match=r"lower\[1\]=2.0, upper\[1\]=1.0"):
        RandomSearch([0.0, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="one shape"):
        RandomSearch([0.0, 0.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="acquisition"):
        BayesianOptimisation(LOWER, UPPER, acquisition="pi")
    with pytest.raises(ValueError, match="needs mean_params_bounds"):
        BayesianOptimisation(
            LOWER, UPPER, mean_fn=offset_mean, mean_params=np.zeros(2), fit_mean_params=True
        )
    with pytest.raises(ValueError, match="outside its bounds"):
        BayesianOptimisation(LOWER, UPPER, mean_params=np.full(2, 3.0), mean_params_bounds=BOUNDS)
    search = BayesianOptimisation(LOWER, UPPER)
    with pytest.raises(ValueError, match="at least 2 initial points"):
        search.init(jax.random.key(0), n_initial=1)
    with pytest.raises(ValueError, match=r"initial_points\[0, 2\] = 1.0 lies outside"):
        search.init(jax.random.key(0), initial_points=[[0.0, 0.0, 1.0, 0.0, 0.0]] * 2)
    state = search.init(jax.random.key(0), initial_points=[LOWER, UPPER])
    with pytest.raises(ValueError, match=r"objective returned nan at x=\[-30.0"):
        search.step(state, lambda x: float("nan"))
    with pytest.raises(ValueError, match="must return a scalar"):
        search.step(state, lambda x: x)


def test_latin_hypercube_fills_every_slice():
    points = latin_hypercube(jax.random.key(5), 7, 3)
    assert points.shape == (7, 3)
    for column in points.T:
        np.testing.assert_array_equal(np.sort(np.floor(column * 7)), np.arange(7))


def test_a_run_pads_to_its_budget_compiles_once_and_equals_unpadded_steps(caplog):
    """Steps at 14..19 evaluations cross the 16-row bucket; run() pads to its budget (32
    rows from the first proposal), so it compiles one fit and one acquisition, and its
    proposals equal those of steps that pad only as far as they need."""
    bo = BayesianOptimisation(LOWER, UPPER, n_fit_steps=40, n_acquisition_steps=20)
    key, budget = jax.random.key(5), 20
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        padded = bo.run(Objective(), key, budget, n_initial=14, progress=None)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Compiling jit(_multistart)" in m for m in messages) == 2, messages
    state = bo.init(key, n_initial=14)
    while state.iteration < budget:
        state = bo.step(state, Objective())  # no capacity: 16 rows, then 32
    np.testing.assert_allclose(padded.X, state.X, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(padded.y, state.y, rtol=1e-9)
