"""The particle space-charge kick (SpaceChargeKick): its Green function against direct
integration, its field against Gauss's law and the rms envelope equations, its solver
against Cheetah's, gradients against central differences, conversion and bad input."""

from __future__ import annotations

import math

import cheetah
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.constants import c as SPEED_OF_LIGHT
from scipy.constants import epsilon_0

import diffdesign.beamline as bl
from diffdesign.beamline import _poisson
from diffdesign.beamline.convert import from_cheetah, to_cheetah
from diffdesign.beamline.lattice_json import read_lattice_json, write_lattice_json
from diffdesign.beamline.space_charge import (
    characteristic_current,
    perveance,
    track_envelope,
    track_particles,
)
from tests.beamline.cheetah_helpers import T

MASS = bl.ELECTRON.mass_eV


def _factors(energy):
    gamma = energy / MASS
    return gamma, math.sqrt(1.0 - 1.0 / gamma**2)


def _beam(positions, energy, total_charge):
    """A cold ParticleBeam with the given (x, y, z) positions, z = -beta tau ahead."""
    n = len(positions)
    _, beta = _factors(energy)
    particles = np.zeros((n, 7))
    particles[:, 0], particles[:, 2], particles[:, 4] = (
        positions.T * np.array([[1, 1, -1 / beta]]).T
    )
    particles[:, 6] = 1.0
    return bl.ParticleBeam(particles, energy, np.full(n, total_charge / n))


@pytest.mark.parametrize(("i", "j", "k"), [(0, 0, 0), (1, 0, 0), (2, 3, 1), (3, 3, 3)])
def test_green_function_is_the_integral_of_one_over_r_over_a_cell(i, j, k):
    cell = np.array([1.0, 0.7, 1.3])
    green = np.asarray(_poisson.integrated_green_function(jnp.asarray(cell), (4, 4, 4)))
    centre = np.array([i, j, k]) * cell
    low, high = centre - cell / 2, centre + cell / 2
    # split at the origin, where 1/r is singular (the quadrature never evaluates an end)
    pieces = [
        sorted({lo, hi} | ({0.0} if lo < 0 < hi else set()))
        for lo, hi in zip(low, high, strict=True)
    ]
    reference = sum(
        integrate.tplquad(
            lambda z, y, x: 1.0 / math.sqrt(x * x + y * y + z * z),
            x0, x1, y0, y1, z0, z1, epsabs=1e-13, epsrel=1e-12,
        )[0]
        for x0, x1 in zip(pieces[0], pieces[0][1:], strict=False)
        for y0, y1 in zip(pieces[1], pieces[1][1:], strict=False)
        for z0, z1 in zip(pieces[2], pieces[2][1:], strict=False)
    )  # fmt: skip
    np.testing.assert_allclose(green[i, j, k], reference, rtol=1e-10)
    # the doubled, circular layout holds offset -i at position 8 - i
    np.testing.assert_allclose(green[(8 - i) % 8, (8 - j) % 8, (8 - k) % 8], reference, rtol=1e-10)


@pytest.mark.parametrize("energy", [2.5e8, 1e6], ids=["ultra-relativistic", "non-relativistic"])
def test_uniform_sphere_kick_is_gauss_law(energy):
    """A bunch that is a uniformly charged sphere in its rest frame (quiet start: a cubic
    lattice of particles) has the linear field rho r / (3 eps_0) inside; in the lab the
    transverse force is that over gamma, the longitudinal one unchanged, with z' = gamma z.
    Measured: the slopes of the kicks in the core agree with it to 9e-5 (the grid's error)."""
    gamma, beta = _factors(energy)
    radius, charge, spacing = 1e-3, 1e-9, 2e-3 / 57
    axis = (np.arange(58) - 28.5) * spacing
    rest = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    rest = rest[np.linalg.norm(rest, axis=1) < radius]
    beam = _beam(rest / np.array([1.0, 1.0, gamma]), energy, charge)
    length = 0.1 if gamma > 100 else 1e-3  # kicks << 1 (the energy change is first order)
    out = bl.SpaceChargeKick(length).track(beam)
    kick = np.asarray(out.particles - beam.particles)
    density = charge / (len(rest) * spacing**3)  # the lattice's charge per volume
    slope = density / (3 * epsilon_0) * length / (beta * beta * gamma * MASS)  # per m, rest
    core = np.linalg.norm(rest, axis=1) < 0.7 * radius
    x, y, z_rest = rest[core].T
    np.testing.assert_allclose(kick[core, 1] @ x / (x @ x), slope / gamma, rtol=2e-4)
    np.testing.assert_allclose(kick[core, 3] @ y / (y @ y), slope / gamma, rtol=2e-4)
    # p = dE / P0 c changes by beta dPz / P0 to first order; z_lab = z_rest / gamma
    dpz = kick[core, 5] / beta
    np.testing.assert_allclose(dpz @ z_rest / (z_rest @ z_rest), slope, rtol=2e-4)


