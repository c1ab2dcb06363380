"""Space charge on a ParameterBeam: the rms envelope (KV) equations, integrated with diffrax.

The beam's second moments obey, along s through an element with constant linear generator
``G`` (the element's map over a length l is exp(G l), affine in the seventh coordinate),

    d mu / ds = G mu,        d Sigma / ds = (G + S) Sigma + Sigma (G + S)^T,

where ``S`` is the linear space-charge force of the rms-equivalent uniform elliptical beam
(Sacherer's rms envelope equations; for an upright beam exactly the KV envelope equations):

    px' += K / (2 sigma_x (sigma_x + sigma_y)) (x - mu_x),
    py' += K / (2 sigma_y (sigma_x + sigma_y)) (y - mu_y),

with ``K = 2 I / (I_0 beta^3 gamma^3)`` the generalised perveance, ``I_0 = 4 pi eps_0 m c^3 / q``
(17,045 A for electrons) and ``I = |Q| c / (sqrt(2 pi) sigma_tau)`` the peak current of
a Gaussian bunch of charge ``Q`` and rms duration ``sigma_tau / c`` (tau = c dt, Cheetah's
coordinate: the bunch is beta sigma_tau long). In a drift with zero
emittance a round beam's size X then obeys X'' = K / (4 X), with emittance and focusing
k the matched size solves k X^4 - K X^2 / 4 - eps^2 = 0.

Scope (stated, not hidden): the force uses the lab-frame sigma_x and sigma_y (exact for an
upright ellipse, an approximation for a tilted or coupled one); no longitudinal space charge
(the bunch length and energy spread are carried by the first-order map only); no image
charges. Elements whose map is exp(G l) with a constant generator get space charge along
their length (:data:`WITH_SPACE_CHARGE`: drifts, quadrupoles with misalignment and tilt,
solenoids); every other element (bends with edges, cavities, correctors, apertures,
diagnostics) acts through its own tracking, without space charge over its length.

Gradients: w.r.t. the beam (moments, charge, energy) and every element field, by diffrax's
adjoint (``RecursiveCheckpointAdjoint`` by default: reverse-mode memory does not grow with
the number of solver steps).

Particles: :func:`track_particles` cuts the same elements into slices, each a half-slice
map, a :class:`~diffdesign.beamline.SpaceChargeKick` of the slice's length and another
half-slice map, run as one checkpointed scan (reverse-mode memory set by the number of
checkpoints, not of kicks). :func:`track_envelope` passes explicit ``SpaceChargeKick``
elements by: the envelope equations already carry the space charge along the lengths.
"""

from __future__ import annotations

import itertools
import math

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy.constants import c as SPEED_OF_LIGHT
from scipy.constants import epsilon_0

from diffdesign._validation import check_positive, is_concrete, known_zero
from diffdesign.beamline import _poisson, _stacked
from diffdesign.beamline.beams import ParameterBeam, ParticleBeam
from diffdesign.beamline.elements import (
    Drift,
    DriftKickDrift,
    Element,
    Quadrupole,
    Solenoid,
    SpaceChargeKick,
    check_spread,
)
from diffdesign.beamline.segment import Segment

#: Elements that get space charge along their length (their maps are exp(G l)).
WITH_SPACE_CHARGE = (Drift, Quadrupole, Solenoid)


def characteristic_current(beam: ParameterBeam) -> float:
    """I_0 = 4 pi eps_0 m c^3 / q of the beam's species, A (17,045 A for electrons)."""
    species = beam.species
    return (
        4.0
        * math.pi
        * epsilon_0
        * SPEED_OF_LIGHT
        * species.mass_eV
        / abs(species.num_elementary_charges)
    )


def peak_current(beam: ParameterBeam) -> Array:
    """Peak current (A) of a Gaussian bunch: |Q| c / (sqrt(2 pi) sigma_tau), tau = c dt
    (its rms length beta sigma_tau travels at beta c)."""
    sigma_tau = jnp.sqrt(beam.cov[..., 4, 4])
    return jnp.abs(beam.total_charge) * SPEED_OF_LIGHT / (math.sqrt(2.0 * math.pi) * sigma_tau)


def perveance(beam: ParameterBeam) -> Array:
    """Generalised perveance K = 2 I / (I_0 beta^3 gamma^3) (dimensionless)."""
    beta, gamma = beam.relativistic_beta, beam.relativistic_gamma
    return 2.0 * peak_current(beam) / (characteristic_current(beam) * (beta * gamma) ** 3)


