"""Linear optics of beamlines: Twiss functions, phase advance and dispersion along a
segment, and the periodic solution of a cell.

Everything follows from the first-order maps of the elements (the ones a ParameterBeam is
tracked with), multiplied into the maps from the segment's entrance to every element's exit
by a parallel prefix product — no sequential loop over elements, and long lattices are
computed per kind of element (see ``_stacked``). All results are differentiable w.r.t.
every element setting, the initial Twiss parameters and the energy.

Conventions:

* Phase advances are in rad, accumulated from the entrance. Each element's own advance
  has the sign of its length (a negative drift over overlapping elements goes back), so it
  is found unambiguously for advances up to 2 pi per element.
* Dispersion is with respect to Cheetah's sixth coordinate p = dE / (p0 c), MAD-X's PT
  (the beam property ``dispersion_x`` of a tracked ParameterBeam). Dispersion with respect
  to the momentum deviation delta = dp / p0 (AT, Bmad) is ``beta0`` times this, beta0 = v / c
  of the reference particle. Through a cavity, it is the dispersion of the particle on the
  reference phase (tau = 0), relative to the p at that point.
* Cavities that change the energy damp the betatron motion: beta and alpha are those of the
  damped beam (emittance shrinking by the determinant of the map), as the beam's own
  ``beta_x`` after tracking.
* With x-y coupling (solenoids, rolled quadrupoles) the ``_x``/``_y`` functions are those of
  the normal modes a/b (Edwards-Teng in Sagan and Rubin's form, as AT's ``linopt4`` and this
  project's rings). A transfer line starts uncoupled (its modes are x and y at the
  entrance); a periodic cell starts from its own coupled eigen-solution. Coupling that
  exchanges the planes (the determinant of a diagonal 2x2 block of a map from the start
  reaching zero) has no Edwards-Teng parameters: NaN there. A tracked beam's projected
  ``beta_x`` (``Segment.track_along``) is the measurable alternative.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign._twiss import Twiss, periodic_twiss, refuse_unstable, twiss_along
from diffdesign._validation import check_finite, check_positive, float_array, is_concrete
from diffdesign.beamline import _affine, _stacked
from diffdesign.beamline.beams import Beam
from diffdesign.beamline.elements import Element
from diffdesign.beamline.segment import Segment
from diffdesign.beamline.species import ELECTRON, Species

_TWO_PI = 2.0 * np.pi
#: An element's phase advance of the wrong sign smaller than this (rad) is roundoff.
_ROUNDOFF = 1e-10


class Optics(NamedTuple):
    """Twiss parameters, phase advance and dispersion at one point (scalars: an initial
    condition) or along a segment (arrays of n + 1 values: the entrance, then each element's
    exit).

    Fields: ``beta_x, beta_y`` (m), ``alpha_x, alpha_y``, ``eta_x, eta_y`` (m),
    ``etap_x, etap_y`` (dispersion w.r.t. p = dE / (p0 c); see the module docstring),
    ``mu_x, mu_y`` (rad, from the entrance) and ``s`` (m).

    Example:
        >>> start = Optics(beta_x=5.0, alpha_x=-1.0, beta_y=3.0, alpha_y=0.5)
        >>> optics = optics_along(segment, start, energy=100e6)  # doctest: +SKIP
        >>> optics.beta_x[-1], optics.mu_x[-1] / (2 * np.pi)  # doctest: +SKIP
    """

    beta_x: ArrayLike
    alpha_x: ArrayLike
    beta_y: ArrayLike
    alpha_y: ArrayLike
    eta_x: ArrayLike = 0.0
    etap_x: ArrayLike = 0.0
    eta_y: ArrayLike = 0.0
    etap_y: ArrayLike = 0.0
    mu_x: ArrayLike = 0.0
    mu_y: ArrayLike = 0.0
    s: ArrayLike = 0.0

    @classmethod
    def from_beam(cls, beam: Beam) -> Optics:
        """The betatron Twiss parameters and dispersion of a beam's moments (Cheetah's
        dispersion-corrected definitions), at the beam's position ``s``."""
        if not isinstance(beam, Beam):
            raise TypeError(
                f"Optics.from_beam takes a ParameterBeam or ParticleBeam; got {type(beam).__name__}"
            )
        return cls(
            beam.beta_x, beam.alpha_x, beam.beta_y, beam.alpha_y,
            beam.dispersion_x, beam.dispersion_px, beam.dispersion_y, beam.dispersion_py,
            s=beam.s,
        )  # fmt: skip


