"""Whole segments against Cheetah, batches, jit/vmap, gradients and bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffdesign.beamline as bl
from diffdesign.beamline.convert import from_cheetah, from_cheetah_beam, to_cheetah

from .cheetah_helpers import N, T, assert_covariance_close, assert_vector_close, cheetah


def random_cheetah_segment(rng):
    """A beamline with every linear element kind, misalignments, tilts and bends."""
    u = rng.uniform
    elements = [
        cheetah.Drift(T(u(0.1, 1.0)), name="D0"),
        cheetah.Quadrupole(T(0.2), T(u(-20, 20)), T(u(-3e-4, 3e-4, 2)), T(u(-0.3, 0.3)), name="Q0"),
        cheetah.Drift(T(u(0.1, 1.0)), name="D1"),
        cheetah.Dipole(
            T(1.0),
            T(u(0.05, 0.2)),
            T(u(-0.5, 0.5)),
            T(u(0, 0.1)),
            T(u(0, 0.1)),
            T(0.0),
            T(0.03),
            fringe_integral=T(0.5),
            name="B0",
        ),
        cheetah.Quadrupole(T(0.2), T(u(-20, 20)), T(u(-3e-4, 3e-4, 2)), name="Q1"),
        cheetah.HorizontalCorrector(T(0.05), T(u(-1e-3, 1e-3)), name="HC"),
        cheetah.VerticalCorrector(T(0.05), T(u(-1e-3, 1e-3)), name="VC"),
        cheetah.Dipole(T(0.5), T(u(-0.1, 0.1)), tilt=T(np.pi / 2), name="B1"),
        cheetah.Sextupole(T(0.1), T(u(-50, 50)), tracking_method="linear", name="S0"),
        cheetah.Solenoid(T(0.3), T(u(-2, 2)), T(u(-1e-4, 1e-4, 2)), name="SOL"),
        cheetah.CombinedCorrector(T(0.05), T(u(-1e-3, 1e-3)), T(u(-1e-3, 1e-3)), name="CC"),
        cheetah.BPM(name="BPM0"),
        cheetah.Marker(name="M0"),
        cheetah.Drift(T(u(0.1, 1.0)), name="D2"),
        cheetah.Screen(name="SCR", is_active=False),
    ]
    return cheetah.Segment(elements)


def cheetah_parameter_beam(rng, species="electron", energy=1.5e9):
    return cheetah.ParameterBeam.from_parameters(
        mu_x=T(rng.normal(0, 1e-4)),
        mu_px=T(rng.normal(0, 1e-5)),
        mu_y=T(rng.normal(0, 1e-4)),
        mu_py=T(rng.normal(0, 1e-5)),
        mu_p=T(1e-3),
        sigma_x=T(1e-4),
        sigma_px=T(2e-5),
        sigma_y=T(2e-4),
        sigma_py=T(1e-5),
        sigma_tau=T(1e-5),
        sigma_p=T(1e-3),
        cov_xpx=T(-1e-9),
        cov_ypy=T(5e-10),
        energy=T(energy),
        total_charge=T(1e-10),
        species=cheetah.Species(species),
    )


@pytest.mark.parametrize("species,energy", [("electron", 1.5e9), ("proton", 2e9)])
def test_parameter_beam_through_segment_matches_cheetah(species, energy, rng):
    for _ in range(3):
        theirs_segment = random_cheetah_segment(rng)
        theirs_beam = cheetah_parameter_beam(rng, species, energy)
        theirs = theirs_segment.track(theirs_beam)
        ours = from_cheetah(theirs_segment).track(from_cheetah_beam(theirs_beam))
        assert_vector_close(ours.mu, N(theirs.mu))
        assert_covariance_close(ours.cov, N(theirs.cov))
        np.testing.assert_allclose(ours.s, N(theirs.s), rtol=1e-14)
        for name in ("emittance_x", "beta_y", "alpha_x", "dispersion_x", "sigma_y", "cov_xy"):
            np.testing.assert_allclose(getattr(ours, name), N(getattr(theirs, name)), rtol=1e-9)


def test_particle_beam_through_segment_matches_cheetah(rng):
    theirs_segment = random_cheetah_segment(rng)
    theirs_beam = cheetah.ParticleBeam.from_parameters(
        num_particles=10_000, sigma_x=T(1e-4), sigma_y=T(2e-4), sigma_p=T(1e-3), energy=T(1e9)
    )
    theirs = theirs_segment.track(theirs_beam)
    ours = from_cheetah(theirs_segment).track(from_cheetah_beam(theirs_beam))
    assert_vector_close(ours.particles, N(theirs.particles))
    their_particles = N(theirs.particles)[:, :6]
    assert_covariance_close(ours.covariance, np.cov(their_particles.T))


@pytest.mark.parametrize(
    ("element", "reproduce_cheetah"),
    [
        ("Drift", False),
        ("Quadrupole", False),
        ("Dipole", True),
        ("Sextupole", True),
    ],
)
def test_second_order_tracking_matches_cheetah(element, reproduce_cheetah, rng):
    """Particles tracked with T maps element by element, as Cheetah's 'second_order'.

    Cheetah 0.8.4's integrals for sextupoles and combined-function bends differ from MAD8's
    (tests/beamline/test_second_order.py shows they break T(L) = T(L/2) o T(L/2)); for
    those our Cheetah-compatible mode is compared, and our default must differ.
    """
    u = rng.uniform
    build = {
        "Drift": lambda: cheetah.Drift(T(1.3), tracking_method="second_order"),
        "Quadrupole": lambda: cheetah.Quadrupole(
            T(0.3), T(u(-15, 15)), T(u(-1e-3, 1e-3, 2)), T(u(-0.5, 0.5)), tracking_method="second_order"
        ),
        "Dipole": lambda: cheetah.Dipole(
            T(1.0), T(0.2), T(0.3), T(0.05), T(0.08), T(0.4), T(0.02), fringe_integral=T(0.5),
            tracking_method="second_order",
        ),
        "Sextupole": lambda: cheetah.Sextupole(
            T(0.2), T(u(-80, 80)), T(u(-1e-3, 1e-3, 2)), T(0.1), tracking_method="second_order"
        ),
    }[element]  # fmt: skip
    theirs_segment = cheetah.Segment(
        [build(), cheetah.Drift(T(0.5), tracking_method="second_order")]
    )
    theirs_beam = cheetah.ParticleBeam.from_parameters(
        num_particles=2000,
        sigma_x=T(1e-3),
        sigma_px=T(1e-3),
        sigma_y=T(1e-3),
        sigma_py=T(1e-3),
        sigma_p=T(1e-2),
        energy=T(5e8),
    )
    theirs = theirs_segment.track(theirs_beam)
    segment, beam = from_cheetah(theirs_segment), from_cheetah_beam(theirs_beam)
    ours = segment.track_second_order(beam, reproduce_cheetah=reproduce_cheetah)
    assert_vector_close(ours.particles, N(theirs.particles))
    if reproduce_cheetah:
        default = segment.track_second_order(beam)
        assert np.max(np.abs(default.particles - ours.particles)) > 1e-9
    linear = bl.Segment(segment.elements).track(beam)  # the same elements, all first order
    # the second-order terms are really there (not a linear map in disguise)
    assert np.max(np.abs(ours.particles - linear.particles)) > 1e-9


def test_batched_settings_match_cheetah_vectorised(rng):
    n = 50
    k1 = rng.uniform(-20, 20, n)
    misalignment = rng.uniform(-1e-4, 1e-4, (n, 2))
    beam = cheetah_parameter_beam(rng)
    theirs = cheetah.Segment(
        [
            cheetah.Drift(T(0.3)),
            cheetah.Quadrupole(T(0.2), T(k1), T(misalignment)),
            cheetah.Drift(T(1.0)),
        ]
    ).track(beam)
    ours = bl.Segment([bl.Drift(0.3), bl.Quadrupole(0.2, k1, misalignment), bl.Drift(1.0)]).track(
        from_cheetah_beam(beam)
    )
    assert ours.mu.shape == (n, 7) and ours.cov.shape == (n, 7, 7)
    assert_vector_close(ours.mu, N(theirs.mu))
    assert_covariance_close(ours.cov, N(theirs.cov))


def _beamline():
    return bl.Segment(
        [
            bl.Drift(0.5, name="D1"),
            bl.Quadrupole(0.2, k1=5.0, misalignment=(1e-4, -2e-4), name="Q1"),
            bl.Drift(0.5, name="D2"),
            bl.Dipole(0.8, angle=0.1, e1=0.05, e2=0.05, name="B1"),
            bl.HorizontalCorrector(0.05, 1e-3, name="HC"),
            bl.Screen(is_active=True, resolution=(64, 48), pixel_size=(1e-4, 1e-4), name="SCR"),
            bl.BPM(misalignment=(1e-5, 0.0), name="BPM1"),
        ]
    )


def test_jit_and_vmap_agree_with_broadcasting():
    segment, beam = _beamline(), bl.ParameterBeam.from_parameters(energy=1e9)
    k1 = jnp.linspace(-10, 10, 7)

    def track(k):
        return segment.with_settings({"Q1.k1": k}).track(beam).mu

    broadcast = track(k1)
    np.testing.assert_allclose(jax.vmap(track)(k1), broadcast, rtol=1e-14, atol=1e-20)
    np.testing.assert_allclose(jax.jit(track)(k1), broadcast, rtol=1e-14, atol=1e-20)
    np.testing.assert_allclose(track(k1[3]), broadcast[3], rtol=1e-14, atol=1e-20)


def test_no_retrace_for_new_values():
    segment, beam = _beamline(), bl.ParameterBeam.from_parameters(energy=1e9)

    @eqx.debug.assert_max_traces(max_traces=1)
    def sigma_x(segment, beam):
        return segment.track(beam).sigma_x

    jitted = eqx.filter_jit(sigma_x)
    for k1 in (1.0, 2.0, 3.0):
        jitted(segment.with_settings({"Q1.k1": k1}), beam)


def test_gradients_through_tracking_match_finite_differences(rng):
    """d(sigma_x, mu_y on the screen)/d(any field, incoming beam) vs central differences."""
    segment = _beamline()
    beam = bl.ParameterBeam.from_parameters(energy=1e9, sigma_x=1e-4, mu_y=1e-4)

    def observable(params):
        seg = segment.with_settings(
            {
                "Q1.k1": params["k1"],
                "Q1.misalignment": params["dq"],
                "B1.angle": params["angle"],
                "D2.length": params["length"],
                "HC.angle": params["kick"],
            }
        )
        incoming = eqx.tree_at(lambda b: b.mu, beam, beam.mu.at[0].set(params["mu_x0"]))
        out = seg.track(incoming)
        return out.sigma_x * 1e3 + out.mu_x * 1e3 + out.sigma_y * 1e3

    params = {
        "k1": jnp.asarray(5.0),
        "dq": jnp.array([1e-4, -2e-4]),
        "angle": jnp.asarray(0.1),
        "length": jnp.asarray(0.5),
        "kick": jnp.asarray(1e-3),
        "mu_x0": jnp.asarray(2e-5),
    }
    grads = jax.grad(observable)(params)
    for key, value in params.items():
        step = 1e-6 * max(1e-3, float(jnp.max(jnp.abs(value))))
        direction = jnp.asarray(rng.normal(size=jnp.shape(value)))
        plus = observable(params | {key: value + step * direction})
        minus = observable(params | {key: value - step * direction})
        fd = (plus - minus) / (2 * step)
        np.testing.assert_allclose(jnp.vdot(grads[key], direction), fd, rtol=1e-5, err_msg=key)


def test_readings_of_screen_and_bpm():
    segment = _beamline()
    beam = bl.ParameterBeam.from_parameters(energy=1e9, sigma_x=1e-4, sigma_y=1e-4)
    readings = segment.readings(beam)
    assert set(readings) == {"SCR", "BPM1"}
    out = segment.track(beam)
    np.testing.assert_allclose(readings["BPM1"], [out.mu_x - 1e-5, out.mu_y], rtol=1e-14)
    image = readings["SCR"]
    assert image.shape == (48, 64)
    assert np.all(image >= 0)
    # The image's centroid is the beam centroid (the Gaussian lies well inside the screen).
    x, _ = segment["SCR"].pixel_centres()
    np.testing.assert_allclose(float((image.sum(0) * x).sum() / image.sum()), out.mu_x, atol=2e-6)


def test_particle_screen_image_is_differentiable():
    screen = bl.Screen(resolution=(32, 32), pixel_size=(1e-4, 1e-4))
    beam = bl.ParticleBeam.from_parameters(5000, jax.random.key(1), sigma_x=2e-4, sigma_y=3e-4)
    image = screen.reading(beam)
    np.testing.assert_allclose(image.sum(), 1.0, rtol=1e-3)  # almost all charge on the screen

    def centre_weight(shift):
        moved = eqx.tree_at(lambda b: b.particles, beam, beam.particles.at[:, 0].add(shift))
        return (screen.reading(moved) * screen.pixel_centres()[0][None, :]).sum()

    g = jax.grad(centre_weight)(0.0)
    np.testing.assert_allclose(g, 1.0, rtol=0.05)  # moving the beam by dx moves the centroid by dx


def test_converters_round_trip(rng):
    theirs = random_cheetah_segment(rng)
    ours = from_cheetah(theirs)
    again = from_cheetah(to_cheetah(ours))
    assert ours.names == again.names and again.second_order == ours.second_order
    beam = bl.ParameterBeam.from_parameters(energy=1e9)
    ours, again = bl.Segment(ours.elements), bl.Segment(again.elements)  # moments: first order
    np.testing.assert_allclose(again.track(beam).cov, ours.track(beam).cov, rtol=1e-15, atol=0)
    particles = bl.ParticleBeam.from_parameters(100, jax.random.key(0), energy=1e9)
    back = from_cheetah_beam(to_cheetah(particles))
    np.testing.assert_array_equal(back.particles, particles.particles)


class _Wiggler(cheetah.Element):
    """A user's own Cheetah element class, which has no counterpart here."""

    def __init__(self, name=None):
        super().__init__(name=name, sanitize_name=False)

    is_skippable = False

    def plot(self, s, vector_idx=None, ax=None):
        return ax