def generator(element: Element, energy, species) -> Float[Array, "... 7 7"]:
    """The element's constant generator G, d/dl of its map exp(G l) at l = 0 (7x7, affine).

    Raises:
        TypeError: for an element outside :data:`WITH_SPACE_CHARGE`.
    """
    if not isinstance(element, WITH_SPACE_CHARGE):
        raise TypeError(
            f"element '{element.name}' ({type(element).__name__}) has no constant generator; "
            f"space charge covers {[cls.__name__ for cls in WITH_SPACE_CHARGE]}"
        )

    def map_of_length(length):
        return element.replace(length=length).transfer_map(energy, species)

    return jax.jacfwd(map_of_length)(jnp.zeros_like(element.length))


def _force(cov: Array, k: Array) -> Array:
    """The space-charge part S of the generator (7x7) for moments ``cov`` and perveance k."""
    sx, sy = jnp.sqrt(cov[..., 0, 0]), jnp.sqrt(cov[..., 2, 2])
    total = sx + sy
    force = jnp.zeros(cov.shape, cov.dtype)
    force = force.at[..., 1, 0].set(k / (2.0 * sx * total))
    return force.at[..., 3, 2].set(k / (2.0 * sy * total))


def _solver_options(rtol: float, atol: float, max_steps: int) -> dict:
    return {
        "solver": diffrax.Tsit5(),
        "stepsize_controller": diffrax.PIDController(rtol=rtol, atol=atol),
        "max_steps": max_steps,
    }


def envelope_flow(
    generator_matrix: Float[Array, "7 7"],
    length: Array,
    mu: Float[Array, " 7"],
    cov: Float[Array, "7 7"],
    k: Array,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int = 16_384,
) -> tuple[Array, Array]:
    """(mu, cov) after ``length`` (m, either sign) of the envelope equations (module doc)
    with constant ``generator_matrix`` and perveance ``k``; one diffrax solve.

    The moments are integrated in units of the incoming rms sizes (each coordinate divided
    by its sigma, the seventh by 1), so ``rtol`` and ``atol`` are relative to the beam's own
    scales: sizes in m and divergences in rad are solved equally well.
    """
    sigma = jnp.sqrt(jax.lax.stop_gradient(jnp.diagonal(cov)))
    scale = jnp.where(sigma > 0.0, sigma, 1.0).at[6].set(1.0)
    linear = generator_matrix * (scale[None, :] / scale[:, None])  # D^-1 G D

    def field(s, state, args):
        del s, args
        mean, moments = state
        physical = moments * jnp.outer(scale, scale)
        force = _force(physical, k) * (scale[None, :] / scale[:, None])
        full = linear + force
        return linear @ mean, full @ moments + moments @ full.T

    length = jnp.asarray(length, dtype=float)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        t0=jnp.zeros_like(length),
        t1=length,
        dt0=None,
        y0=(mu / scale, cov / jnp.outer(scale, scale)),
        **_solver_options(rtol, atol, max_steps),
    )
    mean, moments = solution.ys
    return mean[-1] * scale, moments[-1] * jnp.outer(scale, scale)


def track_envelope(
    segment: Segment,
    incoming: ParameterBeam,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int = 16_384,
) -> ParameterBeam:
    """``incoming`` through ``segment`` with space charge (see the module doc).

    Elements of :data:`WITH_SPACE_CHARGE` with a nonzero length are integrated with
    diffrax (Tsit5, adaptive steps to ``rtol``/``atol``); the others track as in
    :meth:`Segment.track`; :class:`SpaceChargeKick` elements are passed by (their space
    charge is the one integrated here) and :class:`DriftKickDrift` elements count as the
    drift or quadrupole they wrap (moments see their first-order map). With zero charge the
    result equals ``segment.track(incoming)`` (without its kicks).

    Raises:
        TypeError: ``incoming`` not a ParameterBeam; settings or beams with batch axes
            (vmap the call instead).
        ValueError: a charged beam of zero bunch length (infinite current), a beam of zero
            transverse size.
    """
    if not isinstance(incoming, ParameterBeam):
        raise TypeError(
            f"incoming must be a ParameterBeam (space charge acts on its moments); got "
            f"{type(incoming).__name__}"
        )
    if incoming.mu.ndim != 1:
        raise TypeError(
            f"track_envelope tracks one beam (mu of shape (7,)); got mu of shape "
            f"{incoming.mu.shape}: vmap it over batches"
        )
    _check_beam(incoming)
    options = {"rtol": rtol, "atol": atol, "max_steps": max_steps}
    k = perveance(incoming)
    beam = incoming

    # runs of consecutive elements: with space charge one scanned solve, without one map
    # moments: a DriftKickDrift element acts through its element's first-order map
    elements = [
        e.element if isinstance(e, DriftKickDrift) else e
        for e in segment.elements
        if not isinstance(e, SpaceChargeKick)
    ]
    for with_charge, run in itertools.groupby(elements, key=_charged):
        run = list(run)
        beam = _through_run(run, beam, k, options) if with_charge else Segment(run).track(beam)
    return beam


