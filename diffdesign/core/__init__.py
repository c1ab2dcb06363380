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
    MultistartResult,
    Schedule,
    StepInfo,
    multistart,
    n_parameters,
    run,
)
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
    values,
    with_values,
)

__all__ = [
    "Adam", "Box", "Constant", "ConstantThenCosine", "CosineDecay", "EarlyStop", "Fit",
    "FitResult", "FitState", "Identity", "Log", "MultistartResult", "Param", "Problem",
    "ResidualProblem", "Schedule", "StepInfo", "Sum", "Transform", "check_params", "internal",
    "is_param", "labels", "merge", "multistart", "n_parameters", "param_names", "project", "run",
    "step_sizes", "to_physical", "values", "with_values",
]  # fmt: skip
