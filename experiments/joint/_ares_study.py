"""Joint design of the ARES calibration settings and its screens (issue 20): the study.

Designs (each: n calibration settings and the screens' positions and resolutions):

- ``published``: n random settings in the magnet ranges, today's screen (the published
  practice);
- ``geometry_then_settings`` / ``settings_then_geometry``: the two sequential designs, one
  kind of variable optimised with the other fixed, then the other;
- ``joint``: one fit over both;
- ``joint_equal_cost``: settings and position jointly, the resolution (hence the cost) fixed
  at today's;
- ``two_screens_joint`` / ``one_screen_angles``: with the incoming angles as nuisances too,
  one screen cannot separate offsets from the beam's trajectory; a second screen in the
  drift between AREAMQZM1 and AREAMQZM2 can.

Each design's predicted accuracy (the offsets' RMS Cramer-Rao bound with the incoming beam
profiled out) is compared with the realised errors of simulated calibrations (bounded least
squares on the same whitened residuals, a NUTS check on a few), and every calibrated model
is then used to tune the magnets to a target beam on the true machine.

Every stage is saved atomically under ``<out>/stages``; a rerun into the same folder skips
the finished ones (and refuses a folder made with other settings).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from diffdesign._config import TomlConfig
from diffdesign._progress import say


@dataclasses.dataclass(frozen=True)
class AresJointConfig(TomlConfig):
    """Settings of ``diffdesign joint ares`` (every key optional in the TOML file)."""

    n_settings: int = 15
    seed: int = 0
    #: lambda (1/kEUR) of the designs compared in detail.
    cost_weight: float = 0.01
    #: lambdas of the cost-accuracy fronts.
    cost_weights: tuple[float, ...] = (0.0, 0.003, 0.01, 0.03, 0.1)
    num_starts: int = 8
    steps: int = 400
    #: true offsets uniform in +-offset_range (m); incoming centroid uniform in
    #: +-centroid_range (m) around nominal and sizes within a relative +-size_range.
    offset_range: float = 2e-4
    centroid_range: float = 1e-4
    #: incoming angles uniform in +-angle_range (rad) where they are nuisances.
    angle_range: float = 1e-5
    size_range: float = 0.1
    n_realisations: int = 200
    #: draws of the unknowns over which each design's covariance is averaged (besides the
    #: nominal point): designs that only work at the nominal beam are penalised.
    prior_draws: int = 16
    n_nuts: int = 3
    nuts_warmup: int = 400
    nuts_samples: int = 600
    n_tuning: int = 20
    tuning_starts: int = 32
    tuning_steps: int = 300
    #: target beam of the tuning (m): centred, sigma_x and sigma_y.
    target_sigma_x: float = 1e-4
    target_sigma_y: float = 1e-4
    #: numbers of settings of the three strategies' comparison at ``cost_weight``.
    n_sweep: tuple[int, ...] = (6, 8, 10, 15, 30)
    #: also time one design-loss gradient on its own (its compilation costs about as much as
    #: the multi-start's; the smoke run leaves it out).
    time_gradient: bool = True
    #: the optional second screen's drift and start position (m from its entrance).
    extra_drift: str = "Drift_AREAMQZM1"
    extra_position: float = 0.2
    #: the designs whose calibrations are simulated (names of ``REALISED``); the designs
    #: with the incoming angles free are computed only when one of them is listed.
    realised: tuple[str, ...] = (
        "published", "geometry_then_settings", "settings_then_geometry", "joint",
        "joint_equal_cost", "one_screen_angles", "two_screens_joint",
    )  # fmt: skip

    SMOKE: ClassVar[dict[str, Any]] = {
        "num_starts": 2, "steps": 20, "prior_draws": 2, "cost_weights": (0.01,),
        "n_realisations": 8,
        "n_nuts": 1, "nuts_warmup": 30, "nuts_samples": 30, "n_tuning": 2,
        "tuning_starts": 4, "tuning_steps": 20, "realised": ("published", "joint"),
        "n_sweep": (), "time_gradient": False,
    }  # fmt: skip

    def __post_init__(self):
        if any(n < 6 for n in self.n_sweep):
            raise ValueError(f"n_sweep entries must be >= 6; got {self.n_sweep}")
        if self.n_settings < 6:
            raise ValueError(
                f"n_settings must be >= 6 (the number of offsets); got {self.n_settings}"
            )
        for name in ("num_starts", "steps", "n_realisations", "tuning_starts", "tuning_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("n_nuts", "n_tuning"):
            if getattr(self, name) < 0 or getattr(self, name) > self.n_realisations:
                raise ValueError(
                    f"{name} must lie in [0, n_realisations={self.n_realisations}]; "
                    f"got {getattr(self, name)}"
                )
        unknown = sorted(set(self.realised) - set(REALISED))
        if unknown:
            raise ValueError(f"realised: unknown designs {unknown}; known: {list(REALISED)}")
        if self.cost_weight < 0 or any(w < 0 for w in self.cost_weights):
            raise ValueError("cost weights must be >= 0 (1/kEUR)")
        for name in ("offset_range", "centroid_range", "size_range"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")


#: Nuisances of the designs with the angles free (see ``_likelihood.NUISANCE``).
WITH_ANGLES = ("mu_x", "mu_px", "mu_y", "mu_py", "sigma_x", "sigma_y")


class Stages:
    """Finished pieces of the study as records in ``<out>/stages`` (atomic, resumable)."""

    def __init__(self, out: Path, settings: dict[str, Any]):
        self.folder = out / "stages"
        self.settings = settings

    def get(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, np.ndarray]:
        from diffdesign._checkpoint import load_record, save_record

        path = self.folder / f"{name}.npz"
        if path.exists():
            arrays, _ = load_record(path, self.settings)
            say(f"{name}: done before, read from {path}")
            return arrays
        start = time.perf_counter()
        arrays = {k: np.asarray(v) for k, v in compute().items()}
        arrays["wall_s"] = np.asarray(time.perf_counter() - start)
        save_record(path, arrays, {"settings": self.settings})
        say(f"{name}: {arrays['wall_s']:.1f} s")
        return arrays


def _diagnostics(config: AresJointConfig, two_screens: bool):
    from diffdesign.beamline.ares.diagnostics import Diagnostics, ScreenPlacement, today_screen

    screens = [today_screen()]
    if two_screens:
        screens.append(ScreenPlacement("AREABSCR0", config.extra_drift, config.extra_position,
                                       screens[0].resolution))  # fmt: skip
    return Diagnostics(tuple(screens))


@functools.cache
def _subset_design():
    """The class :class:`SubsetDesign` (defined on first use: importing this module stays
    free of JAX) and the one compiled evaluation of its loss."""
    import equinox as eqx
    import jax.numpy as jnp

    from diffdesign.core import Problem, values

    class SubsetDesign(Problem):
        """A ``CalibrationDesign`` with every design variable in its spec (``full``) and a
        traced flag per variable (``varies``): a variable that does not vary is held at its
        starting value inside the loss (its gradient is zero, so Adam leaves it where it
        is). Designs that vary different subsets (the joint one, the sequential stages, the
        equal-cost one) are then one compiled multi-start; ``CalibrationDesign``'s static
        ``free`` set compiles one per subset."""

        full: Problem
        varies: dict

        @property
        def spec(self):
            return self.full.spec

        @property
        def name(self):
            return self.full.name

        def full_params(self, params):
            start = values(self.full.spec)
            return {k: jnp.where(self.varies[k], params[k], start[k]) for k in start}

        def loss(self, params, key):
            return self.full.loss(self.full_params(params), key)

        def design(self, params):
            return self.full.design(self.full_params(params))

    return SubsetDesign, eqx.filter_jit(lambda problem, params: problem.loss(params, None))


def subset_design(full, free):
    """``full`` (a ``CalibrationDesign`` varying every design variable) with only the
    variables in ``free`` varying (see :func:`_subset_design`)."""
    import jax.numpy as jnp

    cls, _ = _subset_design()
    return cls(full, {k: jnp.asarray(k in free) for k in full.spec})


def _loss(problem, params):
    """``problem.loss(params, None)`` compiled once for every design of one shape."""
    return _subset_design()[1](problem, params)


def _optimise(problem, config: AresJointConfig, key) -> dict[str, np.ndarray]:
    """Multi-start Adam over the variables that vary in the :func:`subset_design`
    ``problem``; the first start is the given design, the others random settings (and
    random positions) where they vary."""
    import jax
    import jax.numpy as jnp

    from diffdesign.beamline.ares.problems import settings_starts
    from diffdesign.core import Adam, CosineDecay, multistart, values

    spec = values(problem.spec)
    k = config.num_starts
    starts = {}
    key_settings, key_positions = jax.random.split(key)
    for name, value in spec.items():
        tiled = jnp.broadcast_to(value, (k, *value.shape))
        varies = bool(problem.varies[name])
        if name == "settings" and varies and k > 1:
            random = settings_starts(key_settings, (k - 1, *value.shape))
            tiled = tiled.at[1:].set(random)
        if name == "positions" and varies and k > 1:
            p = problem.spec["positions"]
            u = jax.random.uniform(key_positions, (k - 1, *value.shape))
            tiled = tiled.at[1:].set(p.lower[None] + (p.upper - p.lower)[None] * (0.1 + 0.8 * u))
        starts[name] = tiled
    optimiser = Adam(schedule=CosineDecay(config.steps, final_fraction=1e-2))
    result = multistart(problem, starts, steps=config.steps, key=key, optimiser=optimiser)
    best = int(result.best)
    params = jax.tree.map(lambda a: a[best], result.path_params)
    settings, diagnostics = problem.design(params)
    _, aux = _loss(problem, params)
    return {
        "settings": settings, "positions": diagnostics.positions,
        "resolutions": diagnostics.resolutions, "rms_bound": aux["rms_bound"],
        "cost": aux["cost"], "loss": result.path_loss[best], "history": result.history[best],
    }  # fmt: skip


def _evaluate(problem, settings) -> dict[str, np.ndarray]:
    """A design's record: ``problem`` (a :func:`subset_design`) has its screens."""
    from diffdesign.core import values

    loss, aux = _loss(problem, {**values(problem.spec), "settings": settings})
    diagnostics = problem.full.diagnostics
    return {"settings": settings, "positions": diagnostics.positions,
            "resolutions": diagnostics.resolutions, "rms_bound": aux["rms_bound"],
            "cost": aux["cost"], "loss": loss}  # fmt: skip


