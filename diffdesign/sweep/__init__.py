"""Sweeps: any study or design problem over axes of its settings, on every device.

- :mod:`~diffdesign.sweep.axes` — blocks of keys (values, grids, integers, Latin-hypercube
  or uniform samples), zipped inside a block, a product across blocks;
- :mod:`~diffdesign.sweep.targets` — what runs at a point: a study (:class:`StudyTarget`),
  a study that is pure in some keys and runs as one vmapped program
  (:class:`BatchedTarget`), or a design problem's loss (:class:`ProblemTarget`);
- :func:`run` — batches sharded over a ``Mesh`` of all devices (one or several processes
  through ``jax.distributed``), separate points shared out by the same sharding, one
  atomic record per finished chunk or point (a rerun resumes), a progress bar;
- :mod:`~diffdesign.sweep.table` — ``results.jsonl`` and ``results.nc`` (:func:`load`),
  and plots (lines with bands, heatmaps, Pareto fronts).

``diffdesign sweep SPEC.toml`` runs a sweep file (:class:`SweepSpec`) on any command.
"""

from diffdesign.sweep.axes import (
    LatinHypercube,
    Range,
    Sample,
    Sampler,
    Uniform,
    Values,
    expand,
    grid,
    integers,
)
from diffdesign.sweep.runner import SweepResult, check, run
from diffdesign.sweep.spec import SweepSpec
from diffdesign.sweep.table import dataset, load, load_rows
from diffdesign.sweep.targets import (
    BatchedTarget,
    ProblemTarget,
    StudyTarget,
    Target,
    outcomes_of,
)

__all__ = [
    "BatchedTarget", "LatinHypercube", "ProblemTarget", "Range", "Sample", "Sampler",
    "StudyTarget", "SweepResult", "SweepSpec", "Target", "Uniform", "Values", "check", "dataset",
    "expand", "grid", "integers", "load", "load_rows", "outcomes_of", "run",
]  # fmt: skip
