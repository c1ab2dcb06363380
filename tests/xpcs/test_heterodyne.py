"""The two-component (heterodyne) model: parity with `xpcsjax` 0.1.8, limits, gradients, fits.

The reference arrays were computed by xpcsjax's own two-component kernel
(``compute_c2_heterodyne`` and the pointwise ``compute_c2_unified``) by
``data/make_xpcsjax_reference.py``; xpcsjax needs Python >= 3.12 and is not installed in CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffdesign  # noqa: F401  (float64)
from diffdesign.xpcs import (
    TWO_COMPONENT_PARAMETERS,
    XpcsData,
    fit_nlsq,
    g2,
    make_problem,
    mode_of,
    pack,
    sample_fraction,
    symmetric_noise,
    two_component_g2,
    two_component_pairs,
)
from diffdesign.xpcs.examples import example_path
from diffdesign.xpcs.examples import make_example as example
from diffdesign.xpcs.heterodyne import smooth_clip
from diffdesign.xpcs.likelihood import model_matrices

REFERENCE = Path(__file__).resolve().parent / "data" / "xpcsjax_reference.npz"
with np.load(REFERENCE) as _file:
    DATA = {key: _file[key] for key in _file.files}
CASES = [str(name) for name in DATA["cases"]]
TRUTH = example.TWO_COMPONENT_TRUTH


def _case(name: str) -> dict:
    prefix = f"{name}/"
    case = {k[len(prefix) :]: v for k, v in DATA.items() if k.startswith(prefix)}
    names = [str(n) for n in DATA["param_names"]]
    case["params_dict"] = dict(zip(names, (float(v) for v in case["params"]), strict=True))
    case["q"] = float(case["q"])
    return case


def test_reference_file_is_xpcsjax_0_1_8():
    assert str(DATA["xpcsjax_version"]) == "0.1.8"
    assert tuple(str(n) for n in DATA["param_names"]) == TWO_COMPONENT_PARAMETERS
    assert CASES == ["steady", "evolving", "guards"]


@pytest.mark.parametrize("name", CASES)
def test_g2_matches_xpcsjax(name):
    """Every matrix entry and 500 scattered points equal xpcsjax's (measured 2.2e-16)."""
    case = _case(name)
    ours = two_component_g2(case["params_dict"], case["t"], case["phi"], case["q"],
                            case["contrast"], case["offset"])  # fmt: skip
    np.testing.assert_allclose(ours, case["c2"], rtol=0, atol=1e-13)
    shape = two_component_pairs(case["params_dict"], jnp.asarray(case["t"]), case["phi"],
                                case["q"], case["angle"], case["i"], case["j"])  # fmt: skip
    points = case["offset"][case["angle"]] + case["contrast"][case["angle"]] * shape
    np.testing.assert_allclose(points, case["c2_points"], rtol=0, atol=1e-13)


def test_guards_case_exercises_every_guard():
    """The "guards" case reaches what it claims: t = 0 on the grid with negative exponents,
    a fraction clipped above 1, a sample rate floored at 0, a reference exponent at -700."""
    case = _case("guards")
    p, t, q = case["params_dict"], case["t"], case["q"]
    assert t[0] == 0.0 and p["alpha_ref"] < 0 and p["alpha_sample"] < 0 and p["v_beta"] < 0
    raw = p["f0"] * np.exp(p["f1"] * (t - p["f2"])) + p["f3"]
    assert raw.max() > 1.1  # the clip bounds it
    assert np.asarray(sample_fraction(t, p["f0"], p["f1"], p["f2"], p["f3"])).max() <= 1.0
    positive = t > 0
    rate = p["D0_sample"] * t[positive] ** p["alpha_sample"] + p["D_offset_sample"]
    assert rate.min() < 0  # floored at 0
    cumulative = np.concatenate([[0.0], np.cumsum(np.diff(t) * 0.5 * (
        _rate(t, p, "ref")[1:] + _rate(t, p, "ref")[:-1]))])  # fmt: skip
    assert 0.5 * q**2 * (cumulative[-1] - cumulative[0]) > 700.0


def _rate(t, p, component):
    power = np.where(t > 0, np.maximum(t, 1e-10) ** p[f"alpha_{component}"], 0.0)
    return np.maximum(p[f"D0_{component}"] * power + p[f"D_offset_{component}"], 0.0)


def _homodyne_like_decay(t, p, component, q):
    """exp(-q^2 |int J|) by numpy's trapezoid, all pairs: one component alone (|x| smoothed
    as sqrt(x^2 + 1e-12), as the model does)."""
    rate = _rate(t, p, component)
    cumulative = np.concatenate([[0.0], np.cumsum(np.diff(t) * 0.5 * (rate[1:] + rate[:-1]))])
    return np.exp(-(q**2) * np.sqrt((cumulative[None, :] - cumulative[:, None]) ** 2 + 1e-12))


