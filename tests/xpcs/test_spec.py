"""The XPCS parameters as a design-layer spec."""

import numpy as np
import pytest

from diffdesign import design, xpcs
from diffdesign.core.spec import internal, to_physical


def test_spec_covers_the_mode_with_homodyne_bounds_and_log_scales():
    spec = xpcs.parameter_spec("laminar_flow", {"D0": 1e4, "phi0": 10.0})
    assert tuple(spec) == xpcs.parameter_names("laminar_flow")
    assert isinstance(spec["D0"].transform, design.Log)
    assert isinstance(spec["phi0"].transform, design.Box)
    assert float(spec["D0"].value) == 1e4 and float(spec["phi0"].value) == 10.0
    assert float(spec["gamma_dot_t0"].value) == pytest.approx(np.sqrt(1e-6 * 0.5))
    for name, (lower, upper) in xpcs.DEFAULT_BOUNDS.items():
        if name in spec:
            assert (float(spec[name].lower), float(spec[name].upper)) == (lower, upper)
    back = to_physical(spec, internal(spec))
    for name in spec:
        np.testing.assert_allclose(back[name], spec[name].value, rtol=1e-12)
    assert tuple(xpcs.parameter_spec("static")) == xpcs.parameter_names("static")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("shear",), "mode must be one of"),
        (("static", {"D_zero": 1.0}), r"unknown XPCS parameter names \['D_zero'\]"),
        (("static", {"alpha": 3.0}), r"alpha = 3 lies outside its bounds \[-2, 2\]"),
    ],
)
def test_bad_input_is_named(args, match):
    with pytest.raises(ValueError, match=match):
        xpcs.parameter_spec(*args)