def random_settings(config: AresJointConfig, n: int) -> np.ndarray:
    """n settings uniform in the magnet ranges from the study's seed (the published
    practice; the first rows are the same for every n)."""
    from diffdesign.beamline import ares

    rng = np.random.default_rng(config.seed)
    return rng.uniform(ares.SETTING_LOWER, ares.SETTING_UPPER, (n, 5))


def designs(config: AresJointConfig, stages: Stages) -> dict[str, dict[str, np.ndarray]]:
    """Every design of the study, by name (with ``@lambda`` suffixes on the fronts)."""
    import jax
    import jax.numpy as jnp

    from diffdesign.beamline.ares.experiment_design import CalibrationDesign

    published = random_settings(config, config.n_settings)
    one = _diagnostics(config, False)
    key = jax.random.key(config.seed)
    out = {}

    def problem(settings, diagnostics, free, weight, nuisance=None):
        kwargs = {} if nuisance is None else {"nuisance": nuisance}
        points = prior_points(config, nuisance)
        full = CalibrationDesign(settings, diagnostics, cost_weight=weight, points=points,
                                 **kwargs)  # fmt: skip
        return subset_design(full, free)

    base = problem(published, one, {"settings"}, config.cost_weight)
    out["published"] = stages.get("published", lambda: _evaluate(base, jnp.asarray(published)))
    geometry = {"positions", "resolutions"}

    def strategies(start, weight):
        """The three strategies from the random settings ``start`` at cost weight ``weight``."""

        def joint():
            return _optimise(problem(start, one, {"settings"} | geometry, weight), config, key)

        def geometry_then_settings():
            first = _optimise(problem(start, one, geometry, weight), config, key)
            fixed = one.with_geometry(first["positions"], first["resolutions"])
            return _optimise(problem(start, fixed, {"settings"}, weight), config, key)

        def settings_then_geometry():
            first = _optimise(problem(start, one, {"settings"}, weight), config, key)
            p = problem(np.asarray(first["settings"]), one, geometry, weight)
            return _optimise(p, config, key)

        return {"joint": joint, "geometry_then_settings": geometry_then_settings,
                "settings_then_geometry": settings_then_geometry}  # fmt: skip

    for weight in sorted(set(config.cost_weights) | {config.cost_weight}):
        for name, compute in strategies(published, weight).items():
            out[f"{name}@{weight:g}"] = stages.get(f"{name}@{weight:g}", compute)
    for n in config.n_sweep:
        start = random_settings(config, n)
        for name, compute in strategies(start, config.cost_weight).items():
            same = n == config.n_settings
            tagged = f"{name}@{config.cost_weight:g}"
            out[f"{name}#n{n}"] = out[tagged] if same else stages.get(f"{name}#n{n}", compute)

    def equal_cost():
        p = problem(published, one, {"settings", "positions"}, config.cost_weight)
        return _optimise(p, config, key)

    out["joint_equal_cost"] = stages.get("joint_equal_cost", equal_cost)

    two = _diagnostics(config, True)

    def one_screen_angles():
        p = problem(published, one, {"settings"} | geometry, config.cost_weight, WITH_ANGLES)
        return _optimise(p, config, key)

    def two_screens_joint():
        p = problem(published, two, {"settings"} | geometry, config.cost_weight, WITH_ANGLES)
        return _optimise(p, config, key)

    if {"one_screen_angles", "two_screens_joint"} & set(config.realised):
        out["one_screen_angles"] = stages.get("one_screen_angles", one_screen_angles)
        out["two_screens_joint"] = stages.get("two_screens_joint", two_screens_joint)
    return out


