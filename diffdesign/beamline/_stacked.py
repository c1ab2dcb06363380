"""The composed first-order map of a long run of elements, computed per kind of element.

Tracing every element's map on its own makes a program that grows with the lattice (a
1,058-element line compiled for 35 s). Here the elements of one kind — same class, same
static fields apart from the name, same shapes of settings — are stacked into one element
whose settings have a leading axis, and its map is computed once under ``vmap``; the maps
are then put back in beam order (one gather per non-trivial entry) and multiplied pairwise
(:func:`diffdesign.beamline._affine.product`). The program's size then depends on the number
of kinds and on log2 of the length, not on the length.
"""

from __future__ import annotations

import copy
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from diffdesign._validation import is_concrete
from diffdesign.beamline import _affine
from diffdesign.beamline._affine import Map


def _anonymous(element):
    """The element with an empty name (names are static fields: elements that differ only
    in them share one program)."""
    if "name" not in {f.name for f in dataclasses.fields(element)}:
        return element
    anonymous = copy.copy(element)
    object.__setattr__(anonymous, "name", "")
    return anonymous


def _kinds(elements: list) -> list[tuple[list[int], object]]:
    """(positions, stacked element) for each kind of element, in order of first appearance."""
    kinds: dict = {}
    for position, element in enumerate(elements):
        anonymous = _anonymous(element)
        leaves, treedef = jax.tree_util.tree_flatten(anonymous)
        key = (treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves))
        kinds.setdefault(key, []).append((position, anonymous))
    return [
        (
            [p for p, _ in members],
            jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[e for _, e in members]),
        )
        for members in kinds.values()
    ]


def _stacked_maps(stacked, count: int, energy, species) -> Map:
    """The first-order maps of ``count`` stacked elements (entries with a leading axis);
    entries that are known constants for the kind stay constants."""
    structure: list[Map] = []

    def arrays(element):
        linear_map = element.linear_map(energy, species)
        structure.append(linear_map)
        shape = _affine.batch_shape(linear_map)
        return [
            jnp.broadcast_to(jnp.asarray(e, dtype=float), shape)
            for row in linear_map
            for e in row
            if not isinstance(e, float)
        ]

    values = iter(jax.vmap(arrays, axis_size=count)(stacked))
    return tuple(
        tuple(e if isinstance(e, float) else next(values) for e in row) for row in structure[0]
    )


def composed_map(elements: list, energy, species) -> Map:
    """The map of ``elements`` (none tracking itself) in beam order at one energy."""
    if len(elements) <= _affine.DENSE_FROM:
        return _affine.compose_all([e.linear_map(energy, species) for e in elements])
    kinds = _kinds(elements)
    maps = [_stacked_maps(stacked, len(positions), energy, species) for positions, stacked in kinds]
    kind_of = np.empty(len(elements), dtype=int)
    index_in_kind = np.empty(len(elements), dtype=int)
    for k, (positions, _) in enumerate(kinds):
        kind_of[positions] = k
        index_in_kind[positions] = np.arange(len(positions))
    shapes = [_affine.stacked_batch_shape(m) for m in maps]

    total = _affine.identity()
    for run in _affine.runs(list(range(len(elements))), lambda p: shapes[kind_of[p]]):
        members = sorted({int(kind_of[p]) for p in run})
        counts = [len(kinds[k][0]) for k in members]
        offsets = dict(zip(members, np.cumsum([0, *counts[:-1]]), strict=True))
        index = np.array([offsets[kind_of[p]] + index_in_kind[p] for p in run])
        stacked = _affine.concatenate([maps[k] for k in members], counts)
        total = _affine.compose(_affine.product(_affine.take(stacked, index), len(run)), total)
    return total


def total_length(elements: list):
    """The summed length (m): known lengths added in NumPy, so a long lattice does not stage
    one addition per element."""
    known = sum((np.asarray(e.length, dtype=float) for e in elements if is_concrete(e.length)),
                np.zeros(()))  # fmt: skip
    total = jnp.asarray(known)
    for e in elements:
        if not is_concrete(e.length):
            total = total + e.length
    return total


def element_matrices(elements: list, energy, species) -> Array:
    """The first-order maps of ``elements`` (none changing the reference energy) at one
    energy as a dense (n, 7, 7) array in beam order, computed once per kind of element.

    Raises:
        ValueError: an element whose settings carry batch axes (one matrix per element).
    """
    kinds = _kinds(elements)
    blocks, order = [], []
    for positions, stacked in kinds:
        maps = _stacked_maps(stacked, len(positions), energy, species)
        batch = _affine.stacked_batch_shape(maps)
        if batch:
            element = elements[positions[0]]
            raise ValueError(
                f"element {positions[0]} '{element.name}' ({type(element).__name__}) has "
                f"settings with batch shape {batch}: one value per setting is taken here; "
                "jax.vmap over the settings for a batch"
            )
        blocks.append(_affine.stacked_array(maps, len(positions)))
        order.extend(positions)
    return jnp.concatenate(blocks)[np.argsort(np.asarray(order))]