@pytest.mark.parametrize(("f0", "f3", "alone"), [(0.0, -1.0, "ref"), (0.0, 2.0, "sample")])
def test_one_component_alone_is_its_own_decay(f0, f3, alone):
    """With the fraction clipped to 0 or 1 only one component scatters: g2 - offset is
    contrast times its exp(-q^2 |int J dt|), computed here by numpy."""
    t = 0.05 * np.arange(1, 41)
    p = {**TRUTH, "f0": f0, "f1": 0.0, "f3": f3}
    c2 = np.asarray(two_component_g2(p, t, [20.0], 0.012, 0.3, 1.0))[0]
    np.testing.assert_allclose((c2 - 1.0) / 0.3, _homodyne_like_decay(t, p, alone, 0.012),
                               rtol=0, atol=1e-11)  # fmt: skip


def test_equal_components_without_flow_do_not_beat():
    """Same transport for both and no velocity: g2 - offset is contrast * e^2 whatever the
    (constant) fraction; with a velocity, the cross term is 2 f_r^2 f_s^2 cos(q cos(phi) v
    dt_lag) / (f_r^2 + f_s^2)^2 of the one-component decay, exactly."""
    t = 0.05 * np.arange(1, 31)
    p = {**TRUTH, "D0_sample": TRUTH["D0_ref"], "alpha_sample": TRUTH["alpha_ref"],
         "D_offset_sample": TRUTH["D_offset_ref"], "f0": 0.3, "f1": 0.0, "f3": 0.0,
         "v0": 0.0, "v_offset": 0.0}  # fmt: skip
    decay = _homodyne_like_decay(t, p, "ref", 0.012)
    still = np.asarray(two_component_g2(p, t, [0.0], 0.012, 1.0, 0.0))[0]
    np.testing.assert_allclose(still, decay, rtol=0, atol=1e-12)
    moving = {**p, "v0": 400.0, "v_beta": 0.0, "phi0_het": 0.0}
    beat = np.asarray(two_component_g2(moving, t, [30.0], 0.012, 1.0, 0.0))[0]
    s = float(sample_fraction(0.0, 0.3, 0.0, 0.0, 0.0))
    r = 1.0 - s
    lag = t[None, :] - t[:, None]
    cosine = np.cos(0.012 * np.cos(np.deg2rad(30.0)) * 400.0 * lag)
    expected = decay * (r**4 + s**4 + 2 * r**2 * s**2 * cosine) / (r**2 + s**2) ** 2
    np.testing.assert_allclose(beat, expected, rtol=0, atol=1e-12)


def test_fraction_clip_is_the_identity_inside():
    """Inside [0, 1] the softplus clip departs from x by at most exp(-50 d) / 50 at a
    distance d from the nearer bound (9e-7 at 0.2, 3e-13 at 0.5)."""
    inside = np.linspace(0.2, 0.8, 7)
    distance = np.minimum(inside, 1.0 - inside)
    departure = np.abs(np.asarray(smooth_clip(inside, 0.0, 1.0)) - inside)
    assert np.all(departure <= np.exp(-50.0 * distance) / 50.0 * (1 + 1e-6) + 1e-16)
    assert departure[3] < 1e-12
    assert 0.0 <= float(smooth_clip(-5.0, 0.0, 1.0)) < 1e-100
    assert float(smooth_clip(5.0, 0.0, 1.0)) == 1.0


def test_gradients_match_finite_differences():
    """jax.grad of a weighted sum of g2 in each of the 14 parameters vs 4th-order central
    differences, at the "evolving" reference case (every parameter nonzero)."""
    case = _case("evolving")
    t, phi, q = jnp.asarray(case["t"][:24]), case["phi"], case["q"]
    weights = jnp.asarray(np.random.default_rng(5).uniform(0.5, 1.5, (phi.size, 24, 24)))

    def objective(vector):
        params = dict(zip(TWO_COMPONENT_PARAMETERS, vector, strict=True))
        return jnp.sum(weights * two_component_g2(params, t, phi, q, 0.3, 1.0))

    point = np.asarray(case["params"], dtype=float)
    assert np.all(point != 0)
    steps = 1e-4 * np.abs(point)
    n = point.size
    stencil = (2, 1, -1, -2)
    points = [point] + [point + m * steps[k] * np.eye(n)[k] for k in range(n) for m in stencil]
    values, grads = jax.jit(jax.vmap(jax.value_and_grad(objective)))(jnp.asarray(points))
    values, grad = np.asarray(values), np.asarray(grads[0])
    for k, name in enumerate(TWO_COMPONENT_PARAMETERS):
        f2, f1, fm1, fm2 = values[1 + 4 * k : 5 + 4 * k]
        fourth_order = (-f2 + 8 * f1 - 8 * fm1 + fm2) / (12 * steps[k])
        assert grad[k] == pytest.approx(fourth_order, rel=1e-7, abs=1e-9), name