def test_long_gaussian_beam_converges_to_the_envelope_equations_perveance():
    """A long bunch (flat-top in z, 1,300 times its width in its rest frame) of elliptical
    Gaussian cross-section: in its core Sacherer's rms envelope equations give
    <x x''> = K sigma_x / (2 (sigma_x + sigma_y)), with K the generalised perveance of the
    core's current, the force `space_charge.envelope_flow` integrates. Cloud-in-cell
    smooths the bunch by ~h^2 / 3 sigma^2 (1.5% with 48 nodes over 10 sigma, measured),
    so the error must fall as h^2 and the Richardson extrapolation of 48 and 96 nodes
    must reach the analytic value (measured: 1.50%, 0.39%, extrapolated 2e-4)."""
    energy, charge, length = 1e8, 2e-9, 2e-3
    gamma, beta = _factors(energy)
    n = 200_000
    xy = np.asarray(jax.random.normal(jax.random.key(3), (n, 2))) * np.array([3e-4, 1.5e-4])
    z = np.asarray(jax.random.uniform(jax.random.key(4), (n,), minval=-1e-3, maxval=1e-3))
    beam = _beam(np.column_stack([xy, z]), energy, charge)
    core = np.abs(z) < 0.3 * length
    x, y = xy[core].T
    current = charge * core.mean() / (0.6 * length) * beta * SPEED_OF_LIGHT
    perveance = 2 * current / (characteristic_current(beam) * (beta * gamma) ** 3)
    effect = 0.5
    expected = perveance * effect / (2 * (x.std() + y.std()))  # <x dpx> / (<x^2> / sigma_x)
    ratios = []
    for nodes in (48, 96):
        element = bl.SpaceChargeKick(effect, (nodes, nodes, 16), 5.0, 5.0, 3.0)
        kick = np.asarray(element.track(beam).particles - beam.particles)[core]
        ratios.append(
            [np.mean(x * kick[:, 1]) / (expected * np.mean(x * x) / x.std()),
             np.mean(y * kick[:, 3]) / (expected * np.mean(y * y) / y.std())]
        )  # fmt: skip
    coarse, fine = 1.0 - np.array(ratios)
    assert np.all(fine < 5e-3) and np.all((coarse / fine > 3.2) & (coarse / fine < 4.8))
    np.testing.assert_allclose((4 * np.array(ratios[1]) - ratios[0]) / 3, 1.0, rtol=1e-3)


def test_gaussian_bunch_kick_is_the_envelope_force_averaged_over_its_slices():
    """A 6-D Gaussian bunch: each slice feels the envelope force of its own current, so the
    bunch-averaged <x dpx> is the envelope model's (peak current) times the particle-weighted
    mean current over the peak, 1/sqrt(2). Checks the envelope's perveance and the kick
    against each other at 1 MeV, where beta = 0.86 (measured: 0.7% below; 0.2% at 100 MeV:
    the bunch is only 38 times its width in its rest frame, and the grid's h^2)."""
    energy = 1e6
    beam = bl.ParticleBeam.from_parameters(
        200_000, jax.random.key(0), sigma_x=2e-4, sigma_y=2e-4, sigma_tau=3e-3,
        sigma_px=1e-9, sigma_py=1e-9, sigma_p=1e-9, energy=energy, total_charge=1e-10,
    )  # fmt: skip
    effect = 1e-3
    before = np.asarray(beam.particles)
    kick = np.asarray(bl.SpaceChargeKick(effect, (128, 128, 64), 5.0, 5.0).track(beam).particles)
    expected = float(perveance(beam.as_parameter_beam())) * effect / 4 / math.sqrt(2)
    for position, momentum in ((0, 1), (2, 3)):
        centred = before[:, position] - before[:, position].mean()
        moment = np.mean(centred * (kick - before)[:, momentum])
        np.testing.assert_allclose(moment, expected, rtol=1e-2)


