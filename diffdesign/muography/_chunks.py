"""Muons in chunks: the one way reconstruction and inference split their per-muon work.

A gradient through a function of all muons at once holds every muon's intermediates; the
same function mapped over chunks, each rematerialised (``jax.checkpoint``), holds one
chunk's. These helpers reshape per-muon PyTrees (muon axis first) into chunks and back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def check_chunk_size(chunk_size: object) -> None:
    """A ValueError unless ``chunk_size`` is None or a positive integer."""
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be None or a positive integer; got {chunk_size!r}")


def split(tree, chunk_size: int):
    """``tree``'s leaves (n, ...) as (n_chunks, chunk_size, ...), the last chunk padded with
    copies of the last muon (valid numbers, so padded work is finite; callers weight or cut
    them away)."""
    n = jax.tree.leaves(tree)[0].shape[0]
    n_chunks = -(-n // chunk_size)
    pad = n_chunks * chunk_size - n

    def one(a):
        a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a
        return a.reshape(n_chunks, chunk_size, *a.shape[1:])

    return jax.tree.map(one, tree)


def join(tree, n: int):
    """The inverse of :func:`split`: leaves (n_chunks, chunk_size, ...) as (n, ...)."""
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], tree)


def padding_mask(n: int, chunk_size: int):
    """(n_chunks, chunk_size) 1 for real muons, 0 for the padding :func:`split` adds."""
    n_chunks = -(-n // chunk_size)
    return (jnp.arange(n_chunks * chunk_size) < n).astype(float).reshape(n_chunks, chunk_size)
