"""Train the learned ARES screen model (a flow surrogate of the camera readout) and save it

Draws true beams and resolutions, runs the NumPy camera black box
(diffdesign.beamline.ares.camera) once per row, fits a conditional spline flow to the
measured moments in well-scaled residual coordinates, validates it on held-out beams (each
read REPEATS times by the black box) and writes the artefact folder: weights.npz and
card.json (simulator and version, flow, training settings, seed, data size, validation
metrics, the command that regenerates it, the verdict). Default --out is the repository's
surrogates/ares_screen/; --smoke trains on little data and writes only into --out
(results/joint_screen_surrogate_smoke unless given), never into surrogates/.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from pathlib import Path

#: The committed artefact's folder (the default --out of a full run).
ARTEFACT = Path(__file__).resolve().parents[2] / "surrogates" / "ares_screen"
DEFAULT_OUT = str(ARTEFACT)
SMOKE_OUT = "results/joint_screen_surrogate_smoke"
FULL = {"n_rows": 200_000, "steps": 6000, "n_validation": 400, "repeats": 64}
SMOKE = {"n_rows": 3000, "steps": 200, "n_validation": 40, "repeats": 16}
#: Bins of sigma / r in which the validation metrics are reported.
RATIO_EDGES = (0.0, 0.5, 1.0, 2.0, 5.0, 20.0, float("inf"))
N_BASE = 256


def flow():
    """The flow architecture of the screen surrogate."""
    from diffdesign.surrogates.flows import ConditionalFlow

    return ConditionalFlow(y_dim=4, n_layers=4, n_bins=8, hidden=(64, 64), bound=5.0)


@dataclasses.dataclass(frozen=True)
class FlowSampler:
    """A hashable sampler for :class:`SurrogateScreen`: ``(weights, z, psi, x) -> y``
    through :func:`diffdesign.surrogates.surrogate.sample` of a flow."""

    flow: object

    def __call__(self, weights, z, psi, x):
        from diffdesign.surrogates import surrogate

        return surrogate.sample(self.flow, weights, z, psi, x)


def base_samples(seed: int, n_base: int = N_BASE):
    """``(n_base, 4)`` float32 standard-normal base samples (common random numbers)."""
    import jax
    import jax.numpy as jnp

    return jax.random.normal(jax.random.key(seed), (n_base, 4), jnp.float32)


def camera_simulator():
    """The camera readout as a :class:`~diffdesign.surrogates.PythonSimulator`
    (psi = [r], x = [mu_x, sigma_x, mu_y, sigma_y], y = measured moments; m)."""
    from diffdesign.beamline.ares import camera
    from diffdesign.surrogates import PythonSimulator

    return PythonSimulator(
        camera.simulate, camera.sample_inputs, psi_dim=1, x_dim=4, y_dim=4,
        label=f"{camera.NAME} v{camera.VERSION}",
    )  # fmt: skip


def _beam(x):
    return {"mu_x": x[:, 0], "sigma_x": x[:, 1], "mu_y": x[:, 2], "sigma_y": x[:, 3]}


def train_screen_surrogate(
    simulator,
    *,
    n_rows: int,
    seed: int,
    steps: int = FULL["steps"],
    batch_size: int = 512,
    learning_rate: float = 3e-3,
    n_validation: int = FULL["n_validation"],
    repeats: int = FULL["repeats"],
    n_base: int = N_BASE,
):
    """Fit a :class:`SurrogateScreen` to black-box shots and validate it on held-out beams.

    Args:
        simulator: a black box with psi = [r] (m), x = [mu_x, sigma_x, mu_y, sigma_y] (m)
            and y = the measured moments (m), e.g. :func:`camera_simulator`.
        n_rows: training shots (one black-box call each); resolutions log-uniform in
            ``RESOLUTION_RANGE``, beams from ``simulator.sample_inputs``.
        seed: seed of every draw (data, weights, minibatches, base samples).
        steps, batch_size, learning_rate: Adam training of the flow.
        n_validation: held-out beams; each read ``repeats`` times by the black box.
        n_base: base samples ``z`` of the screen (per reading).

    Returns:
        ``(screen, metrics)``: the trained screen and validation metrics (JSON values):
        per observable and per bin of sigma / r (beams whose 3-sigma ellipse is inside the
        field of view), the mean and std over beams of (surrogate mean - black-box mean) /
        b and the median ratio of surrogate std to black-box std (b = sqrt(sigma^2 + r^2));
        the fraction of held-out black-box shots inside the surrogate's central 68 % and
        95 % intervals; training time and final loss.

    Raises:
        ValueError: for sizes < 1.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from diffdesign.beamline.ares import camera
    from diffdesign.beamline.ares.learned_screen import (
        SurrogateScreen,
        residual_coordinates,
        screen_context,
    )
    from diffdesign.surrogates import run_simulation, sample_inputs_checked, surrogate
    from diffdesign.surrogates.blackbox import derived_seed

    for name, value in {"n_rows": n_rows, "steps": steps, "n_validation": n_validation,
                        "repeats": repeats, "n_base": n_base}.items():  # fmt: skip
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1; got {value}")
    model = flow()
    started = time.perf_counter()
    r = camera.sample_resolutions(n_rows, derived_seed(seed, 0))
    x = sample_inputs_checked(simulator, n_rows, derived_seed(seed, 1))
    y = run_simulation(simulator, r, x, derived_seed(seed, 2))
    simulated = time.perf_counter() - started
    beam = _beam(x)
    psi, context = screen_context(beam, r[:, 0])
    targets = residual_coordinates(_beam(y), beam, r[:, 0])
    capacity = surrogate.buffer_capacity(n_rows)
    state = surrogate.init(model, jax.random.key(derived_seed(seed, 3)), 1, context.shape[1])
    started = time.perf_counter()
    state, loss = surrogate.fit(
        model, state, jnp.asarray(surrogate.padded(np.asarray(targets), capacity)),
        jnp.asarray(surrogate.padded(np.hstack([psi, context]), capacity)),
        jnp.asarray(n_rows), jax.random.key(derived_seed(seed, 4)),
        steps=steps, batch_size=batch_size, learning_rate=learning_rate,
    )  # fmt: skip
    loss = np.asarray(loss)
    trained = time.perf_counter() - started
    screen = SurrogateScreen(FlowSampler(model), state, base_samples(derived_seed(seed, 5), n_base))
    metrics = validate(screen, simulator, n_validation, repeats, derived_seed(seed, 6))
    metrics["training"] = {
        "simulation_s": round(simulated, 2),
        "fit_s": round(trained, 2),
        "final_loss": float(loss[-200:].mean()),
        "first_loss": float(loss[:50].mean()),
    }
    return screen, metrics


