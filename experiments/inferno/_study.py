"""The INFERNO paper's synthetic benchmarks 0-4 (Table 2): ``diffdesign inferno benchmarks``.

For many random initialisations: a cross-entropy classifier (its signal probability in 10
equal-width bins) and INFERNO summaries trained on each benchmark are scored by the
expected uncertainty on ``s`` of their hard histograms on a test sample, with the shape
nuisances from templates (:func:`_mixture.template_expected_counts`), beside the
Bayes-optimal classifier and the unbinned-likelihood bound. Benchmark 2 is also profiled:
the half-width of the ``Delta NLL = 0.5`` interval, as the paper's text quotes it.

Writes ``results.json`` (every number, the paper's beside ours) and plots. Training is
checkpointed per ensemble (``checkpoints/*.npz``): rerun into the same folder to resume.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffdesign._config import TomlConfig
from diffdesign._progress import say
from diffdesign.core.verdict import Verdict, all_finite, bound_below
from diffdesign.inference.binned import (
    covariance,
    fisher_information,
    interval_half_width,
    profile_nll,
)
from diffdesign.inference.ensembles import MLP, init_ensemble, train_ensemble
from diffdesign.inference.inferno import inferno_loss
from experiments.inferno import _mixture as mixture

#: the paper's text, benchmark 2: profile-likelihood half-widths, mean +- std over 10 models.
PAPER_PROFILE_B2 = {"inferno": (16.97, 0.11), "classifier": (24.01, 0.36)}


@dataclasses.dataclass(frozen=True)
class InfernoStudyConfig(TomlConfig):
    """Settings of the benchmark study (every key optional in TOML).

    Attributes:
        n_initialisations: random initialisations per model (the paper: 100).
        benchmarks: benchmarks (0-4) to train an INFERNO summary on.
        n_train: training events per class (the paper: 100,000).
        n_test: test events per class for the hard histograms and templates.
        n_bins: summary bins (the paper: 10).
        temperature: softmax temperature of the soft histogram (the paper: 0.1).
        hidden: hidden-layer widths of both networks (the paper: 100, 100).
        inferno_steps, inferno_batch, inferno_learning_rate: Adam steps, events per class
            per step, and step size for INFERNO (constant for the first half of the steps,
            then cosine-decayed to a tenth; non-finite updates are skipped).
        inferno_batch_b4: events per class per step on benchmark 4 (the paper: 1,500).
        classifier_steps, classifier_batch, classifier_learning_rate: the same for the
            cross-entropy classifier.
        n_profile: models of each kind profiled on benchmark 2 (the paper: 10).
        seed: of data, initialisations and batches.
    """

    n_initialisations: int = 50
    benchmarks: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_train: int = 100_000
    n_test: int = 100_000
    n_bins: int = 10
    temperature: float = 0.1
    hidden: tuple[int, ...] = (100, 100)
    inferno_steps: int = 2000
    inferno_batch: int = 1000
    inferno_batch_b4: int = 1500
    inferno_learning_rate: float = 1e-3
    classifier_steps: int = 4000
    classifier_batch: int = 256
    classifier_learning_rate: float = 1e-3
    n_profile: int = 10
    seed: int = 0

    SMOKE: ClassVar[dict] = {
        "n_initialisations": 2,
        "benchmarks": (2,),
        "n_train": 2000,
        "n_test": 2000,
        "inferno_steps": 20,
        "inferno_batch": 200,
        "inferno_batch_b4": 200,
        "classifier_steps": 20,
        "n_profile": 2,
    }

    def __post_init__(self) -> None:
        for name in (
            "n_initialisations",
            "n_train",
            "n_test",
            "inferno_batch",
            "inferno_batch_b4",
            "classifier_batch",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("inferno_steps", "classifier_steps", "n_profile"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if not self.benchmarks or any(b not in mixture.BENCHMARKS for b in self.benchmarks):
            raise ValueError(
                f"benchmarks must be a non-empty subset of "
                f"{sorted(mixture.BENCHMARKS)}; got {self.benchmarks}"
            )
        if self.n_bins < 2:
            raise ValueError(f"n_bins must be >= 2; got {self.n_bins}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be positive widths; got {self.hidden}")
        for name in ("inferno_learning_rate", "classifier_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        if self.n_profile > self.n_initialisations:
            raise ValueError(
                f"n_profile ({self.n_profile}) must be <= n_initialisations "
                f"({self.n_initialisations})"
            )


class _Data:
    """Training and test events (float64) drawn from the config's seed."""

    def __init__(self, config: InfernoStudyConfig):
        keys = jax.random.split(jax.random.key(config.seed), 4)
        self.train_signal = mixture.sample_signal(keys[0], config.n_train)
        self.train_background = mixture.sample_background(keys[1], config.n_train)
        self.test_signal = mixture.sample_signal(keys[2], config.n_test)
        self.test_background = mixture.sample_background(keys[3], config.n_test)

    def batches(self, n_per_class: int):
        """``key -> (signal, background)``: ``n_per_class`` training events of each class."""
        n = self.train_signal.shape[0]

        def sample(key):
            signal_key, background_key = jax.random.split(key)
            return (
                self.train_signal[jax.random.randint(signal_key, (n_per_class,), 0, n)],
                self.train_background[jax.random.randint(background_key, (n_per_class,), 0, n)],
            )

        return sample