#: The designs whose calibrations are simulated: name -> (two screens, nuisances).
REALISED = {
    "published": (False, None),
    "geometry_then_settings": (False, None),
    "settings_then_geometry": (False, None),
    "joint": (False, None),
    "joint_equal_cost": (False, None),
    "one_screen_angles": (False, WITH_ANGLES),
    "two_screens_joint": (True, WITH_ANGLES),
}


def _draws(config: AresJointConfig, nuisance, n: int, seed: int):
    """n random unknowns: offsets (n, 3, 2) in m, uniform in +-offset_range, and incoming-
    beam nuisances (n, len(nuisance)) in the units of ``beam_from_nuisance``."""
    from diffdesign.beamline.ares._likelihood import CENTROID_SCALE

    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-config.offset_range, config.offset_range, (n, 3, 2))
    x = np.empty((n, len(nuisance)))
    for i, name in enumerate(nuisance):
        if name in CENTROID_SCALE:
            width = config.centroid_range if name in ("mu_x", "mu_y") else config.angle_range
            x[:, i] = rng.uniform(-width, width, n) / CENTROID_SCALE[name]
        else:
            x[:, i] = np.log1p(rng.uniform(-config.size_range, config.size_range, n))
    return offsets, x


def _truths(config: AresJointConfig, nuisance):
    """The true unknowns of the simulated calibrations."""
    return _draws(config, nuisance, config.n_realisations, config.seed + 1)