@pytest.fixture(scope="module")
def cheetah_pair():
    """One Gaussian bunch, kicked by Cheetah's SpaceChargeKick (float64)."""
    torch.manual_seed(1)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # Cheetah's defaults (grid extents) too
    try:
        theirs = cheetah.ParticleBeam.from_parameters(
            num_particles=30_000, sigma_x=torch.tensor(1e-3), sigma_y=torch.tensor(5e-4),
            sigma_tau=torch.tensor(1e-3), sigma_px=torch.tensor(1e-6),
            sigma_py=torch.tensor(1e-6), sigma_p=torch.tensor(1e-6),
            total_charge=torch.tensor(1e-9), energy=torch.tensor(2.5e8),
        )  # fmt: skip
        kicked = cheetah.SpaceChargeKick(torch.tensor(1.0)).track(theirs)
    finally:
        torch.set_default_dtype(default)
    return theirs.particles.numpy(), kicked.particles.numpy(), theirs.particle_charges.numpy()


def test_solver_reproduces_cheetah_given_its_two_choices(cheetah_pair):
    """Our grid, Green function, convolution, fields and momentum update reproduce Cheetah
    0.8.4's kick particle by particle (1e-12) once given Cheetah's two choices: the grid
    centred on the axis (not the bunch) with charge outside it dropped whole, and the
    force read half a cell from where the charge was deposited. Particles that read the
    grid's outer nodes are left out (Cheetah's field is zero there, ours one-sided)."""
    before, after, charges = cheetah_pair
    gamma, beta = _factors(2.5e8)
    position = np.column_stack([before[:, 0], before[:, 2], -beta * before[:, 4]])
    half_width = 3 * before[:, [0, 2, 4]].std(0, ddof=1)  # Cheetah: 3 sigma_tau along z
    cell = 2 * half_width / 32
    inside = np.all(np.abs(position) <= half_width, axis=1)
    field = _poisson.field_on_grid(
        jnp.asarray((position + half_width) / cell - 0.5), jnp.asarray(np.abs(charges) * inside),
        jnp.asarray(cell), gamma, (32, 32, 32),
    )  # fmt: skip
    force = _poisson.at_particles(field, jnp.asarray((position + half_width) / cell))
    dp = np.asarray(force) * 1.0 / (beta * beta * gamma * MASS)
    ours = np.asarray(_poisson.push(jnp.asarray(before), jnp.asarray(dp), gamma))
    nodes = (position + half_width) / cell
    interior = np.all((nodes > 2.5) & (nodes < 29.5), axis=1)
    # p: Cheetah's energy, sqrt(1 + (P / mc)^2) - gamma0, keeps ~1e-15 of it (cancellation)
    for column, tolerance in ((1, 1e-12), (3, 1e-12), (5, 1e-8)):
        change = after[interior, column] - before[interior, column]
        ours_change = ours[interior, column] - before[interior, column]
        atol = tolerance * np.abs(change).max()
        np.testing.assert_allclose(ours_change, change, rtol=0, atol=atol)


def test_kick_agrees_with_cheetah_in_its_second_moments(cheetah_pair):
    """Our element on Cheetah's bunch: the changes of <x px>, <y py>, <tau p> agree with
    Cheetah's within 2% (measured 1.3-1.7%: Cheetah reads the force half a cell off), and
    a bunch centred on the axis gets no net kick from its own field (Cheetah's: a net
    kick of ~10% of the rms one, from the same half cell)."""
    before, after, charges = cheetah_pair
    beam = bl.ParticleBeam(before, 2.5e8, charges)
    ours = np.asarray(bl.SpaceChargeKick(1.0).track(beam).particles)
    centred = before - before.mean(0)
    for position, momentum in ((0, 1), (2, 3), (4, 5)):
        theirs_moment = np.mean(centred[:, position] * (after - before)[:, momentum])
        ours_moment = np.mean(centred[:, position] * (ours - before)[:, momentum])
        np.testing.assert_allclose(ours_moment, theirs_moment, rtol=2e-2)
        change = (ours - before)[:, momentum]
        assert abs(change.mean()) < 1e-3 * np.sqrt(np.mean(change**2))


