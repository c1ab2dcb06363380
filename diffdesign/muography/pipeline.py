"""The whole chain for one detector: hits, tracks, scatters, X0 map (the differentiable part).

The muons' true passage through the volume does not depend on the detector, so it is
simulated once (:func:`~diffdesign.muography.scattering.propagate`) and reused; everything
from the hits on is a pure function of the detector and a key.
"""

from __future__ import annotations

from typing import NamedTuple

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

ESTIMATORS = ("likelihood", "poca")


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


def predict_x0(
    key: PRNGKeyArray,
    detector: Detector,
    passage: Passage,
    p: Float[Array, " n"],
    volume: Volume,
    estimator: str = "likelihood",
    iterations: int = 40,
) -> Float[Array, "nx ny nz"]:
    """Predicted X0 map (m) of ``volume`` seen by ``detector`` (``estimator`` in ESTIMATORS;
    ``p`` the momenta the inference assumes, eV/c)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}")
    rec = reconstruct(key, detector, passage, volume)
    if estimator == "poca":
        return x0_poca(rec.scatters, p, volume)
    return x0_likelihood(rec.scatters, p, rec.incoming, rec.outgoing, volume, iterations)


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
