"""The design layer's core: specs and bounds, problems that add, the one loop."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign import design
from diffdesign.core.fit import TRACES
from diffdesign.core.spec import internal, project, to_physical


class Quadratic(design.Problem):
    """sum (x - target)^2 over a bounded x (m), and a positive scale s fitted in log space."""

    target: jax.Array
    label: str = "x"

    @property
    def spec(self):
        return {"x": design.Param(jnp.zeros(3), -1.0, 1.0, step=0.1, label=self.label,
                                  unit="m")}  # fmt: skip

    def loss(self, params, key):
        return jnp.sum((params["x"] - self.target) ** 2), {"first": params["x"][0]}


class Scale(design.Problem):
    @property
    def spec(self):
        return {"s": design.Param(1.0, 1e-3, 10.0, step=0.1, label="s", transform=design.Log())}

    def loss(self, params, key):
        return (jnp.log(params["s"]) - jnp.log(3.0)) ** 2, {}


class Noisy(design.Problem):
    """A loss that depends on the step's key (as a Monte-Carlo design loss does)."""

    @property
    def spec(self):
        return {"y": design.Param(jnp.ones(2), step=0.05, label="y")}

    def loss(self, params, key):
        return jnp.sum((params["y"] - 0.1 * jax.random.normal(key, (2,))) ** 2), {}


@pytest.mark.parametrize("transform", [design.Identity(), design.Log(), design.Box()])
def test_transforms_round_trip_and_stay_inside(transform):
    p = design.Param(jnp.array([0.2, 1.5, 3.0]), 0.1, 4.0, step=0.1, label="p", transform=transform)
    spec = {"p": p}
    z = internal(spec)
    np.testing.assert_allclose(to_physical(spec, z)["p"], p.value, rtol=1e-12)
    far = jax.tree.map(lambda v: v + 50.0, z)
    x = to_physical(spec, project(spec, far))["p"]
    assert bool(jnp.all((x >= 0.1) & (x <= 4.0)))


def test_box_is_the_least_squares_tanh_map():
    box, lower, upper = design.Box(), jnp.array([-2.0, 0.0]), jnp.array([1.0, 5.0])
    z = jnp.array([0.3, -1.2])
    expected = (upper + lower) / 2.0 + (upper - lower) / 2.0 * jnp.tanh(z)
    assert bool(jnp.all(box.to_physical(z, lower, upper) == expected))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"value": jnp.nan}, "must be finite"),
        ({"lower": 2.0, "upper": 1.0}, "lower < upper"),
        ({"value": 5.0}, r"x = 5 m lies outside its bounds \[-1, 1\] m"),
        ({"step": -0.1}, "step must be finite and >= 0"),
        ({"transform": design.Log()}, "Log transform needs lower > 0"),
        ({"lower": -np.inf, "transform": design.Box()}, "Box transform needs finite bounds"),
    ],
)
def test_param_rejects_bad_input(kwargs, match):
    args = {"value": 0.0, "lower": -1.0, "upper": 1.0} | kwargs
    transform, step = args.pop("transform", None), args.pop("step", 0.1)
    with pytest.raises(ValueError, match=match):
        design.Param(**args, step=step, label="x", unit="m", transform=transform)


def test_problems_add_over_the_union_of_their_specs():
    a, b = Quadratic(jnp.array([0.5, -2.0, 0.3])), Scale()
    joint = a + 2.0 * b + Quadratic(jnp.zeros(3))  # the two quadratics share "x"
    assert sorted(joint.spec) == ["s", "x"]
    params = {"x": jnp.array([0.1, 0.2, 0.3]), "s": jnp.asarray(2.0)}
    total, aux = joint.loss(params, jax.random.key(0))
    expected = (a.loss(params, None)[0] + 2 * b.loss(params, None)[0]
                + jnp.sum(params["x"] ** 2))  # fmt: skip
    np.testing.assert_allclose(total, expected, rtol=1e-14)
    assert set(aux) == {"Quadratic", "Scale", "Quadratic_2"}
    with pytest.raises(ValueError, match="'x' is defined differently"):
        _ = a + Quadratic(jnp.zeros(3), label="other")


