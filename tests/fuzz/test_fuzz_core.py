"""Bad inputs to the design layer (specs, bounds, fit, multistart, BO), configs, checkpoints,
sweeps and the command line (non-ring, non-muography commands)."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffdesign import _checkpoint
from diffdesign._config import TomlConfig
from diffdesign.core import Box, Log, Param, Problem, fit
from diffdesign.design.bayesopt import BayesianOptimisation, RandomSearch
from diffdesign.sweep import axes
from diffdesign.sweep.spec import SweepSpec
from tests.fuzz._harness import (
    Case,
    cli,
    finite_everywhere,
    handled,
    parametrize,
    raises,
    run_case,
)

NAN, INF = float("nan"), float("inf")


class Bowl(Problem):
    """loss = |x - 1|^2, one parameter vector in [-5, 5]."""

    @property
    def spec(self):
        return {"x": Param(jnp.zeros(2), -5.0, 5.0, step=0.1, label="x", transform=Box())}

    def loss(self, params, key):
        return jnp.sum((params["x"] - 1.0) ** 2), {}


class NanLoss(Bowl):
    def loss(self, params, key):
        return jnp.sum(params["x"]) * jnp.nan, {}


@dataclasses.dataclass(frozen=True)
class Knobs(TomlConfig):
    rate: float = 0.1
    steps: int = 10
    sizes: tuple[float, ...] = (1.0, 2.0)
    name: str = "a"


def _run(problem=None, **kwargs):
    options = dict(steps=3, key=jax.random.key(0), progress=False) | kwargs
    return fit.run(problem or Bowl(), **options)


CASES = [
    Case("param nan value", lambda: Param(NAN, step=0.1, label="a"), raises(r"\ba must be finite")),
    Case(
        "param value outside bounds",
        lambda: Param(5.0, 0.0, 1.0, step=0.1, label="a"),
        raises(r"a = 5 lies outside its bounds \[0, 1\]"),
    ),
    Case(
        "param inverted bounds",
        lambda: Param(0.5, 1.0, 0.0, step=0.1, label="a"),
        raises(r"a: bounds need lower < upper"),
    ),
    Case(
        "param negative step",
        lambda: Param(0.5, step=-1.0, label="a"),
        raises(r"a: step must be finite and >= 0"),
    ),
    Case(
        "param empty label",
        lambda: Param(0.5, step=0.1, label=""),
        raises(r"label must be a non-empty string"),
    ),
    Case(
        "param log of a negative bound",
        lambda: Param(1.0, -1.0, 2.0, step=0.1, label="a", transform=Log()),
        raises(r"\ba\b.*Log"),
    ),
    Case(
        "param box without bounds",
        lambda: Param(1.0, step=0.1, label="a", transform=Box()),
        raises(r"\ba\b.*Box.*finite|\ba\b.*bounds"),
    ),
    Case(
        "param transform a string",
        lambda: Param(1.0, step=0.1, label="a", transform="log"),
        raises(r"transform must be Identity\(\), Log\(\) or Box\(\)", TypeError),
    ),
    Case(
        "param value a string",
        lambda: Param("one", step=0.1, label="a"),
        raises(r"\bvalue\b|\ba\b", ValueError, TypeError),
    ),
    Case("fit zero steps", lambda: _run(steps=0), raises(r"steps must be a positive integer")),
    Case("fit chunk 1.5", lambda: _run(chunk=1.5), raises(r"chunk must be a positive integer")),
    Case(
        "fit nan loss",
        lambda: _run(NanLoss()),
        raises(r"loss|not finite|nan", ValueError, FloatingPointError),
    ),
    Case(
        "fit params outside bounds",
        lambda: _run(params={"x": jnp.full(2, 9.0)}),
        raises(r"x\[0\] = 9 lies outside its bounds"),
    ),
    Case(
        "fit params of another shape",
        lambda: _run(params={"x": jnp.zeros(3)}),
        raises(r"\bx\b.*shape"),
    ),
    Case(
        "fit unknown params key",
        lambda: _run(params={"y": jnp.zeros(2)}),
        raises(r"\by\b", ValueError, KeyError),
    ),
    Case(
        "fit not a problem",
        lambda: fit.run(lambda p, k: 0.0, steps=1, key=jax.random.key(0)),
        raises(r"problem", TypeError),
    ),
    Case(
        "multistart zero steps",
        lambda: fit.multistart(Bowl(), {"x": jnp.zeros((2, 2))}, steps=0, key=jax.random.key(0)),
        raises(r"steps must be a positive integer"),
    ),
    Case(
        "multistart starts without a leading axis",
        lambda: fit.multistart(Bowl(), {"x": jnp.zeros(2)}, steps=1, key=jax.random.key(0)),
        raises(r"starts|\bx\b.*shape"),
    ),
    Case(
        "bo lower above upper",
        lambda: BayesianOptimisation(np.ones(2), np.zeros(2)),
        raises(r"lower must be < upper in every dimension"),
    ),
    Case(
        "bo infinite bound",
        lambda: RandomSearch(np.zeros(2), np.array([1.0, INF])),
        raises(r"lower and upper must be finite"),
    ),
    Case(
        "bo bounds of different shapes",
        lambda: RandomSearch(np.zeros(2), np.ones(3)),
        raises(r"lower and upper must be \(d,\) arrays of one shape"),
    ),
    Case(
        "bo unknown acquisition",
        lambda: BayesianOptimisation(np.zeros(2), np.ones(2), acquisition="pi"),
        raises(r"acquisition"),
    ),
    Case(
        "bo negative beta",
        lambda: BayesianOptimisation(np.zeros(2), np.ones(2), beta=-1.0),
        raises(r"beta must be finite and >= 0"),
    ),
    Case(
        "bo nan beta",
        lambda: BayesianOptimisation(np.zeros(2), np.ones(2), beta=NAN),
        raises(r"beta must be finite and >= 0"),
    ),
    Case(
        "bo objective returns nan",
        lambda: RandomSearch(np.zeros(2), np.ones(2)).run(
            lambda x: NAN, jax.random.key(0), 3, progress=None
        ),
        raises(r"objective"),
    ),
    Case(
        "bo objective returns a vector",
        lambda: RandomSearch(np.zeros(2), np.ones(2)).run(
            lambda x: x, jax.random.key(0), 3, progress=None
        ),
        raises(r"objective"),
    ),
    Case(
        "bo initial points outside the box",
        lambda: RandomSearch(np.zeros(2), np.ones(2)).init(
            jax.random.key(0), initial_points=np.full((2, 2), 3.0)
        ),
        raises(r"initial_points"),
    ),
    Case(
        "bo zero evaluations",
        lambda: RandomSearch(np.zeros(2), np.ones(2)).run(
            lambda x: 0.0, jax.random.key(0), 0, progress=None
        ),
        raises(r"n_evaluations"),
    ),
    Case(
        "config unknown key",
        lambda: Knobs.from_mapping({"rte": 0.1}),
        raises(r"unknown key\(s\) \['rte'\] in config; known"),
    ),
    Case(
        "config wrong type",
        lambda: Knobs.from_mapping({"steps": "ten"}),
        raises(r"steps in config must be of type int; got 'ten'"),
    ),
    Case(
        "config nan",
        lambda: Knobs.from_mapping({"rate": NAN}),
        raises(r"rate in config must be a number, not nan"),
    ),
    Case(
        "config nan in a list",
        lambda: Knobs.from_mapping({"sizes": [1.0, NAN]}),
        raises(r"sizes in config must be numbers, not nan"),
    ),
    Case(
        "config list of strings",
        lambda: Knobs.from_mapping({"sizes": ["a"]}),
        raises(r"sizes in config must be"),
    ),
    Case(
        "config integer for a string",
        lambda: Knobs.from_mapping({"name": 3}),
        raises(r"name in config must be of type str"),
    ),
    Case(
        "config bool for an int",
        lambda: Knobs.from_mapping({"steps": True}),
        raises(r"steps in config must be of type int"),
    ),
    Case(
        "sweep grid zero points",
        lambda: axes.grid("a", 0.0, 1.0, 0),
        raises(r"sweep axis 'a': num must be an integer >= 1"),
    ),
    Case(
        "sweep grid log from 0",
        lambda: axes.grid("a", 0.0, 1.0, 3, log=True),
        raises(r"sweep axis 'a': start"),
    ),
    Case("sweep grid nan", lambda: axes.grid("a", NAN, 1.0, 3), raises(r"sweep axis 'a': start")),
    Case(
        "sweep integers empty", lambda: axes.integers("a", 3, 3), raises(r"sweep axis 'a' is empty")
    ),
    Case(
        "sweep integers step 0", lambda: axes.integers("a", 0, 3, 0), raises(r"step must not be 0")
    ),
    Case(
        "sweep spec no target",
        lambda: SweepSpec.from_mapping({"axes": [{"a": [1, 2]}]}),
        raises(r"target must name a command as 'domain verb'"),
    ),
    Case(
        "sweep spec no axes",
        lambda: SweepSpec.from_mapping({"target": "ares calibrate"}),
        raises(r"a sweep needs at least one \[\[axes\]\] table"),
    ),
    Case(
        "sweep spec axes not tables",
        lambda: SweepSpec.from_mapping({"target": "ares calibrate", "axes": [1, 2]}),
        raises(r"axes in sweep must be \[\[axes\]\] tables"),
    ),
    Case(
        "sweep spec zipped lengths differ",
        lambda: SweepSpec.from_mapping(
            {"target": "ares calibrate", "axes": [{"a": [1, 2], "b": [1]}]}
        ),
        raises(r"\ba\b.*\bb\b"),
    ),
    Case(
        "sweep spec negative chunk",
        lambda: SweepSpec.from_mapping(
            {"target": "ares calibrate", "axes": [{"a": [1]}], "chunk": -1}
        ),
        raises(r"chunk must be >= 0"),
    ),
    Case(
        "sweep spec pareto of one",
        lambda: SweepSpec.from_mapping(
            {"target": "ares calibrate", "axes": [{"a": [1]}], "pareto": ["x"]}
        ),
        raises(r"pareto must name two outcomes"),
    ),
    Case(
        "sweep spec sample without range",
        lambda: SweepSpec.from_mapping(
            {"target": "ares calibrate", "axes": [{"sample": {"method": "random", "n": 4}}]}
        ),
        raises(r"sampled sweep axis needs at least one key with a range"),
    ),
    Case(
        "sweep spec unknown sampler",
        lambda: SweepSpec.from_mapping(
            {
                "target": "ares calibrate",
                "axes": [{"sample": {"method": "sobol", "n": 4}, "a": {"low": 0, "high": 1}}],
            }
        ),
        raises(r"sobol"),
    ),
    Case("cli unknown domain", lambda: cli(["warp", "drive"]), raises(r"invalid choice: 'warp'")),
    Case(
        "cli track q1 1e6",
        lambda: cli(["ares", "track", "--q1", "1e6", "--quiet"]),
        raises(r"--q1 \(1/m\^2\) must lie in \[-30.0, 30.0\]"),
    ),
    Case(
        "cli track q1 nan",
        lambda: cli(["ares", "track", "--q1", "nan", "--quiet"]),
        raises(r"--q1 \(1/m\^2\) must be finite"),
    ),
    Case(
        "cli track q1 word",
        lambda: cli(["ares", "track", "--q1", "ten"]),
        raises(r"argument --q1: invalid float value: 'ten'"),
    ),
    Case(
        "cli track misalignments count",
        lambda: cli(["ares", "track", "--misalignments", "0"]),
        raises(r"argument --misalignments: expected 6 arguments"),
    ),
    Case(
        "cli track misalignments 1 m",
        lambda: cli(["ares", "track", "--misalignments", "1", "0", "0", "0", "0", "0", "--quiet"]),
        raises(r"--misalignments \(m\) must lie in"),
    ),
    Case(
        "cli track negative incoming size",
        lambda: cli(["ares", "track", "--incoming-sigma-y", "-1e-4", "--quiet"]),
        raises(r"sigma_y"),
    ),
    Case(
        "cli seed word",
        lambda: cli(["ares", "study", "--seed", "one"]),
        raises(r"argument --seed: invalid int value"),
    ),
    Case(
        "cli abbreviated flag",
        lambda: cli(["ares", "track", "--q", "1"]),
        raises(r"unrecognized arguments|ambiguous|--q"),
    ),
]


@parametrize(CASES)
def test_case(case):
    run_case(case)


# ------------------------------------------------------------------------- files


def _npz_garbage(path):
    path.write_bytes(b"PK\x03\x04\x14\x00 truncated zip")


def _npz_empty(path):
    path.write_bytes(b"")


def _npz_binary(path):
    path.write_bytes(bytes(range(256)))


def _npz_foreign(path):
    np.savez(path, weights=np.ones(3))


def _npz_bad_header(path):
    np.savez(path, __metadata__=np.frombuffer(b"\xff\xfe not json", dtype=np.uint8))


def _npz_header_list(path):
    np.savez(path, __metadata__=np.frombuffer(b"[1, 2]", dtype=np.uint8))


def _npz_n_leaves_string(path):
    header = {"format": "diffdesign.checkpoint", "version": 1, "n_leaves": "three"}
    np.savez(path, __metadata__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))


CHECKPOINT_FILES = {
    "truncated zip": _npz_garbage,
    "empty": _npz_empty,
    "binary": _npz_binary,
    "foreign npz": _npz_foreign,
    "header not utf-8 json": _npz_bad_header,
    "header a list": _npz_header_list,
    "n_leaves a string": _npz_n_leaves_string,
}


@pytest.mark.parametrize("kind", list(CHECKPOINT_FILES), ids=list(CHECKPOINT_FILES))
def test_checkpoint_file(kind, tmp_path):
    path = tmp_path / "state.npz"
    CHECKPOINT_FILES[kind](path)
    run_case(
        Case(
            f"checkpoint {kind}",
            lambda: _checkpoint.load_checkpoint(path, {"a": np.zeros(2)}),
            raises(r"state\.npz is not a readable diffdesign checkpoint"),
        )
    )
    run_case(
        Case(
            f"record {kind}",
            lambda: _checkpoint.load_record(path),
            raises(r"state\.npz is not a readable diffdesign record"),
        )
    )


def _damaged_fit_checkpoint(path, damage):
    """A fit's checkpoint at ``path``, rewritten with ``damage(state, header)``."""
    _run(checkpoint=path)
    with np.load(path) as archive:
        n = len([k for k in archive.files if k.startswith("leaf_")])
        template = [archive[f"leaf_{i}"] for i in range(n)]
    state, header = _checkpoint.load_checkpoint(path, template)
    state, header = damage(state, header)
    kept = {k: v for k, v in header.items() if k not in ("format", "version", "n_leaves")}
    _checkpoint.save_checkpoint(path, state, kept)


