"""Apertures (rectangular and elliptical) against Cheetah 0.8.4: hard survival, the smooth
edge and its gradients, batches, files and bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffdesign.beamline as bl
from diffdesign.beamline.convert import from_cheetah_beam, to_cheetah
from diffdesign.beamline.lattice_json import write_lattice_json

from .cheetah_helpers import N, T, assert_round_trips, cheetah
from .gradient_helpers import assert_gradients_match_central_differences

latticejson = pytest.importorskip("cheetah.latticejson")
pytestmark = pytest.mark.filterwarnings(  # Cheetah's own, for a ParameterBeam
    "ignore:Aperture tracking is currently only supported"
)

SHAPES = {bl.Aperture: "rectangular", bl.EllipticalAperture: "elliptical"}
MISALIGNMENT = (1e-4, -5e-5)


@eqx.filter_jit
def _track(segment, beam):
    return segment.track(beam)


def _particles(n=200):
    beam = bl.ParticleBeam.from_parameters(
        n, jax.random.key(5), energy=1e8, sigma_x=3e-4, sigma_y=2e-4, sigma_px=1e-5
    )
    # some particles were already partly lost upstream
    probabilities = jnp.where(jnp.arange(n) % 7 == 0, 0.5, 1.0)
    return eqx.tree_at(lambda b: b.survival_probabilities, beam, probabilities)


def _theirs(cls, x_max, y_max, misalignment=MISALIGNMENT, is_active=True):
    """Cheetah's aperture between the shifts that displace it (it has no misalignment)."""
    shift, back = np.eye(7), np.eye(7)
    shift[[0, 2], 6] = misalignment
    back[[0, 2], 6] = -np.asarray(misalignment)
    aperture = cheetah.Aperture(T(x_max), T(y_max), SHAPES[cls], is_active, name="A")
    return cheetah.Segment(
        [cheetah.CustomTransferMap(T(back)), aperture, cheetah.CustomTransferMap(T(shift))]
    )


@pytest.mark.parametrize("cls", list(SHAPES), ids=lambda c: c.__name__)
def test_hard_edge_loses_the_particles_cheetah_loses(cls):
    """Survival probabilities exactly Cheetah's, coordinates untouched, for a displaced
    aperture with one side open, a batch of half-widths, and an inactive one."""
    beam = _particles()
    for x_max, y_max in ((3e-4, 2e-4), (2e-4, np.inf), (0.0, 1e-3)):
        if cls is bl.EllipticalAperture and x_max == 0.0:
            continue  # Cheetah divides 0 by 0 there
        ours = bl.Segment([cls(x_max, y_max, misalignment=MISALIGNMENT, name="A")])
        got = _track(ours, beam)
        expected = _theirs(cls, x_max, y_max).track(to_cheetah(beam))
        np.testing.assert_array_equal(
            got.survival_probabilities, N(expected.survival_probabilities)
        )
        np.testing.assert_array_equal(got.particles, beam.particles)
        assert 0 < float(got.total_charge / beam.total_charge) < 1 or x_max == 0.0
    widths = jnp.asarray([1e-4, 3e-4, 6e-4])
    got = _track(bl.Segment([cls(widths, 2e-4, misalignment=MISALIGNMENT)]), beam)
    expected = _theirs(cls, widths, 2e-4).track(to_cheetah(beam))
    np.testing.assert_array_equal(got.survival_probabilities, N(expected.survival_probabilities))
    assert got.particles.shape == (3, 200, 7)
    off = bl.Segment([cls(1e-5, 1e-5, is_active=False)]).track(beam)
    np.testing.assert_array_equal(off.survival_probabilities, beam.survival_probabilities)


@pytest.mark.parametrize("cls", list(SHAPES), ids=lambda c: c.__name__)
def test_parameter_beam_passes_unchanged(cls):
    beam = bl.ParameterBeam.from_parameters(energy=1e8, mu_x=1e-4, sigma_x=1e-3)
    segment = bl.Segment([bl.Drift(1.0), cls(1e-4, 1e-4, edge_width=1e-6), bl.Drift(1.0)])
    got = segment.track(beam)
    expected = cheetah.Segment(
        [cheetah.Drift(T(1.0)), cheetah.Aperture(T(1e-4), T(1e-4), SHAPES[cls]),
         cheetah.Drift(T(1.0))]
    ).track(to_cheetah(beam))  # fmt: skip
    np.testing.assert_allclose(got.cov, N(expected.cov), rtol=1e-15, atol=0)
    np.testing.assert_allclose(got.mu, N(expected.mu), rtol=1e-15, atol=0)