def test_gradients_match_central_differences():
    """d(outgoing size)/d(charge, effect length, grid extent, upstream k1) by autodiff
    against central differences: the kick is smooth in the charge and lengths and
    piecewise linear (cloud in cell) in the particle positions."""
    beam = bl.ParticleBeam.from_parameters(
        5_000, jax.random.key(0), sigma_x=2e-4, sigma_y=1e-4, sigma_tau=5e-4, energy=5e7,
        total_charge=1e-9,
    )  # fmt: skip
    particles, energy, charges = beam.particles, beam.energy, beam.particle_charges

    def size(charge_scale, effect, extent, k1):
        segment = bl.Segment(
            [
                bl.Quadrupole(0.1, k1),
                bl.SpaceChargeKick(effect, (16, 16, 16), extent, extent, extent),
                bl.Drift(1.0),
            ]
        )
        start = bl.ParticleBeam(particles, energy, charges * charge_scale)
        return segment.track(start).sigma_x

    args = (1.0, 0.5, 3.0, 2.0)
    grads = jax.jit(jax.grad(size, argnums=(0, 1, 2, 3)))(*args)
    size = jax.jit(size)
    for i, (value, step) in enumerate(zip(args, (1e-4, 1e-4, 1e-5, 1e-5), strict=True)):
        up = list(args)
        down = list(args)
        up[i], down[i] = value + step, value - step
        fd = (size(*up) - size(*down)) / (2 * step)
        np.testing.assert_allclose(grads[i], fd, rtol=1e-5, err_msg=f"argument {i}")


def test_batched_settings_are_independent_bunches():
    beam = bl.ParticleBeam.from_parameters(
        2_000, jax.random.key(1), sigma_x=2e-4, sigma_y=2e-4, sigma_tau=1e-3, total_charge=1e-9
    )
    lengths = jnp.array([0.1, 0.5, 1.0])
    batched = bl.SpaceChargeKick(lengths, (8, 8, 8)).track(beam).particles
    assert batched.shape == (3, 2_000, 7)
    for i, length in enumerate(lengths):
        one = bl.SpaceChargeKick(length, (8, 8, 8)).track(beam).particles
        np.testing.assert_allclose(batched[i], one, rtol=1e-14, atol=1e-20)


def test_segment_with_kicks_converts_both_ways(tmp_path):
    theirs = cheetah.Segment(
        [
            cheetah.Drift(T(0.5)),
            cheetah.SpaceChargeKick(
                T(1.0), grid_shape=(16, 16, 8), grid_extent_x=T(4.0),
                name="SC",
            ),
            cheetah.Drift(T(0.5)),
        ]
    )  # fmt: skip
    ours = from_cheetah(theirs)
    kick = ours["SC"]
    assert kick.grid_shape == (16, 16, 8)
    np.testing.assert_array_equal([kick.effect_length, kick.grid_extent_x], [1.0, 4.0])
    back = to_cheetah(ours)
    assert isinstance(back.elements[1], cheetah.SpaceChargeKick)
    assert back.elements[1].grid_shape == (16, 16, 8)
    torch.manual_seed(0)
    beam = cheetah.ParticleBeam.from_parameters(num_particles=1_000, total_charge=T(1e-9))
    np.testing.assert_array_equal(back.track(beam).particles, theirs.track(beam).particles)
    write_lattice_json(ours, tmp_path / "sc.json")
    again = read_lattice_json(tmp_path / "sc.json")
    assert again["SC"] == kick
    # the drifts around it still compose; the kick itself is the identity at first order
    np.testing.assert_allclose(ours.transfer_map(1e8), bl.Drift(1.0).transfer_map(1e8))


