"""The detector as a design-layer problem: its spec, and one compiled step for new data."""

import jax
import numpy as np
import pytest

from diffdesign import design, muography
from diffdesign.core.fit import TRACES
from diffdesign.core.spec import step_sizes

VOLUME = muography.block_in_matrix((0.31, 0.31, 0.41), (0.59, 0.59, 0.59))


def test_spec_carries_the_bounds_and_steps_of_every_field():
    spec = muography.detector_spec(muography.default_detector(VOLUME), VOLUME,
                                   steps={"sigma": 1e-5})  # fmt: skip
    z_low, z_high = float(spec.above.z.lower[0]), float(spec.above.z.upper[0])
    assert z_low == pytest.approx(VOLUME.z_range[1] + 0.01) and z_high > z_low
    assert float(spec.below.z.upper[0]) == pytest.approx(VOLUME.z_range[0] - 0.01)
    steps = step_sizes(spec)
    assert float(steps["panels.sigma"]) == 1e-5 and float(steps["panels.xy"]) == 0.01
    with pytest.raises(ValueError, match=r"steps: fields"):
        muography.detector_spec(muography.default_detector(VOLUME), VOLUME, steps={"colour": 1})


@pytest.mark.slow  # ~54 s on 2 cores: in CI's second stage (-m slow)
def test_a_second_run_with_other_volumes_does_not_retrace():
    """The design step compiles once per structure: a problem with other X0 maps, another
    start and another key reuses it (the old loop built a new optimiser per run)."""
    detector = muography.default_detector(VOLUME)
    first = muography.DetectorDesign(detector, VOLUME, n_muons=300, cost_weight=0.01)
    design.run(first, steps=2, key=jax.random.key(0), progress=False)
    traces = TRACES["DetectorDesign"]
    other = muography.block_in_matrix((0.11, 0.61, 0.31), (0.39, 0.89, 0.49))
    moved = muography.default_detector(VOLUME, gap=0.08)
    second = muography.DetectorDesign(moved, other, n_muons=300, cost_weight=0.01)
    result = design.run(second, steps=2, key=jax.random.key(1), progress=False)
    assert TRACES["DetectorDesign"] == traces
    assert np.isfinite(result.history[-1]["loss"])