_say = functools.partial(say, who="inferno")


def _quantiles(values: np.ndarray) -> dict:
    """Median and the 16/36/84 % quantiles (36 %: the paper's lower spread) of one column."""
    q16, q36, q50, q84 = np.nanquantile(values, [0.16, 0.36, 0.5, 0.84])
    return {
        "median": float(q50),
        "q16": float(q16),
        "q36": float(q36),
        "q84": float(q84),
        "n_finite": int(np.isfinite(values).sum()),
    }


class _Models:
    """The two summaries of the study: INFERNO (arg-max bin) and the classifier (its signal
    probability in equal-width bins), on one network architecture."""

    def __init__(self, config: InfernoStudyConfig):
        self.config = config
        self.inferno = MLP(hidden=config.hidden, n_outputs=config.n_bins)
        self.classifier = MLP(hidden=config.hidden, n_outputs=2)

    def inferno_bins(self, params):
        return lambda x: jnp.argmax(self.inferno.apply(params, x), axis=-1)

    def classifier_bins(self, params):
        def bins(x):
            probability = jax.nn.softmax(self.classifier.apply(params, x), axis=-1)[..., 1]
            return mixture.probability_bins(probability, self.config.n_bins)

        return bins


def _uncertainties(counts) -> jnp.ndarray:
    """``(5,)`` expected uncertainty on ``s`` in each benchmark for one counts function."""
    fisher = fisher_information(counts, mixture.benchmark(0))  # constraints added per setup
    values = []
    for index in sorted(mixture.BENCHMARKS):
        setup = mixture.benchmark(index)
        cov = covariance(fisher + jnp.diag(setup.constraint_precision()), setup)
        values.append(jnp.sqrt(cov[setup.poi_index, setup.poi_index]))
    return jnp.stack(values)


def map_members(bins_of, params, data: _Data, n_bins: int, of_counts) -> np.ndarray:
    """``of_counts(counts)`` for every member's hard-histogram counts on the test data.

    ``bins_of(member_params)`` returns the event -> bin function of one member; the members
    go one after another (``lax.map``), so memory stays that of one.
    """

    def one(member):
        counts = mixture.template_expected_counts(
            bins_of(member), n_bins, data.test_signal, data.test_background
        )
        return of_counts(counts)

    return np.asarray(jax.lax.map(one, params))


def _train_classifier(config, models: _Models, data: _Data, out: Path):
    def loss(params, batch):
        signal, background = batch
        logits = models.classifier.apply(params, jnp.concatenate([signal, background]))
        labels = jnp.concatenate(
            [jnp.ones(signal.shape[0], int), jnp.zeros(background.shape[0], int)]
        )
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    params = init_ensemble(
        models.classifier, jax.random.key(config.seed + 1), config.n_initialisations, 3
    )
    return train_ensemble(
        loss,
        params,
        optax.adam(config.classifier_learning_rate),
        data.batches(config.classifier_batch),
        config.classifier_steps,
        jax.random.key(config.seed + 2),
        checkpoint=out / "checkpoints" / "classifier.npz",
        settings=_settings(config, "classifier"),
        label="classifier",
    )


