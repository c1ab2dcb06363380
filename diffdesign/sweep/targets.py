"""What a sweep runs at each point: a target.

- :class:`StudyTarget` — any study: a config class (``TomlConfig``) and a function
  ``run(config, out) -> results`` run once per point into the point's own folder (the
  study's own checkpoints make each point resumable too); the outcomes are the numbers of
  its results.
- :class:`BatchedTarget` — a study whose work is a pure JAX function of some of its config
  keys (``traced``): the points that share the other keys run as one vmapped, compiled
  program sharded over the devices. It can also run point by point like a study.
- :class:`ProblemTarget` — any design :class:`~diffdesign.core.Problem`: the axes set
  entries of its parameters (``"settings[2,0]"``, within their bounds), the outcomes are the
  loss and the scalars of its aux; always batched.

Outcomes are named arrays per point: scalars, or small fixed-shape arrays.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray

from diffdesign._config import TomlConfig
from diffdesign.core.problem import Problem
from diffdesign.core.spec import is_param, param_names, values

Outcomes = dict[str, Any]


class Target(abc.ABC):
    """A sweepable piece of work; see the module docstring."""

    name: str
    #: units of keys and outcomes, for labels (``{"screen_noise": "m"}``).
    units: Mapping[str, str] = {}

    @abc.abstractmethod
    def known_keys(self) -> tuple[str, ...]:
        """The keys an axis or the fixed config may set."""

    @abc.abstractmethod
    def check_point(self, point: Mapping[str, Any], where: str) -> None:
        """Raise ``ValueError`` (naming the key and the allowed range) for a bad point."""

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed sweep must share with the sweep that wrote its records."""
        return {"target": self.name}


class SeparatePoints(Target):
    """A target that runs one point at a time."""

    @abc.abstractmethod
    def run_point(self, point: Mapping[str, Any], out: Path) -> Outcomes:
        """The outcomes of one point, working in the folder ``out``."""


class Batchable(Target):
    """A target whose points run as one vmapped program per group of static keys."""

    traced: frozenset[str]

    @abc.abstractmethod
    def program(self, static: Mapping[str, Any]) -> Callable[[dict[str, Array]], Outcomes]:
        """The pure function of one point's traced values (scalars) for these static values."""

    def cache_key(self) -> Hashable:
        """Targets with equal keys share compiled programs (for equal static values)."""
        return id(self)


#: Largest array (entries) a study's results contribute as an outcome of a point.
MAX_OUTCOME_SIZE = 64


def outcomes_of(tree: Any, prefix: str = "") -> Outcomes:
    """The numbers of a JSON-like results tree, keys joined by dots: scalars (booleans as
    0/1) and rectangular numeric lists of at most ``MAX_OUTCOME_SIZE`` entries."""
    found: Outcomes = {}
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            found |= outcomes_of(value, f"{prefix}{key}.")
    elif isinstance(tree, bool | int | float):
        found[prefix[:-1]] = np.float64(tree)
    elif isinstance(tree, list) and tree:
        try:
            array = np.asarray(tree, dtype=float)
        except (TypeError, ValueError):
            return found
        if array.size <= MAX_OUTCOME_SIZE:
            found[prefix[:-1]] = array
    return found


@dataclasses.dataclass(frozen=True)
class StudyTarget(SeparatePoints):
    """A study: ``run(point, out)`` returns its results (a JSON-like dict); the outcomes
    are its numbers (:func:`outcomes_of`: ``calibration.mean_absolute_error_um`` ...).

    Args:
        name: the command, ``"domain verb"``.
        config_type: the study's config class; every point's config is built and
            validated with it before any point runs.
        run: ``run(point, out) -> results``, ``point`` the point's config keys as read
            from TOML (``config_type.from_mapping(point)`` is its config).
        units: units of config keys and outcomes, for the plots.
    """

    name: str
    config_type: type[TomlConfig]
    run: Callable[[Mapping[str, Any], Path], Mapping[str, Any]]
    units: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def known_keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.config_type))

    def config(self, point: Mapping[str, Any], where: str = "sweep point") -> TomlConfig:
        return self.config_type.from_mapping(dict(point), where)

    def check_point(self, point, where):
        self.config(point, where)

    def run_point(self, point, out):
        results = self.run(point, out)
        return outcomes_of(json.loads(json.dumps(results)))


