"""Four of the project's long loops, small, each with a checkpoint and a final result file:
the targets of ``test_kill_campaign.py``, which SIGKILLs them at random points and proves
that rerunning the same command gives the uninterrupted run's result, bit for bit.

    python tests/kill_targets.py LOOP OUT_DIR        LOOP: fit | ensemble | bo | lgso

Each loop pauses ``PAUSE`` s after every checkpointed step (as a slow measurement or a long
step would take), so that kills land anywhere: inside a step, inside a checkpoint write,
between the two. The result is written atomically as ``OUT_DIR/result.json`` at the end.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

PAUSE = 0.15


def _fit(out: Path) -> dict:
    from diffdesign import design

    class Bowl(design.Problem):
        """A noisy bowl: every step draws from its own key, so a resume must reuse them."""

        @property
        def spec(self):
            return {"x": design.Param(jnp.zeros(3), -2.0, 2.0, step=0.05, label="x", unit="m")}

        def loss(self, params, key):
            noise = 0.1 * jax.random.normal(key, (3,))
            return jnp.sum((params["x"] - jnp.array([0.5, -1.0, 0.3]) - noise) ** 2), {}

    result = design.run(
        Bowl(), steps=30, key=jax.random.key(3), chunk=1, checkpoint=out / "fit.npz",
        callback=lambda *_: time.sleep(PAUSE), progress=False,
    )  # fmt: skip
    return {"x": np.asarray(result.params["x"]).tolist(),
            "losses": [r["loss"] for r in result.history]}  # fmt: skip


def _ensemble(out: Path) -> dict:
    import optax

    from diffdesign.inference.ensembles import train_ensemble

    target = jnp.array([1.0, -2.0, 0.5])

    def loss(params, batch):
        return jnp.sum((params["w"] - target - 0.1 * batch) ** 2)

    def batch(key):
        jax.debug.callback(lambda: time.sleep(PAUSE / 5))  # every step, when it runs
        return jax.random.normal(key, (3,))

    starts = {"w": jnp.stack([jnp.zeros(3), jnp.ones(3)])}
    run = train_ensemble(loss, starts, optax.adam(0.05), batch, 150, jax.random.key(1),
                         chunk=5, checkpoint=out / "ensemble.npz", progress=False)  # fmt: skip
    return {"w": np.asarray(run.params["w"]).tolist(),
            "history": np.asarray(run.history).tolist()}  # fmt: skip


def _bo(out: Path) -> dict:
    from diffdesign.design import BayesianOptimisation

    lower, upper = np.array([-2.0, -1.0]), np.array([2.0, 3.0])

    def objective(x):
        time.sleep(PAUSE)
        return float((x[0] - 0.7) ** 2 + 0.5 * (x[1] - 1.2) ** 2)

    search = BayesianOptimisation(lower, upper, n_restarts=2, n_fit_steps=50)
    state = search.run(objective, jax.random.key(4), 10, n_initial=4,
                       checkpoint=out / "bo.npz", progress=None)  # fmt: skip
    return {"X": np.asarray(state.X).tolist(), "y": np.asarray(state.y).tolist()}


def _lgso(out: Path) -> dict:
    from diffdesign.surrogates.blackbox import PythonSimulator
    from diffdesign.surrogates.lgso import LgsoConfig, minimise

    def simulate(psi, x, seed):
        time.sleep(PAUSE)
        rng = np.random.default_rng(seed)
        return rng.normal(np.sum((psi - np.array([1.0, -0.5])) ** 2, axis=1, keepdims=True) + x,
                          0.3)  # fmt: skip

    def inputs(n, seed):
        return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 1))

    simulator = PythonSimulator(simulate, inputs, psi_dim=2, x_dim=1, y_dim=1, label="bowl")
    config = LgsoConfig(epsilon=0.3, n_points=2, samples_per_point=100, gradient_samples=200,
                        train_steps=40, flow_hidden=(8,), flow_bins=4)  # fmt: skip
    result = minimise(simulator, lambda y: y[..., 0], [0.0, 0.0], config, max_calls=16 * 200,
                      seed=2, checkpoint=out / "lgso.npz", progress=False)  # fmt: skip
    return {"psi": np.asarray(result.psi).tolist(), "calls": [r.calls for r in result.records]}


LOOPS = {"fit": _fit, "ensemble": _ensemble, "bo": _bo, "lgso": _lgso}


def main(loop: str, out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    result = LOOPS[loop](folder)
    tmp = folder / "result.json.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, folder / "result.json")


if __name__ == "__main__":
    import diffdesign  # noqa: F401  (float64, as every entry point)

    if os.environ.get("KILL_TARGETS_CACHE"):  # restarts reuse the compiled programs
        jax.config.update("jax_compilation_cache_dir", os.environ["KILL_TARGETS_CACHE"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    main(*sys.argv[1:])