def test_a_parameter_beam_is_pointed_to_the_envelope_model():
    segment = bl.Segment([bl.Drift(1.0), bl.SpaceChargeKick(0.5, name="SC1")])
    with pytest.raises(TypeError, match=r"SpaceChargeKick 'SC1' needs a ParticleBeam.*envelope"):
        segment.track(bl.ParameterBeam.from_parameters())


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: bl.SpaceChargeKick(-1.0, name="S"), "effect_length must lie in"),
        (lambda: bl.SpaceChargeKick(np.nan, name="S"), "effect_length"),
        (lambda: bl.SpaceChargeKick(1.0, (32, 32, 3)), r"grid_shape must be three integers >= 4"),
        (lambda: bl.SpaceChargeKick(1.0, (32, 32)), r"grid_shape must be three integers >= 4"),
        (lambda: bl.SpaceChargeKick(1.0, grid_extent_y=0.0, name="S"), "grid_extent_y must be > 0"),
        (lambda: bl.SpaceChargeKick(1.0, grid_extent_x=np.inf), "grid_extent_x must be finite"),
    ],
)
def test_bad_settings_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_a_beam_without_spread_is_refused_before_tracking():
    particles = np.zeros((10, 7))
    particles[:, 6] = 1.0
    particles[:, 0] = np.linspace(-1e-3, 1e-3, 10)
    particles[:, 4] = np.linspace(-1e-3, 1e-3, 10)
    beam = bl.ParticleBeam(particles, 1e8)
    with pytest.raises(ValueError, match="SpaceChargeKick 'S': the beam has no spread in y"):
        bl.SpaceChargeKick(1.0, name="S").track(beam)


@pytest.fixture(scope="module")
def kicked_line():
    beam = bl.ParticleBeam.from_parameters(
        4_000, jax.random.key(5), sigma_x=2e-4, sigma_y=3e-4, sigma_tau=1e-3, energy=1e7,
        total_charge=1e-10,
    )  # fmt: skip
    segment = bl.Segment(
        [bl.Drift(0.5, "D1"), bl.Quadrupole(0.2, 5.0, name="Q"), bl.Marker("M"), bl.Drift(0.5)]
    )
    return beam, segment


def test_track_particles_is_the_split_step_segment(kicked_line):
    """track_particles equals the segment written out by hand: every element cut into
    half-slice, SpaceChargeKick of the slice, half-slice."""
    beam, segment = kicked_line
    slices = 3
    elements = []
    for element in segment.elements:
        if isinstance(element, bl.Marker):
            elements.append(element)
            continue
        half = element.replace(length=element.length / (2 * slices))
        kick = bl.SpaceChargeKick(element.length / slices, (16, 16, 16))
        elements += [half, kick, half] * slices
    by_hand = bl.Segment(elements).track(beam)
    ours = track_particles(segment, beam, slices=slices, grid_shape=(16, 16, 16), checkpoints=2)
    np.testing.assert_allclose(ours.particles, by_hand.particles, rtol=1e-11, atol=1e-18)
    np.testing.assert_allclose(ours.s, segment.length)
    # with no charge it is the segment's own tracking
    neutral = bl.ParticleBeam(beam.particles, beam.energy, beam.particle_charges * 0.0)
    np.testing.assert_allclose(
        track_particles(segment, neutral, slices=2, grid_shape=(8, 8, 8)).particles,
        segment.track(neutral).particles, rtol=1e-13, atol=1e-19,
    )  # fmt: skip