@dataclasses.dataclass(frozen=True)
class BatchedTarget(StudyTarget, Batchable):
    """A study whose outcomes are ``point(static_config, traced_values)``, pure in the
    ``traced`` keys (floats or ints), so points sharing every other key run vmapped. Run
    point by point (``separate``) it runs the study itself, whose results must hold the
    same outcomes under the same names: the batched program is checked against it.

    Args:
        traced: the config keys the compiled program takes as arguments.
        point: ``point(config, traced) -> outcomes``: ``config`` is the point's validated
            config (read only its static keys), ``traced`` maps each traced key to a scalar
            array (a tracer: the function is vmapped and compiled).
    """

    traced: frozenset[str] = frozenset()
    point: Callable[[TomlConfig, dict[str, Array]], Outcomes] | None = None

    def __post_init__(self):
        unknown = sorted(set(self.traced) - set(self.known_keys()))
        if unknown or self.point is None:
            raise ValueError(f"{self.name}: traced keys {unknown} are not config keys")

    def cache_key(self):
        return (type(self), self.name, self.config_type, self.point)

    def program(self, static):
        """The point's function of the swept traced keys; the other traced keys keep the
        values of ``static`` (the point's config)."""
        config = self.config(static)
        fixed = {k: getattr(config, k) for k in self.traced}
        return lambda traced: self.point(config, {k: jnp.asarray(v) for k, v in fixed.items()}
                                         | traced)  # fmt: skip


class ProblemTarget(Batchable):
    """Sweep the parameters of a design problem: its loss and aux scalars at each point.

    Keys are the spec's parameter names with an index for array entries
    (``"settings[2,0]"``); entries not swept keep the spec's values. A value outside its
    parameter's bounds is refused before anything runs.

    Args:
        problem: the problem.
        key: the PRNG key passed to its loss (the same at every point).
        name: shown in the results.
    """

    def __init__(self, problem: Problem, key: PRNGKeyArray | None = None, name: str = ""):
        self.problem = problem
        self.key = jax.random.key(0) if key is None else key
        self.name = name or problem.name
        spec = problem.spec
        flat, self._unravel = ravel_pytree(values(spec))
        self._flat = flat
        names = jax.tree.leaves(param_names(spec))
        params = jax.tree.leaves(spec, is_leaf=is_param)
        self._entries: dict[str, tuple[int, float, float, str]] = {}
        offset = 0
        for name_, p in zip(names, params, strict=True):
            shape = np.shape(p.value)
            lower = np.broadcast_to(np.asarray(p.lower, float), shape)
            upper = np.broadcast_to(np.asarray(p.upper, float), shape)
            for i, index in enumerate(np.ndindex(shape) if shape else [()]):
                label = f"{name_}[{','.join(map(str, index))}]" if shape else name_
                self._entries[label] = (offset + i, float(lower[index]), float(upper[index]),
                                        p.unit)  # fmt: skip
            offset += int(np.prod(shape, dtype=int))
        self.traced = frozenset(self._entries)
        self.units = {k: e[3] for k, e in self._entries.items() if e[3]}

    def known_keys(self):
        return tuple(self._entries)

    def check_point(self, point, where):
        for key, value in point.items():
            _, low, high, unit = self._entries[key]
            if not isinstance(value, int | float) or not low <= value <= high:
                raise ValueError(
                    f"{key} in {where} must lie in [{low}, {high}] {unit}; got {value!r}"
                )

    def program(self, static):
        def point(traced):
            flat = self._flat
            for key, value in traced.items():
                flat = flat.at[self._entries[key][0]].set(value)
            loss, aux = self.problem.loss(self._unravel(flat), self.key)
            scalars = {k: v for k, v in _flatten_aux(aux).items() if jnp.ndim(v) == 0}
            return {"loss": loss} | scalars

        return point


def _flatten_aux(aux: Any, prefix: str = "") -> dict[str, Array]:
    if isinstance(aux, Mapping):
        found: dict[str, Array] = {}
        for key, value in aux.items():
            found |= _flatten_aux(value, f"{prefix}{key}.")
        return found
    return {prefix[:-1]: aux} if prefix else {}
