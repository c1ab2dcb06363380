"""The domain-free core of the design layer: bounds, parameter specs, problems and the one
optimisation loop. Every package of diffdesign may import it; users reach it through
:mod:`diffdesign.design`, which re-exports it."""

from diffdesign.core.bounds import Box, Identity, Log, Transform
from diffdesign.core.fit import (
    Adam,
    Constant,
    ConstantThenCosine,
    CosineDecay,
    EarlyStop,
    Fit,
    FitResult,
    FitState,
    FoldIn,
    KeySchedule,
    MembersResult,
    MultistartResult,
    Optax,
    Optimiser,
    SameKey,
    Schedule,
    Split,
    SplitPerChunk,
    StepInfo,
    multistart,
    n_parameters,
    run,
    run_members,
)
from diffdesign.core.interrupt import Interrupted, stop_on_signal
from diffdesign.core.problem import Problem, ResidualProblem, Sum
from diffdesign.core.spec import (
    Param,
    check_params,
    internal,
    is_param,
    labels,
    merge,
    param_names,
    project,
    step_sizes,
    to_physical,
    unbounded,
    values,
    with_values,
)

__all__ = [
    "Adam", "Box", "Constant", "ConstantThenCosine", "CosineDecay", "EarlyStop", "Fit",
    "FitResult", "FitState", "FoldIn", "Identity", "Interrupted", "KeySchedule", "Log",
    "MembersResult", "MultistartResult", "Optax", "Optimiser", "Param", "Problem",
    "ResidualProblem", "SameKey", "Schedule", "Split", "SplitPerChunk", "StepInfo", "Sum",
    "Transform", "check_params", "internal", "is_param", "labels", "merge", "multistart",
    "n_parameters", "param_names", "project", "run", "run_members", "step_sizes", "stop_on_signal",
    "to_physical", "unbounded", "values", "with_values",
]  # fmt: skip