def _checked_start(initial: Optics) -> Optics:
    if not isinstance(initial, Optics):
        raise TypeError(
            "initial must be diffdesign.beamline.optics.Optics (Optics(beta_x=..., alpha_x=..., "
            f"beta_y=..., alpha_y=...) or Optics.from_beam(beam)); got {type(initial).__name__}"
        )
    values = {}
    for field, value in initial._asdict().items():
        value = float_array(value, field, "initial optics")
        if jnp.shape(value) != ():
            raise ValueError(
                f"initial optics: {field} must be a scalar (jax.vmap over initial conditions "
                f"for a batch); got shape {jnp.shape(value)}"
            )
        check_finite(value, field, "initial optics")
        if field.startswith("beta"):
            check_positive(value, field, "initial optics", "m")
        values[field] = value
    return Optics(**values)


def _checked_energy(energy: ArrayLike, species: Species) -> Array:
    energy = float_array(energy, "energy", "optics")
    if jnp.shape(energy) != ():
        raise ValueError(f"optics: energy must be a scalar (eV); got shape {jnp.shape(energy)}")
    check_finite(energy, "energy", "optics")
    check_positive(
        energy - species.mass_eV, f"energy - rest energy ({species.mass_eV:.6g} eV)", "optics",
        "eV",
    )  # fmt: skip
    return energy


def _changes_energy(element: Element) -> bool:
    return type(element).map_and_energy is not Element.map_and_energy


def _element_matrices(
    segment: Segment, energy: Array, species: Species
) -> tuple[Float[Array, "n 7 7"], Array]:
    """Each element's first-order map at the energy entering it, (n, 7, 7), and the energy
    after the segment."""
    blocks, run = [], []
    for element in segment.elements:
        if not _changes_energy(element):
            run.append(element)
            continue
        if run:
            blocks.append(_stacked.element_matrices(run, energy, species))
            run = []
        linear_map, energy = element.map_and_energy(energy, species)
        matrix = _affine.to_array(linear_map)
        if matrix.shape != (7, 7):
            raise ValueError(
                f"element '{element.name}' ({type(element).__name__}) has settings with batch "
                f"shape {matrix.shape[:-2]}: optics take one value per setting; jax.vmap over "
                "the settings for a batch"
            )
        blocks.append(matrix[None])
    if run:
        blocks.append(_stacked.element_matrices(run, energy, species))
    return jnp.concatenate(blocks), energy


def _cumulative(matrices: Array) -> Array:
    """The maps from the entrance to the entrance and to each element's exit (n + 1, 7, 7)."""
    products = jax.lax.associative_scan(lambda first, then: then @ first, matrices)
    return jnp.concatenate([jnp.eye(7)[None], products])


def transfer_along(
    segment: Segment, energy: ArrayLike, species: Species = ELECTRON
) -> Float[Array, "n1 7 7"]:
    """First-order maps (7x7) from the segment's entrance to the entrance (the identity) and
    to each element's exit: (len(segment) + 1, 7, 7). ``energy`` is the reference total
    energy (eV) at the entrance."""
    _check_segment(segment)
    energy = _checked_energy(energy, species)
    return _transfer_along(segment, energy, species)


@eqx.filter_jit
def _transfer_along(segment: Segment, energy: Array, species: Species) -> Array:
    return _cumulative(_element_matrices(segment, energy, species)[0])


def _check_segment(segment) -> None:
    if not isinstance(segment, Segment):
        kind = type(segment).__name__
        raise TypeError(f"segment must be a diffdesign.beamline.Segment; got {kind}")
    if not len(segment):
        raise ValueError("segment has no elements")


def _lengths(segment: Segment) -> Array:
    for i, element in enumerate(segment.elements):
        if jnp.shape(element.length) != ():
            raise ValueError(
                f"element {i} '{element.name}' has a length of shape {jnp.shape(element.length)}:"
                " optics take one value per setting; jax.vmap over the settings for a batch"
            )
    if all(is_concrete(e.length) for e in segment.elements):
        return jnp.asarray([float(e.length) for e in segment.elements])
    return jnp.stack([jnp.asarray(e.length, dtype=float) for e in segment.elements])


def _phase_steps(wrapped: Array, lengths: Array) -> Array:
    """Each element's advance (n, 2) from the wrapped phases (n + 1, 2) of the maps from the
    entrance: the difference wrapped to (-pi, pi], then moved by a turn where its sign
    disagrees with the element's length (advances beyond pi inside one element)."""
    step = jnp.mod(jnp.diff(wrapped, axis=0) + np.pi, _TWO_PI) - np.pi
    lengths = lengths[:, None]
    step = jnp.where((lengths > 0) & (step < -_ROUNDOFF), step + _TWO_PI, step)
    return jnp.where((lengths < 0) & (step > _ROUNDOFF), step - _TWO_PI, step)


