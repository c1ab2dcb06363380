"""Parity of ``diffdesign.xpcs.model`` with `homodyne` 2.23.3, and checks of the exact integral.

The reference arrays were computed by homodyne's own NLSQ model
(``homodyne.core.physics_nlsq.compute_g2_scaled``) by ``data/make_homodyne_reference.py``;
homodyne itself needs Python >= 3.12 and is not installed in CI.
"""

from __future__ import annotations

import itertools
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from diffdesign.xpcs.model import LAMINAR_PARAMETERS, cumulative_integral, g1_pairs, g2

REFERENCE = Path(__file__).resolve().parent / "data" / "homodyne_reference.npz"
with np.load(REFERENCE) as _file:
    DATA = {key: _file[key] for key in _file.files}
CASES = [str(name) for name in DATA["cases"]]
G1_FLOOR = 1e-10
# One compile per array shape: every reference case has n_t = 32 and 2 (static) or 4 angles.
_G2 = jax.jit(g2, static_argnames="integral")
_G1 = jax.jit(g1_pairs, static_argnames="integral")
_EXACT = jax.jit(partial(cumulative_integral, integral="exact"))
_TRAPEZOID = jax.jit(partial(cumulative_integral, integral="trapezoid"))


def _case(name: str) -> dict:
    prefix = f"{name}/"
    case = {k[len(prefix) :]: v for k, v in DATA.items() if k.startswith(prefix)}
    names = [str(n) for n in case["param_names"]]
    case["params_dict"] = dict(zip(names, (float(v) for v in case["params"]), strict=True))
    for key in ("q", "L", "contrast", "offset", "dt"):
        case[key] = float(case[key])
    return case


def _g2(case: dict, integral: str = "trapezoid") -> np.ndarray:
    out = _G2(
        case["params_dict"],
        case["t"],
        case["phi"],
        case["q"],
        case["L"],
        case["contrast"],
        case["offset"],
        integral=integral,
    )
    return np.asarray(out)


def test_reference_file_is_homodyne_2_23_3():
    assert str(DATA["homodyne_version"]) == "2.23.3"
    assert len(CASES) >= 10
    # The cases exercise homodyne's floors: rates at 1e-10 and g1 at 1e-10.
    assert int(DATA["static_negative_offset/n_rate_floored"]) > 0
    assert int(DATA["laminar_negative_offsets/n_rate_floored"]) > 0
    assert int(DATA["laminar_strong_shear/n_g1_floored"]) > 0
    assert DATA["laminar_shifted_grid/t"][0] == 1.0


@pytest.mark.parametrize("name", CASES)
def test_g2_matches_homodyne(name):
    case = _case(name)
    ours = _g2(case)
    # homodyne takes dt separately (from its config); ours is t[1] - t[0]: the same grid step.
    assert case["t"][1] - case["t"][0] == pytest.approx(case["dt"], rel=1e-13)
    assert ours.shape == case["g2"].shape
    np.testing.assert_allclose(ours, case["g2"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in CASES if f"{n}/g1" in DATA])
