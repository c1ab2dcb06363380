"""Gradients by automatic differentiation against central differences, one field at a time."""

import jax.numpy as jnp
import numpy as np


def assert_gradients_match_central_differences(
    value_and_grad, fields, rng, *, rtol=1e-6, atol=0.0, relative_step=1e-5, smallest=0.0
):
    """``value_and_grad(fields) -> (loss, gradients)`` (jitted once: give ``fields`` as
    strongly typed float64 arrays so the shifted ones reuse the program); along a random
    direction per field, the autodiff slope against a central difference of step
    ``relative_step * max(|field|, smallest)``."""
    _, gradients = value_and_grad(fields)
    for field, value in fields.items():
        direction = jnp.asarray(rng.normal(size=value.shape))
        h = relative_step * max(smallest, float(jnp.max(jnp.abs(value))))
        up, _ = value_and_grad(fields | {field: value + h * direction})
        down, _ = value_and_grad(fields | {field: value - h * direction})
        slope = jnp.vdot(gradients[field], direction)
        assert abs(float(slope)) > 0.0, f"no gradient reaches {field}"
        np.testing.assert_allclose(
            slope, (up - down) / (2 * h), rtol=rtol, atol=atol, err_msg=field
        )
