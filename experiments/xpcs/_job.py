"""The XPCS fit job behind ``diffdesign xpcs fit``: read data and a config, fit, write results.

One TOML file configures the whole job, one table per stage (every key optional):

.. code-block:: toml

    [data]                 # diffdesign.xpcs.io.DataConfig: file, q, L, dt, frames, angles, sigma
    file = "run.h5"

    [model]
    mode = "laminar_flow"  # "static", "laminar_flow" or "two_component" (--mode wins)
    scaling = "individual" # per-angle contrast/offset: "individual", "averaged", "constant"
    integral = "trapezoid" # homodyne's discretisation, or "exact"
    initial = { D0 = 5000.0, alpha = -0.3 }       # starting guess (any subset)
    bounds = { D0 = [100.0, 1e5], phi0 = [-10.0, 10.0] }
    fixed = { }            # physical parameters held at a value, e.g. { f2 = 0.0 }

    [nlsq]                 # NlsqConfig
    n_starts = 32

    [cmc]                  # CmcConfig
    num_samples = 1000

The job writes ``results.json`` (data summary, least-squares fit, posterior summary),
``posterior.nc`` (ArviZ InferenceData, netCDF), ``fit.png`` (data / fit / residual per angle),
``posterior_trace.png`` and ``posterior_pairs.png``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from diffdesign._config import TomlConfig
from diffdesign.core.verdict import (
    Verdict,
    at_bounds,
    chi2_per_dof,
    converged,
    correlations,
    divergences,
    rhat,
)
from diffdesign.xpcs.data import XpcsData
from diffdesign.xpcs.io import DataConfig, load_data, read_toml
from diffdesign.xpcs.likelihood import (
    INTEGRALS,
    SCALINGS,
    check_fixed,
    make_problem,
    resolve_bounds,
    scaling_from_name,
)
from diffdesign.xpcs.model import MODES, parameter_names
from diffdesign.xpcs.nlsq import SOLVERS, NlsqResult, fit_nlsq
from diffdesign.xpcs.spec import UNITS

METHODS = ("nlsq", "cmc", "both")
_TABLES = ("data", "model", "nlsq", "cmc")


@dataclasses.dataclass(frozen=True)
class ModelConfig(TomlConfig):
    """The ``[model]`` table: what is fitted.

    Attributes:
        mode: ``"static"``, ``"laminar_flow"`` or ``"two_component"`` (the command line's
            ``--mode`` wins).
        scaling: per-angle contrast/offset: ``"individual"``, ``"averaged"`` or ``"constant"``.
        integral: ``"trapezoid"`` (homodyne's discretisation) or ``"exact"``.
        initial: starting guess of any subset of the physical parameters (name = value, in
            the parameters' units: Angstrom^2/s, 1/s, degrees, ...).
        bounds: ``name = [lower, upper]`` replacing :data:`~diffdesign.xpcs.DEFAULT_BOUNDS`.
        fixed: physical parameters held at a value (name = value), not fitted.
    """

    mode: str = "static"
    scaling: str = "individual"
    integral: str = "trapezoid"
    initial: Mapping[str, float] = dataclasses.field(default_factory=dict)
    bounds: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    fixed: Mapping[str, float] = dataclasses.field(default_factory=dict)

    #: the keys that hold tables (name = value) rather than single values.
    TABLES: ClassVar[tuple[str, ...]] = ("initial", "bounds", "fixed")

    def __post_init__(self):
        for name, value, allowed in (
            ("mode", self.mode, tuple(MODES)),
            ("scaling", self.scaling, SCALINGS),
            ("integral", self.integral, INTEGRALS),
        ):
            if value not in allowed:
                raise ValueError(f"[model] {name} must be one of {list(allowed)}; got {value!r}")
        names = parameter_names(self.mode)
        for name, value in self.initial.items():
            if name not in names:
                raise ValueError(f"[model] initial: unknown parameter {name!r}; allowed {names}")
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"[model] initial.{name} must be a number; got {value!r}")
        try:
            check_fixed(self.fixed, names, resolve_bounds(self.bounds))
        except ValueError as error:
            raise ValueError(f"[model] {error}") from None
        both = sorted(set(self.initial) & set(self.fixed))
        if both:
            raise ValueError(f"[model] {both} are both in initial and in fixed; keep one")

    @classmethod
    def from_mapping(
        cls, content: Mapping[str, Any], where: str = "[model]", mode: str | None = None
    ) -> ModelConfig:
        """The :class:`TomlConfig` reading of the single values, then the two tables
        (``initial``, ``bounds``); ``mode`` (the command line's) replaces the table's."""
        values = dict(content)
        tables = {key: values.pop(key) for key in cls.TABLES if key in values}
        if mode is not None:
            values["mode"] = mode
        for key, table in tables.items():
            if not isinstance(table, Mapping):
                raise ValueError(f"[model] {key} must be a table (name = value); got {table!r}")
        if "bounds" in tables:
            tables["bounds"] = {k: tuple(v) for k, v in tables["bounds"].items()}
        config = super().from_mapping(values, where)
        return dataclasses.replace(config, **tables) if tables else config


@dataclasses.dataclass(frozen=True)
class NlsqConfig(TomlConfig):
    """The ``[nlsq]`` table: options of :func:`~diffdesign.xpcs.nlsq.fit_nlsq`."""

    solver: str = "normal-equations"
    n_starts: int = 32
    n_refine: int = 3
    seed: int = 0
    max_steps: int = 200

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"[nlsq] solver must be one of {list(SOLVERS)}; got {self.solver!r}")
        for name in ("n_starts", "n_refine", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"[nlsq] {name} must be >= 1; got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class CmcConfig(TomlConfig):
    """The ``[cmc]`` table: options of :func:`~diffdesign.xpcs.cmc.fit_cmc`."""

    OPTIONAL: ClassVar[dict[str, type]] = {"n_shards": int}
    SMOKE: ClassVar[dict[str, Any]] = {"num_warmup": 40, "num_samples": 40}

    n_shards: int | None = None
    num_warmup: int = 500
    num_samples: int = 1000
    num_chains: int = 2
    seed: int = 0

    def __post_init__(self):
        for name in ("num_warmup", "num_samples", "num_chains"):
            if getattr(self, name) < 1:
                raise ValueError(f"[cmc] {name} must be >= 1; got {getattr(self, name)}")
        if self.n_shards is not None and self.n_shards < 1:
            raise ValueError(f"[cmc] n_shards must be >= 1 (or omitted); got {self.n_shards}")


@dataclasses.dataclass(frozen=True)
class FitJob:
    """Everything ``diffdesign xpcs fit`` needs, read and checked before any computation."""

    data_path: Path
    data: DataConfig
    model: ModelConfig
    nlsq: NlsqConfig
    cmc: CmcConfig


def load_job(
    data_path: str | Path | None, config_path: str | Path | None, mode: str | None = None
) -> FitJob:
    """The job from a data file and/or a TOML config (the data path wins over ``[data] file``)."""
    content = read_toml(config_path) if config_path is not None else {}
    unknown = sorted(set(content) - set(_TABLES))
    if unknown:
        raise ValueError(f"unknown table(s) {unknown} in {config_path}; known: {list(_TABLES)}")
    data_config = DataConfig.from_mapping(content.get("data", {}), str(config_path))
    if data_path is None:
        if data_config.file is None:
            raise ValueError("no data: give DATA on the command line or [data] file in the config")
        data_path = Path(config_path).parent / data_config.file
    return FitJob(
        data_path=Path(data_path),
        data=data_config,
        model=ModelConfig.from_mapping(content.get("model", {}), "[model]", mode),
        nlsq=NlsqConfig.from_mapping(content.get("nlsq", {}), "[nlsq]"),
        cmc=CmcConfig.from_mapping(content.get("cmc", {}), "[cmc]"),
    )


def run_fit(job: FitJob, method: str, out: str | Path, *, smoke: bool = False) -> dict:
    """Fit by least squares (``"nlsq"``), Consensus Monte Carlo (``"cmc"``) or both; write
    results.json, posterior.nc and the plots into ``out``. CMC starts from the least-squares
    fit in every case. Returns the results dictionary."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")
    out = Path(out)
    data = load_data(job.data_path, job.data)  # a bad file fails before --out is created
    out.mkdir(parents=True, exist_ok=True)
    model = job.model
    scaling = scaling_from_name(model.scaling)  # the config's name -> the library's object
    print(
        f"xpcs fit: {job.data_path.name}: {data.n_phi} angle(s) x {data.n_t} times, "
        f"mode {model.mode}, scaling {model.scaling}, method {method}",
        flush=True,
    )
    results: dict[str, Any] = {
        "data": _data_summary(job.data_path, data),
        "model": {**dataclasses.asdict(model), "bounds": resolve_bounds(model.bounds)},
        "nlsq": None,
        "cmc": None,
    }
    nlsq = fit_nlsq(
        data, model.mode, scaling=scaling, integral=model.integral,
        initial=model.initial, bounds=model.bounds, fixed=model.fixed, solver=job.nlsq.solver,
        n_starts=job.nlsq.n_starts, n_refine=job.nlsq.n_refine, seed=job.nlsq.seed,
        max_steps=job.nlsq.max_steps,
    )  # fmt: skip
    _print_nlsq(nlsq)
    results["nlsq"] = nlsq.to_json()
    problem = make_problem(
        data, model.mode, scaling=scaling, integral=model.integral, bounds=model.bounds,
        fixed=model.fixed,
    )  # fmt: skip
    _write(out / "results.json", results)  # the least-squares fit is kept if sampling stops
    from experiments.xpcs._plots import plot_fit, plot_pairs, plot_traces

    plot_fit(data, problem, nlsq.x, out / "fit.png")
    if method in ("cmc", "both"):
        from diffdesign.xpcs.cmc import fit_cmc

        options = job.cmc.smoke() if smoke else job.cmc
        start = time.perf_counter()
        cmc = fit_cmc(
            data, model.mode, scaling=scaling, integral=model.integral,
            bounds=model.bounds, fixed=model.fixed, warm_start=nlsq, n_shards=options.n_shards,
            num_warmup=options.num_warmup, num_samples=options.num_samples,
            num_chains=options.num_chains, seed=options.seed, progress=True,
        )  # fmt: skip
        print(f"cmc: {cmc.n_shards} shard(s) in {time.perf_counter() - start:.1f} s", flush=True)
        results["cmc"] = cmc.summary()
        cmc.save(out / "posterior.nc")
        physical = problem.physical_names
        draws = {n: np.asarray(cmc.idata.posterior[n]) for n in physical}
        plot_traces(draws, out / "posterior_trace.png")
        plot_pairs(draws, out / "posterior_pairs.png", estimate=nlsq.values())
    results["verdict"] = fit_verdict(results).to_json()
    _write(out / "results.json", results)
    print(f"wrote {out / 'results.json'}", flush=True)
    return results


def fit_verdict(results: dict) -> Verdict:
    """The checks of a fit (results.json's layout): the least-squares fit converged, with
    chi2/dof near 1, no parameter at a bound and no pair correlated beyond 0.99; the
    posterior's chains agree (R-hat) without divergences."""
    nlsq = results["nlsq"]
    names = list(nlsq["parameters"])
    verdict = Verdict((
        converged("least squares", nlsq["converged"], nlsq["num_steps"],
                  "raise [nlsq] max_steps or start closer ([model] initial)"),
        chi2_per_dof(nlsq["chi2"], nlsq["n_points"] - len(names)),
        at_bounds(nlsq["at_bound"], len(names),
                  advice="widen [model] bounds if the physics allows, or fix the parameter"),
        correlations(nlsq["correlation"], names),
    ))  # fmt: skip
    cmc = results.get("cmc")
    if cmc is not None:
        verdict += rhat({k: v["r_hat_max"] for k, v in cmc["parameters"].items()})
        verdict += divergences(cmc["divergences"])
    return verdict


def _data_summary(path: Path, data: XpcsData) -> dict:
    sigma = np.asarray(data.sigma)
    return {
        "file": str(path),
        "n_phi": data.n_phi,
        "n_t": data.n_t,
        "phi_deg": np.asarray(data.phi).tolist(),
        "dt_s": float(data.dt),
        "q_inv_angstrom": float(data.q),
        "L_angstrom": float(data.L),
        "sigma": {"min": float(sigma.min()), "max": float(sigma.max())},
    }


def _print_nlsq(result: NlsqResult) -> None:
    flag = "converged" if bool(result.converged) else "NOT converged"
    print(
        f"nlsq: {flag} in {int(result.num_steps)} steps, reduced chi2 "
        f"{float(result.reduced_chi2):.4f} on {int(result.n_points)} points, "
        f"{result.wall_time:.1f} s",
        flush=True,
    )
    if result.message:
        print(f"nlsq: {result.status}: {result.message}", flush=True)
    for name, value, std in zip(result.names, np.asarray(result.x), np.asarray(result.std),
                                strict=True):  # fmt: skip
        unit = UNITS.get(name, "")  # contrast and offset: fractions of g2, no unit
        print(f"  {name:20s} {value: .6g} +- {std:.3g} {unit}".rstrip(), flush=True)


def _write(path: Path, results: dict) -> None:
    path.write_text(json.dumps(results, indent=2, default=_jsonable))


def _jsonable(value):
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