def prior_points(config: AresJointConfig, nuisance) -> np.ndarray:
    """Draws of the unknowns (stacked x of ``beam_residuals``) over which a design's
    covariance is averaged: the nominal point and ``prior_draws`` draws from the same
    distribution as the truths (another seed)."""
    from diffdesign.beamline.ares._likelihood import DEFAULT_BOUND, NUISANCE

    nuisance = NUISANCE if nuisance is None else nuisance
    offsets, x = _draws(config, nuisance, config.prior_draws, config.seed + 3)
    drawn = np.concatenate([offsets.reshape(-1, 6) / DEFAULT_BOUND, x], axis=1)
    return np.concatenate([np.zeros((1, drawn.shape[1])), drawn])


def realised(config, design, two_screens, nuisance, key) -> dict[str, np.ndarray]:
    """Simulated calibrations of one design: least squares on every realisation, with the
    noise of each measurement known (the scatter of repeated shots)."""
    import jax
    import jax.numpy as jnp

    from diffdesign.beamline.ares._likelihood import DEFAULT_BOUND

    settings, diagnostics, nuisance = _design_inputs(config, design, two_screens, nuisance)
    true_offsets, true_x = _truths(config, nuisance)
    n = settings.shape[0]
    draws = jax.random.normal(key, (config.n_realisations, len(diagnostics.names), n))
    x, std, at_bound, converged, chi2, measured, noise = _calibrate_all(
        settings, diagnostics, nuisance, jnp.asarray(true_offsets), jnp.asarray(true_x), draws
    )
    return {
        "error": DEFAULT_BOUND * x[:, :6] - true_offsets.reshape(-1, 6),
        "std": DEFAULT_BOUND * std[:, :6], "at_bound": at_bound[:, :6], "converged": converged,
        "chi2": chi2, "true_offsets": true_offsets, "true_nuisance": true_x, "fitted": x,
        "measured": measured, "noise": noise,
    }  # fmt: skip


