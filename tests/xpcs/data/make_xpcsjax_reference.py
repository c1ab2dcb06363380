"""Make ``xpcsjax_reference.npz``: two-component (heterodyne) correlations computed by `xpcsjax`.

Our CI (Python 3.11) cannot install xpcsjax (Python >= 3.12), so ``test_heterodyne.py``
compares ``diffdesign.xpcs.heterodyne`` with these stored arrays. Make a venv and run::

    python3.12 -m venv .venv-xpcsjax && .venv-xpcsjax/bin/pip install xpcsjax==0.1.8
    .venv-xpcsjax/bin/python tests/xpcs/data/make_xpcsjax_reference.py

The matrices come from ``xpcsjax.core.heterodyne_jax_backend.compute_c2_heterodyne(params, t,
q, dt, phi, contrast, offset)`` (the two-component kernel its NLSQ fits), one call per angle,
float64; the scattered points from ``xpcsjax.core.heterodyne_physics_kernel.
compute_c2_unified(..., eval_strategy="pointwise")``.

Keys (``np.load(path)``; strings are plain unicode arrays, no pickle):

- ``xpcsjax_version``; ``param_names`` (xpcsjax's order of the 14); ``cases``.
- For each case ``c``: ``c/params`` (14), ``c/t`` (s), ``c/dt``, ``c/phi`` (degrees), ``c/q``
  (1/Angstrom), ``c/contrast``, ``c/offset`` (per angle), ``c/c2`` (n_phi, n_t, n_t);
  ``c/angle``, ``c/i``, ``c/j`` (scattered index triples) and ``c/c2_points`` (their values).
"""

from __future__ import annotations

from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import xpcsjax  # noqa: E402
from xpcsjax.core.heterodyne_jax_backend import compute_c2_heterodyne  # noqa: E402
from xpcsjax.core.heterodyne_physics_kernel import compute_c2_unified  # noqa: E402

NAMES = (
    "D0_ref", "alpha_ref", "D_offset_ref", "D0_sample", "alpha_sample", "D_offset_sample",
    "v0", "v_beta", "v_offset", "f0", "f1", "f2", "f3", "phi0_het",
)  # fmt: skip

CASES = {
    # A steady mixture: constant fraction, diffusive reference, drifting sample, 3 angles.
    "steady": dict(
        params=dict(D0_ref=2e3, alpha_ref=0.0, D_offset_ref=0.0, D0_sample=8e3,
                    alpha_sample=0.0, D_offset_sample=0.0, v0=400.0, v_beta=1.0,
                    v_offset=0.0, f0=0.4, f1=0.0, f2=0.0, f3=0.0, phi0_het=0.0),
        n_t=60, dt=0.05, t0=0.05, phi=(0.0, 45.0, 90.0), q=0.01,
        contrast=(0.3, 0.28, 0.32), offset=(1.0, 1.01, 0.99),
    ),
    # Everything moving: anomalous exponents, offsets, a fraction that grows in time.
    "evolving": dict(
        params=dict(D0_ref=1.5e3, alpha_ref=-0.3, D_offset_ref=50.0, D0_sample=6e3,
                    alpha_sample=0.4, D_offset_sample=-20.0, v0=250.0, v_beta=0.6,
                    v_offset=-15.0, f0=0.2, f1=0.35, f2=0.5, f3=0.1, phi0_het=7.0),
        n_t=80, dt=0.04, t0=0.04, phi=(-30.0, 10.0, 83.0, 150.0), q=0.012,
        contrast=(0.25, 0.3, 0.27, 0.33), offset=(1.0, 1.02, 0.98, 1.0),
    ),
    # The guards: a grid from t = 0 with negative exponents (t^a := 0 there), a fraction
    # pushed past 1 by its clip, a sample rate floored at 0, a reference decay clipped at 700.
    "guards": dict(
        params=dict(D0_ref=9e5, alpha_ref=-0.8, D_offset_ref=0.0, D0_sample=3e3,
                    alpha_sample=-1.2, D_offset_sample=-4e3, v0=900.0, v_beta=-0.4,
                    v_offset=30.0, f0=0.6, f1=0.8, f2=-0.2, f3=0.55, phi0_het=-9.0),
        n_t=50, dt=0.1, t0=0.0, phi=(0.0, 60.0), q=0.02,
        contrast=(0.2, 0.22), offset=(1.0, 1.0),
    ),
}  # fmt: skip


def main() -> None:
    rng = np.random.default_rng(20261207)
    out: dict[str, np.ndarray] = {
        "xpcsjax_version": np.array(xpcsjax.__version__),
        "param_names": np.array(NAMES),
        "cases": np.array(list(CASES)),
    }
    for name, case in CASES.items():
        params = jnp.asarray([case["params"][n] for n in NAMES], dtype=jnp.float64)
        t = case["t0"] + case["dt"] * np.arange(case["n_t"], dtype=np.float64)
        phi = np.asarray(case["phi"], dtype=np.float64)
        contrast = np.asarray(case["contrast"], dtype=np.float64)
        offset = np.asarray(case["offset"], dtype=np.float64)
        c2 = np.stack(
            [
                np.asarray(
                    compute_c2_heterodyne(params, jnp.asarray(t), case["q"], case["dt"],
                                          float(p), float(c), float(o))
                )
                for p, c, o in zip(phi, contrast, offset, strict=True)
            ]
        )  # fmt: skip
        n_points = 500
        angle = rng.integers(0, phi.size, n_points).astype(np.int32)
        i = rng.integers(0, t.size, n_points).astype(np.int32)
        j = rng.integers(0, t.size, n_points).astype(np.int32)
        points = compute_c2_unified(
            params, case["q"], case["dt"], eval_strategy="pointwise", t=jnp.asarray(t),
            phi_unique=jnp.asarray(phi), phi_idx=jnp.asarray(angle), t1_idx=jnp.asarray(i),
            t2_idx=jnp.asarray(j), contrast_arr=jnp.asarray(contrast),
            offset_arr=jnp.asarray(offset),
        )  # fmt: skip
        assert np.all(np.isfinite(c2)) and c2.dtype == np.float64
        out |= {
            f"{name}/params": np.asarray(params), f"{name}/t": t,
            f"{name}/dt": np.array(case["dt"]), f"{name}/phi": phi,
            f"{name}/q": np.array(case["q"]), f"{name}/contrast": contrast,
            f"{name}/offset": offset, f"{name}/c2": c2, f"{name}/angle": angle,
            f"{name}/i": i, f"{name}/j": j, f"{name}/c2_points": np.asarray(points),
        }  # fmt: skip
    path = Path(__file__).resolve().parent / "xpcsjax_reference.npz"
    np.savez_compressed(path, **out)
    print(f"wrote {path} (xpcsjax {xpcsjax.__version__})")


if __name__ == "__main__":
    main()
