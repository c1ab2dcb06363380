"""The joint ARES study's designs that vary different subsets of the design variables run
one compiled multi-start, and a subset design is the ``CalibrationDesign`` of that subset."""

import dataclasses

import jax
import numpy as np
import pytest

from diffdesign.beamline.ares.experiment_design import CalibrationDesign
from diffdesign.core import values
from diffdesign.core.fit import TRACES
from experiments.joint import _ares_study as study

CONFIG = dataclasses.replace(
    study.AresJointConfig().smoke(), n_settings=6, num_starts=2, steps=3, prior_draws=1
)
SUBSETS = ({"settings", "positions", "resolutions"}, {"positions", "resolutions"},
           {"settings"}, {"settings", "positions"})  # fmt: skip


#: whole joint designs (one compiled multistart each): 30-60 s per test
pytestmark = pytest.mark.slow


def _design(**free):
    """The study's one-screen CalibrationDesign (every variable free unless ``free=``)."""
    settings = study.random_settings(CONFIG, CONFIG.n_settings)
    return CalibrationDesign(settings, study._diagnostics(CONFIG, False), cost_weight=0.01,
                             points=study.prior_points(CONFIG, None), **free)  # fmt: skip


@pytest.mark.parametrize("free", SUBSETS[1:], ids=lambda s: "+".join(sorted(s)))
def test_a_subset_design_is_the_calibration_design_of_its_subset(free):
    subset, fixed = study.subset_design(_design(), free), _design(free=free)
    # away from the spec's values, inwards: settings at the magnets' limits stay inside them
    moved = {k: v * 0.99 if k != "positions" else v + 0.01
             for k, v in values(subset.spec).items()}  # fmt: skip
    value_and_grad = jax.jit(jax.value_and_grad(lambda p, x: p.loss(x, None)[0], argnums=1))
    loss, grads = value_and_grad(subset, moved)
    expected, expected_grads = value_and_grad(fixed, {k: moved[k] for k in free})
    assert float(loss) == pytest.approx(float(expected), rel=1e-12)
    for name, grad in grads.items():
        if name in free:
            np.testing.assert_allclose(grad, expected_grads[name], rtol=1e-9, atol=1e-12)
        else:  # held at its start: no gradient, so Adam leaves it
            assert not np.any(np.asarray(grad))


def test_every_subset_runs_one_compiled_multistart_and_keeps_the_fixed_variables():
    full = _design()
    start = values(full.spec)
    before = TRACES["SubsetDesign.multistart"]
    for free in SUBSETS:
        record = study._optimise(study.subset_design(full, free), CONFIG, jax.random.key(0))
        for name in set(start) - free:
            np.testing.assert_array_equal(record[name], start[name])
        assert np.isfinite(float(record["loss"]))
    assert TRACES["SubsetDesign.multistart"] == before + 1
