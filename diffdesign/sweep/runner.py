"""Run a sweep: vmapped, sharded batches where the target is pure, points one by one where
not; every finished chunk or point recorded atomically, so a killed sweep resumes.

Devices and hosts are JAX's own: the points of a batch form one array sharded over a 1-D
``Mesh`` of every device (``NamedSharding(mesh, P("points"))``), on one process or on
several started with ``jax.distributed.initialize`` (each process computes its addressable
shards; the outcomes are gathered with ``multihost_utils.process_allgather``). Points that
cannot be batched are shared out the same way: a process runs the points whose indices
that sharding places on its own devices. There is no process pool and no scheduler.

Output folder::

    sweep.json        the sweep's fingerprint; a rerun with another sweep is refused
    points/           one atomic record per finished chunk or point (resume reads them)
    runs/NNNNNNN/     the working folder of each separately run point
    results.jsonl     one line per point: index, axis values, outcomes
    results.nc        the same as an xarray Dataset, one dimension per axis (netCDF4)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diffdesign._checkpoint import check_settings, load_record, save_record
from diffdesign._progress import bar as progress_bar
from diffdesign.core.interrupt import Interrupted, running, stop_requested
from diffdesign.sweep.axes import Block, expand
from diffdesign.sweep.targets import Batchable, SeparatePoints, Target

#: Points per compiled batch (and per record) when the sweep does not say.
DEFAULT_CHUNK = 256
_GIB = 2**30


@dataclasses.dataclass
class SweepResult:
    """A finished sweep.

    Attributes:
        columns: the swept keys' value at each point (lists of length n).
        outcomes: each outcome as an array ``(n, ...)``.
        shape: the length of each axis (block); ``n = prod(shape)``.
        blocks: the axes.
        computed: points computed by this run (the others came from records).
        wall_s: wall time of this run (s).
        work_s: the points' own time in this run (s): each separate point's ``run_point``,
            each batch's compiled call.
        out: the output folder.
        units: units of the swept keys and outcomes that the target states.
    """

    columns: dict[str, list[Any]]
    outcomes: dict[str, np.ndarray]
    shape: tuple[int, ...]
    blocks: tuple[Block, ...]
    computed: int
    wall_s: float
    work_s: float
    out: Path
    units: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return math.prod(self.shape)

    @property
    def overhead(self) -> float:
        """(wall - points' own time) / points' own time of this run (nan if nothing ran)."""
        return (self.wall_s - self.work_s) / self.work_s if self.work_s > 0 else math.nan


def run(
    target: Target,
    blocks: Sequence[Block],
    out: str | os.PathLike,
    *,
    fixed: Mapping[str, Any] | None = None,
    chunk: int = 0,
    memory_budget_gib: float | None = None,
    separate: bool = False,
    outcomes: Sequence[str] = (),
    pareto: Sequence[str] = (),
    progress: bool = True,
) -> SweepResult:
    """Run ``target`` at every point of the product of ``blocks`` into ``out``.

    Args:
        target: what runs at a point (:mod:`diffdesign.sweep.targets`).
        blocks: the axes (:mod:`diffdesign.sweep.axes`).
        out: output folder; rerun into it to resume (finished points are not recomputed).
        fixed: keys of the target set to the same value at every point.
        chunk: points per compiled batch and per record (0: ``DEFAULT_CHUNK``, or the
            whole group if smaller), rounded up to a multiple of the device count.
        memory_budget_gib: refuse, before any point runs, a batch whose compiled program
            needs more memory per device (XLA's own estimate).
        separate: run a batchable target point by point (the reference for its batches).
        outcomes: the outcomes kept in the tables (empty: all).
        pareto: two outcomes (or swept keys) to minimise together: ``pareto.png``.
        progress: a progress bar (points done, rate, ETA) on stderr.

    Raises:
        ValueError: unknown keys, empty or mismatched axes, a point the target refuses, a
            batch over the memory budget, or an ``out`` holding another sweep — all before
            any point runs.
    """
    start = time.perf_counter()
    fixed = dict(fixed or {})
    blocks = tuple(blocks)
    columns, shape, points = check(target, blocks, fixed)
    n = len(points)
    batched = isinstance(target, Batchable) and not separate
    fingerprint = {
        **target.fingerprint(),
        "fixed": fixed,
        "columns": columns,
        "batched": batched,
        "chunk": chunk if batched else None,
    }
    if batched:  # compiled and checked before anything is written
        plan = _plan_batches(target, points, columns, chunk, memory_budget_gib)
        _check_outcomes(set(plan[0].compiled.out_info), columns, outcomes, pareto)
    out = Path(out)
    digest = _start(out, fingerprint)
    records = out / "points"
    done = _finished(records, digest, n)
    if batched:
        work = _run_batches(plan, records, digest, done, n, progress)
    else:
        if not isinstance(target, SeparatePoints):
            raise TypeError(f"{target.name} can only run batched")
        named = lambda names: _check_outcomes(names, columns, outcomes, pareto)
        work = _run_separately(target, points, out, records, digest, done, progress, named)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("diffdesign sweep: points done")
    found = _collect(records, digest, n)
    _check_outcomes(set(found), columns, outcomes, pareto)
    kept = {k: v for k, v in found.items() if not outcomes or k in outcomes}
    result = SweepResult(columns, kept, shape, blocks, work.computed,
                         time.perf_counter() - start, work.seconds, out, target.units)  # fmt: skip
    if jax.process_index() == 0:
        from diffdesign.sweep.table import write_tables

        write_tables(result, fingerprint, pareto)
    return result


def check(
    target: Target, blocks: Sequence[Block], fixed: Mapping[str, Any] | None = None
) -> tuple[dict[str, list[Any]], tuple[int, ...], list[dict[str, Any]]]:
    """Every point of the sweep, checked by the target without running anything:
    ``(columns, shape, points)``, each point the mapping of its config keys.

    Raises:
        ValueError: unknown keys, empty or mismatched axes, a point the target refuses.
    """
    fixed = dict(fixed or {})
    columns, shape = expand(blocks)
    _check_keys(target, fixed, columns)
    points = [fixed | {k: columns[k][i] for k in columns} for i in range(math.prod(shape))]
    for i, point in enumerate(points):
        target.check_point(point, f"sweep point {i} ({_describe(columns, i)})")
    return columns, shape, points


def _check_keys(target: Target, fixed: Mapping[str, Any], columns: Mapping[str, Any]) -> None:
    known = set(target.known_keys())
    for where, keys in (("config", fixed), ("axes", columns)):
        unknown = sorted(set(keys) - known)
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown} in the sweep's {where} for {target.name}; "
                f"known: {sorted(known)}"
            )
    both = sorted(set(fixed) & set(columns))
    if both:
        raise ValueError(f"key(s) {both} are both fixed in [config] and swept in [[axes]]")


def _check_outcomes(names, columns, outcomes, pareto) -> None:
    unknown = sorted(set(outcomes) - set(names))
    unknown_pareto = sorted(set(pareto) - set(names) - set(columns))
    if unknown or unknown_pareto:
        raise ValueError(
            f"the sweep names outcome(s) {unknown + unknown_pareto} that its target does not "
            f"give; outcomes: {sorted(names)}"
        )
    if pareto and len(pareto) != 2:
        raise ValueError(f"pareto must name two outcomes; got {list(pareto)}")


def _describe(columns: Mapping[str, list], i: int) -> str:
    return ", ".join(f"{k}={columns[k][i]!r}" for k in columns)


def _start(out: Path, fingerprint: dict[str, Any]) -> str:
    """Write or check ``sweep.json``; the digest tags every record of this sweep."""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = out / "sweep.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} is not a readable sweep file: {error}") from None
        check_settings(saved, json.loads(text), f"the sweep in {out} was started")
    elif jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("sweep.json.tmp")
        tmp.write_text(json.dumps(json.loads(text), indent=1))
        tmp.replace(path)
    return digest


def _finished(records: Path, digest: str, n: int) -> set[int]:
    """Indices of the points already recorded (records of another sweep are refused)."""
    mask = np.zeros(n, bool)
    for path in sorted(records.glob("*.npz")) if records.exists() else ():
        if path.name.endswith(".tmp.npz"):
            continue  # a write cut short: its points run again
        arrays, _ = load_record(path, {"sweep": digest})
        mask[arrays["index"].astype(int)] = True
    if jax.process_count() > 1:  # every process skips the chunks process 0 found
        mask = np.asarray(multihost_utils.broadcast_one_to_all(mask))
    return set(np.flatnonzero(mask).tolist())


def _collect(records: Path, digest: str, n: int) -> dict[str, np.ndarray]:
    outcomes: dict[str, np.ndarray] = {}
    seen = np.zeros(n, bool)
    for path in sorted(records.glob("*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        arrays, _ = load_record(path, {"sweep": digest})
        index = arrays.pop("index").astype(int)
        for name, value in arrays.items():
            if name not in outcomes:
                outcomes[name] = np.full((n, *value.shape[1:]), np.nan, dtype=float)
            outcomes[name][index] = value
        seen[index] = True
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise RuntimeError(f"sweep points {missing[:10].tolist()} ... have no record")
    return outcomes


class _Work:
    def __init__(self):
        self.computed = 0
        self.seconds = 0.0


@contextlib.contextmanager
def _progress_bar(total: int, done: int, enabled: bool):
    """A progress bar (points, rate, ETA) inside a loop that Ctrl-C / SIGTERM stop after the
    chunk or point in progress (its record written; see :mod:`diffdesign.core.interrupt`)."""
    points = progress_bar(total, done, "sweep", "point",
                          disable=not enabled or jax.process_index() != 0)
    with points, running():
        yield points


def _stop_if_asked(bar) -> None:
    if stop_requested():
        raise Interrupted("sweep", bar.n, bar.total, checkpointed=True)


# -- points one by one --------------------------------------------------------------------


def _my_points(n: int) -> set[int]:
    """The indices this process runs: those a ``NamedSharding`` over every device places on
    this process's devices (all of them on one process)."""
    if jax.process_count() == 1:
        return set(range(n))
    devices = jax.device_count()
    padded = -(-n // devices) * devices
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("points",)), PartitionSpec("points"))
    mine = set()
    for index in sharding.addressable_devices_indices_map((padded,)).values():
        mine.update(range(padded)[index[0]])
    return {i for i in mine if i < n}


def _run_separately(target, points, out, records, digest, done, progress, check) -> _Work:
    """Run this process's points not yet recorded; ``check(outcome names)`` after the
    first (a sweep naming outcomes its study does not give stops there)."""
    work = _Work()
    todo = sorted(_my_points(len(points)) - done)
    with _progress_bar(len(points), len(done), progress) as bar:
        for i in todo:
            t0 = time.perf_counter()
            outcomes = target.run_point(points[i], out / "runs" / f"{i:07d}")
            seconds = time.perf_counter() - t0
            if work.computed == 0:
                check(set(outcomes))
            arrays = {k: np.asarray(v)[None] for k, v in outcomes.items()}
            save_record(records / f"point-{i:07d}.npz", arrays | {"index": np.array([i])},
                        {"settings": {"sweep": digest}, "wall_s": seconds})  # fmt: skip
            work.computed += 1
            work.seconds += seconds
            bar.update(1)
            _stop_if_asked(bar)
    return work


# -- vmapped batches ----------------------------------------------------------------------


@dataclasses.dataclass
class _Batch:
    compiled: Any  # jax.stages.Compiled
    sharding: NamedSharding
    chunk: int
    indices: list[int]
    traced: dict[str, np.ndarray]  # per key, the group's values (aligned with indices)


def _plan_batches(target, points, columns, chunk, memory_budget_gib) -> list[_Batch]:
    """Group the points by their static keys and compile one program per group (checking
    the memory budget), before any point runs."""
    traced_keys = sorted(target.traced & set(columns))  # the swept ones; others are static
    groups: dict[str, list[int]] = {}
    for i, point in enumerate(points):
        static = {k: v for k, v in point.items() if k not in traced_keys}
        groups.setdefault(json.dumps(static, sort_keys=True, default=str), []).append(i)
    devices = jax.devices()
    sharding = NamedSharding(Mesh(np.array(devices), ("points",)), PartitionSpec("points"))
    plan = []
    for indices in groups.values():
        static = {k: v for k, v in points[indices[0]].items() if k not in traced_keys}
        size = min(chunk or DEFAULT_CHUNK, len(indices))
        size = -(-size // len(devices)) * len(devices)
        traced = {
            k: np.asarray([points[i][k] for i in indices],
                          dtype=np.int64 if all(_is_int(points[i][k]) for i in indices) else float)
            for k in traced_keys
        }  # fmt: skip
        example = {k: jax.ShapeDtypeStruct((size,), v.dtype, sharding=sharding)
                   for k, v in traced.items()}  # fmt: skip
        compiled = _compile(target, static, example, sharding)
        _check_memory(compiled, size, memory_budget_gib)
        plan.append(_Batch(compiled, sharding, size, indices, traced))
    return plan


#: Compiled batch programs of this process: a rerun (or another sweep of the same target
#: and static values) does not compile again.
_COMPILED: dict[Hashable, Any] = {}


def _compile(target: Batchable, static, example, sharding):
    key = (target.cache_key(), json.dumps(static, sort_keys=True, default=str),
           tuple((k, v.shape, str(v.dtype)) for k, v in sorted(example.items())),
           tuple(sharding.mesh.devices.flat))  # fmt: skip
    if key not in _COMPILED:
        if jax.process_index() == 0:
            print("sweep: compiling the batched program...", file=sys.stderr, flush=True)
        program = jax.jit(jax.vmap(target.program(static)), in_shardings=(sharding,),
                          out_shardings=sharding)  # fmt: skip
        _COMPILED[key] = program.lower(example).compile()
    return _COMPILED[key]


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_memory(compiled, size: int, budget_gib: float | None) -> None:
    if budget_gib is None:
        return
    stats = compiled.memory_analysis()
    if stats is None:
        return
    need = (stats.temp_size_in_bytes + stats.argument_size_in_bytes
            + stats.output_size_in_bytes + stats.generated_code_size_in_bytes) / _GIB  # fmt: skip
    if need > budget_gib:
        raise ValueError(
            f"a batch of {size} points needs {need:.3g} GiB per device (XLA's estimate), over "
            f"memory_budget_gib = {budget_gib}; set a smaller chunk (<= "
            f"{max(1, int(size * budget_gib / need))}) or raise the budget"
        )


def _run_batches(plan, records, digest, done, n, progress) -> _Work:
    work = _Work()
    with _progress_bar(n, len(done), progress) as bar:
        for batch in plan:
            for lo in range(0, len(batch.indices), batch.chunk):
                members = batch.indices[lo : lo + batch.chunk]
                if all(i in done for i in members):
                    continue
                pad = batch.chunk - len(members)
                take = np.r_[np.arange(lo, lo + len(members)), np.full(pad, lo + len(members) - 1)]
                args = {
                    k: jax.make_array_from_callback(
                        (batch.chunk,), batch.sharding, lambda idx, v=v[take]: v[idx]
                    )
                    for k, v in batch.traced.items()
                }  # fmt: skip
                t0 = time.perf_counter()
                outcomes = jax.block_until_ready(batch.compiled(args))
                work.seconds += time.perf_counter() - t0
                if jax.process_count() > 1:
                    outcomes = multihost_utils.process_allgather(outcomes, tiled=True)
                arrays = {k: np.asarray(v)[: len(members)] for k, v in outcomes.items()}
                if jax.process_index() == 0:
                    save_record(records / f"chunk-{members[0]:07d}.npz",
                                arrays | {"index": np.asarray(members)},
                                {"settings": {"sweep": digest}})  # fmt: skip
                work.computed += len(members)
                bar.update(len(members))
                _stop_if_asked(bar)
    return work