def _calibrate_all(settings, diagnostics, nuisance, true_offsets, true_x, draws):
    import equinox as eqx

    return eqx.filter_jit(_calibrate_batch)(settings, diagnostics, nuisance, true_offsets,
                                            true_x, draws)  # fmt: skip


def _calibrate_batch(settings, diagnostics, nuisance, true_offsets, true_x, draws):
    import jax
    import jax.numpy as jnp

    from diffdesign.beamline.ares import INCOMING_PARAMETERS
    from diffdesign.beamline.ares._likelihood import beam_from_nuisance, beam_residuals
    from diffdesign.inference.least_squares import bounded_least_squares

    nominal = dict(INCOMING_PARAMETERS)
    n = settings.shape[0]
    x0 = jnp.zeros(6 + len(nuisance))
    lower = jnp.concatenate([-jnp.ones(6), -5.0 * jnp.ones(len(nuisance))])
    names = diagnostics.names

    def one(offsets, x, draw):
        beam = beam_from_nuisance(x, nominal, nuisance)
        mean, std = diagnostics.reading(settings, jnp.broadcast_to(offsets, (n, 3, 2)), beam)
        measured = {k: mean[k] + std[k] * draw[i] for i, k in enumerate(names)}
        residuals = beam_residuals(settings, measured, std, diagnostics, nominal, nuisance)
        fit = bounded_least_squares(residuals, x0, lower, -lower)
        stack = lambda d: jnp.stack([d[k] for k in names])
        return fit.x, fit.std, fit.at_bound, fit.converged, fit.chi2, stack(measured), stack(std)

    return jax.vmap(one)(true_offsets, true_x, draws)


def _design_inputs(config, design, two_screens, nuisance):
    import jax.numpy as jnp

    from diffdesign.beamline.ares._likelihood import NUISANCE

    diagnostics = _diagnostics(config, two_screens).with_geometry(
        jnp.asarray(design["positions"]), jnp.asarray(design["resolutions"])
    )
    return jnp.asarray(design["settings"]), diagnostics, NUISANCE if nuisance is None else nuisance


@functools.cache
def _log_likelihood():
    """The calibration's log likelihood of x (``beam_residuals``) as one compiled function
    of the design and the data: NUTS's initialisation evaluates it and its gradient outside
    any compiled loop, which op by op compiled some 300 small programs per design."""
    import equinox as eqx
    import jax.numpy as jnp

    from diffdesign.beamline.ares import INCOMING_PARAMETERS
    from diffdesign.beamline.ares._likelihood import beam_residuals

    @eqx.filter_jit
    def log_likelihood(x, settings, measured, noise, diagnostics, nuisance):
        residuals = beam_residuals(settings, measured, noise, diagnostics,
                                   dict(INCOMING_PARAMETERS), nuisance)  # fmt: skip
        return -0.5 * jnp.sum(residuals(x) ** 2)

    return log_likelihood