def test_track_particles_folds_map_only_elements_into_the_steps(kicked_line):
    """Correctors, markers and bends (maps only: folded into the neighbouring steps' maps,
    in front of the first step, between steps and after the last) and an aperture (which
    tracks itself, so it cuts the scan) give the segment written out by hand."""
    beam, _ = kicked_line
    segment = bl.Segment([
        bl.HorizontalCorrector(0.1, 1e-4), bl.Marker(name="M0"), bl.Drift(0.4),
        bl.Dipole(0.3, 0.02, e1=0.01), bl.VerticalCorrector(0.05, -2e-4),
        bl.Quadrupole(0.2, -4.0), bl.Aperture(4e-4, 6e-4), bl.Drift(0.3), bl.BPM(name="B"),
        bl.Solenoid(0.2, 0.5), bl.Marker(name="END"),
    ])  # fmt: skip
    slices, shape = 2, (8, 8, 8)
    elements = []
    for element in segment.elements:
        if isinstance(element, bl.Drift | bl.Quadrupole | bl.Solenoid):
            half = element.replace(length=element.length / (2 * slices))
            elements += [half, bl.SpaceChargeKick(element.length / slices, shape), half] * slices
        else:
            elements.append(element)
    by_hand = bl.Segment(elements).track(beam)
    ours = track_particles(segment, beam, slices=slices, grid_shape=shape, checkpoints=2)
    np.testing.assert_allclose(ours.particles, by_hand.particles, rtol=1e-11, atol=1e-18)
    np.testing.assert_array_equal(ours.survival_probabilities, by_hand.survival_probabilities)
    assert 0.05 < 1 - float(np.mean(ours.survival_probabilities)) < 0.5  # the aperture cuts
    np.testing.assert_allclose(ours.s, segment.length, rtol=1e-15)


def test_track_particles_converges_at_second_order_in_the_slice(kicked_line):
    """Split-step error ~ slice^2: halving the slice divides the change by ~4 (measured
    3.9-4.3 at 1e5 particles)."""
    beam, segment = kicked_line
    sizes = [
        float(track_particles(segment, beam, slices=n, grid_shape=(16, 16, 16)).sigma_x)
        for n in (2, 4, 8)
    ]
    ratio = (sizes[1] - sizes[0]) / (sizes[2] - sizes[1])
    assert 3.0 < ratio < 5.0, sizes


def test_track_particles_gradient_memory_does_not_grow_with_kicks(kicked_line):
    """Reverse-mode memory of the checkpointed scan is set by the checkpoints: the compiled
    gradient's temporary memory for 8 and 32 kicks is the same with 2 checkpoints (with a
    checkpoint at every kick it grows by one copy of the particles per kick: 8.4 MB ->
    13.8 MB here, see benchmarks/space_charge.py)."""
    beam, _ = kicked_line
    segment = bl.Segment([bl.Drift(1.0)])

    def loss(scale, slices):
        start = bl.ParticleBeam(beam.particles, beam.energy, beam.particle_charges * scale)
        out = track_particles(segment, start, slices=slices, grid_shape=(8, 8, 8), checkpoints=2)
        return out.sigma_x

    def temporary(slices):
        compiled = jax.jit(jax.grad(loss), static_argnums=1).lower(1.0, slices).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    np.testing.assert_allclose(temporary(32), temporary(8), rtol=1e-2)


def test_track_particles_gradients_match_central_differences(kicked_line):
    beam, segment = kicked_line

    def size(scale, k1):
        start = bl.ParticleBeam(beam.particles, beam.energy, beam.particle_charges * scale)
        line = segment.with_settings({"Q.k1": k1})
        return track_particles(line, start, slices=2, grid_shape=(8, 8, 8)).sigma_y

    grads = jax.jit(jax.grad(size, argnums=(0, 1)))(1.0, 5.0)
    size = jax.jit(size)
    for i, step in enumerate((1e-4, 1e-5)):
        up, down = [1.0, 5.0], [1.0, 5.0]
        up[i] += step
        down[i] -= step
        fd = (size(*up) - size(*down)) / (2 * step)
        np.testing.assert_allclose(grads[i], fd, rtol=1e-5, err_msg=f"argument {i}")