def validate(screen, simulator, n_validation: int, repeats: int, seed: int) -> dict:
    """Validation metrics of ``screen`` against ``simulator`` (see
    :func:`train_screen_surrogate`)."""
    import jax
    import numpy as np

    from diffdesign.beamline.ares import camera
    from diffdesign.beamline.ares.screens import OBSERVABLES, on_screen
    from diffdesign.surrogates import run_simulation, sample_inputs_checked
    from diffdesign.surrogates.blackbox import derived_seed

    r = camera.sample_resolutions(n_validation, derived_seed(seed, 0))
    x = sample_inputs_checked(simulator, n_validation, derived_seed(seed, 1))
    shots = run_simulation(
        simulator, np.repeat(r, repeats, 0), np.repeat(x, repeats, 0), derived_seed(seed, 2)
    ).reshape(n_validation, repeats, 4)
    beam = _beam(x)
    drawn = jax.jit(lambda s, b, res: s.samples(b, res))(screen, beam, r[:, 0])
    drawn = np.stack([np.asarray(drawn[k]) for k in OBSERVABLES], axis=-1)  # (k, n, 4)
    inside = np.asarray(on_screen(beam, r[:, 0])) > 0.5
    blurred = np.sqrt(x[:, [1, 1, 3, 3]] ** 2 + r**2)
    surrogate_mean, surrogate_std = drawn.mean(0), drawn.std(0, ddof=1)
    box_mean, box_std = shots.mean(1), shots.std(1, ddof=1)
    error = (surrogate_mean - box_mean) / blurred
    ratio_of_sizes = x[:, [1, 1, 3, 3]] / r
    coverage = {}
    for level, (low, high) in {"68": (15.865, 84.135), "95": (2.5, 97.5)}.items():
        lower, upper = np.percentile(drawn, [low, high], axis=0)
        hit = (shots >= lower[:, None, :]) & (shots <= upper[:, None, :])
        coverage[level] = {
            "on_screen": {k: float(hit[inside, :, i].mean()) for i, k in enumerate(OBSERVABLES)},
            "all": {k: float(hit[:, :, i].mean()) for i, k in enumerate(OBSERVABLES)},
        }
    bins = []
    for low, high in itertools.pairwise(RATIO_EDGES):
        upper = high if high < float("inf") else None
        entry = {"sigma_over_r": [low, upper], "n_beams": {}, "mean_error": {},
                 "std_error": {}, "std_ratio": {}}  # fmt: skip
        for i, k in enumerate(OBSERVABLES):
            rows = inside & (ratio_of_sizes[:, i] >= low) & (ratio_of_sizes[:, i] < high)
            entry["n_beams"][k] = int(rows.sum())
            if rows.sum() == 0:
                continue
            spread = box_std[rows, i] > 0
            entry["mean_error"][k] = float(error[rows, i].mean())
            entry["std_error"][k] = float(error[rows, i].std())
            entry["std_ratio"][k] = (
                float(np.median(surrogate_std[rows, i][spread] / box_std[rows, i][spread]))
                if spread.any() else None
            )  # fmt: skip
        bins.append(entry)
    return {
        "units": "errors in b = sqrt(sigma^2 + r^2) of the plane; std_ratio = surrogate / "
        "black box; bins by sigma / r of the plane; beams with their 3-sigma ellipse "
        "inside the field of view",
        "n_beams": n_validation,
        "repeats": repeats,
        "on_screen_fraction": float(inside.mean()),
        "coverage": coverage,
        "bins": bins,
    }