def _nan_state(state, header):
    return jax.tree.map(
        lambda a: np.full_like(a, np.nan) if a.dtype.kind == "f" else a, state
    ), header


def _no_history(state, header):
    return state, {k: v for k, v in header.items() if k != "history"}


@pytest.mark.parametrize(
    "damage, pattern",
    [
        (_nan_state, r"fit\.npz holds non-finite numbers"),
        (_no_history, r"fit\.npz has no 'history'"),
    ],
    ids=["state replaced by NaN", "no history"],
)
def test_damaged_fit_checkpoint_is_refused(damage, pattern, tmp_path):
    """A fit's checkpoint whose state was replaced by NaN (or whose history is gone) is
    refused on resume, not continued."""
    path = tmp_path / "fit.npz"
    _damaged_fit_checkpoint(path, damage)
    run_case(
        Case(
            f"fit resumes a checkpoint: {damage.__name__}",
            lambda: _run(steps=6, checkpoint=path),
            raises(pattern),
        )
    )


def test_handled_nan_free_checkpoint_round_trip(tmp_path):
    path = tmp_path / "ok.npz"
    _checkpoint.save_checkpoint(path, {"a": np.arange(3.0)}, {"settings": {}})
    run_case(
        Case(
            "checkpoint round trip",
            lambda: _checkpoint.load_checkpoint(path, {"a": np.zeros(3)}, finite=True),
            handled(lambda r: np.array_equal(r[0]["a"], np.arange(3.0))),
        )
    )