def _train_inferno(config, models: _Models, data: _Data, index: int, out: Path):
    setup = mixture.benchmark(index)

    def loss(params, batch):
        signal, background = batch
        counts = mixture.soft_expected_counts(
            lambda x: models.inferno.apply(params, x), signal, background, config.temperature
        )
        return inferno_loss(counts, setup)

    batch = config.inferno_batch_b4 if index == 4 else config.inferno_batch
    params = init_ensemble(
        models.inferno, jax.random.key(config.seed + 10 + index), config.n_initialisations, 3
    )
    return train_ensemble(
        loss,
        params,
        optax.apply_if_finite(
            optax.adam(_schedule(config.inferno_learning_rate, config.inferno_steps)), 20
        ),
        data.batches(batch),
        config.inferno_steps,
        jax.random.key(config.seed + 20 + index),
        checkpoint=out / "checkpoints" / f"inferno_{index}.npz",
        settings=_settings(config, f"inferno_{index}"),
        label=f"INFERNO benchmark {index}",
    )


def _schedule(learning_rate: float, steps: int) -> optax.Schedule:
    """Constant for the first half, then cosine-decayed to a tenth: Adam at a constant step
    drifts late in training (a few members' losses climb back up)."""
    half = steps // 2
    return optax.join_schedules(
        [
            optax.constant_schedule(learning_rate),
            optax.cosine_decay_schedule(learning_rate, max(steps - half, 1), alpha=0.1),
        ],
        [half],
    )


def _settings(config: InfernoStudyConfig, model: str) -> dict:
    """What must match for a checkpoint of ``model`` to be resumed."""
    keep = ("n_initialisations", "n_train", "n_bins", "hidden", "seed")
    keep += (
        ("classifier_steps", "classifier_batch", "classifier_learning_rate")
        if model == "classifier"
        else (
            "temperature",
            "inferno_steps",
            "inferno_batch",
            "inferno_batch_b4",
            "inferno_learning_rate",
        )
    )
    schedule = "adam" if model == "classifier" else "adam, half constant, half cosine to 0.1"
    return {"model": model, "optimiser": schedule, **{k: getattr(config, k) for k in keep}}


def _seconds(wall: float) -> float | None:
    """Training seconds for JSON: None where a checkpoint did not record them."""
    return float(wall) if np.isfinite(wall) else None


def run_study(config: InfernoStudyConfig, out: str | Path) -> dict:
    """Train, score and profile every model; write ``results.json`` and plots into ``out``."""
    from experiments.inferno._plots import plot_history, plot_profiles, plot_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    data = _Data(config)
    models = _Models(config)
    results: dict = {
        "config": config.to_json(),
        "paper_table_2": mixture.PAPER_TABLE_2,
        "paper_table_2_spread_plus_q84_minus_q36": mixture.PAPER_TABLE_2_SPREAD,
        "rows": {},
        "wall_s": {},
    }

    _say("analytical bound and optimal classifier ...")
    results["rows"]["analytic"] = [
        mixture.analytic_uncertainty(data.test_signal, data.test_background, mixture.benchmark(i))
        for i in sorted(mixture.BENCHMARKS)
    ]
    optimal = mixture.template_expected_counts(
        lambda x: mixture.probability_bins(mixture.optimal_classifier(x), config.n_bins),
        config.n_bins,
        data.test_signal,
        data.test_background,
    )
    results["rows"]["optimal_classifier"] = np.asarray(_uncertainties(optimal)).tolist()

    scores, histories, profiles = {}, {}, {}
    run = _train_classifier(config, models, data, out)
    histories["classifier"] = run.history
    results["wall_s"]["classifier_training"] = _seconds(run.wall_s)
    scores["classifier"] = map_members(
        models.classifier_bins, run.params, data, config.n_bins, _uncertainties
    )
    classifier_params = run.params
    for index in config.benchmarks:
        run = _train_inferno(config, models, data, index, out)
        label = f"inferno_{index}"
        histories[label] = run.history
        results["wall_s"][f"{label}_training"] = _seconds(run.wall_s)
        scores[label] = map_members(
            models.inferno_bins, run.params, data, config.n_bins, _uncertainties
        )
        _say(
            f"{label}: median uncertainty on s in benchmark {index}: "
            f"{np.nanmedian(scores[label][:, index]):.3f} (paper "
            f"{mixture.PAPER_TABLE_2['inferno'][index]})"
        )
        if index == 2 and config.n_profile:
            profiles[label] = run.params

    for name, values in scores.items():
        results["rows"][name] = [_quantiles(values[:, i]) for i in range(values.shape[1])]
        results["rows"][name + "_all"] = values.round(4).tolist()
    results["matching_inferno"] = {
        str(i): _quantiles(scores[f"inferno_{i}"][:, i]) for i in config.benchmarks
    }

    if config.n_profile:
        _say(f"profiling benchmark 2 for {config.n_profile} models ...")
        poi_values = np.linspace(10.0, 90.0, 81)
        setup = mixture.benchmark(2)

        def profile(counts):
            return profile_nll(counts, setup, poi_values)

        profiled = {"classifier": (models.classifier_bins, classifier_params)}
        if "inferno_2" in profiles:
            profiled["inferno_2"] = (models.inferno_bins, profiles["inferno_2"])
        curves = {
            name: map_members(
                bins_of,
                jax.tree.map(lambda leaf: leaf[: config.n_profile], params),
                data,
                config.n_bins,
                profile,
            )
            for name, (bins_of, params) in profiled.items()
        }
        widths = {
            name: [interval_half_width(poi_values, c) for c in curve]
            for name, curve in curves.items()
        }
        results["profile_benchmark_2"] = {
            "poi_values": poi_values.tolist(),
            "delta_nll": {name: curve.round(6).tolist() for name, curve in curves.items()},
            "half_width": {
                name: {"mean": float(np.nanmean(w)), "std": float(np.nanstd(w)), "values": w}
                for name, w in widths.items()
            },
            "paper_mean_std": PAPER_PROFILE_B2,
        }
        plot_profiles(poi_values, curves, out / "profile_benchmark_2.png")

    results["wall_s"]["total"] = time.perf_counter() - tic
    plot_table(results, out / "table_2.png")
    plot_history(histories, out / "training.png")
    results["verdict"] = study_verdict(results).to_json()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown_table(results))
    return results