@pytest.mark.parametrize("cls", list(SHAPES), ids=lambda c: c.__name__)
def test_smooth_edge_tends_to_the_hard_one(cls):
    beam = _particles()
    hard = _track(bl.Segment([cls(3e-4, 2e-4, misalignment=MISALIGNMENT)]), beam)
    smooth = _track(
        bl.Segment([cls(3e-4, 2e-4, edge_width=1e-9, misalignment=MISALIGNMENT)]), beam
    )  # no particle of this beam lies within 1e-7 m of the edge
    np.testing.assert_allclose(
        smooth.survival_probabilities, hard.survival_probabilities, rtol=0, atol=1e-12
    )
    # a particle on the edge (and far inside the other sides) survives by half
    on_edge = beam.particles.at[1, :4].set(jnp.asarray([2e-4, 0.0, 0.0, 0.0]))
    on_edge = eqx.tree_at(lambda b: b.particles, beam, on_edge)
    out = bl.Segment([cls(2e-4, 2e-4, edge_width=1e-6)]).track(on_edge)
    np.testing.assert_allclose(out.survival_probabilities[1], 0.5, rtol=1e-12)


@pytest.mark.parametrize("cls", list(SHAPES), ids=lambda c: c.__name__)
def test_smooth_edge_gradients_match_central_differences(cls, rng):
    """d(surviving charge, weighted centroid)/d(x_max, y_max, misalignment, edge_width)."""
    beam = _particles(64)

    @jax.jit
    @jax.value_and_grad
    def loss(fields):
        out = bl.Segment([cls(**fields)]).track(beam)
        return out.total_charge / beam.total_charge + 1e3 * out.mu_x - 2e3 * out.mu_y

    fields = {  # strongly typed, so that the shifted values reuse the compiled program
        "x_max": 3e-4, "y_max": 2e-4, "misalignment": MISALIGNMENT, "edge_width": 2e-5,
    }  # fmt: skip
    fields = {k: jnp.asarray(v, dtype=float) for k, v in fields.items()}
    assert_gradients_match_central_differences(loss, fields, rng)


def test_file_and_converter_round_trips(tmp_path):
    ours = bl.Segment(
        [bl.Drift(0.3, "D"), bl.Aperture(2e-3, np.inf, name="SLIT"),
         bl.EllipticalAperture(1e-3, 5e-4, name="PIPE"),
         bl.Aperture(1e-4, 1e-4, is_active=False, name="OFF")],
        "line",
    )  # fmt: skip
    theirs = assert_round_trips(ours, tmp_path / "line.json")
    assert [getattr(e, "shape", None) for e in theirs.elements][1:3] == [
        "rectangular",
        "elliptical",
    ]
    beam = _particles()
    np.testing.assert_array_equal(
        ours.track(beam).survival_probabilities,
        N(theirs.track(to_cheetah(beam)).survival_probabilities),
    )
    np.testing.assert_array_equal(
        from_cheetah_beam(to_cheetah(beam)).survival_probabilities, beam.survival_probabilities
    )


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: bl.Aperture(np.nan, name="A"), r"x_max must lie in \[0, inf\] m \(inf for an open side\); got nan m for element 'A'"),
        (lambda: bl.EllipticalAperture(1e-3, -1e-3, name="A"), r"y_max must lie in \[0, inf\] m .*got -0.001 m for element 'A'"),
        (lambda: bl.Aperture(1e-3, edge_width=0.0, name="A"), r"edge_width must be > 0 m; got 0.0 m for element 'A'"),
        (lambda: bl.Aperture(1e-3, edge_width=np.nan, name="A"), r"edge_width must be finite; got nan for element 'A'"),
        (lambda: bl.Aperture(1e-3, misalignment=(1.0,), name="A"), r"misalignment must have shape \(\.\.\., 2\)"),
        (lambda: bl.EllipticalAperture(1e-3, edge_width=1e-6, name="A"), r"y_max must be finite for a smooth elliptical aperture"),
        (
            lambda: write_lattice_json(bl.Segment([bl.Aperture(1e-3, edge_width=1e-6, name="A")]), "/nonexistent"),
            r"element 'A' \(Aperture\): edge_width = 1e-06 m cannot be written",
        ),
        (
            lambda: write_lattice_json(bl.Segment([bl.Aperture(1e-3, misalignment=MISALIGNMENT, name="A")]), "/nonexistent"),
            r"element 'A' \(Aperture\): misalignment = \[0.0001, -5e-05\] m cannot be written: Cheetah's Aperture",
        ),
    ],
)  # fmt: skip
def test_bad_input_is_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()