def test_unsupported_cheetah_element_is_named():
    segment = cheetah.Segment([cheetah.Drift(T(1.0)), _Wiggler(name="W1")])
    with pytest.raises(ValueError, match=r"element 'W1' of Cheetah type _Wiggler has no"):
        from_cheetah(segment)


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"NOPE.k1": 1.0}, KeyError, "no element named 'NOPE'"),
        ({"Q1.angle": 1.0}, ValueError, r"element 'Q1' \(Quadrupole\) has no setting 'angle'"),
        ({"Q1.k1": np.nan}, ValueError, "k1 must be finite; got nan for element 'Q1'"),
        ({"Q1.length": -0.1}, ValueError, "length must lie in"),
        ({"D1.length": np.inf}, ValueError, "length must be finite; got inf for element 'D1'"),
        (
            {"Q1.misalignment": np.zeros(3)},
            ValueError,
            r"misalignment must have shape \(\.\.\., 2\)",
        ),
        ({"k1": 1.0}, ValueError, "setting keys look like 'ELEMENT.field'"),
    ],
)
def test_bad_settings_are_named(settings, error, match):
    with pytest.raises(error, match=match):
        _beamline().with_settings(settings)


def test_elements_by_name_index_and_attribute():
    segment = _beamline()
    assert segment["Q1"] is segment.Q1 is segment[1]
    assert segment.index("B1") == 3 and len(segment) == 7
    with pytest.raises(AttributeError, match="no attribute or element named 'Q9'"):
        _ = segment.Q9
    sub = segment.subsegment("Q1", "B1")
    assert sub.names == ["Q1", "D2", "B1"]
    np.testing.assert_allclose(sub.length, 0.2 + 0.5 + 0.8)


