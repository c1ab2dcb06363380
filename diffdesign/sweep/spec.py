"""The sweep file: which study, its fixed settings, the axes, and how to run them.

Example ``noise.toml`` (``diffdesign sweep noise.toml``)::

    target = "ares calibrate"       # a command: diffdesign <domain> <verb>
    memory_budget_gib = 4           # refuse a chunk whose compiled program needs more
    pareto = ["rms_error_um", "n_calibration"]   # two outcomes to minimise (optional)

    [config]                        # the study's keys fixed for every point
    n_calibration = 15

    [[axes]]                        # one table per axis; the axes form a product
    screen_noise = {start = 1e-6, stop = 1e-4, num = 10, log = true}

    [[axes]]
    seed = {start = 0, stop = 100}  # integers 0..99

    [[axes]]                        # keys in one table are zipped (equal lengths)
    bound = [1e-4, 5e-4]
    incoming_sigma_y = [5e-5, 1e-4]

    [[axes]]                        # drawn together: latin_hypercube or random
    sample = {method = "latin_hypercube", n = 64, seed = 0}
    screen_noise = {low = 1e-6, high = 1e-4, log = true}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from diffdesign._config import TomlConfig
from diffdesign.sweep.axes import Block, LatinHypercube, Range, Sample, Sampler, Uniform, Values
from diffdesign.sweep.axes import grid as _grid
from diffdesign.sweep.axes import integers as _integers

SAMPLERS: dict[str, type[Sampler]] = {"latin_hypercube": LatinHypercube, "random": Uniform}


@dataclasses.dataclass(frozen=True)
class SweepSpec(TomlConfig):
    """A sweep read from TOML (see the module docstring for the file).

    Attributes:
        target: the command swept, ``"domain verb"`` as on the command line.
        config: ``(key, value)`` pairs of the study's config fixed for every point.
        axes: the blocks (:mod:`diffdesign.sweep.axes`), combined as a product.
        chunk: points per compiled batch and per record (0: the runner picks).
        memory_budget_gib: refuse before running if one batch's compiled program needs more.
        outcomes: the outcomes kept in the table and plotted (empty: every outcome).
        pareto: two outcomes to minimise together (a Pareto-front plot), or empty.
        separate: run every point on its own even where the target can batch them.
    """

    target: str = ""
    config: tuple[tuple[str, Any], ...] = ()
    axes: tuple[Block, ...] = ()
    chunk: int = 0
    memory_budget_gib: float | None = None
    outcomes: tuple[str, ...] = ()
    pareto: tuple[str, ...] = ()
    separate: bool = False

    OPTIONAL: ClassVar[dict[str, type | tuple[type, ...]]] = {"memory_budget_gib": float}

    def __post_init__(self):
        if len(self.target.split()) != 2:
            raise ValueError(
                f"target must name a command as 'domain verb' (e.g. 'ares calibrate'); "
                f"got {self.target!r}"
            )
        if not self.axes:
            raise ValueError("a sweep needs at least one [[axes]] table")
        if self.chunk < 0:
            raise ValueError(f"chunk must be >= 0 (0: automatic); got {self.chunk}")
        if self.memory_budget_gib is not None and not self.memory_budget_gib > 0:
            raise ValueError(f"memory_budget_gib must be > 0; got {self.memory_budget_gib}")
        if self.pareto and len(self.pareto) != 2:
            raise ValueError(f"pareto must name two outcomes; got {list(self.pareto)}")

    @property
    def fixed(self) -> dict[str, Any]:
        return dict(self.config)

    def smoke(self) -> SweepSpec:
        """The same sweep on the first two values of every axis (two draws of a sample)."""
        return dataclasses.replace(self, axes=tuple(_first_two(b) for b in self.axes))

    @classmethod
    def from_mapping(cls, content: Mapping[str, Any], where: str = "sweep") -> SweepSpec:
        content = dict(content)
        if "config" in content:
            if not isinstance(content["config"], Mapping):
                raise ValueError(f"config in {where} must be a table of the study's keys")
            content["config"] = tuple(content["config"].items())
        if "axes" in content:
            axes = content["axes"]
            if not isinstance(axes, list) or not all(isinstance(a, Mapping) for a in axes):
                raise ValueError(f"axes in {where} must be [[axes]] tables")
            content["axes"] = tuple(
                parse_block(a, f"[[axes]] {i} of {where}") for i, a in enumerate(axes)
            )
        return super().from_mapping(content, where)


def _first_two(block: Block) -> Block:
    if isinstance(block, Values):
        return Values({k: v[:2] for k, v in block.columns.items()})
    return dataclasses.replace(block, n=min(block.n, 2))


def parse_block(table: Mapping[str, Any], where: str) -> Block:
    """One ``[[axes]]`` table: lists and grids (zipped), or a sample over ranges."""
    table = dict(table)
    if not table:
        raise ValueError(f"{where} is empty: give at least one key")
    if "sample" in table:
        return _parse_sample(table.pop("sample"), table, where)
    columns: dict[str, tuple] = {}
    for key, entry in table.items():
        if isinstance(entry, list):
            columns[key] = tuple(entry)
        elif isinstance(entry, Mapping):
            columns[key] = _parse_grid(key, entry, where).columns[key]
        else:
            raise ValueError(
                f"{where}: {key} must be a list of values or a table "
                f"{{start, stop, num[, log]}} / {{start, stop[, step]}}; got {entry!r}"
            )
    return Values(columns)


def _parse_grid(key: str, entry: Mapping[str, Any], where: str) -> Values:
    allowed = {"start", "stop", "num", "log", "step"}
    unknown = sorted(set(entry) - allowed)
    if unknown or not {"start", "stop"} <= set(entry):
        raise ValueError(
            f"{where}: {key} needs start and stop (and num, log for a grid or step for "
            f"integers); got keys {sorted(entry)}"
        )
    if "num" in entry:
        if "step" in entry:
            raise ValueError(f"{where}: {key} takes num (a grid) or step (integers), not both")
        return _grid(key, float(entry["start"]), float(entry["stop"]), entry["num"],
                     log=bool(entry.get("log", False)))  # fmt: skip
    if "log" in entry:
        raise ValueError(f"{where}: {key} has log but no num (log applies to grids)")
    return _integers(key, entry["start"], entry["stop"], entry.get("step", 1))


def _parse_sample(sample: Any, ranges: Mapping[str, Any], where: str) -> Sample:
    if not isinstance(sample, Mapping) or set(sample) - {"method", "n", "seed"}:
        raise ValueError(f"{where}: sample must be a table {{method, n, seed}}; got {sample!r}")
    method = sample.get("method", "latin_hypercube")
    if method not in SAMPLERS:
        raise ValueError(
            f"{where}: sample method must be one of {sorted(SAMPLERS)}; got {method!r}"
        )
    parsed = {}
    for key, entry in ranges.items():
        if (
            not isinstance(entry, Mapping)
            or not {"low", "high"} <= set(entry)
            or (set(entry) - {"low", "high", "log"})
        ):
            raise ValueError(
                f"{where}: sampled key {key} must be {{low, high[, log]}}; got {entry!r}"
            )
        parsed[key] = Range(
            float(entry["low"]), float(entry["high"]), bool(entry.get("log", False))
        )
    return Sample(SAMPLERS[method](), sample.get("n", 0), parsed, sample.get("seed", 0))