def study_verdict(results: dict) -> Verdict:
    """The analytical (unbinned-likelihood) bound must not exceed what it bounds: the optimal
    classifier's and every INFERNO model's binned uncertainty, benchmark by benchmark; and
    every median must be finite."""
    rows, checks = results["rows"], []
    for i, bound in enumerate(rows["analytic"]):
        checks.append(bound_below(f"bound <= optimal classifier, benchmark {i}", bound,
                                  rows["optimal_classifier"][i], " events"))  # fmt: skip
    for i, q in results["matching_inferno"].items():
        checks.append(bound_below(f"bound <= INFERNO median, benchmark {i}",
                                  rows["analytic"][int(i)], q["median"], " events"))  # fmt: skip
    medians = [q["median"] for name, row in rows.items() if isinstance(row, list) and row
               and isinstance(row[0], dict) for q in row]  # fmt: skip
    checks.append(all_finite("finite medians", medians))
    return Verdict(tuple(checks))


def _ours(q: dict) -> str:
    return f"{q['median']:.2f} [{q['q16']:.2f}, {q['q84']:.2f}]"


def markdown_table(results: dict) -> str:
    """Table 2 side by side with the paper's (our median [q16, q84]; paper's +q84/-q36)."""
    rows, paper = results["rows"], results["paper_table_2"]
    spread = results["paper_table_2_spread_plus_q84_minus_q36"]
    lines = [
        "| benchmark | NN classifier | paper | INFERNO | paper | optimal classifier | paper "
        "| analytical | paper |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i in sorted(int(k) for k in results["matching_inferno"]):
        cells = [str(i)]
        for kind, ours in (
            ("classifier", _ours(rows["classifier"][i])),
            ("inferno", _ours(results["matching_inferno"][str(i)])),
        ):
            up, down = spread[kind][i]
            cells += [ours, f"{paper[kind][i]:.2f} +{up:.2f}/−{down:.2f}"]
        for kind in ("optimal_classifier", "analytic"):
            cells += [f"{rows[kind][i]:.2f}", f"{paper[kind][i]:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    profile = results.get("profile_benchmark_2")
    if profile:
        lines.append("")
        lines.append(
            "Benchmark 2, half-width of the profile-likelihood interval on s (Δ NLL = 0.5), "
            f"{len(profile['half_width']['classifier']['values'])} models each, mean ± std "
            "[median] (the paper's mean ± std):"
        )
        for name, label in (("classifier", "classifier"), ("inferno_2", "inferno")):
            if name in profile["half_width"]:
                w = profile["half_width"][name]
                mean, std = profile["paper_mean_std"][label]
                lines.append(
                    f"- {label}: {w['mean']:.2f} ± {w['std']:.2f} "
                    f"[{float(np.nanmedian(w['values'])):.2f}] (paper {mean} ± {std})"
                )
    return "\n".join(lines) + "\n"
