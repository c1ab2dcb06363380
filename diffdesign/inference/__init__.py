"""Domain-free statistics: bounded least squares, identifiability, Gaussian processes,
acquisition functions and their optimisation.

Nothing here knows about physics: models enter as functions of parameter PyTrees (for
example a GP prior mean ``mean_fn(mean_params, X)``).
"""

from diffdesign.inference.gp import (
    GPFit,
    GPHyperparameters,
    GPPosterior,
    HyperparameterPrior,
    LogExpectedImprovement,
    UpperConfidenceBound,
    default_hyperparameters,
    expected_improvement,
    fit_hyperparameters,
    log_expected_improvement,
    lower_confidence_bound,
    marginal_log_likelihood,
    matern52,
    maximize_acquisition,
    posterior,
    rbf,
    zero_mean,
)
from diffdesign.inference.identifiability import (
    Identifiability,
    gaussian_covariance,
    identifiability,
)
from diffdesign.inference.least_squares import (
    LeastSquaresResult,
    bounded_least_squares,
    least_squares_path,
)

__all__ = [
    "GPFit",
    "GPHyperparameters",
    "GPPosterior",
    "HyperparameterPrior",
    "Identifiability",
    "LeastSquaresResult",
    "LogExpectedImprovement",
    "UpperConfidenceBound",
    "bounded_least_squares",
    "default_hyperparameters",
    "expected_improvement",
    "fit_hyperparameters",
    "gaussian_covariance",
    "identifiability",
    "least_squares_path",
    "log_expected_improvement",
    "lower_confidence_bound",
    "marginal_log_likelihood",
    "matern52",
    "maximize_acquisition",
    "posterior",
    "rbf",
    "zero_mean",
]