def load_screen_surrogate(name: str | Path = "ares_screen"):
    """The trained :class:`SurrogateScreen` of an artefact folder (by name under the
    repository's ``surrogates/`` or a path); refused if its card does not match this
    camera version and flow."""
    from diffdesign.beamline.ares import camera
    from diffdesign.beamline.ares.learned_screen import CONTEXT_DIM, SurrogateScreen
    from diffdesign.surrogates.artefacts import load_surrogate

    model = flow()
    state, card = load_surrogate(
        name, simulator=camera.NAME, version=camera.VERSION, flow=model, c_dim=1 + CONTEXT_DIM
    )
    z = base_samples(card["base_samples"]["seed"], card["base_samples"]["n"])
    return SurrogateScreen(FlowSampler(model), state, z)


def artefact_card(sizes: dict, seed: int, metrics: dict, elapsed: float, *, smoke: bool) -> dict:
    """The card of a screen-surrogate artefact trained with ``sizes`` (``n_rows``,
    ``steps``) and ``seed``; ``metrics`` from :func:`train_screen_surrogate`."""
    from diffdesign.beamline.ares import camera
    from diffdesign.surrogates.blackbox import derived_seed

    command = "diffdesign joint screen_surrogate" + (f" --seed {seed}" if seed else "")
    for flag, key in (("--rows", "n_rows"), ("--steps", "steps")):
        if sizes[key] != FULL[key]:
            command += f" {flag} {sizes[key]}"
    card = {
        "name": "ares_screen",
        "description": "learned ARES screen model: measured moments given the resolution "
        "and the true beam; residual coordinates asinh((measured - true) / b), b = "
        "sqrt(sigma^2 + r^2); context diffdesign.beamline.ares.learned_screen.screen_context",
        "simulator": {"name": camera.NAME, "version": camera.VERSION},
        "seed": seed,
        "data": {
            "n_rows": sizes["n_rows"],
            "resolution": "log-uniform 2 .. 100 um",
            "beams": "camera.sample_inputs",
        },
        "training": {
            "steps": sizes["steps"],
            "batch_size": 512,
            "learning_rate": 3e-3,
            "optimiser": "Adam, cosine decay to a tenth",
        },
        "base_samples": {"n": N_BASE, "seed": derived_seed(seed, 5)},
        "validation": metrics,
        "wall_time_s": round(elapsed, 1),
        "smoke": smoke,
        "command": command + (" --smoke --out OUT" if smoke else ""),
    }
    return card


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="training shots (default 200000; smoke 3000)")
    parser.add_argument("--steps", type=int, help="Adam steps (default 6000; smoke 200)")