def test_non_elements_are_rejected():  # (repeated names are allowed: test_repeated_names.py)
    with pytest.raises(TypeError, match=r"elements\[1\] must be a diffdesign.beamline Element"):
        bl.Segment([bl.Drift(1.0), "drift"])


def test_split_keeps_the_map_and_handles_unnamed_elements():
    segment = bl.Segment(
        [bl.Drift(1.0), bl.Quadrupole(0.3, 5.0, (1e-4, 0.0)), bl.Drift(2.0, name="D")]
    )
    pieces = segment.split(0.25)
    assert len(pieces) == 4 + 2 + 8 and pieces.names[-1] == "D#7"
    np.testing.assert_allclose(pieces.transfer_map(1e9), segment.transfer_map(1e9), atol=1e-14)
    # bends: faces, fringe fields (exit integral of its own), roll and a gradient
    bend = bl.Dipole(0.9, 0.3, k1=0.4, e1=0.1, e2=-0.05, tilt=0.2, gap=0.03,
                     fringe_integral=0.5, fringe_integral_exit=0.3, name="B")  # fmt: skip
    pieces = bl.Segment([bend]).split(0.2)
    assert pieces.names == ["B#0", "B#1", "B#2", "B#3", "B#4"]
    np.testing.assert_allclose(pieces.transfer_map(1e9), bend.transfer_map(1e9), rtol=1e-13,
                               atol=1e-15)  # fmt: skip
    with pytest.raises(ValueError, match="resolution must lie in"):
        segment.split(-0.1)


def test_dipole_exit_fringe_follows_the_entrance_and_screen_pixels_are_positive():
    dipole = bl.Dipole(1.0, 0.2, gap=0.05, fringe_integral=0.5, name="B")
    changed = dipole.replace(fringe_integral=0.0)
    np.testing.assert_allclose(
        changed.transfer_map(1e9), bl.Dipole(1.0, 0.2, gap=0.05).transfer_map(1e9)
    )
    with pytest.raises(ValueError, match="pixel_size must be > 0 m"):
        bl.Screen(pixel_size=(1e-4, 0.0))