def test_step_gradient_matches_finite_differences():
    """The step differentiates loss(to_physical(z)) in the optimiser's coordinates."""
    problem = Quadratic(jnp.array([0.5, -2.0, 0.3])) + Scale()
    fit = design.Fit(problem)
    spec = problem.spec
    z = internal(spec, {"x": jnp.array([0.1, -0.4, 0.7]), "s": jnp.asarray(0.5)})
    f = lambda z: problem.loss(to_physical(spec, z), jax.random.key(0))[0]
    grad = jax.grad(f)(z)
    h = 1e-6
    for name, index in (("x", 1), ("s", ())):
        plus = dict(z) | {name: z[name].at[index].add(h)}
        minus = dict(z) | {name: z[name].at[index].add(-h)}
        fd = (f(plus) - f(minus)) / (2 * h)
        np.testing.assert_allclose(grad[name][index], fd, rtol=1e-7)
    _, info = fit.step(fit.init(jax.random.key(0), to_physical(spec, z)))
    np.testing.assert_allclose(info.loss, f(z), rtol=1e-14)


def test_run_converges_inside_bounds_without_retracing():
    problem = Quadratic(jnp.array([0.5, -2.0, 0.3])) + Scale()
    result = design.run(problem, steps=400, key=jax.random.key(0), chunk=100, progress=False)
    np.testing.assert_allclose(result.params["x"], [0.5, -1.0, 0.3], atol=1e-4)  # -2 is outside
    np.testing.assert_allclose(result.params["s"], 3.0, rtol=1e-4)
    assert [r["step"] for r in result.history] == list(range(400))
    assert result.history[0]["Quadratic.first"] == 0.0
    before = TRACES["Sum"]
    other = Quadratic(jnp.array([0.1, 0.2, 0.3])) + Scale()  # new data, same structure
    design.run(other, steps=400, key=jax.random.key(1), chunk=100, progress=False)
    assert TRACES["Sum"] == before


def test_resume_is_bit_identical_and_refuses_other_settings(tmp_path):
    problem = Noisy() + Quadratic(jnp.array([0.5, -2.0, 0.3]))
    key = jax.random.key(3)
    whole = design.run(problem, steps=12, key=key, chunk=4, progress=False)
    path = tmp_path / "fit.npz"
    design.run(problem, steps=8, key=key, chunk=4, checkpoint=path, progress=False,
               settings={"study": "a"})  # fmt: skip
    resumed = design.run(problem, steps=12, key=key, chunk=4, checkpoint=path, progress=False,
                         settings={"study": "a"})  # fmt: skip
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    for name in ("x", "y"):
        assert bool(jnp.all(resumed.params[name] == whole.params[name]))
    with pytest.raises(ValueError, match="other settings"):
        design.run(problem, steps=12, key=key, chunk=4, checkpoint=path, progress=False,
                   settings={"study": "b"})  # fmt: skip
    with pytest.raises(ValueError, match="does not match the structure"):
        design.run(Quadratic(jnp.zeros(3)) + Scale(), steps=12, key=key, chunk=4,
                   checkpoint=path, progress=False,
                   settings={"study": "a"} | {"problem": "Noisy+Quadratic"})  # fmt: skip


def test_non_finite_loss_names_the_step(tmp_path):
    class Blows(design.Problem):
        @property
        def spec(self):
            return {"x": design.Param(1.0, step=1.0, label="x")}

        def loss(self, params, key):
            return jnp.where(params["x"] < 0.0, jnp.nan, params["x"]), {}

    path = tmp_path / "fit.npz"
    with pytest.raises(FloatingPointError, match="loss is nan at step 2"):
        design.run(Blows(), steps=5, key=jax.random.key(0), checkpoint=path, progress=False)
    with np.load(path, allow_pickle=False) as archive:  # the last good step is kept
        assert len(json.loads(archive["__metadata__"].tobytes().decode())["history"]) == 2


