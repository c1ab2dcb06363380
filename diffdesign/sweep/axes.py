"""Sweep axes: blocks of keys that vary together, combined as a product.

A sweep is a list of *blocks*. Inside a block every key has one value per point of the
block (the keys are zipped); the blocks are combined as a Cartesian product, the first
block varying slowest. Three kinds of block:

- :class:`Values` — explicit values, one column per key (a grid, or a zip of grids);
- :func:`grid` / :func:`integers` — evenly spaced (linear or logarithmic) or integer values
  of one key, returned as :class:`Values`;
- :class:`Sample` — ``n`` points drawn in a box of ranges by a :class:`Sampler`
  (:class:`LatinHypercube` or :class:`Uniform`), reproducible from its seed.

Example:
    >>> blocks = (grid("screen_noise", 1e-6, 1e-4, 5, log=True), integers("seed", 0, 100))
    >>> columns, shape = expand(blocks)       # 500 points, shape (5, 100)
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from diffdesign._sampling import latin_hypercube


@dataclasses.dataclass(frozen=True)
class Values:
    """Explicit values: ``columns`` maps each key to its values (all of one length: zipped)."""

    columns: Mapping[str, tuple[Any, ...]]

    def __post_init__(self):
        if not self.columns:
            raise ValueError("a sweep axis needs at least one key")
        lengths = {key: len(values) for key, values in self.columns.items()}
        if any(n == 0 for n in lengths.values()):
            empty = sorted(k for k, n in lengths.items() if n == 0)
            raise ValueError(f"sweep axis {empty} is empty: give it at least one value")
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"zipped sweep axes must have equal lengths; got {lengths} "
                "(put them in separate [[axes]] tables for a product)"
            )

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def table(self) -> dict[str, list[Any]]:
        return {key: list(values) for key, values in self.columns.items()}


def grid(key: str, start: float, stop: float, num: int, *, log: bool = False) -> Values:
    """``num`` evenly spaced values of ``key`` from ``start`` to ``stop`` (inclusive), on a
    logarithmic scale if ``log`` (then both ends must be > 0)."""
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"sweep axis {key!r}: num must be an integer >= 1; got {num!r}")
    for name, value in (("start", start), ("stop", stop)):
        if not math.isfinite(value) or (log and value <= 0):
            allowed = "> 0 (log = true)" if log else "finite"
            raise ValueError(f"sweep axis {key!r}: {name} must be {allowed}; got {value!r}")
    values = np.geomspace(start, stop, num) if log else np.linspace(start, stop, num)
    return Values({key: tuple(float(v) for v in values)})


def integers(key: str, start: int, stop: int, step: int = 1) -> Values:
    """The integers ``start, start + step, ...`` below ``stop`` (as Python's ``range``)."""
    for name, value in (("start", start), ("stop", stop), ("step", step)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"sweep axis {key!r}: {name} must be an integer; got {value!r}")
    if step == 0:
        raise ValueError(f"sweep axis {key!r}: step must not be 0")
    values = tuple(range(start, stop, step))
    if not values:
        raise ValueError(f"sweep axis {key!r} is empty: range({start}, {stop}, {step})")
    return Values({key: values})


class Sampler(abc.ABC):
    """How a :class:`Sample` fills its box: ``unit(n, d, seed)`` points in ``[0, 1)^d``."""

    @abc.abstractmethod
    def unit(self, n: int, d: int, seed: int) -> np.ndarray: ...


class LatinHypercube(Sampler):
    """One point in each of ``n`` slices of every axis."""

    def unit(self, n: int, d: int, seed: int) -> np.ndarray:
        return latin_hypercube(jax.random.key(seed), n, d)

    def __repr__(self) -> str:
        return "LatinHypercube()"


class Uniform(Sampler):
    """Independent uniform draws."""

    def unit(self, n: int, d: int, seed: int) -> np.ndarray:
        return np.asarray(jax.random.uniform(jax.random.key(seed), (n, d)))

    def __repr__(self) -> str:
        return "Uniform()"


@dataclasses.dataclass(frozen=True)
class Range:
    """The box of one sampled key: ``[low, high]``, sampled in log space if ``log``."""

    low: float
    high: float
    log: bool = False


@dataclasses.dataclass(frozen=True)
class Sample:
    """``n`` points of the keys of ``ranges`` drawn together by ``sampler`` from ``seed``."""

    sampler: Sampler
    n: int
    ranges: Mapping[str, Range]
    seed: int = 0

    def __post_init__(self):
        if not self.ranges:
            raise ValueError("a sampled sweep axis needs at least one key with a range")
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise ValueError(f"sampled sweep axis {self.keys}: n must be >= 1; got {self.n!r}")
        for key, r in self.ranges.items():
            ok = math.isfinite(r.low) and math.isfinite(r.high) and r.low < r.high
            if not ok or (r.log and r.low <= 0):
                need = "0 < low < high (log = true)" if r.log else "finite low < high"
                raise ValueError(
                    f"sampled sweep axis {key!r}: need {need}; got low={r.low}, high={r.high}"
                )

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.ranges)

    def table(self) -> dict[str, list[float]]:
        u = np.asarray(self.sampler.unit(self.n, len(self.ranges), self.seed), dtype=float)
        columns = {}
        for j, (key, r) in enumerate(self.ranges.items()):
            if r.log:
                values = np.exp(np.log(r.low) + u[:, j] * (np.log(r.high) - np.log(r.low)))
            else:
                values = r.low + u[:, j] * (r.high - r.low)
            columns[key] = [float(v) for v in values]
        return columns


Block = Values | Sample


def expand(blocks: Sequence[Block]) -> tuple[dict[str, list[Any]], tuple[int, ...]]:
    """Every point of the product of ``blocks``: ``({key: values per point}, shape)`` with
    ``shape`` the length of each block (the first block varies slowest).

    Raises:
        ValueError: no blocks, or a key in two blocks.
    """
    if not blocks:
        raise ValueError("a sweep needs at least one [[axes]] table")
    tables = [block.table() for block in blocks]
    seen: dict[str, int] = {}
    for i, table in enumerate(tables):
        for key in table:
            if key in seen:
                raise ValueError(
                    f"sweep key {key!r} appears in axes {seen[key]} and {i}; "
                    "a key may vary in one axis only (zip keys inside one [[axes]] table)"
                )
            seen[key] = i
    shape = tuple(len(next(iter(t.values()))) for t in tables)
    index = np.indices(shape).reshape(len(shape), -1)
    columns = {}
    for axis, table in enumerate(tables):
        for key, values in table.items():
            columns[key] = [values[i] for i in index[axis]]
    return columns, shape


def block_name(block: Block) -> str:
    """The dimension name of a block in the results Dataset: its key, or its keys joined."""
    return "+".join(block.keys)