def nuts_check(config, design, record, two_screens, nuisance, key) -> dict[str, np.ndarray]:
    """NUTS on the first ``n_nuts`` realisations, on the same whitened residuals: posterior
    std of the offsets (m) and whether the truth lies in each central 95 % interval."""
    import jax
    import jax.numpy as jnp

    from diffdesign.beamline.ares._likelihood import DEFAULT_BOUND

    settings, diagnostics, nuisance = _design_inputs(config, design, two_screens, nuisance)
    names = diagnostics.names
    kernel, chain = _nuts(nuisance, config.nuts_warmup, config.nuts_samples)
    stds, covered, divergences = [], [], []
    for i in range(config.n_nuts):
        measured = {k: jnp.asarray(record["measured"][i, j]) for j, k in enumerate(names)}
        noise = {k: jnp.asarray(record["noise"][i, j]) for j, k in enumerate(names)}
        args = (settings, measured, noise, diagnostics)
        state = kernel.init(jax.random.fold_in(key, i), config.nuts_warmup,
                            {"x": jnp.asarray(record["fitted"][i])}, model_args=args,
                            model_kwargs={})  # fmt: skip
        x, diverging = chain(state, args)
        offsets = DEFAULT_BOUND * np.asarray(x)[:, :6]
        truth = np.asarray(record["true_offsets"][i]).reshape(6)
        low, high = np.percentile(offsets, [2.5, 97.5], axis=0)
        stds.append(offsets.std(0))
        covered.append((low <= truth) & (truth <= high))
        divergences.append(int(np.asarray(diverging).sum()))
    return {"std": np.array(stds).reshape(-1, 6), "covered": np.array(covered).reshape(-1, 6),
            "divergences": np.array(divergences, dtype=int)}  # fmt: skip