TOML_FILES = {
    "binary": (b"\xff\xfe\x00\x01", r"cannot read study config .*knobs\.toml"),
    "malformed": (b"rate = = 1", r"cannot read study config .*knobs\.toml"),
    "nan": (b"rate = nan", r"rate in .*knobs\.toml must be a number, not nan"),
    "unknown key": (b"rte = 0.1", r"unknown key\(s\) \['rte'\] in .*knobs\.toml"),
    "wrong type": (b"steps = 'ten'", r"steps in .*knobs\.toml must be of type int"),
}


@pytest.mark.parametrize("kind", list(TOML_FILES), ids=list(TOML_FILES))
def test_toml_config(kind, tmp_path):
    content, pattern = TOML_FILES[kind]
    path = tmp_path / "knobs.toml"
    path.write_bytes(content)
    run_case(Case(f"toml config {kind}", lambda: Knobs.from_toml(path), raises(pattern)))


def test_toml_config_missing(tmp_path):
    run_case(
        Case(
            "toml config missing",
            lambda: Knobs.from_toml(tmp_path / "none.toml"),
            raises(r"none\.toml", ValueError, FileNotFoundError),
        )
    )


def test_toml_config_suffix(tmp_path):
    path = tmp_path / "knobs.json"
    path.write_text("{}")
    run_case(
        Case(
            "toml config suffix",
            lambda: Knobs.from_toml(path),
            raises(r"study config must be a \.toml file; got 'knobs\.json'"),
        )
    )


