"""The design layer every domain plugs into.

- Parameter specs: :class:`Param` (value, bounds, transform :class:`Identity` /
  :class:`Log` / :class:`Box`, step size, label, unit); a domain publishes the spec of its
  design variables (``ares.settings_spec``, ``ares.offsets_spec``,
  ``muography.detector_spec``, ...).
- Problems: :class:`Problem` (``spec`` + ``loss(params, key) -> (scalar, aux)``) and
  :class:`ResidualProblem`; ``p + q`` is one problem over the union of the specs, ``w * p``
  weights one.
- One loop: :class:`Fit` (pure ``init``/``step``), :func:`run` (progress, early stop,
  atomic checkpoints, exact resume), :func:`multistart` (vmapped over starts), optimisers
  :class:`Adam` with schedules.
- Black-box search: :class:`BayesianOptimisation` (GP with an optional physics prior mean)
  and :class:`RandomSearch`, with checkpointed, resumable state.

The domain-free core lives in :mod:`diffdesign.core` (so that ``inference`` and
``surrogates`` can use the same loop); this package is the public face.
"""

from diffdesign.core import (
    Adam,
    Box,
    Constant,
    ConstantThenCosine,
    CosineDecay,
    EarlyStop,
    Fit,
    FitResult,
    FitState,
    FoldIn,
    Identity,
    Interrupted,
    KeySchedule,
    Log,
    MembersResult,
    MultistartResult,
    Optax,
    Optimiser,
    Param,
    Problem,
    ResidualProblem,
    SameKey,
    Schedule,
    Split,
    SplitPerChunk,
    StepInfo,
    Sum,
    Transform,
    check_params,
    merge,
    multistart,
    n_parameters,
    param_names,
    run,
    run_members,
    stop_on_signal,
    unbounded,
    values,
    with_values,
)
from diffdesign.design.bayesopt import (
    BayesianOptimisation,
    RandomSearch,
    SearchState,
    StepRecord,
    latin_hypercube,
)

__all__ = [
    "Adam", "BayesianOptimisation", "Box", "Constant", "ConstantThenCosine", "CosineDecay",
    "EarlyStop", "Fit", "FitResult", "FitState", "FoldIn", "Identity", "Interrupted",
    "KeySchedule", "Log", "MembersResult", "MultistartResult", "Optax", "Optimiser", "Param",
    "Problem", "RandomSearch", "ResidualProblem", "SameKey", "Schedule", "SearchState", "Split",
    "SplitPerChunk", "StepInfo", "StepRecord", "Sum", "Transform", "check_params",
    "latin_hypercube", "merge", "multistart", "n_parameters", "param_names", "run", "run_members",
    "stop_on_signal", "unbounded", "values", "with_values",
]  # fmt: skip
