"""The ring's K1-error spec for the design layer: shape, values, bounds, steps, errors."""

from pathlib import Path

import numpy as np
import pytest

from diffdesign import ring
from diffdesign.core import spec as sp

SMALL_RING = Path(__file__).parent / "data" / "small_ring.m"


@pytest.fixture(scope="module")
def lattice():
    return ring.load_lattice(SMALL_RING)


def test_k1_error_spec_covers_the_fitted_quadrupoles(lattice):
    param = ring.k1_error_spec(lattice)
    quads = ring.fitted_quadrupoles(lattice)
    assert param.value.shape == (quads.size,) and quads.size > 0
    np.testing.assert_array_equal(param.value, 0.0)
    np.testing.assert_array_equal(param.lower, -0.02)
    np.testing.assert_array_equal(param.upper, 0.02)
    assert (param.label, param.unit, float(param.step)) == ("k1_errors", "relative", 1e-4)
    assert isinstance(param.transform, sp.Identity)
    spec = {"k1_errors": param}
    assert sp.step_sizes(spec) == {"k1_errors": pytest.approx(1e-4)}
    # out-of-range steps of the optimiser are projected back onto the bounds
    z = {"k1_errors": np.linspace(-0.1, 0.1, quads.size)}
    np.testing.assert_allclose(
        sp.project(spec, z)["k1_errors"], np.clip(z["k1_errors"], -0.02, 0.02)
    )
    with pytest.raises(ValueError, match="outside its bounds"):
        sp.check_params(spec, {"k1_errors": np.full(quads.size, 0.03)})


def test_k1_error_spec_by_name_and_options(lattice):
    name = lattice.names[int(ring.fitted_quadrupoles(lattice)[0])]
    param = ring.k1_error_spec(lattice, name, bound=0.05, step=1e-3)
    expected = ring.fitted_quadrupoles(lattice, name).size
    assert param.value.shape == (expected,)
    assert float(np.max(param.upper)) == 0.05 and float(param.step) == 1e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bound": 0.0}, r"bound must be a number in \(0, 1\]; got 0.0"),
        ({"bound": 2.0}, r"bound must be a number in \(0, 1\]; got 2.0"),
        ({"step": 0.0}, r"step must be a number in \(0, bound=0.02\]; got 0.0"),
        ({"step": 0.5}, r"step must be a number in \(0, bound=0.02\]; got 0.5"),
        ({"quadrupoles": "NOPE"}, "NOPE"),
    ],
)
def test_k1_error_spec_rejects_bad_options(lattice, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ring.k1_error_spec(lattice, **kwargs)
