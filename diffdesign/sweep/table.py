"""A sweep's results as one table: JSON lines and an xarray Dataset (netCDF4), reloadable.

``results.jsonl``: one object per point, ``{"index": i, <axis keys>: ..., <outcomes>: ...}``
(arrays as nested lists, NaN as null). ``results.nc``: one dimension per axis (named after
its keys, joined by "+" when zipped or sampled together), each swept key a coordinate on
its axis's dimension, each outcome a variable over the axes (and its own axes,
``<name>_dim0`` ...); the sweep's definition is in the attribute ``sweep`` (JSON).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diffdesign.sweep.axes import block_name

if TYPE_CHECKING:
    import xarray

    from diffdesign.sweep.runner import SweepResult


def _json_value(value: Any) -> Any:
    array = np.asarray(value)
    if array.dtype.kind in "fc":
        listed = array.tolist()
        return _nan_to_none(listed)
    return array.tolist() if array.ndim else array.item()


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def rows(result: SweepResult) -> list[dict[str, Any]]:
    """One dict per point: index, the swept keys' values, the outcomes."""
    return [
        {"index": i}
        | {k: v[i] for k, v in result.columns.items()}
        | {k: _json_value(v[i]) for k, v in result.outcomes.items()}
        for i in range(result.n)
    ]


def dataset(result: SweepResult, fingerprint: Mapping[str, Any] | None = None) -> xarray.Dataset:
    """The results as an xarray Dataset with one dimension per axis."""
    import xarray as xr

    dims = [block_name(b) for b in result.blocks]
    coords = {}
    for dim, block in zip(dims, result.blocks, strict=True):
        table = block.table()
        for key, values in table.items():
            coords[key] = (dim, np.asarray(values))
    variables = {}
    for name, values in result.outcomes.items():
        extra = [f"{name}_dim{j}" for j in range(values.ndim - 1)]
        variables[name] = (dims + extra, values.reshape(*result.shape, *values.shape[1:]))
    attrs = {"sweep": json.dumps(fingerprint or {}, default=str)}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def write_tables(
    result: SweepResult, fingerprint: Mapping[str, Any], pareto: Sequence[str] = ()
) -> list[Path]:
    """Write ``results.jsonl``, ``results.nc`` and the plots into ``result.out`` (each file
    atomically: written aside, then renamed)."""
    out = result.out
    lines = "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows(result))
    jsonl = out / "results.jsonl"
    _atomic_write(jsonl, lambda path: path.write_text(lines))
    nc = out / "results.nc"
    data = dataset(result, fingerprint)
    _atomic_write(nc, lambda path: data.to_netcdf(path, engine="h5netcdf"))
    from diffdesign.sweep.plots import plot_sweep

    return [jsonl, nc, *plot_sweep(result, pareto)]


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)


def load(out: str | os.PathLike) -> xarray.Dataset:
    """The Dataset of a finished sweep in the folder ``out``."""
    import xarray as xr

    path = Path(out) / "results.nc"
    if not path.exists():
        raise ValueError(f"no finished sweep in {out}: {path.name} is missing")
    with xr.open_dataset(path, engine="h5netcdf") as data:
        return data.load()


def load_rows(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``results.jsonl`` of a finished sweep."""
    path = Path(out) / "results.jsonl"
    if not path.exists():
        raise ValueError(f"no finished sweep in {out}: {path.name} is missing")
    return [json.loads(line) for line in path.read_text().splitlines() if line]
