"""Optimisation loops over designs: Bayesian optimisation and random search over a box.

The searches take black-box objectives (Python callables) and optional physics models as
GP prior means; their state is explicit, checkpointed to JSON and resumable.
"""

from diffdesign.design.bayesopt import (
    BayesianOptimisation,
    RandomSearch,
    SearchState,
    StepRecord,
    latin_hypercube,
)

__all__ = [
    "BayesianOptimisation",
    "RandomSearch",
    "SearchState",
    "StepRecord",
    "latin_hypercube",
]