def test_model_matrices_is_each_modes_own_model():
    """The likelihood's full matrices equal two_component_g2 (and g2 for a homodyne mode)."""
    data = XpcsData(example.make_two_component_c2(), 0.04 * np.arange(80),
                    example.TWO_COMPONENT["phi"], example.TWO_COMPONENT["q"], 1.0, 0.005)  # fmt: skip
    problem = make_problem(data, "two_component", fixed={"f2": 0.0})
    spec = example.TWO_COMPONENT
    theta = pack(TRUTH, spec["contrast"], spec["offset"], problem)
    direct = two_component_g2(TRUTH, data.t, data.phi, data.q, spec["contrast"], spec["offset"])
    np.testing.assert_allclose(model_matrices(theta, problem), direct, rtol=0, atol=1e-15)
    laminar = {"D0": 5e4, "alpha": -0.2, "D_offset": 100.0, "gamma_dot_t0": 2e-3, "beta": -0.2,
               "gamma_dot_t_offset": 1e-4, "phi0": 10.0}  # fmt: skip
    homodyne = make_problem(XpcsData(np.asarray(data.c2), data.t, data.phi, data.q, 2e6, 0.005),
                            "laminar_flow")  # fmt: skip
    theta = pack(laminar, 0.3, 1.0, homodyne)
    np.testing.assert_allclose(model_matrices(theta, homodyne),
                               g2(laminar, data.t, data.phi, data.q, 2e6, 0.3, 1.0),
                               rtol=0, atol=1e-15)  # fmt: skip


@pytest.fixture(scope="module")
def example_data() -> XpcsData:
    spec = example.TWO_COMPONENT
    return XpcsData(example.make_two_component_c2(), spec["dt"] * np.arange(spec["n_frames"]),
                    spec["phi"], spec["q"], 1.0, spec["noise"])  # fmt: skip


def test_nlsq_recovers_every_parameter_within_three_standard_errors(example_data):
    """The packaged example (4 angles x 80 frames, 12,640 points), f2 fixed, from a start
    20 % off every parameter: all 13 physical parameters and the 8 scalings within 3 standard
    errors, chi2/dof near 1."""
    start = {k: 1.2 * v for k, v in TRUTH.items() if k != "f2"}
    result = fit_nlsq(example_data, "two_component", fixed={"f2": 0.0}, initial=start)
    assert bool(result.converged) and result.status == "converged" and result.message == ""
    assert result.names[:13] == tuple(n for n in TWO_COMPONENT_PARAMETERS if n != "f2")
    assert float(result.reduced_chi2) == pytest.approx(1.0, abs=0.05)
    spec = example.TWO_COMPONENT
    truth = [TRUTH[n] for n in result.names[:13]] + [*spec["contrast"], *spec["offset"]]
    z = (np.asarray(result.x) - np.asarray(truth)) / np.asarray(result.std)
    assert np.all(np.isfinite(z)) and np.max(np.abs(z)) < 3.0, dict(
        zip(result.names, z, strict=True)
    )


@pytest.mark.slow
def test_f0_and_f2_free_are_reported_as_one_direction(example_data):
    """With f2 free the fit still reaches the minimum; f0 and f2 (only f0 exp(-f1 f2) enters)
    come out correlated to 1 - 1e-11 (measured) with standard errors over 1,000 times their
    boxes' widths (2.4e3 and 3.2e4 measured), while the 12 others keep those of the fit with
    f2 fixed."""
    start = {k: 1.2 * v for k, v in TRUTH.items()}
    result = fit_nlsq(example_data, "two_component", initial=start)
    names = list(result.names)
    f0, f2 = names.index("f0"), names.index("f2")
    assert abs(float(result.correlation[f0, f2])) > 1 - 1e-9
    assert result.status == "degenerate" and result.condition_number > 1e4
    weakest = np.abs(np.asarray(result.weakest_direction))
    assert weakest[f0] == pytest.approx(2**-0.5, abs=0.01) and weakest[f2] == pytest.approx(
        2**-0.5, abs=0.01
    )
    assert "f0" in result.message and "f2" in result.message
    std = dict(zip(names, np.asarray(result.std), strict=True))
    assert std["f0"] > 1000 * 1.0 and std["f2"] > 1000 * 2.0
    assert float(result.reduced_chi2) == pytest.approx(1.0, abs=0.05)
    reference = fit_nlsq(example_data, "two_component", fixed={"f2": 0.0},
                         initial={k: v for k, v in start.items() if k != "f2"})  # fmt: skip
    for name, value in zip(reference.names, np.asarray(reference.std), strict=True):
        if name != "f0":
            assert std[name] == pytest.approx(value, rel=0.02), name


