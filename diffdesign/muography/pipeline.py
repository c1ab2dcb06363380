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

from diffdesign._validation import is_concrete
from diffdesign.muography import _chunks
from diffdesign.muography.detector import EDGE_WIDTH, Detector, check_detector, record_hits
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
    edge: float = EDGE_WIDTH, chunk_size: int | None = None,
) -> Reconstruction:  # fmt: skip
    """Record hits of the true lines on both stacks and fit tracks and scatters.

    ``chunk_size``: None (default) reconstructs all muons at once; a positive integer
    reconstructs them ``chunk_size`` at a time (``jax.lax.map`` over chunks, each
    rematerialised under differentiation) with the same random hits, so the result is the
    same up to rounding (tests/muography/test_chunked_reconstruction.py) and the memory a
    gradient holds for the reconstruction is one chunk's intermediates plus the per-muon
    results instead of all muons' intermediates (XLA's temporaries of the PoCA loss's
    gradient for 1e5 muons: 1057 MiB at once, 581 MiB in chunks of 8192; the path
    likelihood's 935 and 729 MiB; benchmarks/scaling.py measures 1e6).
    """
    _chunks.check_chunk_size(chunk_size)
    z_bottom, z_top = volume.z_range
    k_in, k_out = jax.random.split(key)
    if chunk_size is None:
        incoming = fit_tracks(record_hits(k_in, detector.above, passage.entry, z_top, edge),
                              z_top)  # fmt: skip
        outgoing = fit_tracks(
            record_hits(k_out, detector.below, passage.exit, z_bottom, edge), z_bottom
        )
        sc = scatters(incoming, outgoing, z_top, z_bottom)
        return Reconstruction(incoming, outgoing, sc._replace(weight=sc.weight * passage.alive))
    n = passage.entry.shape[1]
    # the same standard normals record_hits draws from k_in / k_out for all muons at once
    noise_in = jax.random.normal(k_in, (n, detector.above.z.shape[0], 2))
    noise_out = jax.random.normal(k_out, (n, detector.below.z.shape[0], 2))
    per_muon = (passage.entry.T, passage.exit.T, passage.alive, noise_in, noise_out)

    @jax.checkpoint
    def one(chunk):
        entry, exit_, alive, n_in, n_out = chunk
        part = Passage(entry.T, exit_.T, None, None, alive)
        hits_in = record_hits(None, detector.above, part.entry, z_top, edge, noise=n_in)
        hits_out = record_hits(None, detector.below, part.exit, z_bottom, edge, noise=n_out)
        incoming, outgoing = fit_tracks(hits_in, z_top), fit_tracks(hits_out, z_bottom)
        sc = scatters(incoming, outgoing, z_top, z_bottom)
        rec = Reconstruction(incoming, outgoing, sc._replace(weight=sc.weight * alive))
        # muon axis first in every leaf, so the chunks concatenate along it
        return rec._replace(incoming=_transposed(incoming), outgoing=_transposed(outgoing))

    out = _chunks.join(jax.lax.map(one, _chunks.split(per_muon, chunk_size)), n)
    return out._replace(incoming=_transposed(out.incoming), outgoing=_transposed(out.outgoing))


def _transposed(tracks: Tracks) -> Tracks:
    """``tracks`` with ``line`` (4, n) <-> (n, 4)."""
    return tracks._replace(line=tracks.line.T)


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
    measured on the lead-block and uniform-iron volumes). ``chunk_size`` (None: all muons at
    once) streams the muons through every EM step that many at a time, so that a gradient's
    memory does not hold every muon's constants (give :func:`predict_x0` a ``chunk_size``
    too, for the reconstruction).

    Example:
        >>> predict_x0(key, detector, passage, muons.p, volume, PathLikelihood(iterations=20))
    """

    iterations: int = eqx.field(default=40, static=True)
    chunk_size: int | None = eqx.field(default=None, static=True)

    def __check_init__(self):
        n = self.iterations
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"iterations must be a positive integer; got {self.iterations!r}")
        _chunks.check_chunk_size(self.chunk_size)

    def estimate(self, reconstruction, p, volume):
        rec = reconstruction
        return x0_likelihood(rec.scatters, p, rec.incoming, rec.outgoing, volume,
                             self.iterations, chunk_size=self.chunk_size)  # fmt: skip


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
    chunk_size: int | None = None,
) -> Float[Array, "nx ny nz"]:
    """Predicted X0 map (m) of ``volume`` seen by ``detector``: hits, tracks and scatters
    (:func:`reconstruct`, ``chunk_size`` muons at a time if given), then ``estimator`` (``p``
    the momenta the inference assumes, eV/c).

    Raises:
        TypeError: ``estimator`` is not an :class:`X0Estimator`.
        ValueError: no muons, a detector that cannot work (:func:`check_detector`: NaN or
            non-positive spans, panels inside the volume, ...) or momenta that are not
            finite and positive, when their values are known.
    """
    estimator = check_estimator(estimator)
    if passage.entry.shape[-1] < 1:
        raise ValueError("predict_x0 needs at least one muon; the passage holds none")
    if is_concrete(detector.above.z):  # inside a design loop the detector is traced
        check_detector(detector, volume)
    if is_concrete(p) and not np.all(np.isfinite(p) & (np.asarray(p) > 0)):
        raise ValueError(f"p (the momenta assumed, eV/c) must be finite and > 0; got {p}")
    rec = reconstruct(key, detector, passage, volume, chunk_size=chunk_size)
    return estimator.estimate(rec, p, volume)


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
