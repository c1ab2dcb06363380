"""Second-order body maps: Cheetah's layout, MAD8's integrals, smooth everywhere.

Reference points:
- Cheetah 0.8.4's ``base_ttensor`` (+ ``base_rmatrix`` in T[:, 6, :]), which has the same
  layout and the same 40-odd term formulas. Its special integrals differ from MAD8's
  TMSECT in five places (``Cheetah deviations`` below); where they enter, Cheetah's map
  is not the map of its own element: it breaks T(L) = T(L/2) o T(L/2), and a pure
  sextupole gets T[0, 3, 3] = k2 L^4 / 3 instead of the elementary k2 L^4 / 24.
- So: raw Cheetah for the elements Cheetah builds, on every entry its deviations leave
  alone; Cheetah with MAD8's integrals patched in for generic (k1, k2, hx), every entry.
- Independent checks: the composition identity, elementary limits, 50-digit series.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.beamline import _affine, _maps, _second_order, _special

torch = pytest.importorskip("torch")
cheetah = pytest.importorskip("cheetah")
mp = pytest.importorskip("mpmath")
from cheetah import track_methods  # noqa: E402

torch.set_default_dtype(torch.float64)

ELECTRON = cheetah.Species("electron")
PROTON = cheetah.Species("proton")

# Entries of Cheetah's T that contain j2 = int d^2 (or j3 = int d^3): with k1 != 0 in a bend.
J2_ENTRIES = [(0, 1, 5), (0, 5, 5), (1, 5, 5), (4, 0, 5), (4, 1, 1), (4, 1, 5), (4, 5, 5)]
# Entries that contain jd (the divided difference of d), which survive in a pure sextupole.
JD_SEXTUPOLE_ENTRIES = [(0, 3, 3), (2, 1, 3)]


# --- Our map, compiled once: every call is padded to one batch shape ---------------------------
#
# One compiled function gives the tensors (MAD8's, and with reproduce_cheetah=True) and the
# gradients of a fixed weighting of the entries (section 3): one compilation for the suite.

BATCH = 16
_WEIGHTS = jnp.asarray(np.random.default_rng(7).normal(size=(7, 7, 7)))


@jax.jit
def _tensors_and_gradients(parameters, energy, mass_eV):
    """T and Cheetah's T for each row (length, k1, k2, hx) of ``parameters``, and the
    gradient of sum_ijk W_ijk T_ijk with respect to each row."""

    def tensor(parameters, reproduce_cheetah=False):
        length, k1, k2, hx = parameters.T
        first_order = _affine.to_array(_maps.body(length, k1, hx, energy, mass_eV))
        return _second_order.element_tensor(
            length, k1, k2, hx, energy, mass_eV, first_order, reproduce_cheetah=reproduce_cheetah
        )

    def weighted(parameters):
        mad = tensor(parameters)
        return jnp.einsum("ijk,bijk->", _WEIGHTS, mad), mad

    # The rows are independent magnets: the gradient of the sum holds each one's gradient.
    (_, mad), gradient = jax.value_and_grad(weighted, has_aux=True)(parameters)
    return mad, tensor(parameters, reproduce_cheetah=True), gradient


def ours(length, k1, k2, hx, energy, species, *, reproduce_cheetah=False, gradients=False):
    """Our tensors for up to BATCH magnets (all parameters as arrays: nothing structural)."""
    columns = np.broadcast_arrays(
        *(np.asarray(x, dtype=float) for x in (length, k1, k2, hx, energy))
    )
    n = columns[0].size
    assert n <= BATCH
    padded = [np.resize(c.ravel(), BATCH) for c in columns]
    mad, like_cheetah, gradient = _tensors_and_gradients(
        jnp.asarray(np.stack(padded[:4], axis=-1)),
        jnp.asarray(padded[4]),
        jnp.asarray(float(species.mass_eV)),
    )
    tensor = np.asarray(like_cheetah if reproduce_cheetah else mad)
    tensor = tensor[:n].reshape(*columns[0].shape, 7, 7, 7)
    return (tensor, np.asarray(gradient)[:n]) if gradients else tensor


def cheetah_tensor(length, k1, k2, hx, energy, species):
    t = lambda x: torch.tensor(np.asarray(x, dtype=float))
    tensor = track_methods.base_ttensor(t(length), t(k1), t(k2), t(hx), species, t(energy))
    tensor[..., :, 6, :] = track_methods.base_rmatrix(t(length), t(k1), t(hx), species, t(energy))
    return tensor.numpy()


def assert_tensor_close(ours_, theirs, rtol=1e-10, skip=()):
    """Entry-wise, relative to max(|entry|, largest quadratic entry of its output row).

    Some entries are small differences of large terms: in a defocusing plane cosh and sinh
    grow like e^(|k| L) and several second-order terms cancel down to a small remainder.
    Both implementations evaluate that remainder as the same difference, so its rounding
    error is set by the size of the terms, i.e. by the row, not by the small entry.
    """
    ours_, theirs = np.array(ours_), np.array(theirs)
    for i, j, k in skip:
        ours_[..., i, j, k] = theirs[..., i, j, k] = 0.0
    row = np.abs(theirs[..., :6, :6]).max(axis=(-2, -1), keepdims=True)
    scale = np.maximum(np.abs(theirs), row)
    error = np.abs(ours_ - theirs)
    worst = np.unravel_index(np.argmax(error / np.where(scale > 0, scale, 1.0)), error.shape)
    assert np.all(error <= rtol * scale), (worst, ours_[worst], theirs[worst])


def draws(rng, n, *, curved=True, sextupole=True, quadrupole=True):
    """Random magnets in physical ranges: 0.05-2 m, 0.3 <= |k1| L^2 <= 6, |k1| <= 10 m^-2,
    0.05 <= |hx| L <= 0.5, |k2| <= 100 m^-3, energies 1e7-1e10 eV (log-uniform).

    With k1 != 0, |kx2|, |kx2 - 4 ky2| and |kx2 - ky2| >= 0.3 / L^2 keep Cheetah's own
    closed forms (which divide by these) away from their cancellations (and poles), so it is
    a 1e-10 reference.
    """
    rows = []
    while len(rows) < n:
        length = rng.uniform(0.05, 2.0)
        k1 = rng.choice([-1.0, 1.0]) * min(10.0, rng.uniform(0.3, 6.0) / length**2)
        hx = rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.5) / length
        k1, hx = (k1 if quadrupole else 0.0), (hx if curved else 0.0)
        k2 = rng.uniform(-100.0, 100.0) if sextupole else 0.0
        energy = np.exp(rng.uniform(np.log(1e7), np.log(1e10)))
        kx2, ky2 = k1 + hx**2, -k1
        if quadrupole and min(abs(kx2), abs(kx2 - 4 * ky2), abs(kx2 - ky2)) * length**2 < 0.3:
            continue
        rows.append((length, k1, k2, hx, energy))
    return tuple(np.array(column) for column in zip(*rows, strict=True))


def proton_energy(energy):
    return energy + float(PROTON.mass_eV)


# --- High-precision references (50-digit power series, independent of the closed forms) --------

_DIGITS = 50
_TERMS = 90


@mp.workdps(_DIGITS)
def _coefficient(name, n):
    f = mp.factorial
    sign = (-1) ** n
    if name == "cos_like":
        return mp.mpf(sign) / f(2 * n)
    if name == "sin_like":
        return mp.mpf(sign) / f(2 * n + 1)
    if name == "one_minus_cos":
        return mp.mpf(sign) / f(2 * n + 2)
    if name == "one_minus_sin":
        return mp.mpf(sign) / f(2 * n + 3)
    if name == "dispersion_integral_2":  # (3 - 4 S(u) + S(4u)) / (2 u^2)
        m = n + 2
        return mp.mpf((-1) ** m * (4**m - 4)) / f(2 * m + 1) / 2
    if name == "dispersion_integral_3":  # (15 - 22.5 S(u) + 9 S(4u) - 1.5 S(9u)) / (6 u^3)
        m = n + 3
        return (mp.mpf(-22.5) + 9 * 4**m - mp.mpf(1.5) * 9**m) * (-1) ** m / f(2 * m + 1) / 6
    if name.endswith("_prime"):
        return (n + 1) * _coefficient(name.removesuffix("_prime"), n + 1)
    raise ValueError(name)


_NAMES = (
    "cos_like",
    "sin_like",
    "one_minus_cos",
    "one_minus_sin",
    "dispersion_integral_2",
    "dispersion_integral_3",
    "sin_like_prime",
    "one_minus_cos_prime",
    "one_minus_sin_prime",
)
with mp.workdps(_DIGITS):
    _COEFFICIENTS = {name: [_coefficient(name, n) for n in range(_TERMS)] for name in _NAMES}


@mp.workdps(_DIGITS)
def reference(name, u):
    u = mp.mpf(float(u))
    return mp.fsum(c * u**n for n, c in enumerate(_COEFFICIENTS[name]))


@mp.workdps(_DIGITS)
def reference_second_derivative(name, u):
    u = mp.mpf(float(u))
    coefficients = _COEFFICIENTS[name]
    return mp.fsum(n * (n - 1) * coefficients[n] * u ** (n - 2) for n in range(2, _TERMS))


@mp.workdps(_DIGITS)
def reference_dd(name, a, b):
    """(f(a) - f(b)) / (a - b) = sum_n c_n h_{n-1}(a, b), h complete homogeneous: exact at a = b."""
    a, b = mp.mpf(float(a)), mp.mpf(float(b))
    h, b_power, total = mp.mpf(1), mp.mpf(1), mp.mpf(0)  # h_0 = 1
    for c in _COEFFICIENTS[name][1:]:
        total += c * h
        b_power *= b
        h = a * h + b_power  # h_n = a h_{n-1} + b^n
    return total


def _elementwise(function):
    def wrapped(*tensors):
        arrays = np.broadcast_arrays(*(x.detach().numpy() for x in tensors))
        values = [float(function(*xs)) for xs in zip(*(a.ravel() for a in arrays), strict=True)]
        return torch.tensor(np.reshape(values, arrays[0].shape))

    return wrapped


def cheetah_with_mad_integrals(monkeypatch, length, k1, k2, hx, energy, species):
    """Cheetah's base_ttensor with MAD8's integrals in place of its five deviations.

    Cheetah deviations (0.8.4), with u = kx2 L^2, v = ky2 L^2:
    1. j2 = L^3 sipsicos3mdiv(u) lacks a factor L^2 / u (it has units m^3; int d^2 has m^5).
    2. jc, js use (u, v) where the vertical second harmonic needs (u, 4 v).
    3. jd = L^4 (si(v)^2 - si(u)^2) / (u - v) should be (d(4v) - d(u)) / (u - 4v) L^4,
       d = one_minus_cos: 8 times too large at k = 0.
    4. f2y = (L - sy cy) / ky2 should be divided by 4 ky2 (MAD's fyy), and sicos1mdiv(0)
       = 1/6 is not the limit 2/3 of its own formula.
    5. j3 (inline, from Ocelot) has -1.5 sx cx^2 + kx2 sx^3 where MAD8 has -2 sx cx^2: it
       is not int d^3 and has a pole at kx2 = 0 (its kx2 = 0 branch, L^7/56, is MAD's).
    The first four are module-level functions and are patched here; the fifth is inline,
    so its contribution to T[4, 5, 5] is swapped afterwards.
    """
    t = lambda x: torch.tensor(np.asarray(x, dtype=float))
    length_t = t(length)

    def dd(name):
        return _elementwise(lambda a, b: -reference_dd(name, a, 4 * b))

    integral_2 = _elementwise(lambda u: reference("dispersion_integral_2", u))
    monkeypatch.setattr(track_methods, "sipsicos3mdiv", lambda u: integral_2(u) * length_t**2)
    monkeypatch.setattr(track_methods, "cossqrtmcosdivdiff", dd("cos_like"))
    monkeypatch.setattr(track_methods, "simsidivdiff", dd("sin_like"))
    monkeypatch.setattr(track_methods, "si2msi2divdiff", dd("one_minus_cos"))
    monkeypatch.setattr(
        track_methods, "sicos1mdiv", _elementwise(lambda v: reference("one_minus_sin", 4 * v))
    )
    tensor = cheetah_tensor(length, k1, k2, hx, energy, species)
    monkeypatch.undo()

    # Cheetah's j3 minus int d^3: its numerator exceeds MAD8's by kx2 sx^3 / 2.
    kx2 = k1 + hx**2
    u = kx2 * length**2
    sin_like = np.array([float(reference("sin_like", x)) for x in u])
    sx = length * sin_like
    j3_excess = sx**3 / (12.0 * kx2**2)
    beta = np.sqrt(1.0 - (float(species.mass_eV) / energy) ** 2)
    khk = k2 + 2.0 * hx * k1
    # T455 = -hx^3 khk (3 j3 - ...) / (6 beta^3) - ...: remove Cheetah's excess.
    tensor[..., 4, 5, 5] += hx**3 * khk / (2.0 * beta**3) * j3_excess
    return tensor


# --- 1. Agreement with Cheetah -----------------------------------------------------------------


@pytest.mark.parametrize("species", [ELECTRON, PROTON], ids=["electron", "proton"])
def test_cheetah_elements_agree_outside_its_deviations(rng, species):
    """Drift, quadrupole, sector dipole, combined-function dipole, sextupole, as Cheetah builds
    them (k2 = 0 in bends, k1 = hx = 0 in sextupoles), against raw Cheetah: MAD8's map on
    every entry Cheetah's deviations leave alone, reproduce_cheetah=True on all of them."""
    configurations = {
        "drift": (dict(curved=False, sextupole=False, quadrupole=False), []),
        "quadrupole": (dict(curved=False, sextupole=False), []),
        "dipole": (dict(sextupole=False, quadrupole=False), []),
        "combined dipole": (dict(sextupole=False), J2_ENTRIES),
        "sextupole": (dict(curved=False, quadrupole=False), JD_SEXTUPOLE_ENTRIES),
    }
    for options, deviations in configurations.values():
        length, k1, k2, hx, energy = draws(rng, BATCH, **options)
        if species is PROTON:
            energy = proton_energy(energy)
        expected = cheetah_tensor(length, k1, k2, hx, energy, species)
        actual = ours(length, k1, k2, hx, energy, species)
        assert_tensor_close(actual, expected, skip=deviations)
        for i, j, k in deviations:  # they are real differences, not rounding
            assert np.all(
                np.abs(actual[:, i, j, k] - expected[:, i, j, k])
                > 1e-6 * np.abs(expected[:, i, j, k])
            )
        like_cheetah = ours(length, k1, k2, hx, energy, species, reproduce_cheetah=True)
        assert_tensor_close(like_cheetah, expected)


@pytest.mark.parametrize("species", [ELECTRON, PROTON], ids=["electron", "proton"])
@pytest.mark.parametrize("curved", [False, True], ids=["straight", "curved"])
def test_generic_magnets_agree_with_cheetah(rng, monkeypatch, species, curved):
    """k1 of both signs, k2 and hx all nonzero, every entry to 1e-10 (scale-aware): raw
    Cheetah against reproduce_cheetah=True, and Cheetah with MAD8's integrals patched in
    against the default map."""
    length, k1, k2, hx, energy = draws(rng, BATCH, curved=curved)
    if species is PROTON:
        energy = proton_energy(energy)
    raw = cheetah_tensor(length, k1, k2, hx, energy, species)
    assert_tensor_close(ours(length, k1, k2, hx, energy, species, reproduce_cheetah=True), raw)
    expected = cheetah_with_mad_integrals(monkeypatch, length, k1, k2, hx, energy, species)
    assert_tensor_close(ours(length, k1, k2, hx, energy, species), expected)


def test_sextupole_matches_the_elementary_integration():
    """x'' = -k2 (x^2 - y^2) / 2, y'' = k2 x y from y = py s: x(L) = k2 py^2 L^4 / 24."""
    length, k2, energy = 0.5, 2.0, 1e9
    tensor = ours(length, 0.0, k2, 0.0, energy, ELECTRON)
    assert tensor[0, 3, 3] == pytest.approx(k2 * length**4 / 24, rel=1e-14)
    # y'' = k2 x y with x = px s, y = py s: y(L) = k2 px py L^4 / 12 (the j < k entry).
    assert tensor[2, 1, 3] == pytest.approx(k2 * length**4 / 12, rel=1e-14)
    theirs = cheetah_tensor(length, 0.0, k2, 0.0, energy, ELECTRON)
    assert theirs[0, 3, 3] == pytest.approx(8 * k2 * length**4 / 24, rel=1e-14)  # deviation 3


# --- 2. Composition: T(L) must equal T(L/2) o T(L/2) to second order ---------------------------


@jax.jit
def _whole_and_halves(whole, half):
    """Gradient and Hessian at the reference orbit of T(L) and of T(L/2) o T(L/2) (v_6 = 1)."""

    def expand(function):
        def on_six(x):
            return function(jnp.concatenate([x, jnp.ones(1)])[None])[0, :6]

        zero = jnp.zeros(6)
        return jax.jacfwd(on_six)(zero), jax.hessian(on_six)(zero)

    return (
        jax.vmap(lambda t: expand(lambda v: _second_order.apply(t, v)))(whole),
        jax.vmap(lambda t: expand(lambda v: _second_order.apply(t, _second_order.apply(t, v))))(
            half
        ),
    )


def test_half_maps_compose_to_the_whole():
    """Generic, straight, k2 = 0, pure sextupole, next to k1 = -hx^2, strong defocusing."""
    k1, k2, hx = np.array(
        [(1.3, 20.0, 0.3), (-0.8, -15.0, 0.4), (2.0, 0.0, 0.5), (0.0, 2.0, 0.0),
         (-0.04, 3.0, 0.2), (1.1, -30.0, 0.0), (-4.0, 7.0, 0.1)]
    ).T  # fmt: skip
    length, energy = np.array([0.9, 0.3, 1.2, 0.5, 0.7, 1.5, 1.4]), 3e7
    whole = ours(length, k1, k2, hx, energy, ELECTRON)
    half = ours(length / 2, k1, k2, hx, energy, ELECTRON)
    (linear, quadratic), (linear_2, quadratic_2) = _whole_and_halves(whole, half)
    np.testing.assert_allclose(linear_2, linear, rtol=1e-14, atol=1e-14)
    scale = np.abs(quadratic).max(axis=(-2, -1), keepdims=True)
    assert np.all(np.abs(quadratic_2 - quadratic) <= 1e-13 * np.maximum(scale, 1e-300))


# --- 3. Gradients, including where the closed forms are singular -------------------------------

_GRADIENT_POINTS = np.array(
    [
        (0.7, 1.3, 20.0, 0.3),  # generic
        (0.5, 0.0, 2.0, 0.0),  # k1 = 0, hx = 0: every argument at 0
        (0.5, 0.0, 0.0, 0.0),  # a drift
        (0.6, -0.09, 5.0, 0.3),  # k1 = -hx^2: kx2 = 0
        (0.6, -0.018, 5.0, 0.3),  # k1 = -hx^2 / 5: kx2 = 4 ky2
        (0.8, 1e-9, -3.0, 1e-5),  # next to the singular point
        (1.5, -4.0, 7.0, 0.1),  # strong defocusing
    ]
)


def test_gradients_match_finite_differences():
    """d(sum W T)/d(length, k1, k2, hx) against central differences, which straddle the
    special points: the map is smooth there, so both sides must agree."""
    energy, step = 2e8, 1e-6

    def weighted(points):
        return np.einsum("ijk,bijk->b", np.asarray(_WEIGHTS), ours(*points.T, energy, ELECTRON))

    _, gradients = ours(*_GRADIENT_POINTS.T, energy, ELECTRON, gradients=True)
    assert np.all(np.isfinite(gradients))
    finite = np.empty_like(gradients)
    for i in range(4):
        shift = np.zeros(4)
        shift[i] = step
        plus, minus = weighted(_GRADIENT_POINTS + shift), weighted(_GRADIENT_POINTS - shift)
        finite[:, i] = (plus - minus) / (2 * step)
    scale = np.abs(gradients).max(axis=1, keepdims=True)
    np.testing.assert_allclose(gradients, finite, rtol=1e-7, atol=0)
    assert np.all(np.abs(gradients - finite) <= 1e-7 * scale)


# --- 4. The special functions ------------------------------------------------------------------
#
# Each helper below is compiled once, on every point the tests need, and cached.

_PUBLIC = ("cos_like", "sin_like", "one_minus_cos", "one_minus_sin")  # _maps' first-order set
# The public first-order set (series below |u| = 1), then the second-order family (series
# below |u| = 2): its first four from `family` itself, the rest through their public wrappers.
_STACKED_NAMES = _PUBLIC + _NAMES
_STACKED_SWITCH = np.array((1.0,) * len(_PUBLIC) + (2.0,) * len(_NAMES))


def _stacked(u):
    return jnp.stack(
        [getattr(_special, name)(u) for name in _PUBLIC]
        + list(_special.family(u, _PUBLIC))
        + [getattr(_special, name)(u) for name in _NAMES[len(_PUBLIC) :]]
    )


_POINTS = np.array(
    [0.0, 1e-300, 1e-12, -1e-12, 1e-6, -1e-6, 0.3, -0.3, 1.5, -1.5, 7.5, -7.5, 30.0, -30.0]
    + [r * (1 + e) for r in (1.0, -1.0, 2.0, -2.0) for e in (-1e-12, 0.0, 1e-12)]  # switches
)
_EDGES = _STACKED_SWITCH[:, None] * np.array([1.0, -1.0])
_EDGE_POINTS = np.concatenate([_EDGES * (1 - 1e-13), _EDGES * (1 + 1e-13), _EDGES], axis=-1)
_EQUAL_PAIRS = np.array([0.0, 0.5, -3.0, 20.0])


_PAIRS = np.array(
    [
        (0.0, 0.0),
        (1e-12, 0.0),
        (0.3, 0.3),
        (0.3, 0.3 + 1e-9),
        (-5.0, -5.0 + 1e-7),
        (2.0, -2.0),  # opposite signs
        (9.0, 1.0),
        (9.0, 3.0 * (1 + 1e-12)),  # |a - b| = 2 sqrt(max(1, |a|, |b|)) = 6: the switch
        (9.0, 3.0 * (1 - 1e-12)),
        (-30.0, -26.0),
        (25.0, 30.0),
        (-50.0, 40.0),
    ]
)
_SWITCH_PAIRS = np.array([(9.0, 3.0 * (1 - 1e-13)), (9.0, 3.0 * (1 + 1e-13)), (9.0, 3.0)])


@jax.jit
def _special_values_and_slopes(u, a, b):
    """Every one-argument function at u and every divided difference at (a, b), with slopes."""

    def divided(a, b):
        return jnp.stack([getattr(_special, f"{name}_dd")(a, b) for name in _PUBLIC])

    values, slopes = jax.jvp(_stacked, (u,), (jnp.ones_like(u),))
    ones, zeros = jnp.ones_like(a), jnp.zeros_like(a)
    dd, d_a = jax.jvp(divided, (a, b), (ones, zeros))
    d_b = jax.jvp(divided, (a, b), (zeros, ones))[1]
    return (values, slopes), (dd, d_a, d_b)


@functools.cache
def _special_results():
    """One evaluation at all the points of this section, split back into its groups:
    one-argument (values, slopes) at _POINTS, at _EDGE_POINTS; divided differences
    (values, d/da, d/db) at _PAIRS, _SWITCH_PAIRS and a = b = _EQUAL_PAIRS."""
    u_groups = (_POINTS, _EDGE_POINTS.ravel())
    ab_groups = (_PAIRS, _SWITCH_PAIRS, np.stack([_EQUAL_PAIRS, _EQUAL_PAIRS], axis=-1))
    a, b = np.concatenate(ab_groups).T
    one, two = _special_values_and_slopes(
        jnp.asarray(np.concatenate(u_groups)), jnp.asarray(a), jnp.asarray(b)
    )

    def split(results, groups):
        splits = np.cumsum([len(g) for g in groups])[:-1]
        parts = (np.split(np.asarray(r), splits, axis=1) for r in results)
        return list(zip(*parts, strict=True))

    return split(one, u_groups), split(two, ab_groups)


def test_special_functions_match_50_digit_series():
    values, _ = _special_results()[0][0]
    for name, row in zip(_STACKED_NAMES, values, strict=True):
        expected = np.array([float(reference(name, u)) for u in _POINTS])
        np.testing.assert_allclose(row, expected, rtol=2e-14, err_msg=name)


def test_special_functions_are_smooth_across_their_switches():
    """Value and slope on both sides of |u| = 1 or 2 (series / closed form), and exact
    derivatives at u = 0, where the closed forms are 0 / 0.

    The value jump is what is left of f(above) - f(below) after the slope's share.
    """
    n = len(_STACKED_NAMES)
    values, slopes = (x.reshape(n, n, 6) for x in _special_results()[0][1])
    rows = np.arange(n)
    values, slopes = values[rows, rows], slopes[rows, rows]  # function i at its own edges
    below, above, at = values[:, :2], values[:, 2:4], values[:, 4:]
    jump = above - below - slopes[:, 4:] * (_EDGE_POINTS[:, 2:4] - _EDGE_POINTS[:, :2])
    assert np.all(np.abs(jump) <= 1e-14 * np.abs(at))
    assert np.all(np.abs(slopes[:, 2:4] - slopes[:, :2]) <= 1e-12 * np.abs(slopes[:, 4:]))

    values, slopes = (x[:, 0] for x in _special_results()[0][0])  # at u = 0
    for name, value, slope in zip(_STACKED_NAMES, values, slopes, strict=True):
        c0, c1 = (float(c) for c in _COEFFICIENTS[name][:2])
        assert (value, slope) == pytest.approx((c0, c1), rel=1e-14), name


def test_divided_differences_match_50_digit_series():
    values, _, _ = _special_results()[1][0]
    for name, row in zip(_PUBLIC, values, strict=True):
        expected = np.array([float(reference_dd(name, a, b)) for a, b in _PAIRS])
        np.testing.assert_allclose(row, expected, rtol=2e-14, err_msg=name)


def test_divided_differences_are_smooth():
    """Across the quadrature / quotient switch, and at a = b, where
    d/da (f(a) - f(b)) / (a - b) = d/db (...) = f''(a) / 2."""
    values, d_a, d_b = _special_results()[1][1]
    b = _SWITCH_PAIRS[:, 1]
    jump = values[:, 1] - values[:, 0] - d_b[:, 2] * (b[1] - b[0])
    assert np.all(np.abs(jump) <= 1e-13 * np.abs(values[:, 2]))
    np.testing.assert_allclose(d_a[:, 1], d_a[:, 0], rtol=1e-10)
    np.testing.assert_allclose(d_b[:, 1], d_b[:, 0], rtol=1e-10)

    _, d_a, d_b = _special_results()[1][2]
    curvatures = np.array(
        [[float(reference_second_derivative(name, u)) for u in _EQUAL_PAIRS] for name in _PUBLIC]
    )
    assert np.all(np.isfinite(d_a)) and np.all(np.isfinite(d_b))
    np.testing.assert_allclose(d_a, curvatures / 2, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(d_b, curvatures / 2, rtol=1e-9, atol=1e-15)


# --- 5. apply, sandwich, lift and the structural zeros -------------------------------------------


def test_apply_is_the_quadratic_form(rng):
    tensor = jnp.asarray(rng.normal(size=(3, 7, 7, 7)))
    particles = rng.normal(size=(3, 5, 7))
    particles[..., 6] = 1.0
    expected = np.einsum("bijk,bnj,bnk->bni", tensor, particles, particles)
    np.testing.assert_allclose(_second_order.apply(tensor, jnp.asarray(particles)), expected)


def test_sandwich_with_identities_and_lift(rng):
    tensor = jnp.asarray(rng.normal(size=(2, 7, 7, 7)))
    identity = jnp.broadcast_to(jnp.eye(7), (2, 7, 7))
    np.testing.assert_array_equal(_second_order.sandwich(identity, tensor, identity), tensor)
    matrix = rng.normal(size=(7, 7))
    particles = rng.normal(size=(4, 7))
    particles[:, 6] = 1.0
    lifted = _second_order.lift(jnp.asarray(matrix))
    moved = _second_order.apply(lifted, jnp.asarray(particles))
    np.testing.assert_allclose(moved, particles @ matrix.T)


@pytest.mark.parametrize(
    "k1, k2, hx",
    [(0.0, 0.0, 0.0), (1.7, 0.0, 0.0), (0.0, -40.0, 0.0), (-1.1, 0.0, 0.25)],
    ids=["drift", "quadrupole", "sextupole", "dipole"],
)
def test_python_zeros_equal_array_zeros_and_shapes_broadcast(k1, k2, hx):
    """Python floats drop terms while tracing; the numbers must not change. A batch of
    lengths broadcasts against scalar settings, and a scalar energy against both."""
    length = np.array([0.2, 0.7, 1.3])
    energy, mass = 1e9, float(ELECTRON.mass_eV)

    @jax.jit
    def with_floats(length):
        first_order = _affine.to_array(_maps.body(length, k1, hx, energy, mass))
        return _second_order.element_tensor(length, k1, k2, hx, energy, mass, first_order)

    as_floats = np.asarray(with_floats(jnp.asarray(length)))
    assert as_floats.shape == (3, 7, 7, 7)
    assert_tensor_close(as_floats, ours(length, k1, k2, hx, energy, ELECTRON), rtol=1e-14)