@functools.cache
def _nuts(nuisance: tuple[str, ...], warmup: int, samples: int):
    """A NUTS kernel whose model takes the design and the data as arguments, and its chain
    (warm-up then samples: the draws of x and the divergence flags after warm-up) as one
    compiled function of the initial state and those arguments: every design and
    realisation of the study runs the same program (numpyro's ``MCMC.run`` traces and
    compiles its sampling loop anew on every call)."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import NUTS

    lower = jnp.concatenate([-jnp.ones(6), -5.0 * jnp.ones(len(nuisance))])
    log_likelihood = _log_likelihood()

    def model(settings, measured, noise, diagnostics):
        x = numpyro.sample("x", dist.Uniform(lower, -lower).to_event(1))
        numpyro.factor("likelihood", log_likelihood(x, settings, measured, noise,
                                                    diagnostics, nuisance))  # fmt: skip

    kernel = NUTS(model, target_accept_prob=0.9)

    @jax.jit
    def chain(state, args):
        constrain = kernel.postprocess_fn(args, {})  # the sampler works unconstrained

        def step(state, _):
            state = kernel.sample(state, args, {})
            return state, (constrain(state.z)["x"], state.diverging)

        _, (x, diverging) = jax.lax.scan(step, state, None, length=warmup + samples)
        return x[warmup:], diverging[warmup:]

    return kernel, chain


def tuning(config, record, nuisance, key) -> dict[str, np.ndarray]:
    """Tune the magnets to the target beam on each calibrated model (the first ``n_tuning``
    realisations) and on the true machine; the beam error (``ares.mae``, m) that the tuned
    settings give on the true machine."""
    import jax.numpy as jnp

    from diffdesign.beamline import ares
    from diffdesign.beamline.ares import INCOMING_PARAMETERS
    from diffdesign.beamline.ares._likelihood import DEFAULT_BOUND, NUISANCE, beam_from_nuisance
    from diffdesign.beamline.ares.problems import MULTISTART_EPS, settings_starts
    from diffdesign.core import Adam, CosineDecay, multistart

    nuisance = NUISANCE if nuisance is None else nuisance
    nominal = dict(INCOMING_PARAMETERS)
    target = {"mu_x": 0.0, "sigma_x": config.target_sigma_x, "mu_y": 0.0,
              "sigma_y": config.target_sigma_y}  # fmt: skip
    optimiser = Adam(schedule=CosineDecay(config.tuning_steps, final_fraction=1e-3),
                     eps=MULTISTART_EPS)  # fmt: skip
    starts = {"settings": settings_starts(key, (config.tuning_starts, 5))}

    def tune(offsets, beam):
        problem = ares.TuningProblem(offsets, target, beam)
        result = multistart(problem, starts, steps=config.tuning_steps, key=key,
                            optimiser=optimiser)  # fmt: skip
        return result.params["settings"][int(result.best)]

    errors, ideal = [], []
    for i in range(config.n_tuning):
        true_offsets = jnp.asarray(record["true_offsets"][i])
        true_beam = beam_from_nuisance(jnp.asarray(record["true_nuisance"][i]), nominal, nuisance)
        fitted = jnp.asarray(record["fitted"][i])
        model_beam = beam_from_nuisance(fitted[6:], nominal, nuisance)
        for offsets, beam, into in ((DEFAULT_BOUND * fitted[:6].reshape(3, 2), model_beam, errors),
                                    (true_offsets, true_beam, ideal)):  # fmt: skip
            settings = tune(offsets, beam)
            achieved = ares.screen_beam(settings, true_offsets, true_beam)
            into.append(float(ares.mae(achieved, target)))
    return {"beam_error": np.array(errors), "beam_error_true_model": np.array(ideal)}


def _rms(values) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def _design_json(record) -> dict[str, Any]:
    return {
        "settings": np.asarray(record["settings"]).tolist(),
        "positions_m": np.asarray(record["positions"]).tolist(),
        "resolutions_um": (1e6 * np.asarray(record["resolutions"])).tolist(),
        "rms_bound_um": 1e6 * float(record["rms_bound"]),
        "cost_keur": float(record["cost"]),
        "loss": float(record["loss"]),
        "wall_s": float(record["wall_s"]),
    }


def run_study(config: AresJointConfig, out: str | Path) -> dict[str, Any]:
    """Every stage (resumable), then results.json and the plots in ``out``."""
    import jax

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # which optional stages run does not change the finished ones
    stages = Stages(out, {k: v for k, v in config.to_json().items()
                          if k not in ("realised", "n_sweep", "time_gradient")})  # fmt: skip
    say("designs: multi-start Adam on each design problem (compiling the first takes a while)")
    found = designs(config, stages)
    main = f"@{config.cost_weight:g}"
    chosen = {name: found.get(name + main, found.get(name)) for name in REALISED}
    key = jax.random.key(config.seed + 2)
    realisations = {}
    for name in config.realised:
        two_screens, nuisance = REALISED[name]
        design = chosen[name]
        args = (design, two_screens, nuisance)
        record = stages.get(f"realised_{name}", lambda a=args: realised(config, *a, key))
        nuts = stages.get(
            f"nuts_{name}", lambda a=args, r=record: nuts_check(config, a[0], r, *a[1:], key)
        )
        tuned = stages.get(f"tuning_{name}", lambda r=record, u=nuisance: tuning(config, r, u, key))
        error, std = np.asarray(record["error"]), np.asarray(record["std"])
        ok = np.asarray(record["converged"]) & ~np.asarray(record["at_bound"]).any(1)
        realisations[name] = {
            "predicted_rms_bound_um": 1e6 * float(design["rms_bound"]),
            "realised_rms_error_um": 1e6 * _rms(error),
            "realised_rms_error_um_per_offset": (1e6 * np.sqrt(np.mean(error**2, 0))).tolist(),
            "mean_fit_std_um": 1e6 * _rms(std),
            "coverage_95": float(np.mean(np.abs(error) <= 1.959964 * std)),
            "fits_converged_inside_bounds": int(ok.sum()),
            "n_realisations": int(error.shape[0]),
            "nuts": {
                "runs": int(nuts["std"].shape[0]),
                "rms_posterior_std_um": 1e6 * _rms(nuts["std"]) if nuts["std"].size else None,
                "coverage_95": float(np.mean(nuts["covered"])) if nuts["covered"].size else None,
                "divergences": np.asarray(nuts["divergences"]).tolist(),
            },
            "tuning": {
                "runs": int(tuned["beam_error"].shape[0]),
                "mean_beam_error_um": 1e6 * float(np.mean(tuned["beam_error"]))
                if tuned["beam_error"].size else None,
                "mean_beam_error_true_model_um":
                1e6 * float(np.mean(tuned["beam_error_true_model"]))
                if tuned["beam_error"].size else None,
            },
        }  # fmt: skip
    fronts = {}
    for kind in ("joint", "geometry_then_settings", "settings_then_geometry"):
        fronts[kind] = [
            {"cost_weight": w, "rms_bound_um": 1e6 * float(found[f"{kind}@{w:g}"]["rms_bound"]),
             "cost_keur": float(found[f"{kind}@{w:g}"]["cost"])}
            for w in sorted(set(config.cost_weights) | {config.cost_weight})
        ]  # fmt: skip
    fronts_n = {
        kind: [{"n_settings": n, "rms_bound_um": 1e6 * float(found[f"{kind}#n{n}"]["rms_bound"]),
                "cost_keur": float(found[f"{kind}#n{n}"]["cost"]),
                "loss": float(found[f"{kind}#n{n}"]["loss"])} for n in config.n_sweep]
        for kind in ("joint", "geometry_then_settings", "settings_then_geometry")
    }  # fmt: skip
    results = {
        "config": config.to_json(),
        "units": {"rms_bound_um": "um (one sigma, RMS over the six offsets)", "cost_keur": "kEUR",
                  "cost_weight": "1/kEUR (loss = ln(RMS bound / 1 um) + cost_weight x cost)"},
        "designs": {name: _design_json(found[name]) for name in sorted(found)},
        "chosen_cost_weight": config.cost_weight,
        "fronts": fronts,
        "n_sweep": fronts_n,
        "realised": realisations,
        "timing": stages.get("timing", lambda: joint_timing(config)),
    }  # fmt: skip
    results["timing"] = {k: float(v) for k, v in results["timing"].items()}
    results["verdict"] = joint_verdict(results).to_json()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    from experiments.joint import _ares_plots

    _ares_plots.plot_all(results, out)
    return results


def joint_verdict(results: dict[str, Any]):
    """The checks of the study (results.json's layout): every design started from the
    published settings ends with a loss no worse than theirs (at the chosen cost weight),
    each realised design's least-squares 95 % intervals cover the truth about 95 % of the
    time, NUTS had no divergent transitions, and every figure is finite."""
    from diffdesign.core.verdict import Verdict, all_finite, coverage, divergences, improved

    designs, weight = results["designs"], results["chosen_cost_weight"]
    start = designs["published"]["loss"]
    checks = []
    for kind in ("joint", "geometry_then_settings", "settings_then_geometry", "joint_equal_cost"):
        key = f"{kind}@{weight:g}" if f"{kind}@{weight:g}" in designs else kind
        checks.append(improved(f"loss, {kind} vs published", start, designs[key]["loss"]))
    realised = results["realised"]
    for name, entry in realised.items():
        checks.append(coverage(f"95 % coverage, {name}", entry["coverage_95"], 0.95,
                               6 * entry["n_realisations"]))  # fmt: skip
    checks.append(divergences(sum(sum(e["nuts"]["divergences"]) for e in realised.values())))
    figures = [v for d in designs.values() for v in (d["loss"], d["rms_bound_um"], d["cost_keur"])]
    figures += [v for e in realised.values()
                for v in (e["predicted_rms_bound_um"], e["realised_rms_error_um"])]  # fmt: skip
    checks.append(all_finite("finite figures", figures))
    return Verdict(tuple(checks))


def joint_timing(config: AresJointConfig) -> dict[str, float]:
    """Compile and steady-state time of one joint design step (the gradient of the design
    loss w.r.t. every setting and the geometry; only with ``time_gradient``) and of the whole
    joint multi-start."""
    import jax

    from diffdesign.beamline.ares.experiment_design import CalibrationDesign
    from diffdesign.core import values

    published = random_settings(config, config.n_settings)
    problem = CalibrationDesign(published, _diagnostics(config, False),
                                cost_weight=config.cost_weight,
                                points=prior_points(config, None))  # fmt: skip
    timing = {}
    if config.time_gradient:
        params = values(problem.spec)
        grad = jax.jit(jax.grad(lambda p: problem.loss(p, None)[0]))
        start = time.perf_counter()
        jax.block_until_ready(grad.lower(params).compile()(params))
        timing["gradient_compile_s"] = time.perf_counter() - start
        repeats = 20
        start = time.perf_counter()
        for _ in range(repeats):
            jax.block_until_ready(grad(params))
        timing["gradient_steady_s"] = (time.perf_counter() - start) / repeats
    key = jax.random.key(config.seed)
    every = subset_design(problem, problem.spec)
    start = time.perf_counter()
    _optimise(every, config, key)
    first = time.perf_counter() - start
    start = time.perf_counter()
    _optimise(every, config, key)
    steady = time.perf_counter() - start
    return timing | {"joint_optimisation_first_s": first, "joint_optimisation_steady_s": steady,
                     "joint_optimisation_steps": float(config.steps),
                     "joint_optimisation_starts": float(config.num_starts)}  # fmt: skip