def test_early_stop_and_bad_arguments():
    problem = Quadratic(jnp.array([0.5, -2.0, 0.3]))
    result = design.run(problem, steps=5000, key=jax.random.key(0), chunk=50, progress=False,
                        early_stop=design.EarlyStop(patience=100, min_delta=1e-12))  # fmt: skip
    assert result.stopped == "early stop" and len(result.history) < 5000
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        design.run(problem, steps=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"x\[1\] = 3 m lies outside its bounds"):
        design.run(problem, steps=1, key=jax.random.key(0), params={"x": jnp.array([0, 3, 0.0])})


def test_multistart_equals_separate_runs_and_never_picks_a_diverged_start():
    problem = Quadratic(jnp.array([0.5, -2.0, 0.3]))
    starts = {"x": jnp.array([[0.0, 0.0, 0.0], [0.9, 0.9, -0.9]])}
    result = design.multistart(problem, starts, steps=50, key=jax.random.key(0))
    for i in range(2):
        single = design.run(problem, steps=50, key=jax.random.key(0), chunk=50, progress=False,
                            params={"x": starts["x"][i]})  # fmt: skip
        np.testing.assert_allclose(result.params["x"][i], single.params["x"], rtol=1e-12)
        np.testing.assert_allclose(result.history[i], [r["loss"] for r in single.history],
                                   rtol=1e-12)  # fmt: skip
        # one start alone runs unbatched (no vmap): the same path, leading axis kept
        alone = design.multistart(problem, {"x": starts["x"][i : i + 1]}, steps=50,
                                  key=jax.random.key(0))  # fmt: skip
        assert alone.params["x"].shape == (1, 3) and alone.history.shape == (1, 50)
        np.testing.assert_allclose(alone.params["x"][0], result.params["x"][i], rtol=1e-12)
        np.testing.assert_allclose(alone.path_params["x"][0], result.path_params["x"][i],
                                   rtol=1e-12)  # fmt: skip
        assert int(alone.best) == 0

    class Cliff(design.Problem):
        @property
        def spec(self):
            return {"x": design.Param(0.0, -1.0, 1.0, step=0.1, label="x")}

        def loss(self, params, key):
            return jnp.where(params["x"] > 0.5, jnp.inf, -params["x"]), {}

    starts = {"x": jnp.array([0.9, -0.5, 0.0])}
    result = design.multistart(Cliff(), starts, steps=3, key=jax.random.key(0))
    assert not np.isfinite(result.loss[0]) and int(result.best) != 0


def test_split_per_chunk_keys_are_a_scanned_loop_s_keys():
    key, schedule = jax.random.key(4), design.SplitPerChunk(chunk=4, total=10)
    expected = [
        k for i, n in enumerate((4, 4, 2)) for k in jax.random.split(jax.random.fold_in(key, i), n)
    ]
    for step, want in enumerate(expected):
        got = schedule(key, jnp.asarray(step))
        assert bool(jnp.all(jax.random.key_data(got) == jax.random.key_data(want))), step


def test_members_share_batches_keep_dtypes_and_equal_separate_runs():
    class Batch(design.Problem):
        """Least squares on a random batch: the members see the same batch each step."""

        start: jax.Array

        @property
        def spec(self):
            return {"w": design.unbounded(self.start, step=0.05, label="w")}

        def loss(self, params, key):
            x = jax.random.normal(key, (16, 2), dtype=jnp.float32)
            return jnp.mean((x @ params["w"] - x[:, 0]) ** 2), {}

    starts = {"w": jnp.array([[0.0, 0.0], [1.0, -1.0], [0.3, 0.2]], dtype=jnp.float32)}
    problem = Batch(starts["w"][0])
    members = design.run_members(problem, starts, steps=30, key=jax.random.key(2), chunk=8,
                                 progress=False)  # fmt: skip
    assert members.params["w"].dtype == jnp.float32 and members.history.shape == (4, 3)
    for i in range(3):
        single = design.run(Batch(starts["w"][i]), steps=30, key=jax.random.key(2), chunk=8,
                            progress=False)  # fmt: skip
        np.testing.assert_allclose(members.params["w"][i], single.params["w"], rtol=1e-6)
        means = [np.mean([r["loss"] for r in single.history[k : k + 8]]) for k in (0, 8, 16, 24)]
        np.testing.assert_allclose(members.history[:, i], means, rtol=1e-5)