def run(args: argparse.Namespace):
    import json

    from diffdesign.core.verdict import StudySummary
    from diffdesign.surrogates.artefacts import save_surrogate

    sizes = dict(SMOKE if args.smoke else FULL)
    if args.rows is not None:
        sizes["n_rows"] = args.rows
    if args.steps is not None:
        sizes["steps"] = args.steps
    seed = 0 if args.seed is None else args.seed
    out = Path(args.out)
    if args.smoke and out.resolve() == ARTEFACT.resolve():
        out = Path(SMOKE_OUT)
    started = time.perf_counter()
    screen, metrics = train_screen_surrogate(camera_simulator(), seed=seed, **sizes)
    elapsed = time.perf_counter() - started
    card = artefact_card(sizes, seed, metrics, elapsed, smoke=bool(args.smoke))
    verdict = training_verdict(metrics)
    card["verdict"] = verdict.to_json()
    save_surrogate(out, screen.weights, card, screen.sampler.flow)
    if not args.quiet:
        print(json.dumps(metrics["coverage"], indent=1))
    cover = metrics["coverage"]
    figures = {
        "artefact": str(out),
        "rows, steps": f"{sizes['n_rows']}, {sizes['steps']}",
        "time (s)": f"{elapsed:.0f} (simulation {metrics['training']['simulation_s']:.0f}, "
        f"fit {metrics['training']['fit_s']:.0f})",
        "68 % coverage (on screen)": ", ".join(
            f"{k} {v:.2f}" for k, v in cover["68"]["on_screen"].items()
        ),
        "95 % coverage (on screen)": ", ".join(
            f"{k} {v:.2f}" for k, v in cover["95"]["on_screen"].items()
        ),
    }
    return StudySummary(figures, verdict)


def training_verdict(metrics: dict):
    """The checks of a trained screen (``train_screen_surrogate``'s metrics, the card's
    ``validation``): the training loss fell, the central 68 % and 95 % intervals hold about
    that fraction of the held-out black-box shots of beams on the screen (the observable
    furthest off), and the validation figures are finite."""
    import dataclasses

    import numpy as np

    from diffdesign.core.verdict import Verdict, all_finite, coverage, improved

    training = metrics["training"]
    checks = [improved("training loss", training["first_loss"], training["final_loss"],
                       advice="the flow did not learn: lower the learning rate or train "
                       "longer (--steps)")]  # fmt: skip
    shots = metrics["n_beams"] * metrics["repeats"] * metrics["on_screen_fraction"]
    for level in ("68", "95"):
        on_screen = metrics["coverage"][level]["on_screen"]
        nominal = int(level) / 100
        worst = max(on_screen, key=lambda k: abs(on_screen[k] - nominal))
        check = coverage(f"{level} % coverage", on_screen[worst], nominal, round(shots))
        checks.append(dataclasses.replace(check, detail=f"{worst}: {check.detail}"))
    figures = [training["first_loss"], training["final_loss"]]
    figures += [v for b in metrics["bins"] for part in ("mean_error", "std_error")
                for v in b[part].values()]  # fmt: skip
    checks.append(all_finite("finite validation", np.asarray(figures, float)))
    return Verdict(tuple(checks))