def _kicked(particles: Array, step, beam: ParticleBeam, extent: Array, shape) -> Array:
    """One split step: the map before, the space-charge kick of the slice, the map after."""
    before, length, after = step
    particles = _poisson.kick(
        particles @ before.T, beam.particle_charges, beam.survival_probabilities, beam.energy,
        length, extent, shape=shape, mass_eV=beam.species.mass_eV,
        num_elementary_charges=beam.species.num_elementary_charges,
    )  # fmt: skip
    return particles @ after.T


def _charged(element: Element) -> bool:
    """Whether space charge acts along the element (a length that may be nonzero)."""
    return isinstance(element, WITH_SPACE_CHARGE) and not known_zero(element.length)


def _through_run(elements: list[Element], beam: ParameterBeam, k: Array, options) -> ParameterBeam:
    """``beam`` through consecutive elements with space charge: one diffrax solve per element,
    scanned over the elements' stacked generators (one compiled solve for the whole run)."""
    matrices = []
    for element in elements:
        matrix = generator(element, beam.energy, beam.species)
        if matrix.shape != (7, 7):
            raise TypeError(
                f"element '{element.name}' has batched settings (generator of shape "
                f"{matrix.shape}); track_envelope takes one setting: vmap it over batches"
            )
        matrices.append(matrix)
    lengths = jnp.stack([jnp.asarray(e.length, dtype=float) for e in elements])

    def one(state, element):
        matrix, length = element
        return envelope_flow(matrix, length, *state, k, **options), None

    (mu, cov), _ = jax.lax.scan(one, (beam.mu, beam.cov), (jnp.stack(matrices), lengths))
    return eqx.tree_at(lambda b: (b.mu, b.cov, b.s), beam, (mu, cov, beam.s + jnp.sum(lengths)))


def _check_beam(beam: ParameterBeam) -> None:
    if not is_concrete(beam.cov) or not is_concrete(beam.total_charge):
        return
    cov, charge = np.asarray(beam.cov), float(np.asarray(beam.total_charge))
    for index, name in ((0, "sigma_x"), (2, "sigma_y")):
        check_positive(cov[index, index], f"{name}^2", "track_envelope", "m^2")
    if charge != 0.0:
        check_positive(
            cov[4, 4], "sigma_tau^2 (the bunch length sets the peak current)",
            "track_envelope", "m^2",
        )  # fmt: skip


