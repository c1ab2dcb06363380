"""The xpcsjax side of ``benchmarks/xpcs_heterodyne_vs_xpcsjax.py`` (runs in xpcsjax's venv).

    .venv-xpcsjax/bin/python benchmarks/peers/xpcsjax_heterodyne.py DATA.npz OUT.json

``DATA.npz`` holds ``c2`` (n_phi, n_t, n_t), ``t`` (s, uniform), ``phi`` (degrees), ``q``
(1/Angstrom), ``dt`` (s), ``sigma`` (the noise std), ``names`` (the 14 parameters in
xpcsjax's order), ``init`` (the start, same order) and ``fixed`` (names held at their start).
The fit is xpcsjax 0.1.8's ``fit_nlsq_multi_phi`` on a ``HeterodyneModel`` built from a config
dict (time axis starting at ``t[0]``, per-angle "individual" contrast/offset, weights
1/sigma^2, its defaults otherwise; box bounds widened to diffdesign's where its defaults are
narrower: D0 and v0 from 1 and 1e-3 (they move in log space there), v_beta [-2, 2], phi0_het
[-90, 90]). It runs twice in this process: the first call (JIT compile included, imports
excluded) and the steady state. Writes the times, xpcsjax's chi^2, message and success flag,
the physics parameters (by name) and the per-angle contrast and offset.
"""

from __future__ import annotations

import json
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np
import xpcsjax
from xpcsjax.core.heterodyne_model_stateful import HeterodyneModel
from xpcsjax.optimization.nlsq.heterodyne_config import NLSQConfig
from xpcsjax.optimization.nlsq.heterodyne_core import fit_nlsq_multi_phi

GROUPS = {
    "reference": ("D0_ref", "alpha_ref", "D_offset_ref"),
    "sample": ("D0_sample", "alpha_sample", "D_offset_sample"),
    "velocity": ("v0", "v_beta", "v_offset"),
    "fraction": ("f0", "f1", "f2", "f3"),
    "angle": ("phi0_het",),
}
WIDER = {
    "D0_ref": (1.0, 1e6), "D0_sample": (1.0, 1e6), "v0": (1e-3, 1e6), "v_beta": (-2.0, 2.0),
    "phi0_het": (-90.0, 90.0),
}  # fmt: skip


def config(z) -> dict:
    start = dict(zip((str(n) for n in z["names"]), z["init"].tolist(), strict=True))
    fixed = {str(n) for n in z["fixed"]}
    parameters = {}
    for group, names in GROUPS.items():
        parameters[group] = {}
        for name in names:
            entry = {"value": start[name], "vary": name not in fixed}
            if name in WIDER:
                entry["min"], entry["max"] = WIDER[name]
            parameters[group][name] = entry
    return {
        "analyzer_parameters": {"dt": float(z["dt"]),
                                "scattering": {"wavevector_q": float(z["q"])}},
        "temporal": {"dt": float(z["dt"]), "time_length": int(z["t"].size),
                     "t_start": float(z["t"][0])},
        "scaling": {"n_angles": int(z["phi"].size), "mode": "individual"},
        "parameters": parameters,
    }  # fmt: skip


def main(data_path: str, out_path: str) -> None:
    with np.load(data_path, allow_pickle=False) as file:
        z = {k: file[k] for k in file.files}
    settings = config(z)
    weights = np.full(z["c2"].shape, 1.0 / float(z["sigma"]) ** 2)
    times = {}
    for call in ("first_call_s", "steady_s"):
        model = HeterodyneModel.from_config(settings)
        start = time.perf_counter()
        result = fit_nlsq_multi_phi(
            model, z["c2"], z["phi"], config=NLSQConfig(per_angle_mode="individual"),
            weights=weights,
        )  # fmt: skip
        times[call] = time.perf_counter() - start
    n_phi = int(z["phi"].size)
    vector = np.asarray(result.parameters, dtype=float)  # [contrast | offset | 14 physics]
    names = [str(n) for n in z["names"]]
    report = {
        "xpcsjax": xpcsjax.__version__,
        **times,
        "success": bool(result.success),
        "message": str(result.message),
        "chi2_xpcsjax": float(result.chi_squared),
        "parameters": dict(zip(names, vector[2 * n_phi :].tolist(), strict=True)),
        "contrast": vector[:n_phi].tolist(),
        "offset": vector[n_phi : 2 * n_phi].tolist(),
        "config": settings,
    }
    with open(out_path, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:3])