CLI_CONFIGS = {
    "ares study binary": (["ares", "study"], b"\x00\xff\xfe", r"cannot read study config"),
    "ares study unknown key": (
        ["ares", "study"],
        b"budgett = 3",
        r"unknown key\(s\) \['budgett'\]",
    ),
    "ares study negative noise": (
        ["ares", "study"],
        b"screen_noise = -1e-5",
        r"screen_noise must lie in \[0.0, inf\]",
    ),
    "ares study nan noise": (["ares", "study"], b"screen_noise = nan", r"screen_noise"),
    "ares calibrate wrong type": (
        ["ares", "calibrate"],
        b"n_calibration = 'five'",
        r"n_calibration in .* must be of type int",
    ),
    "lgso binary": (["lgso", "benchmarks"], b"\x89PNG\r\n", r"cannot read study config"),
    "inferno unknown key": (
        ["inferno", "benchmarks"],
        b"temperatur = 0.1",
        r"unknown key\(s\) \['temperatur'\]",
    ),
    "joint malformed": (["joint", "ares"], b"[[[", r"cannot read study config"),
    "xpcs fit binary config": (["xpcs", "fit", "data.npz"], b"\xff\xfe\x00", r"cannot read config"),
}


@pytest.mark.parametrize("kind", list(CLI_CONFIGS), ids=list(CLI_CONFIGS))
def test_cli_config(kind, tmp_path):
    command, content, pattern = CLI_CONFIGS[kind]
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    argv = [*command, "--config", str(path), "--out", str(tmp_path / "out"), "--quiet"]
    run_case(Case(f"cli {kind}", lambda: cli(argv), raises(pattern)))


