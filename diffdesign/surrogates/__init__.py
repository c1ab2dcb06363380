"""Learned surrogates for simulators that cannot be differentiated (L-GSO and kin).

Nothing here imports a physics module: a simulator is a black box mapping parameters
``psi`` and inputs ``x`` to outputs ``y`` (:mod:`~diffdesign.surrogates.blackbox`), the
surrogate a conditional normalising flow (:mod:`~diffdesign.surrogates.flows`,
:mod:`~diffdesign.surrogates.surrogate`), and :func:`~diffdesign.surrogates.lgso.minimise`
the trust-region loop of Shirobokov et al. (2020).
"""

from diffdesign.surrogates.blackbox import (
    BlackBoxSimulator,
    PythonSimulator,
    SubprocessSimulator,
    run_simulation,
    sample_inputs_checked,
    serve,
)
from diffdesign.surrogates.flows import ConditionalFlow, rational_quadratic_spline
from diffdesign.surrogates.lgso import LgsoConfig, LgsoRecord, LgsoResult, minimise

__all__ = [
    "BlackBoxSimulator",
    "ConditionalFlow",
    "LgsoConfig",
    "LgsoRecord",
    "LgsoResult",
    "PythonSimulator",
    "SubprocessSimulator",
    "minimise",
    "rational_quadratic_spline",
    "run_simulation",
    "sample_inputs_checked",
    "serve",
]
