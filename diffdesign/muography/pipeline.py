"""The whole chain for one detector: hits, tracks, scatters, X0 map (the differentiable part).

The muons' true passage through the volume does not depend on the detector, so it is
simulated once (:func:`~diffdesign.muography.scattering.propagate`) and reused; everything
from the hits on is a pure function of the detector and a key.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float, PRNGKeyArray

from diffdesign.muography.detector import EDGE_WIDTH, Detector, record_hits
from diffdesign.muography.inference import x0_likelihood, x0_poca
from diffdesign.muography.reconstruction import Scatters, Tracks, fit_tracks, scatters
from diffdesign.muography.scattering import Passage
from diffdesign.muography.source import MuonBatch
from diffdesign.muography.volume import Volume


class Reconstruction(NamedTuple):
    incoming: Tracks
    outgoing: Tracks
    scatters: Scatters


def reconstruct(
    key: PRNGKeyArray, detector: Detector, passage: Passage, volume: Volume,
    edge: float = EDGE_WIDTH,
) -> Reconstruction:  # fmt: skip
    """Record hits of the true lines on both stacks and fit tracks and scatters."""
    z_bottom, z_top = volume.z_range
    k_in, k_out = jax.random.split(key)
    incoming = fit_tracks(record_hits(k_in, detector.above, passage.entry, z_top, edge), z_top)
    outgoing = fit_tracks(
        record_hits(k_out, detector.below, passage.exit, z_bottom, edge), z_bottom
    )
    sc = scatters(incoming, outgoing, z_top, z_bottom)
    return Reconstruction(incoming, outgoing, sc._replace(weight=sc.weight * passage.alive))


class X0Estimator(eqx.Module):
    """How a reconstruction becomes a per-voxel X0 map: the ``estimator`` of
    :func:`predict_x0` and :class:`~diffdesign.muography.DetectorDesign`.

    Subclasses implement :meth:`estimate`; their settings are fields, so an estimator is
    chosen (and configured) once, outside jit, and never re-branched on a name.
    """

    @abc.abstractmethod
    def estimate(
        self, reconstruction: Reconstruction, p: Float[Array, " n"], volume: Volume
    ) -> Float[Array, "nx ny nz"]:
        """X0 map (m) of ``volume``'s grid from ``reconstruction`` (``p`` the momenta the
        inference assumes, eV/c)."""


class Poca(X0Estimator):
    """PoCA (TomOpt's kind): each muon's whole scattering at its point of closest approach
    (:func:`~diffdesign.muography.inference.x0_poca`)."""

    def estimate(self, reconstruction, p, volume):
        return x0_poca(reconstruction.scatters, p, volume)


class PathLikelihood(X0Estimator):
    """Maximum likelihood of angles and offsets along the muons' paths, by ``iterations``
    EM steps (:func:`~diffdesign.muography.inference.x0_likelihood`; 40 is the compromise
    measured on the lead-block and uniform-iron volumes).

    Example:
        >>> predict_x0(key, detector, passage, muons.p, volume, PathLikelihood(iterations=20))
    """

    iterations: int = eqx.field(default=40, static=True)

    def __check_init__(self):
        n = self.iterations
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"iterations must be a positive integer; got {self.iterations!r}")

    def estimate(self, reconstruction, p, volume):
        rec = reconstruction
        return x0_likelihood(rec.scatters, p, rec.incoming, rec.outgoing, volume, self.iterations)


#: The estimator of :func:`predict_x0` and ``DetectorDesign`` when none is given.
DEFAULT_ESTIMATOR: X0Estimator = PathLikelihood()
#: The estimators by the names configuration files use (``estimator = "poca"``).
ESTIMATORS: dict[str, X0Estimator] = {"likelihood": DEFAULT_ESTIMATOR, "poca": Poca()}


def estimator_from_name(name: str) -> X0Estimator:
    """The estimator a configuration names (a key of ``ESTIMATORS``, default settings).

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    try:
        return ESTIMATORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}; got {name!r}") from None


def check_estimator(estimator: object) -> X0Estimator:
    """``estimator`` if it is an :class:`X0Estimator`; a TypeError naming the choices if not."""
    if not isinstance(estimator, X0Estimator):
        raise TypeError(
            "estimator must be an X0Estimator such as PathLikelihood() or Poca() (configuration"
            f" names map through estimator_from_name); got {estimator!r}"
        )
    return estimator


def predict_x0(
    key: PRNGKeyArray,
    detector: Detector,
    passage: Passage,
    p: Float[Array, " n"],
    volume: Volume,
    estimator: X0Estimator = DEFAULT_ESTIMATOR,
) -> Float[Array, "nx ny nz"]:
    """Predicted X0 map (m) of ``volume`` seen by ``detector``: hits, tracks and scatters
    (:func:`reconstruct`), then ``estimator`` (``p`` the momenta the inference assumes, eV/c).

    Raises:
        TypeError: ``estimator`` is not an :class:`X0Estimator`.
    """
    estimator = check_estimator(estimator)
    return estimator.estimate(reconstruct(key, detector, passage, volume), p, volume)


def shard_muons(muons: MuonBatch, devices=None) -> MuonBatch:
    """``muons`` split along the muon axis over ``devices`` (default all), so that jitted
    work on them (propagation, reconstruction, inference, gradients) runs sharded: XLA
    partitions the per-muon arithmetic and turns the sums over muons into all-reduces.
    The muon count must be a multiple of the device count."""
    devices = jax.devices() if devices is None else list(devices)
    n = muons.x.shape[0]
    if n % len(devices):
        raise ValueError(f"muon count {n} must be a multiple of the {len(devices)} devices")
    sharding = NamedSharding(Mesh(np.asarray(devices), ("muons",)), PartitionSpec("muons"))
    placed = [jax.device_put(a, sharding) for a in muons[:5]]
    return MuonBatch(*placed, muons.z)