SWEEP_FILES = {
    "binary": (b"\xff\xfe\x00", r"cannot read .*sweep\.toml"),
    "no target": (b"[[axes]]\na = [1, 2]\n", r"target must name a command"),
    "unknown command": (b"target = 'ares fly'\n[[axes]]\nseed = [1, 2]\n", r"ares fly"),
    "unknown study key": (b"target = 'ares calibrate'\n[[axes]]\nnoize = [1e-6, 1e-5]\n", r"noize"),
}


@pytest.mark.parametrize("kind", list(SWEEP_FILES), ids=list(SWEEP_FILES))
def test_cli_sweep(kind, tmp_path):
    content, pattern = SWEEP_FILES[kind]
    path = tmp_path / "sweep.toml"
    path.write_bytes(content)
    argv = ["sweep", str(path), "--out", str(tmp_path / "out"), "--quiet"]
    run_case(Case(f"cli sweep {kind}", lambda: cli(argv), raises(pattern)))


def test_cli_missing_config(tmp_path):
    argv = ["ares", "study", "--config", str(tmp_path / "none.toml"), "--out", str(tmp_path)]
    run_case(Case("cli missing config", lambda: cli(argv), raises(r"none\.toml")))


# ----------------------------------------------------------------- property-based: Param


@settings(max_examples=25, deadline=None)
@given(
    value=st.floats(allow_nan=True, allow_infinity=True),
    lower=st.floats(-10, 10),
    width=st.floats(-1, 10),
)
def test_param_values(value, lower, width):
    """A Param holds a finite value within bounds, or says which of value/bounds is wrong."""
    upper = lower + width
    call = lambda: Param(value, lower, upper, step=0.1, label="p")
    good = np.isfinite(value) and lower < upper and lower - 1e-9 <= value <= upper + 1e-9
    if good:
        expect = handled(finite_everywhere, "a finite Param")
    elif np.isfinite(value) and not lower < upper:
        expect = raises(r"\bp: bounds need lower < upper")
    else:
        expect = raises(r"\bp\b.*(finite|outside its bounds)")
    run_case(Case(f"Param({value}, {lower}, {upper})", call, expect), record=False)
