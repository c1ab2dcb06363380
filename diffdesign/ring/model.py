"""The optics model of the correction studies: BPM observables as a function of relative
quadrupole gradient errors, with their exact Jacobian.

The observables at the BPMs, in stacking order (:data:`OBSERVABLES`): beta-beat
``beta/beta_design - 1`` (x, y; relative), phase advance from the ring's start minus the
design (x, y; rad), horizontal dispersion minus the design (m). Errors are relative,
``K1 = K1_design (1 + k)``, on the quadrupoles :func:`fitted_quadrupoles` selects (by default
every quadrupole with non-zero K1: on NSLS-II the 300 normal quadrupoles, numbered as in the
Bayesian optics-correction paper).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from diffdesign.ring.jacobians import k1_jacobian
from diffdesign.ring.lattice import Lattice
from diffdesign.ring.optics import linear_optics

__all__ = ["OBSERVABLES", "RingModel", "block_rows", "fitted_quadrupoles", "ring_model"]

#: Observable blocks, in stacking order: beta-beat x/y (relative), phase advance x/y (rad)
#: and horizontal dispersion (m), each the deviation from the design at every BPM.
OBSERVABLES = ("beta_x", "beta_y", "phase_x", "phase_y", "dispersion_x")
_OPTICS_FIELDS = ("beta_x", "beta_y", "mu_x", "mu_y", "eta_x")


def fitted_quadrupoles(lattice: Lattice, pattern: str = "") -> np.ndarray:
    """Element indices of the quadrupoles whose errors are fitted.

    Args:
        lattice: the ring.
        pattern: regular expression of names (whole-name match), or empty: every
            ``Quadrupole`` element with non-zero K1 (relative errors of a zero gradient
            are meaningless; on NSLS-II this drops the 60 skew ``SQ*`` quadrupoles).

    Raises:
        ValueError: nothing matches, or a match has K1 = 0.
    """
    index = lattice.indices(pattern) if pattern else lattice.indices("Quadrupole")
    k1 = np.asarray(lattice.k1(index))
    if not pattern:
        index = index[k1 != 0.0]
        if index.size == 0:
            raise ValueError("the lattice has no quadrupole with non-zero K1")
    elif np.any(k1 == 0.0):
        zero = [lattice.names[i] for i in index[k1 == 0.0]]
        raise ValueError(f"quadrupoles {pattern!r} include elements with K1 = 0: {zero[:5]}")
    return index


def _optics_and_jacobian(
    lattice: Lattice, quadrupoles: tuple[int, ...], bpms: tuple[int, ...], errors: Array
) -> tuple[Array, Array]:
    """``(5, n_bpm)`` beta_x, beta_y, mu_x, mu_y, eta_x at the BPMs of the ring with relative
    gradient errors, and ``(5, n_bpm, n_quad)`` their derivatives w.r.t. the errors."""
    quads, monitors = np.asarray(quadrupoles), np.asarray(bpms)
    machine = lattice.add_k1_relative(quads, errors)
    optics = linear_optics(machine, monitors)
    jacobian = k1_jacobian(machine, quads, monitors)
    k1_design = lattice.k1(quads)  # dK1/dk for K1 = K1_design (1 + k)
    values = jnp.stack([optics[f] for f in _OPTICS_FIELDS])
    derivatives = jnp.stack([jacobian[f] for f in _OPTICS_FIELDS]) * k1_design[None, None, :]
    return values, derivatives


def _optics_only(
    lattice: Lattice, quadrupoles: tuple[int, ...], bpms: tuple[int, ...], errors: Array
) -> Array:
    optics = linear_optics(
        lattice.add_k1_relative(np.asarray(quadrupoles), errors), np.asarray(bpms)
    )
    return jnp.stack([optics[f] for f in _OPTICS_FIELDS])


class RingModel(eqx.Module):
    """Observables at the BPMs as a function of relative quadrupole gradient errors.

    ``observables(k)`` stacks the blocks of :data:`OBSERVABLES`, each ``(n_bpm,)``:
    beta-beat ``beta/beta_design - 1`` (x, y), phase advance from the ring's start minus
    the design (x, y; rad), horizontal dispersion minus the design (m).

    Attributes:
        lattice: the design ring.
        design: ``(5, n_bpm)`` design beta_x, beta_y, mu_x, mu_y, eta_x at the BPMs.
        quadrupoles, bpms: element indices (static).
    """

    lattice: Lattice
    design: Array
    quadrupoles: tuple[int, ...] = eqx.field(static=True)
    bpms: tuple[int, ...] = eqx.field(static=True)

    @property
    def n_bpm(self) -> int:
        return len(self.bpms)

    def _normalise(self, values: Array) -> Array:
        beat = values[:2] / self.design[:2] - 1.0
        return jnp.concatenate([beat, values[2:] - self.design[2:]]).reshape(-1)

    def _normalise_jacobian(self, derivatives: Array) -> Array:
        scale = jnp.concatenate([1.0 / self.design[:2], jnp.ones((3, self.n_bpm))])
        return (derivatives * scale[:, :, None]).reshape(5 * self.n_bpm, -1)

    def observables(self, errors: Float[Array, " n_quad"]) -> Float[Array, " 5*n_bpm"]:
        """The stacked observables of the ring with relative errors ``errors`` (traceable)."""
        return self._normalise(_optics_only(self.lattice, self.quadrupoles, self.bpms, errors))

    def linearise(
        self, errors: Float[Array, " n_quad"]
    ) -> tuple[Float[Array, " 5*n_bpm"], Float[Array, "5*n_bpm n_quad"]]:
        """Observables and their exact Jacobian per unit relative error (traceable)."""
        values, derivatives = _optics_and_jacobian(
            self.lattice, self.quadrupoles, self.bpms, errors
        )
        return self._normalise(values), self._normalise_jacobian(derivatives)

    def linearise_host(self, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`linearise` through the one compiled program that every study shares
        (call it from Python loops; ~10 ms per call on NSLS-II after compilation)."""
        values, derivatives = _raw_linearise(
            self.lattice, self.quadrupoles, self.bpms, jnp.asarray(errors, dtype=float)
        )
        return (
            np.asarray(self._normalise(values)),
            np.asarray(self._normalise_jacobian(derivatives)),
        )

    def observables_host(self, errors: np.ndarray) -> np.ndarray:
        """:meth:`observables` through the shared compiled program (see
        :meth:`linearise_host`; the Jacobian it also computes is dropped)."""
        values, _ = _raw_linearise(
            self.lattice, self.quadrupoles, self.bpms, jnp.asarray(errors, dtype=float)
        )
        return np.asarray(self._normalise(values))


# One compiled program per lattice structure: every study calls it (the design optics and
# Jacobian, the degeneracy study's faulty machines), so a session compiles it once.
_raw_linearise = eqx.filter_jit(_optics_and_jacobian)


def ring_model(lattice: Lattice, quadrupoles: np.ndarray) -> tuple[RingModel, Array, Array]:
    """The :class:`RingModel` of a lattice, with the design values and raw Jacobian.

    Returns:
        ``(model, design (5, n_bpm), raw_jacobian (5, n_bpm, n_quad))``: the raw Jacobian is
        d(beta, mu, eta)/dk per unit relative error at the design.
    """
    bpms = tuple(int(i) for i in lattice.indices("Monitor"))
    quads = tuple(int(i) for i in quadrupoles)
    design, raw = _raw_linearise(lattice, quads, bpms, jnp.zeros(len(quads)))
    return RingModel(lattice, design, quads, bpms), design, raw


def block_rows(n_bpm: int, names: tuple[str, ...]) -> np.ndarray:
    """Rows of the stacked observables that belong to the named blocks of
    :data:`OBSERVABLES` (static)."""
    return np.concatenate([np.arange(n_bpm) + n_bpm * OBSERVABLES.index(name) for name in names])