def test_g1_floor_matches_homodyne(name):
    """Where homodyne floors g1 at 1e-10 (invisible in g2 at 1e-20), we floor the same entries."""
    case = _case(name)
    n_phi, n_t = case["phi"].size, case["t"].size
    ours = np.asarray(
        _G1(
            case["params_dict"],
            case["t"],
            case["phi"],
            case["q"],
            case["L"],
            jnp.arange(n_phi)[:, None, None],
            jnp.arange(n_t)[None, :, None],
            jnp.arange(n_t)[None, None, :],
        )
    )
    np.testing.assert_allclose(ours, case["g1"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours == G1_FLOOR, case["g1"] == G1_FLOOR)
    assert np.sum(ours == G1_FLOOR) == int(case["n_g1_floored"]) > 0


def test_static_g1_pairs_broadcasts_angle():
    case = _case("static_fast_decay")
    index = jnp.arange(32)
    angle, i, j = jnp.arange(2)[:, None, None], index[None, :, None], index[None, None, :]
    out = _G1(case["params_dict"], case["t"], case["phi"], case["q"], case["L"], angle, i, j)
    assert out.shape == case["g1"].shape == (2, 32, 32)


@pytest.mark.parametrize(
    ("name", "low", "high", "phi_worst"),
    [("static_anchors", 1.0e-3, 1.1e-3, 0.0), ("laminar_anchors", 2.7e-3, 2.8e-3, 90.0)],
)
def test_exact_integral_bias_is_at_the_earliest_times(name, low, high, phi_worst):
    """ANCHORS truth (contrast 0.3): exact minus trapezoid g2 is ~1e-3 (static), ~3e-3 (laminar).

    The trapezoid's error per grid interval is largest on [0, dt] (t^alpha floored at dt/2,
    then most curved; the trapezoid's cumulative D integral is 7.7% below the exact one at
    t = 0.1 s, 1.7% at 0.5 s) and
    falls fast along the grid; every |C_j - C_i| with i = 0 carries it. Measured:
    max |g2_exact - g2_trapezoid| = 1.05e-3 (static) and 2.76e-3 (laminar, at phi = 90 deg:
    there the first-lag sinc phase is 0.33 rad by trapezoid, 0.35 exact, and g1 has not yet
    decayed; at the other angles it is 2.9-3.8 rad, near sinc's first zero), both at (t1, t2) =
    (0, 0.1 s); over pairs whose earlier time is >= 0.5 s (min(i, j) >= 5) at most 3.2e-5
    (static) and 2.1e-4 (laminar).
    """
    case = _case(name)
    diff = _g2(case, "exact") - _g2(case)
    magnitude = np.abs(diff)
    worst = np.unravel_index(np.argmax(magnitude), diff.shape)
    assert low < magnitude.max() < high
    assert case["phi"][worst[0]] == phi_worst and sorted(worst[1:]) == [0, 1]
    assert magnitude[:, 5:, 5:].max() < 0.1 * magnitude.max()
    np.testing.assert_allclose(diff, np.swapaxes(diff, 1, 2), rtol=0, atol=1e-15)

    t = jnp.asarray(case["t"])
    p = case["params_dict"]
    rates = [(p["D0"], p["alpha"], p["D_offset"])]
    if "phi0" in p:
        rates.append((p["gamma_dot_t0"], p["beta"], p["gamma_dot_t_offset"]))
    for rate in rates:
        bias = _TRAPEZOID(t, *rate) - _EXACT(t, *rate)
        per_interval = np.abs(np.diff(np.asarray(bias)))
        assert np.all(np.diff(per_interval) < 0)  # decreasing along the grid
        assert per_interval[0] > 3 * per_interval[1]


def _quad_cumulative(t, amplitude, exponent, offset, floor):
    """int_{t_0}^{t_k} (amplitude max(s, floor)^exponent + offset) ds by adaptive quadrature."""

    def rate(s):
        return amplitude * max(s, floor) ** exponent + offset

    out = [0.0]
    for lo, hi in itertools.pairwise(t):
        breaks = [floor] if lo < floor < hi else None
        value, _ = integrate.quad(rate, lo, hi, points=breaks, epsabs=0.0, epsrel=1e-13, limit=200)
        out.append(out[-1] + value)
    return np.array(out)


EXPONENTS = (-0.6, 0.5, -1.0, -1.0 + 3e-9, -1.0 - 3e-9, -1.0 + 2e-6, -0.999, -1.3)
GRIDS = {"from_zero": 0.1 * np.arange(25), "shifted": 1.0 + 0.05 * np.arange(25)}


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_exact_cumulative_integral_matches_quadrature(grid):
    t = GRIDS[grid]
    floor = max(0.5 * (t[1] - t[0]), 1e-8)
    for exponent in EXPONENTS:
        reference = _quad_cumulative(t, 3000.0, exponent, 20.0, floor)
        ours = np.asarray(_EXACT(t, 3000.0, exponent, 20.0))
        assert abs(ours[0]) <= 1e-14 * abs(ours[-1])
        np.testing.assert_allclose(ours[1:], reference[1:], rtol=1e-9, err_msg=f"{exponent=}")


def test_exact_integral_alpha_derivative_near_minus_one():
    """d C / d alpha is finite through the removable singularity at alpha = -1.

    Values are exact to ~2e-16 relative for every alpha. The alpha-derivative is exact to
    ~1e-9 everywhere: within |alpha + 1| < 1e-6 the model uses the series of
    expm1(p log r) / p to O(p^2), whose value and slope are exact there.
    """
    t = 0.1 * np.arange(25)
    floor = 0.05

    value_and_grad = jax.jit(jax.value_and_grad(lambda a: _EXACT(t, 3000.0, a, 20.0)[-1]))
    step = 1e-5
    exponents = (-1.0, -1.0 + 3e-9, -1.0 - 3e-9, -1.0 + 9.9e-9, -1.0 + 5e-8, -1.0 - 1e-6)
    for exponent in (*exponents, -0.9999, -1.001):
        _, grad = value_and_grad(exponent)
        grad = float(grad)
        assert np.isfinite(grad)
        central = (
            float(value_and_grad(exponent + step)[0]) - float(value_and_grad(exponent - step)[0])
        ) / (2 * step)
        assert grad == pytest.approx(central, rel=1e-6), exponent
        # and against quadrature of d/da of the integrand, 3000 max(s, floor)^a log max(s, floor)
        reference, _ = integrate.quad(
            lambda s, a=exponent: 3000.0 * max(s, floor) ** a * np.log(max(s, floor)),
            0.0,
            t[-1],
            points=[floor],
            epsabs=0.0,
            epsrel=1e-13,
            limit=200,
        )
        assert grad == pytest.approx(reference, rel=1e-9), exponent


GENERIC = {
    "D0": 3000.0,
    "alpha": -0.6,
    "D_offset": 200.0,
    "gamma_dot_t0": 8e-4,
    "beta": -0.3,
    "gamma_dot_t_offset": 1.5e-4,
    "phi0": 5.0,
}


@pytest.mark.parametrize("integral", ["trapezoid", "exact"])
def test_gradients_match_finite_differences(integral):
    """jax.grad of a weighted sum of g2 in each of the 7 parameters vs 4th-order differences."""
    t = 0.1 * np.arange(16)
    phi = np.array([-60.0, 20.0, 80.0])
    q, L, contrast, offset = 0.0054, 2e6, 0.3, 1.0
    weights = jnp.asarray(np.random.default_rng(7).uniform(0.5, 1.5, (3, 16, 16)))

    def objective(vector):
        params = dict(zip(LAMINAR_PARAMETERS, vector, strict=True))
        model = g2(params, t, phi, q, L, contrast, offset, integral=integral)
        return jnp.sum(weights * (model - offset)), jnp.min(model - offset) / contrast

    point = np.array([GENERIC[name] for name in LAMINAR_PARAMETERS])
    steps = 1e-3 * np.abs(point)  # all seven are nonzero here
    stencil = (2, 1, -1, -2)
    points = [point] + [point + m * steps[k] * np.eye(7)[k] for k in range(7) for m in stencil]
    evaluate = jax.jit(jax.vmap(jax.value_and_grad(objective, has_aux=True)))
    (values, min_g1_squared), grads = evaluate(jnp.asarray(np.stack(points)))
    values, grad = np.asarray(values), np.asarray(grads[0])
    # a generic point: no floor active and sinc's argument below pi, so the model is smooth
    assert float(jnp.min(min_g1_squared)) > 1e-4
    for k, name in enumerate(LAMINAR_PARAMETERS):
        f2, f1, fm1, fm2 = values[1 + 4 * k : 5 + 4 * k]
        fourth_order = (-f2 + 8 * f1 - 8 * fm1 + fm2) / (12 * steps[k])
        assert grad[k] == pytest.approx(fourth_order, rel=1e-6), name