def _optics(transfer: Array, start: Twiss, dispersion: Array, lengths: Array, s0) -> Optics:
    beta, alpha, wrapped = twiss_along(transfer[:, :4, :4], start)
    mu = jnp.concatenate([jnp.zeros((1, 2)), jnp.cumsum(_phase_steps(wrapped, lengths), 0)])
    v = transfer[:, :6, :6] @ jnp.concatenate([dispersion, jnp.array([0.0, 1.0])])
    eta = v[:, :4] / v[:, 5:6]
    s = s0 + jnp.concatenate([jnp.zeros(1), jnp.cumsum(lengths)])
    return Optics(
        beta[:, 0], alpha[:, 0], beta[:, 1], alpha[:, 1],
        eta[:, 0], eta[:, 1], eta[:, 2], eta[:, 3], mu[:, 0], mu[:, 1], s,
    )  # fmt: skip


def optics_along(
    segment: Segment, initial: Optics, energy: ArrayLike, species: Species = ELECTRON
) -> Optics:
    """Twiss functions, phase advance and dispersion along a transfer line.

    Args:
        segment: the beamline; ``segment.split(resolution)`` samples inside drifts and
            quadrupoles.
        initial: the Twiss parameters and dispersion at the entrance (scalars; ``mu`` and
            ``s`` are the values to count from), e.g. ``Optics.from_beam(beam)``.
        energy: reference total energy at the entrance (eV).
        species: the particle species.

    Returns:
        :class:`Optics` with arrays of ``len(segment) + 1`` values: the entrance, then each
        element's exit.

    Raises:
        ValueError: a beta that is not positive, a value that is NaN or infinite, an energy
            below the rest energy, settings with batch axes (``jax.vmap`` instead).
    """
    _check_segment(segment)
    start = _checked_start(initial)
    energy = _checked_energy(energy, species)
    return _along(segment, start, energy, species)


@eqx.filter_jit
def _along(segment: Segment, start: Optics, energy: Array, species: Species) -> Optics:
    transfer = _transfer_along(segment, energy, species)
    twiss = Twiss(
        jnp.stack([start.beta_x, start.beta_y]),
        jnp.stack([start.alpha_x, start.alpha_y]),
        jnp.zeros(2),
        jnp.ones(()),
        jnp.zeros((2, 2)),
    )
    dispersion = jnp.stack([start.eta_x, start.etap_x, start.eta_y, start.etap_y])
    result = _optics(transfer, twiss, dispersion, _lengths(segment), start.s)
    return result._replace(mu_x=result.mu_x + start.mu_x, mu_y=result.mu_y + start.mu_y)


def periodic_optics(
    segment: Segment,
    energy: ArrayLike,
    species: Species = ELECTRON,
    *,
    allow_unstable: bool = False,
) -> Optics:
    """The periodic solution of a cell: Twiss functions and dispersion that the cell maps
    onto themselves, along the cell.

    The phase advance per cell is ``mu_x[-1]`` and ``mu_y[-1]`` (the cell's tunes times
    2 pi); the first values are the periodic initial condition for :func:`optics_along`
    of a line of such cells.

    Args:
        segment: one period.
        energy: reference total energy (eV).
        species: the particle species.
        allow_unstable: return NaN for a cell without stable periodic solution instead of
            raising (for stability scans).

    Raises:
        ValueError: an unstable cell (naming the mode and the traces of the cell's 2x2
            blocks; under ``jit`` the check runs with the computation and fails with
            "unstable optics"); a cell whose cavities change the reference energy (no
            periodic solution); bad energy or batched settings as :func:`optics_along`.
    """
    _check_segment(segment)
    energy = _checked_energy(energy, species)
    result, mu, one_period, outgoing = _periodic(segment, energy, species)
    if is_concrete(outgoing) and is_concrete(energy) and not np.isclose(outgoing, energy, 0, 1e-9):
        raise ValueError(
            f"the cell changes the reference energy from {float(energy):.9g} eV to "
            f"{float(outgoing):.9g} eV: a periodic solution needs a cell that returns to its "
            "energy (cavities off, or their gain compensated within the cell)"
        )
    return result if allow_unstable else refuse_unstable(result, mu, one_period)


@eqx.filter_jit
def _periodic(segment: Segment, energy: Array, species: Species):
    matrices, outgoing = _element_matrices(segment, energy, species)
    transfer = _cumulative(matrices)
    one_period = transfer[-1]
    twiss = periodic_twiss(one_period[:6, :6])
    dispersion = jnp.linalg.solve(jnp.eye(4) - one_period[:4, :4], one_period[:4, 5])
    result = _optics(transfer, twiss, dispersion, _lengths(segment), jnp.zeros(()))
    return result, twiss.mu, one_period, outgoing