def test_envelope_tracking_passes_kicks_by(kicked_line):
    beam, _ = kicked_line
    moments = beam.as_parameter_beam()
    with_kicks = bl.Segment([bl.Drift(0.5), bl.SpaceChargeKick(1.0), bl.Drift(0.5)])
    plain = bl.Segment([bl.Drift(0.5), bl.Drift(0.5)])
    np.testing.assert_array_equal(
        track_envelope(with_kicks, moments).cov, track_envelope(plain, moments).cov
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"slices": 0}, ValueError, "slices must be an integer >= 1; got 0"),
        ({"slices": 2.5}, ValueError, "slices must be an integer >= 1; got 2.5"),
        ({"slices": 2, "checkpoints": 0}, ValueError, "checkpoints must be an integer >= 1"),
        ({"slices": 2, "grid_shape": (2, 8, 8)}, ValueError, "grid_shape must be three integers"),
        ({"slices": 2, "grid_extent": (3.0, -1.0, 3.0)}, ValueError, "grid_extent_y must lie in"),
    ],
)
def test_track_particles_bad_input_is_named(kicked_line, kwargs, error, match):
    beam, segment = kicked_line
    with pytest.raises(error, match=match):
        track_particles(segment, beam, **kwargs)


def test_track_particles_refuses_moments(kicked_line):
    _, segment = kicked_line
    with pytest.raises(TypeError, match="incoming must be a ParticleBeam; got ParameterBeam"):
        track_particles(segment, bl.ParameterBeam.from_parameters(), slices=2)


def test_kick_settings_are_set_by_name():
    segment = bl.Segment([bl.Drift(1.0), bl.SpaceChargeKick(1.0, (8, 8, 8), name="SC")])
    changed = segment.with_settings({"SC.effect_length": 2.5, "SC.grid_extent_y": 4.0})
    assert changed["SC"].effect_length == 2.5 and changed["SC"].grid_extent_y == 4.0
    assert changed["SC"].grid_shape == (8, 8, 8)


def test_envelope_counts_drift_kick_drift_elements_as_their_element(kicked_line):
    beam, _ = kicked_line
    moments = beam.as_parameter_beam()
    wrapped = bl.Segment(
        [bl.DriftKickDrift(bl.Drift(0.5)), bl.DriftKickDrift(bl.Quadrupole(0.2, 5.0))]
    )
    plain = bl.Segment([bl.Drift(0.5), bl.Quadrupole(0.2, 5.0)])
    np.testing.assert_array_equal(
        track_envelope(wrapped, moments).cov, track_envelope(plain, moments).cov
    )


def test_track_particles_refuses_what_it_would_not_track_as_marked(kicked_line):
    beam, _ = kicked_line
    wrapped = bl.Segment([bl.DriftKickDrift(bl.Quadrupole(0.2, 5.0, name="QK")), bl.Drift(0.5)])
    with pytest.raises(TypeError, match=r"drift-kick-drift elements \['QK'\]"):
        track_particles(wrapped, beam, slices=2)
    marked = bl.Segment([bl.Sextupole(0.2, 10.0, name="S1"), bl.Drift(0.5)], second_order=[0])
    with pytest.raises(TypeError, match=r"second-order elements \['S1'\]"):
        track_particles(marked, beam, slices=2)


def test_track_particles_passes_explicit_kicks_by(kicked_line):
    beam, _ = kicked_line
    with_kick = bl.Segment([bl.Drift(0.5), bl.SpaceChargeKick(0.5, (8, 8, 8)), bl.Drift(0.5)])
    plain = bl.Segment([bl.Drift(0.5), bl.Drift(0.5)])
    np.testing.assert_array_equal(
        track_particles(with_kick, beam, slices=1, grid_shape=(8, 8, 8)).particles,
        track_particles(plain, beam, slices=1, grid_shape=(8, 8, 8)).particles,
    )


def test_beams_whose_survivors_have_no_spread_are_refused():
    particles = np.zeros((4, 7))
    particles[:, 6] = 1.0
    particles[:, [0, 2, 4]] = [[1e-3, 2e-3, 3e-3], [-1e-3, 1e-3, 0.0], [5e-4, 5e-4, 5e-4],
                               [0.0, 0.0, 0.0]]  # fmt: skip
    one_left = bl.ParticleBeam(particles, 1e8, survival_probabilities=[1.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="S': fewer than two surviving particles"):
        bl.SpaceChargeKick(1.0, name="S").track(one_left)
    same_y = particles.copy()
    same_y[:2, 2] = 7e-4
    flat = bl.ParticleBeam(same_y, 1e8, survival_probabilities=[1.0, 1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="track_particles: the beam has no spread in y"):
        track_particles(bl.Segment([bl.Drift(1.0)]), flat, slices=1)
