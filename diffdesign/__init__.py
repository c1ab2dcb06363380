"""diffdesign: end-to-end differentiable simulation and design optimisation in JAX.

Every model is a pure JAX function of PyTrees, so the same code is jitted, vmapped over
designs and differentiated with respect to anything. Physics runs in float64: importing
the package enables JAX's 64-bit mode once, here, for all subpackages.
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
