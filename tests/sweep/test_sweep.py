"""Sweeps: axes, the sweep file, the three kinds of target, records and resume, tables."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign import sweep
from diffdesign._config import to_toml
from diffdesign.cli import command_target
from diffdesign.core import Box, Param, Problem
from diffdesign.sweep.plots import pareto_front
from experiments.ares._calibrate import run_calibration, sweep_target
from experiments.ares._study import StudyConfig

ROOT = Path(__file__).resolve().parents[2]

# -- axes and the sweep file ---------------------------------------------------------------


def test_grids_integers_and_product_order():
    noise = sweep.grid("noise", 1e-6, 1e-4, 3, log=True)
    np.testing.assert_allclose(noise.columns["noise"], [1e-6, 1e-5, 1e-4], rtol=1e-15)
    seeds = sweep.integers("seed", 0, 4)
    columns, shape = sweep.expand([noise, seeds])
    assert shape == (3, 4)
    assert columns["seed"] == [0, 1, 2, 3] * 3  # the last axis varies fastest
    np.testing.assert_allclose(columns["noise"][:5], [1e-6] * 4 + [1e-5], rtol=1e-15)


def test_latin_hypercube_puts_one_point_in_each_slice():
    block = sweep.Sample(sweep.LatinHypercube(), 8, {"a": sweep.Range(0.0, 8.0),
                                                     "b": sweep.Range(1e-3, 1e5, log=True)})  # fmt: skip
    table = block.table()
    assert sorted(np.floor(table["a"]).astype(int).tolist()) == list(range(8))
    assert sorted(np.floor(np.log10(table["b"]) + 3).astype(int).tolist()) == list(range(8))
    again = sweep.Sample(sweep.LatinHypercube(), 8, block.ranges).table()
    assert again == table  # reproducible from its seed
    other = sweep.Sample(sweep.Uniform(), 8, block.ranges, seed=1).table()
    assert all(0 <= a <= 8 for a in other["a"]) and other["a"] != table["a"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: [], "at least one"),
        (lambda: [sweep.Values({"a": ()})], "is empty"),
        (lambda: [sweep.integers("a", 3, 3)], "is empty"),
        (lambda: [sweep.Values({"a": (1, 2), "b": (1, 2, 3)})], "equal lengths"),
        (lambda: [sweep.Values({"a": (1,)}), sweep.Values({"a": (2,)})], "in axes 0 and 1"),
    ],
)
def test_bad_axes_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        sweep.expand(make())


SPEC = """
target = "ares calibrate"
memory_budget_gib = 4
pareto = ["rms_error_um", "chi2_per_dof"]
[config]
n_calibration = 8
[[axes]]
screen_noise = {start = 1e-6, stop = 1e-4, num = 3, log = true}
[[axes]]
seed = {start = 0, stop = 3}
[[axes]]
bound = [4e-4, 5e-4]
incoming_sigma_y = [1e-4, 2e-4]
[[axes]]
sample = {method = "random", n = 2, seed = 3}
other = {low = 1, high = 2}
"""


def test_sweep_file(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    spec = sweep.SweepSpec.from_toml(path)
    assert spec.target == "ares calibrate" and spec.fixed == {"n_calibration": 8}
    assert spec.memory_budget_gib == 4.0 and spec.pareto == ("rms_error_um", "chi2_per_dof")
    columns, shape = sweep.expand(spec.axes)
    assert shape == (3, 3, 2, 2)
    assert columns["bound"][:4] == [4e-4, 4e-4, 5e-4, 5e-4]
    assert columns["incoming_sigma_y"][:4] == [1e-4, 1e-4, 2e-4, 2e-4]  # zipped with bound


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('target = "ares"\n[[axes]]\nseed = [1]', "domain verb"),
        ('target = "ares calibrate"', "at least one"),
        ('target = "ares calibrate"\n[[axes]]\nseed = 3', "must be a list"),
        ('target = "ares calibrate"\n[[axes]]\nseed = {start = 0}', "needs start and stop"),
        ('target = "ares calibrate"\n[[axes]]\nx = {start = 0, stop = 1, num = 2, log = true}',
         "must be > 0"),
        ('target = "ares calibrate"\n[[axes]]\nsample = {method = "sobol"}\nx = {low=0, high=1}',
         "method must be one of"),
        ('target = "ares calibrate"\n[[axes]]\nsample = {n = 4}\nx = {low = 1, high = 0}',
         "low < high"),
        ('target = "ares calibrate"\nmemory_budget_gib = -1\n[[axes]]\nseed = [1]', "> 0"),
        ('target = "ares calibrate"\nspeed = 1\n[[axes]]\nseed = [1]', "unknown key"),
    ],
)  # fmt: skip
def test_bad_sweep_files_are_named(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        sweep.SweepSpec.from_toml(path)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "experiments" / "sweeps").glob("*.toml")), ids=lambda p: p.name
)
def test_example_sweep_files_are_valid(path):
    spec = sweep.SweepSpec.from_toml(path)
    _, shape, points = sweep.check(command_target(spec.target), spec.axes, spec.fixed)
    assert len(points) == np.prod(shape) >= 10
    smoke = spec.smoke()
    assert len(sweep.check(command_target(spec.target), smoke.axes, smoke.fixed)[2]) <= 4


def test_to_toml_reads_back():
    import tomllib

    values = {"a": 1, "b": 1e-5, "c": "x\"y", "d": [[1.5, 2.0], [3.0, -4e300]], "e": True,
              "f": {"sigma_x": 1e-4}, "g": float("inf")}  # fmt: skip
    assert tomllib.loads(to_toml(values)) == values


# -- a design problem's parameters ---------------------------------------------------------


class Bowl(Problem):
    centre: jax.Array

    @property
    def spec(self):
        return {"x": Param(jnp.zeros(2), lower=-1.0, upper=1.0, transform=Box(), step=0.1,
                           label="x", unit="m"),
                "y": Param(jnp.asarray(0.5), lower=0.0, upper=2.0, transform=Box(), step=0.1,
                           label="y", unit="s")}  # fmt: skip

    def loss(self, params, key):
        d = params["x"] - self.centre
        value = jnp.sum(d**2) * params["y"]
        return value, {"spread": jnp.sum(jnp.abs(d)), "per_axis": d}


def test_problem_parameters_swept_as_one_program(tmp_path):
    problem = Bowl(jnp.asarray([0.2, -0.3]))
    target = sweep.ProblemTarget(problem)
    assert set(target.known_keys()) == {"x[0]", "x[1]", "y"}
    blocks = [sweep.grid("x[1]", -1.0, 1.0, 5), sweep.Values({"y": (0.5, 2.0)})]
    result = sweep.run(target, blocks, tmp_path / "bowl", progress=False)
    assert result.computed == 10 and set(result.outcomes) == {"loss", "spread"}
    for i in range(result.n):
        params = {"x": jnp.asarray([0.0, result.columns["x[1]"][i]]),
                  "y": jnp.asarray(result.columns["y"][i])}  # fmt: skip
        loss, aux = problem.loss(params, None)
        assert result.outcomes["loss"][i] == pytest.approx(float(loss), rel=1e-15)
        assert result.outcomes["spread"][i] == pytest.approx(float(aux["spread"]), rel=1e-15)
    assert result.units["x[1]"] == "m"
    with pytest.raises(ValueError, match=r"x\[0\] in sweep point 1 .* must lie in \[-1.0, 1.0\] m"):
        sweep.run(target, [sweep.Values({"x[0]": (0.0, 1.5)})], tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_pareto_front():
    a = np.array([1.0, 2.0, 3.0, 1.5, 4.0, np.nan])
    b = np.array([5.0, 2.0, 1.0, 6.0, 0.5, 0.0])
    assert pareto_front(a, b).tolist() == [0, 1, 2, 4]


# -- ARES calibrations: batched against the study's own code point by point ----------------


def _ares(tmp_path, name, blocks, **kwargs):
    # chunk 2 everywhere: one compiled program serves every test of the file
    return sweep.run(sweep_target(), blocks, tmp_path / name, fixed={"n_calibration": 8},
                     chunk=2, progress=False, **kwargs)  # fmt: skip


AXES = [sweep.Values({"screen_noise": (1e-6, 1e-4)}), sweep.integers("seed", 0, 3)]


@pytest.mark.slow  # ~30 s on 2 cores: in CI's second stage (-m slow)
def test_batched_calibrations_equal_the_study_point_by_point(tmp_path):
    batched = _ares(tmp_path, "batched", AXES)
    separate = _ares(tmp_path, "separate", AXES, separate=True)
    assert batched.computed == separate.computed == 6
    # A least-squares minimum is flat: chi2 agrees to float precision, the offsets to a
    # tiny fraction of their standard errors (measured: 3e-14 m, 3e-7 sigma).
    np.testing.assert_allclose(batched.outcomes["chi2"], separate.outcomes["chi2"], rtol=1e-11)
    shift = np.abs(batched.outcomes["offsets_m"] - separate.outcomes["offsets_m"])
    assert np.all(shift <= 1e-5 * separate.outcomes["std_m"])
    np.testing.assert_array_equal(batched.outcomes["std_m"] > 0, True)
    np.testing.assert_allclose(batched.outcomes["std_m"], separate.outcomes["std_m"], rtol=1e-8)
    assert np.all(batched.outcomes["converged"] == 1.0)
    # and the study's command gives the same as the sweep's separate point
    point = run_calibration(StudyConfig(n_calibration=8, screen_noise=1e-4, seed=2), tmp_path / "p")
    np.testing.assert_array_equal(point["offsets_m"], separate.outcomes["offsets_m"][5])
    assert [c["name"] for c in point["verdict"]["checks"]] == [
        "calibration", "offsets at bounds", "correlation", "chi2/dof"]  # fmt: skip
    # the noise sets the error: 100x the noise, about 100x the rms error
    rms = batched.outcomes["rms_error_um"].reshape(2, 3).mean(axis=1)
    assert 30 < rms[1] / rms[0] < 300


def test_records_resume_and_tables(tmp_path):
    first = _ares(tmp_path, "s", AXES)
    records = sorted((tmp_path / "s" / "points").glob("*.npz"))
    assert [p.name for p in records] == ["chunk-0000000.npz", "chunk-0000002.npz",
                                         "chunk-0000004.npz"]  # fmt: skip
    records[1].unlink()  # as if the sweep had been killed before this chunk was recorded
    (tmp_path / "s" / "points" / "chunk-0000004.npz.tmp.npz").write_bytes(b"torn")
    again = _ares(tmp_path, "s", AXES)
    assert again.computed == 2
    for name, values in first.outcomes.items():
        np.testing.assert_array_equal(again.outcomes[name], values)
    rows = sweep.load_rows(tmp_path / "s")
    assert [r["seed"] for r in rows] == [0, 1, 2, 0, 1, 2]
    assert rows[4]["rms_error_um"] == first.outcomes["rms_error_um"][4]
    data = sweep.load(tmp_path / "s")
    assert data["rms_error_um"].dims == ("screen_noise", "seed")
    np.testing.assert_array_equal(data["offsets_m"].values.reshape(6, 3, 2),
                                  first.outcomes["offsets_m"])  # fmt: skip
    assert json.loads(data.attrs["sweep"])["target"] == "ares calibrate"
    assert (tmp_path / "s" / "lines.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="was started with other settings"):
        _ares(tmp_path, "s", [sweep.Values({"screen_noise": (1e-5,)})])


@pytest.mark.parametrize(
    ("blocks", "kwargs", "message"),
    [
        ([sweep.Values({"screen_nosie": (1e-5,)})], {}, r"unknown key\(s\) \['screen_nosie'\]"),
        ([sweep.Values({"screen_noise": (1e-5, -1.0)})], {},
         r"screen_noise must lie in \[0.0, inf\] m.*|sweep point 1"),
        (AXES, {"memory_budget_gib": 1e-6}, "over memory_budget_gib = 1e-06"),
        (AXES, {"outcomes": ["rms"]}, r"outcome\(s\) \['rms'\]"),
        ([sweep.Values({"n_calibration": (8,)})], {}, "both fixed in"),
    ],
)  # fmt: skip
def test_bad_sweeps_fail_before_any_point(tmp_path, blocks, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _ares(tmp_path, "bad", blocks, **kwargs)
    assert not (tmp_path / "bad").exists()  # nothing written: a corrected rerun starts afresh


def test_study_targets_take_numbers_from_results():
    results = {"a": 1, "b": {"c": [1.0, 2.0], "d": "text", "e": True}, "f": list(range(100))}
    found = sweep.outcomes_of(results)
    assert set(found) == {"a", "b.c", "b.e"}
    np.testing.assert_array_equal(found["b.c"], [1.0, 2.0])
