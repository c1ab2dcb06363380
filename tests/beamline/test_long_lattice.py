"""Long lattices: maps computed once per kind of element and multiplied pairwise
(``_stacked``, ``_affine.product``) equal the element-by-element product, keep their
gradients, and make a program that grows with log2 of the length, not with the length."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import diffdesign.beamline as bl
from diffdesign.beamline import _affine
from diffdesign.beamline.elements import apply_map


def _fodo_line(cells: int) -> bl.Segment:
    """Cheetah's speed-notebook lattice (two correctors each end, cells of two quadrupoles,
    a marker and an unpowered quadrupole): 7 cells + 8 elements."""
    ends = [bl.HorizontalCorrector(0.1, 0.0, name="HCOR_1"), bl.Drift(0.3),
            bl.VerticalCorrector(0.1, 0.0, name="VCOR_1"), bl.Drift(0.3)]  # fmt: skip
    cells_ = []
    for i in range(cells):
        cells_ += [bl.Quadrupole(0.1, 4.2, name=f"QF{i}"), bl.Drift(0.2),
                   bl.Quadrupole(0.1, -4.2, name=f"QD{i}"), bl.Drift(0.2), bl.Marker(),
                   bl.Quadrupole(0.1, 0.0), bl.Drift(0.2)]  # fmt: skip
    tail = [bl.HorizontalCorrector(0.1, 0.0, name="HCOR_2"), bl.Drift(0.3),
            bl.VerticalCorrector(0.1, 0.0, name="VCOR_2"), bl.Drift(0.3)]  # fmt: skip
    return bl.Segment(ends + cells_ + tail)


def _mixed_line(rng) -> bl.Segment:
    """120 elements of twelve kinds: rolled and plain quadrupoles (a rolled one has one
    more setting), bends with edges, solenoids, sextupoles, correctors, markers, BPMs,
    misaligned quadrupoles and one magnet with a batch of 5 settings in the middle."""
    elements = []
    for i in range(10):
        elements += [
            bl.Drift(rng.uniform(0.1, 0.5)),
            bl.Quadrupole(0.2, rng.normal(0, 5), name=f"Q{i}"),
            bl.Quadrupole(0.1, rng.normal(0, 5), tilt=rng.normal(0, 0.1)),
            bl.Dipole(0.5, rng.normal(0, 0.1), e1=0.02, e2=-0.03, gap=0.02, fringe_integral=0.4),
            bl.Solenoid(0.3, rng.normal(0, 1.0)),
            bl.Sextupole(0.1, rng.normal(0, 20)),
            bl.HorizontalCorrector(0.05, rng.normal(0, 1e-3)),
            bl.VerticalCorrector(0.05, rng.normal(0, 1e-3)),
            bl.Marker(),
            bl.BPM(),
            bl.Quadrupole(0.1, 2.0, misalignment=rng.normal(0, 1e-4, 2)),
            bl.Drift(0.1) if i != 5 else bl.Quadrupole(0.2, jnp.linspace(-3, 3, 5), name="QB"),
        ]
    return bl.Segment(elements)


def _element_by_element(segment: bl.Segment, beam):
    total = _affine.identity()
    for element in segment.elements:
        total = _affine.compose(element.linear_map(beam.energy, beam.species), total)
    length = sum(float(np.asarray(e.length)) for e in segment.elements)
    return apply_map(total, beam, jnp.asarray(length))


def test_long_mixed_line_equals_the_element_by_element_product(rng):
    segment = _mixed_line(rng)
    assert len(segment.elements) == 120 > _affine.DENSE_FROM
    beam = bl.ParameterBeam.from_parameters(
        mu_x=1e-4, mu_px=-2e-5, sigma_x=1e-4, sigma_px=2e-5, sigma_y=2e-4, sigma_p=1e-3,
        energy=1e8,
    )  # fmt: skip
    ours, reference = segment.track(beam), _element_by_element(segment, beam)
    assert ours.mu.shape == reference.mu.shape == (5, 7)
    for got, expected in ((ours.cov, reference.cov), (ours.mu, reference.mu)):
        scale = np.abs(np.asarray(expected)).max()  # rounding of a different order of products
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(ours.s, reference.s, rtol=1e-14)


def test_program_grows_with_the_log_of_the_length():
    """With every map traced (the beam's energy is), 1,058 elements (Cheetah's
    speed-notebook lattice) make a program barely larger than 260 do (two more levels of
    the pairwise product); traced element by element they made 4x more."""
    sizes = {}
    for cells in (36, 150):
        segment = _fodo_line(cells)

        def covariance(energy, segment=segment):
            beam = bl.ParameterBeam.from_parameters(sigma_x=1e-4, sigma_y=1e-4, energy=energy)
            return segment.track(beam).cov

        sizes[len(segment.elements)] = len(jax.make_jaxpr(covariance)(1e8).eqns)
    assert list(sizes) == [260, 1058]
    assert sizes[1058] < 1.25 * sizes[260]


def test_long_line_gradient_matches_differences():
    """d sigma_x / d k1 of one quadrupole and d mu_x / d angle of the first corrector,
    through 1,058 elements, against central differences."""
    segment = _fodo_line(150)
    beam = bl.ParameterBeam.from_parameters(sigma_x=1e-4, sigma_y=1e-4, energy=1e8)

    def observed(values):
        out = segment.with_settings({"QF70.k1": values[0], "HCOR_1.angle": values[1]}).track(beam)
        return jnp.stack([out.sigma_x, out.mu_x])

    values = jnp.array([4.2, 1e-4])
    jacobian = np.asarray(jax.jit(jax.jacfwd(observed))(values))
    steps = np.array([1e-6, 1e-7])
    difference = np.stack(
        [(observed(values + h) - observed(values - h)) / (2 * h[i])
         for i, h in enumerate(np.diag(steps))], axis=1,
    )  # fmt: skip
    np.testing.assert_allclose(jacobian, difference, rtol=1e-6)
