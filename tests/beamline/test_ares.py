"""The ARES experimental area against the same lattice built in Cheetah."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.beamline import ares

from .cheetah_helpers import N, T, cheetah, torch


def cheetah_ares(settings, misalignments):
    """The lattice as the issue specifies it, spelled out in Cheetah (lengths in m)."""
    s = settings if isinstance(settings, torch.Tensor) else T(settings)
    m = misalignments if isinstance(misalignments, torch.Tensor) else T(misalignments)
    return cheetah.Segment(
        [
            cheetah.Drift(T(0.17504)),
            cheetah.Quadrupole(T(0.122), s[..., 0], m[..., 0, :]),
            cheetah.Drift(T(0.428)),
            cheetah.Quadrupole(T(0.122), s[..., 1], m[..., 1, :]),
            cheetah.Drift(T(0.204)),
            cheetah.VerticalCorrector(T(0.02), s[..., 2]),
            cheetah.Drift(T(0.204)),
            cheetah.Quadrupole(T(0.122), s[..., 3], m[..., 2, :]),
            cheetah.Drift(T(0.179)),
            cheetah.HorizontalCorrector(T(0.02), s[..., 4]),
            cheetah.Drift(T(0.45)),
        ]
    )


def cheetah_beam(sigma_y=2e-4):
    return cheetah.ParameterBeam.from_parameters(
        mu_x=T(8.2413e-07),
        mu_px=T(5.9885e-08),
        mu_y=T(-1.7276e-06),
        mu_py=T(-1.1746e-07),
        sigma_x=T(2e-4),
        sigma_px=T(3.6794e-06),
        sigma_y=T(sigma_y),
        sigma_py=T(3.6941e-06),
        sigma_tau=T(8.0116e-06),
        sigma_p=T(0.0023),
        energy=T(1.0732e08),
        total_charge=T(5e-13),
    )


def random_settings(rng, shape):
    return rng.uniform(ares.SETTING_LOWER, ares.SETTING_UPPER, (*shape, 5))


@pytest.mark.parametrize("sigma_y", [2e-4, 1e-4])
def test_screen_beam_matches_cheetah_for_random_settings(sigma_y, rng):
    settings = random_settings(rng, (200,))
    misalignments = rng.uniform(-5e-4, 5e-4, (200, 3, 2))
    theirs = cheetah_ares(settings, misalignments).track(cheetah_beam(sigma_y))
    ours = ares.screen_beam(settings, misalignments, ares.incoming_beam(sigma_y=sigma_y))
    for name in ares.OBSERVABLES:
        reference = N(getattr(theirs, name))
        scale = np.abs(reference).max()
        np.testing.assert_allclose(
            ours[name], reference, rtol=1e-10, atol=1e-10 * scale, err_msg=name
        )


def test_screen_beam_broadcasts_settings_against_misalignments(rng):
    settings = random_settings(rng, (4, 1))
    misalignments = rng.uniform(-5e-4, 5e-4, (3, 3, 2))
    out = ares.screen_beam(settings, misalignments)
    assert out["sigma_x"].shape == (4, 3)
    one = ares.screen_beam(settings[2, 0], misalignments[1])
    for name in ares.OBSERVABLES:
        np.testing.assert_allclose(out[name][2, 1], one[name], rtol=1e-13)
    np.testing.assert_allclose(
        jax.jit(ares.screen_beam)(settings, misalignments)["mu_y"], out["mu_y"], rtol=1e-13
    )


def test_misalignment_gradient_matches_cheetah_autograd_and_finite_differences(rng):
    settings = random_settings(rng, (15,))
    offsets = rng.uniform(-3e-4, 3e-4, (3, 2))

    def loss(m):
        beam = ares.screen_beam(settings, jnp.broadcast_to(m, (15, 3, 2)))
        return sum(jnp.sum(beam[k] ** 2) for k in ares.OBSERVABLES)

    ours = jax.grad(loss)(jnp.asarray(offsets))
    tensor = T(offsets).requires_grad_(True)
    out = cheetah_ares(settings, tensor.expand(15, 3, 2)).track(cheetah_beam())
    sum((getattr(out, k) ** 2).sum() for k in ares.OBSERVABLES).backward()
    np.testing.assert_allclose(ours, N(tensor.grad), rtol=1e-9)
    h = 1e-7
    for i, j in np.ndindex(3, 2):
        e = jnp.zeros((3, 2)).at[i, j].set(h)
        fd = (loss(offsets + e) - loss(offsets - e)) / (2 * h)
        np.testing.assert_allclose(ours[i, j], fd, rtol=1e-6)


def test_settings_gradient_matches_finite_differences(rng):
    settings = jnp.asarray(random_settings(rng, ()))
    grad = jax.grad(lambda s: ares.mae(ares.screen_beam(s)))(settings)
    for i in range(5):
        h = 1e-6 * (abs(float(settings[i])) + 1e-3)
        e = jnp.zeros(5).at[i].set(h)
        fd = (
            ares.mae(ares.screen_beam(settings + e)) - ares.mae(ares.screen_beam(settings - e))
        ) / (2 * h)
        np.testing.assert_allclose(grad[i], fd, rtol=1e-6)


def test_mae_and_target():
    beam = {"mu_x": 1e-4, "sigma_x": 2e-4, "mu_y": -3e-4, "sigma_y": 4e-4}
    np.testing.assert_allclose(ares.mae(beam), 2.5e-4)
    np.testing.assert_allclose(
        ares.mae(beam, {"mu_x": 1e-4, "sigma_x": 1e-4}), (1e-4 + 3e-4 + 4e-4) / 4
    )
    with pytest.raises(ValueError, match=r"target keys must be among .*got \['size'\]"):
        ares.mae(beam, {"size": 1.0})


def test_segment_has_the_issue_lengths():
    segment = ares.segment()
    np.testing.assert_allclose(segment.length, 2.04604, rtol=1e-14)
    assert segment.names[1::2][:5] == [
        "AREAMQZM1",
        "AREAMQZM2",
        "AREAMCVM1",
        "AREAMQZM3",
        "AREAMCHM1",
    ]
    assert segment.names[-1] == "AREABSCR1"


@pytest.mark.parametrize(
    ("settings", "misalignments", "match"),
    [
        (np.zeros(4), None, r"settings must have shape \(\.\.\., 5\); got \(4,\)"),
        (np.zeros(5), np.zeros((3, 3)), r"misalignments must have shape \(\.\.\., 3, 2\)"),
        (np.full(5, np.nan), None, "settings must be finite; got nan"),
        (
            np.zeros((4, 5)),
            np.zeros((3, 3, 2)),
            "leading .* shapes do not broadcast: settings \\(4,\\), misalignments \\(3,\\)",
        ),
    ],
)
def test_bad_input_is_named(settings, misalignments, match):
    with pytest.raises(ValueError, match=match):
        ares.screen_beam(settings, misalignments)


def test_cheetah_tensor_library_is_torch():
    assert torch.get_default_dtype() == torch.float64
