"""A black-box simulator run as a separate process: y = sum(psi) + x + N(0, 0.1^2).

Answers diffdesign's SubprocessSimulator protocol through ``serve``; with the environment
variable BROKEN_SIMULATOR set it misbehaves in the named way (for the error tests).
"""

import os
import sys

import numpy as np

from diffdesign.surrogates.blackbox import serve


def simulate(psi, x, seed):
    rng = np.random.default_rng(seed)
    y = psi.sum(axis=1, keepdims=True) + x + rng.normal(0.0, 0.1, x.shape)
    broken = os.environ.get("BROKEN_SIMULATOR")
    if broken == "shape":
        return y[:, 0]
    if broken == "nan":
        return np.full_like(y, np.nan)
    if broken == "crash":
        print("simulator crashed on purpose", file=sys.stderr)
        raise SystemExit(3)
    return y


def sample_inputs(n, seed):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 1))


if __name__ == "__main__":
    serve(simulate, sample_inputs)