@pytest.mark.smoke
def test_cli_fits_the_two_component_example(tmp_path, capsys):
    from diffdesign.cli import main

    out = tmp_path / "out"
    assert main(["xpcs", "fit", "--example", "--mode", "two_component", "--out", str(out)]) == 0
    assert "nlsq: converged" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["mode"] == "two_component"
    assert results["model"]["fixed"] == {"f2": 0.0}
    nlsq = results["nlsq"]
    with h5py.File(example_path("two_component_example.h5")) as f:
        truth = dict(f.attrs)
    assert truth["mode"] == "two_component"
    for name in ("v0", "v_beta", "f0", "f1", "phi0_het", "alpha_sample"):
        error = abs(nlsq["parameters"][name] - truth[name])
        assert error < 3.0 * nlsq["std"][name], (name, nlsq["parameters"][name], truth[name])
    assert (out / "fit.png").stat().st_size > 10_000


def test_the_two_component_example_is_what_make_example_writes():
    from diffdesign.xpcs.io import read_aps_hdf5

    ring = read_aps_hdf5(example_path("two_component_example.h5"))
    np.testing.assert_allclose(ring.c2, example.make_two_component_c2(), rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_named():
    t, phi = 0.05 * np.arange(1, 11), [0.0]
    with pytest.raises(ValueError, match=r"lack \['phi0_het'\]"):
        two_component_g2({k: v for k, v in TRUTH.items() if k != "phi0_het"}, t, phi, 0.01)
    with pytest.raises(ValueError, match=r"unknown \['D0'\]"):
        two_component_g2({**TRUTH, "D0": 1.0}, t, phi, 0.01)
    with pytest.raises(ValueError, match=r"two-component params lack"):
        mode_of({"D0_ref": 1.0})
    with pytest.raises(ValueError, match="two_component_g2"):
        g2(TRUTH, t, phi, 0.01, 1.0)
    with pytest.raises(ValueError, match="q"):
        two_component_g2(TRUTH, t, phi, -0.01)
    with pytest.raises(ValueError, match=r"contrast must be a scalar or one value per angle"):
        two_component_g2(TRUTH, t, [0.0, 30.0], 0.01, contrast=[0.1, 0.2, 0.3])


def test_bad_fits_are_refused_before_compiling(example_data):
    with pytest.raises(ValueError, match="trapezoid only"):
        make_problem(example_data, "two_component", integral="exact")
    with pytest.raises(ValueError, match=r"fixed: unknown parameter 'D0'"):
        make_problem(example_data, "two_component", fixed={"D0": 1.0})
    with pytest.raises(ValueError, match=r"fixed\['f2'\] = 3.0 lies outside its bounds"):
        make_problem(example_data, "two_component", fixed={"f2": 3.0})
    with pytest.raises(ValueError, match=r"fixed\['f2'\] = nan"):
        make_problem(example_data, "two_component", fixed={"f2": float("nan")})
    with pytest.raises(ValueError, match="every physical parameter is fixed"):
        make_problem(example_data, "static", fixed={"D0": 10.0, "alpha": 0.0, "D_offset": 0.0})
    with pytest.raises(ValueError, match=r"initial: unknown parameters \['f2'\]"):
        fit_nlsq(example_data, "two_component", fixed={"f2": 0.0}, initial={"f2": 0.1})


def test_config_fixed_table_is_checked(tmp_path):
    from experiments.xpcs._job import load_job

    config = tmp_path / "job.toml"
    data = example_path("two_component_example.h5")
    config.write_text("[data]\nq = 0.012\nL = 1.0\n[model]\nmode = 'two_component'\n"
                      "fixed = { f2 = 0.0, v_offset = 0.0 }\n")  # fmt: skip
    assert load_job(data, config).model.fixed == {"f2": 0.0, "v_offset": 0.0}
    for text, message in (
        ("fixed = { gamma = 1.0 }", "unknown parameter 'gamma'"),
        ("fixed = { f1 = 5.0 }", r"outside its bounds \[-1.0, 1.0\]"),
        ("fixed = { f2 = 0.0 }\ninitial = { f2 = 0.0 }", r"\['f2'\] are both in initial"),
    ):
        config.write_text(f"[model]\nmode = 'two_component'\n{text}\n")
        with pytest.raises(ValueError, match=message):
            load_job(data, config)


def test_symmetric_noise_is_symmetric_and_standard():
    noise = np.asarray(symmetric_noise(jax.random.key(0), (2, 300, 300)))
    np.testing.assert_array_equal(noise, np.swapaxes(noise, -1, -2))
    upper = noise[:, *np.triu_indices(300)]
    assert abs(upper.mean()) < 5 / np.sqrt(upper.size) and abs(upper.std() - 1.0) < 0.01
