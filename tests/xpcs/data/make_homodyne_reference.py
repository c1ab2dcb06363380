"""Make ``homodyne_reference.npz``: two-time correlations computed by `homodyne` itself.

Our CI (Python 3.11) cannot install homodyne (Python >= 3.12), so ``test_homodyne_parity.py``
compares ``diffdesign.xpcs.model`` with these stored arrays. Run with the homodyne venv::

    .venv-homodyne/bin/python tests/xpcs/data/make_homodyne_reference.py

The model outputs come from ``homodyne.core.physics_nlsq.compute_g2_scaled(params, t, t, phi,
q, L, contrast, offset, dt)`` (its NLSQ model, the 1-D grid passed as both t1 and t2) and, for
g1, from the function it calls, ``_compute_g1_total_meshgrid`` with the same factors.

Keys (``np.load(path)``; strings are plain unicode arrays, no pickle):

- ``homodyne_version``: the homodyne version that wrote the file; ``cases``: the case names.
- For each case name ``c``:
  ``c/mode`` ("static" or "laminar_flow"), ``c/param_names`` and ``c/params`` (homodyne's
  order: D0, alpha, D_offset[, gamma_dot_t0, beta, gamma_dot_t_offset, phi0]), ``c/t`` (the
  1-D time grid, s), ``c/dt`` (the dt argument given to homodyne), ``c/phi`` (degrees),
  ``c/q`` (1/Angstrom), ``c/L`` (Angstrom), ``c/contrast``, ``c/offset`` (scalars),
  ``c/g2`` (n_phi, n_t, n_t) and, for cases where homodyne's g1 floor is reached, ``c/g1``.
  ``c/n_rate_floored`` (D(t) and gamma_dot(t) values at homodyne's 1e-10 floor on the grid)
  and ``c/n_g1_floored`` (g1 entries at its 1e-10 floor) record what the case exercises.
- The per-angle "constant" scaling estimate, ``homodyne.optimization.nlsq.parameter_utils.
  compute_quantile_per_angle_scaling`` on one noisy 3-angle laminar-flow dataset
  (ANCHORS truth, noise 0.01, seeded):
  ``quantile/t``, ``quantile/phi``, ``quantile/q``, ``quantile/L``, ``quantile/dt``,
  ``quantile/params`` (laminar order), ``quantile/contrast_true``, ``quantile/offset_true``
  (per angle), ``quantile/noise``;
  ``quantile/c2`` (3, n_t, n_t): exactly the matrices whose points homodyne passes, i.e. the
  noisy data after homodyne's loader diagonal correction (``apply_diagonal_correction_batch``,
  diagonal = mean of the adjacent off-diagonals, one neighbour at the ends);
  ``quantile/c2_raw_diagonal`` (3, n_t): the diagonal before that correction;
  ``quantile/contrast``, ``quantile/offset``: homodyne's estimates (per angle, in sorted-phi
  order) from ``quantile/c2``; ``quantile/contrast_uncorrected``,
  ``quantile/offset_uncorrected``: the same from the uncorrected matrices;
  the settings used: ``quantile/contrast_bounds`` (0, 1), ``quantile/offset_bounds``
  (0.5, 1.5) (homodyne's default bounds), ``quantile/lag_floor_quantile`` 0.80,
  ``quantile/lag_ceiling_quantile`` 0.20, ``quantile/value_quantile_low`` 0.10,
  ``quantile/value_quantile_high`` 0.90 (the function's defaults).

How homodyne builds that input (``optimization/nlsq/wrapper.py``, stratification, and
``core.py``, CMA-ES path): every point of the full (n_phi, n_t, n_t) c2 array, both triangles
and the (diagonal-corrected) diagonal, flattened from ``meshgrid(phi, t1, t2, indexing="ij")``
into ``phi_flat, t1_flat, t2_flat, g2_flat``; the order does not matter (percentiles). Per angle
(needing >= 100 points): the lag is ``|t1 - t2|``; offset = 10th percentile of c2 over points
with lag >= the 80th lag percentile, clipped to the offset bounds; contrast = 90th percentile
of c2 over points with lag <= the 20th lag percentile, minus that offset, clipped to the
contrast bounds (numpy's default linear-interpolation percentiles). With n_t = 40 the
"small-lag" set is |i - j| <= 4; after the diagonal correction the contrast estimate of a fast
(shear) decaying angle is far below the truth (stored: 0.10 and 0.17 for true 0.28 and 0.30 at
phi = 0 and 45 deg; 0.29 and 0.30 from the uncorrected matrices): that is homodyne's behaviour.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import homodyne  # noqa: E402
from homodyne.core.diagonal_correction import apply_diagonal_correction_batch  # noqa: E402
from homodyne.core.physics_nlsq import (  # noqa: E402
    _compute_g1_total_meshgrid,
    compute_g2_scaled,
)
from homodyne.core.physics_utils import (  # noqa: E402
    PI,
    calculate_diffusion_coefficient,
    calculate_shear_rate,
)
from homodyne.optimization.nlsq.parameter_utils import (  # noqa: E402
    compute_quantile_per_angle_scaling,
)

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "homodyne_reference.npz"

STATIC = ("D0", "alpha", "D_offset")
LAMINAR = (*STATIC, "gamma_dot_t0", "beta", "gamma_dot_t_offset", "phi0")
RATE_FLOOR = 1e-10

ANCHORS_STATIC = {"D0": 3000.0, "alpha": -0.6, "D_offset": 20.0}
ANCHORS_LAMINAR = {
    **ANCHORS_STATIC,
    "gamma_dot_t0": 0.01,
    "beta": -0.3,
    "gamma_dot_t_offset": 1e-4,
    "phi0": 5.0,
}
PHI4 = (-30.0, 0.0, 45.0, 90.0)


def _grid(n: int, dt: float, start: float = 0.0) -> np.ndarray:
    return start + dt * np.arange(n, dtype=float)


def _case(name, params, n, dt, phi, *, start=0.0, q=0.0054, L=2e6, contrast=0.3, offset=1.0):
    return {
        "name": name,
        "params": params,
        "t": _grid(n, dt, start),
        "dt": dt,
        "phi": np.asarray(phi, dtype=float),
        "q": q,
        "L": L,
        "contrast": contrast,
        "offset": offset,
    }


# All cases share n_t = 32 and n_phi (2 static, 4 laminar) so the test compiles few shapes.
N_T = 32
STATIC_PHI = (0.0, 45.0)  # static g2 does not depend on phi: two angles check that

CASES = [
    # ANCHORS truth, homodyne's grid t_k = k dt from 0.
    _case("static_anchors", ANCHORS_STATIC, N_T, 0.1, STATIC_PHI),
    _case("laminar_anchors", ANCHORS_LAMINAR, N_T, 0.1, PHI4),
    # Positive alpha, another q.
    _case(
        "static_positive_alpha",
        {"D0": 1.0e4, "alpha": 0.5, "D_offset": 100.0},
        N_T,
        0.05,
        STATIC_PHI,
        q=0.01,
        contrast=0.45,
        offset=1.02,
    ),
    # D(t) = 500 t^0.8 - 300 < 0 below t ~ 0.53 s: homodyne floors it at 1e-10.
    _case(
        "static_negative_offset",
        {"D0": 500.0, "alpha": 0.8, "D_offset": -300.0},
        N_T,
        0.1,
        STATIC_PHI,
    ),
    # alpha = -1 exactly (log growth of the integral).
    _case(
        "static_alpha_minus_one",
        {"D0": 3000.0, "alpha": -1.0, "D_offset": 20.0},
        N_T,
        0.1,
        STATIC_PHI,
        q=0.008,
    ),
    # Decay so fast that log g1 passes -700 (clip) and g1 sits at its 1e-10 floor.
    _case(
        "static_fast_decay",
        {"D0": 1.0e6, "alpha": 0.0, "D_offset": 0.0},
        N_T,
        0.1,
        STATIC_PHI,
        q=0.02,
    ),
    # Strong shear: sinc's argument runs through many zeros (g1 floors); phi = 95 is
    # perpendicular to phi0 = 5 (no shear decay there).
    _case(
        "laminar_strong_shear",
        {
            "D0": 3000.0,
            "alpha": -0.6,
            "D_offset": 20.0,
            "gamma_dot_t0": 0.5,
            "beta": -0.2,
            "gamma_dot_t_offset": 0.05,
            "phi0": 5.0,
        },
        N_T,
        0.1,
        (-30.0, 45.0, 90.0, 95.0),
    ),
    # Negative offsets in both rates (positive exponents): both hit the 1e-10 floor early.
    _case(
        "laminar_negative_offsets",
        {
            "D0": 500.0,
            "alpha": 0.8,
            "D_offset": -300.0,
            "gamma_dot_t0": 0.02,
            "beta": 0.5,
            "gamma_dot_t_offset": -0.015,
            "phi0": -10.0,
        },
        N_T,
        0.1,
        PHI4,
        contrast=0.25,
        offset=0.98,
    ),
    # alpha and beta near -1.
    _case(
        "laminar_near_minus_one",
        {
            "D0": 3000.0,
            "alpha": -0.999,
            "D_offset": 20.0,
            "gamma_dot_t0": 0.05,
            "beta": -0.99,
            "gamma_dot_t_offset": 1e-4,
            "phi0": 5.0,
        },
        N_T,
        0.1,
        PHI4,
    ),
    # A grid not starting at 0 (t = 1 + 0.05 k), another q.
    _case(
        "laminar_shifted_grid",
        ANCHORS_LAMINAR,
        N_T,
        0.05,
        PHI4,
        start=1.0,
        q=0.008,
        contrast=0.35,
        offset=1.01,
    ),
    # homodyne's CLI convention t_k = k dt for k >= 1 (t = 0 dropped).
    _case("laminar_anchors_no_t0", ANCHORS_LAMINAR, N_T, 0.1, PHI4, start=0.1),
]


def _params_array(params: dict, mode: str) -> np.ndarray:
    names = STATIC if mode == "static" else LAMINAR
    return np.array([params[n] for n in names], dtype=float)


def _homodyne(case: dict) -> dict:
    mode = "laminar_flow" if "phi0" in case["params"] else "static"
    params = _params_array(case["params"], mode)
    t, phi, q, L, dt = case["t"], case["phi"], case["q"], case["L"], case["dt"]
    params_j, t_j, phi_j = jax.numpy.asarray(params), jax.numpy.asarray(t), jax.numpy.asarray(phi)
    g2 = compute_g2_scaled(params_j, t_j, t_j, phi_j, q, L, case["contrast"], case["offset"], dt)
    # g1 by the function compute_g2_scaled calls, with its own factors.
    t1, t2 = jax.numpy.meshgrid(t_j, t_j, indexing="ij")
    g1 = _compute_g1_total_meshgrid(
        params_j, t1, t2, phi_j, 0.5 * q**2 * dt, 0.5 / PI * q * L * dt, dt
    )
    rates = [calculate_diffusion_coefficient(t_j, *params_j[:3])]
    if mode == "laminar_flow":
        rates.append(calculate_shear_rate(t_j, *params_j[3:6]))
    g1 = np.asarray(g1)
    return {
        "mode": np.array(mode),
        "param_names": np.array(STATIC if mode == "static" else LAMINAR),
        "params": params,
        "t": t,
        "dt": np.array(dt),
        "phi": phi,
        "q": np.array(q),
        "L": np.array(L),
        "contrast": np.array(case["contrast"]),
        "offset": np.array(case["offset"]),
        "g2": np.asarray(g2),
        "g1": g1,
        "n_rate_floored": np.array(sum(int(np.sum(np.asarray(r) == RATE_FLOOR)) for r in rates)),
        "n_g1_floored": np.array(int(np.sum(g1 == RATE_FLOOR))),
    }


def _quantile_dataset(rng: np.random.Generator) -> dict:
    """A noisy 3-angle laminar dataset and homodyne's quantile contrast/offset estimates."""
    t = _grid(40, 0.1)
    phi = np.array([0.0, 45.0, 90.0])
    q, L, dt, noise = 0.0054, 2e6, 0.1, 0.01
    contrast = np.array([0.28, 0.30, 0.33])
    offset = np.array([1.00, 1.01, 0.99])
    params = _params_array(ANCHORS_LAMINAR, "laminar_flow")
    t_j = jax.numpy.asarray(t)
    clean = np.stack(
        [
            np.asarray(
                compute_g2_scaled(
                    jax.numpy.asarray(params),
                    t_j,
                    t_j,
                    jax.numpy.asarray([p]),
                    q,
                    L,
                    float(c),
                    float(o),
                    dt,
                )
            )[0]
            for p, c, o in zip(phi, contrast, offset, strict=True)
        ]
    )
    upper = np.triu(rng.standard_normal(clean.shape))
    raw = clean + noise * (upper + np.swapaxes(np.triu(upper, 1), -1, -2))
    corrected = np.asarray(apply_diagonal_correction_batch(raw))  # as homodyne's loader does

    bounds = {"contrast_bounds": (0.0, 1.0), "offset_bounds": (0.5, 1.5)}
    settings = {
        "lag_floor_quantile": 0.80,
        "lag_ceiling_quantile": 0.20,
        "value_quantile_low": 0.10,
        "value_quantile_high": 0.90,
    }

    def estimate(c2):
        # The flat arrays homodyne's wrapper builds: every point of every full matrix.
        phi_g, t1_g, t2_g = np.meshgrid(phi, t, t, indexing="ij")
        data = SimpleNamespace(
            phi_flat=phi_g.ravel(), t1_flat=t1_g.ravel(), t2_flat=t2_g.ravel(), g2_flat=c2.ravel()
        )
        return compute_quantile_per_angle_scaling(data, **bounds, **settings)

    est_contrast, est_offset = estimate(corrected)
    raw_contrast, raw_offset = estimate(raw)
    out = {
        "t": t,
        "phi": phi,
        "q": np.array(q),
        "L": np.array(L),
        "dt": np.array(dt),
        "params": params,
        "contrast_true": contrast,
        "offset_true": offset,
        "noise": np.array(noise),
        "c2": corrected,
        "c2_raw_diagonal": np.stack([np.diag(m) for m in raw]),
        "contrast": np.asarray(est_contrast),
        "offset": np.asarray(est_offset),
        "contrast_uncorrected": np.asarray(raw_contrast),
        "offset_uncorrected": np.asarray(raw_offset),
    }
    out.update({k: np.asarray(v, dtype=float) for k, v in bounds.items()})
    out.update({k: np.array(v) for k, v in settings.items()})
    return out


def main() -> None:
    arrays: dict[str, np.ndarray] = {"homodyne_version": np.array(homodyne.__version__)}
    names = []
    for case in CASES:
        result = _homodyne(case)
        if result["n_g1_floored"] == 0:
            del result["g1"]  # g2 carries all of it; keeps the file small
        names.append(case["name"])
        arrays.update({f"{case['name']}/{k}": v for k, v in result.items()})
        print(
            f"{case['name']:26s} g2 {result['g2'].shape}  rate floors {int(result['n_rate_floored'])}"
            f"  g1 floors {int(result['n_g1_floored'])}"
        )
    arrays["cases"] = np.array(names)
    quantile = _quantile_dataset(np.random.default_rng(20260501))
    arrays.update({f"quantile/{k}": v for k, v in quantile.items()})
    print("quantile contrast", quantile["contrast"], "offset", quantile["offset"])
    print("uncorrected      ", quantile["contrast_uncorrected"], quantile["offset_uncorrected"])
    np.savez_compressed(OUTPUT, **arrays)
    print(
        f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1024:.0f} kB), homodyne {homodyne.__version__}"
    )


if __name__ == "__main__":
    main()
