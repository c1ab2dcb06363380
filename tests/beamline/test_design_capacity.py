"""Calibration designs of several sizes padded to one capacity: same result, one compilation."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.beamline import ares
from diffdesign.beamline.ares.experiment_design import (
    DOptimalProblem,
    design_calibration_settings,
    fisher_information,
    random_designs_rms_cramer_rao,
    random_settings,
    rms_cramer_rao,
)

INCOMING = ares.incoming_beam(sigma_y=100e-6)
KEY = jax.random.key(3)


def _compilations(records, name: str) -> int:
    return sum(f"Compiling jit({name})" in r.getMessage() for r in records)


def test_padding_rows_carry_no_information():
    settings = np.asarray(random_settings(6, KEY))
    padded = jnp.concatenate([jnp.asarray(settings[:4]), jnp.asarray(settings[4:])])
    active = jnp.arange(6) < 4
    np.testing.assert_allclose(
        fisher_information(padded, None, INCOMING, active=active),
        fisher_information(jnp.asarray(settings[:4]), None, INCOMING),
        rtol=1e-13,
    )
    np.testing.assert_allclose(
        rms_cramer_rao(padded, None, INCOMING, active),
        rms_cramer_rao(jnp.asarray(settings[:4]), None, INCOMING),
        rtol=1e-12,
    )


def test_padded_design_equals_the_unpadded_one_and_sizes_share_one_program(caplog):
    kwargs = dict(incoming=INCOMING, num_starts=3, steps=60)
    alone, log_det = design_calibration_settings(4, KEY, **kwargs)
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        padded, padded_log_det = design_calibration_settings(4, KEY, capacity=7, **kwargs)
        other, _ = design_calibration_settings(6, KEY, capacity=7, **kwargs)
    assert padded.shape == (4, 5) and other.shape == (6, 5)
    np.testing.assert_allclose(padded, alone, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(padded_log_det, log_det, rtol=1e-12)
    assert _compilations(caplog.records, "_multistart") == 1


def test_random_designs_are_vmapped_and_share_one_program(caplog):
    keys = jax.random.split(KEY, 5)
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        three = random_designs_rms_cramer_rao(3, keys, incoming=INCOMING, capacity=8)
        eight = random_designs_rms_cramer_rao(8, keys, incoming=INCOMING, capacity=8)
    assert _compilations(caplog.records, "_random_designs_rms") == 1
    for n, draws in ((3, three), (8, eight)):
        expected = [
            float(rms_cramer_rao(random_settings(8, k)[:n], None, INCOMING)) for k in keys
        ]
        np.testing.assert_allclose(draws, expected, rtol=1e-10)
    assert np.median(eight) < np.median(three)  # more settings, smaller bound


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: DOptimalProblem(4, capacity=3), "capacity must be an integer >= n = 4; got 3"),
        (lambda: DOptimalProblem(4, capacity=2.5), "capacity must be an integer"),
        (lambda: DOptimalProblem(4, settings=np.zeros((4, 5)), capacity=6),
         r"settings must have shape \(6, 5\)"),
    ],
)  # fmt: skip
def test_bad_capacity_is_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()