def track_particles(
    segment: Segment,
    incoming: ParticleBeam,
    *,
    slices: int,
    grid_shape: tuple[int, int, int] = (32, 32, 32),
    grid_extent: tuple[float, float, float] = (3.0, 3.0, 3.0),
    checkpoints: int = 8,
) -> ParticleBeam:
    """Particles through ``segment`` with space-charge kicks along its drifts, quadrupoles
    and solenoids (:data:`WITH_SPACE_CHARGE`).

    Each such element of nonzero length is cut into ``slices`` equal slices, tracked as a
    half-slice map, a :class:`SpaceChargeKick` of the slice's length (``grid_shape``, and
    ``grid_extent`` in rms sizes in x, y, tau) and another half-slice map: a split-step
    scheme whose error falls as the square of the slice length. Consecutive elements run
    as one scan of their slices, checkpointed (``equinox.internal.scan``): reverse-mode
    memory holds ``checkpoints`` copies of the particles, whatever the number of kicks
    (more kicks cost recomputation instead). It is differentiable in reverse mode only
    (``jax.grad``, not ``jax.jvp``). Other elements track as in :meth:`Segment.track`;
    :class:`SpaceChargeKick` elements already in the segment are passed by (the kicks are
    placed here).

    Raises:
        TypeError: ``incoming`` not a ParticleBeam; settings or beams with batch axes
            (vmap the call instead); a :class:`DriftKickDrift` element or elements marked
            for second-order tracking (the slices are first-order maps: neither would be
            tracked as marked).
        ValueError: ``slices`` or ``checkpoints`` not a positive integer; a beam whose
            surviving particles have no spread in x, y or tau.
    """
    if not isinstance(incoming, ParticleBeam):
        raise TypeError(f"incoming must be a ParticleBeam; got {type(incoming).__name__}")
    if incoming.particles.ndim != 2:
        raise TypeError(
            f"track_particles tracks one beam (particles of shape (n, 7)); got "
            f"{incoming.particles.shape}: vmap it over batches"
        )
    for field, value in (("slices", slices), ("checkpoints", checkpoints)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field} must be an integer >= 1; got {value!r}")
    nonlinear = [e.name for e in segment.elements if isinstance(e, DriftKickDrift)]
    if nonlinear or segment.second_order:
        marked = [segment.elements[p].name for p in segment.second_order]
        raise TypeError(
            f"track_particles slices elements into first-order maps; drift-kick-drift "
            f"elements {nonlinear} and second-order elements {marked} would not be tracked "
            "as marked: unwrap them (DriftKickDrift.element, Segment(segment.elements))"
        )
    check_spread(incoming, "track_particles")
    kick = SpaceChargeKick(0.0, grid_shape, *grid_extent, name="track_particles")
    extent = jnp.stack([kick.grid_extent_x, kick.grid_extent_y, kick.grid_extent_tau])

    beam = incoming
    elements = [e for e in segment.elements if not isinstance(e, SpaceChargeKick)]
    # Steps of one scan: (map before the kick, slice length, map after it). Elements that
    # are maps only (correctors, markers, bends without space charge over their length)
    # are multiplied into the neighbouring step's maps, so a long line is one scan that
    # only elements tracking themselves (cavities, apertures) interrupt. The maps of a
    # run are computed per kind of element (``_stacked``), not element by element.
    run: list[Element] = []
    for element in elements:
        if element.tracks_itself(beam) and not _charged(element):
            beam = element.track(_through_steps(run, beam, slices, extent, kick, checkpoints))
            run = []
        else:
            run.append(element)
    return _through_steps(run, beam, slices, extent, kick, checkpoints)


def _through_steps(
    run: list[Element], beam: ParticleBeam, slices: int, extent: Array, kick, checkpoints: int
) -> ParticleBeam:
    """``beam`` through elements that are maps (none tracking itself): the charged ones cut
    into split steps, the others folded into the neighbouring steps' maps."""
    if not run:
        return beam
    pieces = [e.replace(length=e.length / (2 * slices)) if _charged(e) else e for e in run]
    matrices = _stacked.element_matrices(pieces, beam.energy, beam.species)
    steps: list[int] = []  # the piece of each step
    before_fold: dict[int, list[int]] = {}  # step -> map-only pieces in front of it
    after_fold: dict[int, list[int]] = {}  # step -> map-only pieces after it
    leading: list[int] = []
    for i, element in enumerate(run):
        if _charged(element):
            if leading and not steps:
                before_fold[0] = leading
            steps += [i] * slices
        elif steps:
            after_fold.setdefault(len(steps) - 1, []).append(i)
        else:
            leading.append(i)

    def product(indices: list[int]) -> Array:
        total = matrices[indices[0]]
        for i in indices[1:]:
            total = matrices[i] @ total
        return total

    particles = beam.particles
    if steps:
        index = np.asarray(steps)
        before, after = matrices[index], matrices[index]
        for step, indices in before_fold.items():
            before = before.at[step].set(before[step] @ product(indices))
        for step, indices in after_fold.items():
            after = after.at[step].set(product(indices) @ after[step])
        lengths = jnp.stack([jnp.asarray(run[i].length, dtype=float) / slices for i in steps])
        particles, _ = eqxi.scan(
            lambda p, step: (_kicked(p, step, beam, extent, kick.grid_shape), None),
            particles, (before, lengths, after),
            kind="checkpointed", checkpoints=min(checkpoints, len(steps)),
        )  # fmt: skip
    else:
        particles = particles @ product(leading).T
    length = _stacked.total_length(run)
    return eqx.tree_at(lambda b: (b.particles, b.s), beam, (particles, beam.s + length))
