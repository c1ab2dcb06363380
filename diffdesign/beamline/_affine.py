"""First-order maps as 7x7 tables whose structural zeros and ones are known when tracing.

A beamline map acts on (x, px, y, py, tau, p, 1); the seventh coordinate carries constant
offsets (misalignments, corrector kicks). Most entries of an element's map are exactly 0
or 1, so a map is kept as a 7x7 tuple of entries that are either Python floats (known
constants) or JAX arrays (anything that depends on settings). Composition multiplies only
entries that can be non-trivial, which lets XLA fuse a whole segment into a few dozen
element-wise operations per setting instead of a chain of dense 7x7 products — the reason
tracking 10^5 settings is fast. Entries broadcast, so a map whose settings have shape
(...,) represents a batch of maps.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
from jaxtyping import Array

Entry = float | Array
Map = tuple[tuple[Entry, ...], ...]

SIZE = 7


def _is_zero(a: Entry) -> bool:
    return isinstance(a, float) and a == 0.0


def _is_one(a: Entry) -> bool:
    return isinstance(a, float) and a == 1.0


def _mul(a: Entry, b: Entry) -> Entry:
    if _is_zero(a) or _is_zero(b):
        return 0.0
    if _is_one(a):
        return b
    if _is_one(b):
        return a
    return a * b


def _add(a: Entry, b: Entry) -> Entry:
    if _is_zero(a):
        return b
    if _is_zero(b):
        return a
    return a + b


def identity() -> Map:
    return tuple(tuple(1.0 if i == j else 0.0 for j in range(SIZE)) for i in range(SIZE))


def from_entries(entries: Mapping[tuple[int, int], Entry]) -> Map:
    """The identity with the given ``(row, column) -> value`` entries replaced."""
    return tuple(
        tuple(entries.get((i, j), 1.0 if i == j else 0.0) for j in range(SIZE)) for i in range(SIZE)
    )


def compose(second: Map, first: Map) -> Map:
    """The map of ``first`` followed by ``second`` (the matrix product second @ first)."""
    return tuple(
        tuple(_sum(_mul(second[i][k], first[k][j]) for k in range(SIZE)) for j in range(SIZE))
        for i in range(SIZE)
    )


#: Longest list of maps composed entry by entry; longer ones are multiplied as dense arrays.
DENSE_FROM = 32


def compose_all(maps: list[Map]) -> Map:
    """The map of ``maps[0]``, then ``maps[1]``, ... in beam order.

    Up to :data:`DENSE_FROM` maps are composed entry by entry (structural zeros and ones
    skipped: a few dozen fused element-wise operations for a short beamline). A long
    lattice would unroll into ~350 scalar operations per element once its running product
    is dense, which XLA compiles super-linearly (minutes for 200 elements) and runs slowly;
    its maps are instead stacked and multiplied pairwise (:func:`product`), per run of maps
    with one batch shape.
    """
    if len(maps) > DENSE_FROM:
        total = identity()
        for run in runs(maps, batch_shape):
            total = compose(product(stack(run), len(run)), total)
        return total
    total = identity()
    for m in maps:
        total = compose(m, total)
    return total


def runs(items: list, shape_of) -> list[list]:
    """Consecutive items with one batch shape: a batch of settings on one magnet is never
    broadcast over the rest of the lattice (10^5 settings x 1,000 elements would not fit)."""
    found: list[list] = []
    for item in items:
        if found and shape_of(found[-1][0]) == shape_of(item):
            found[-1].append(item)
        else:
            found.append([item])
    return found


def stacked_batch_shape(stacked: Map) -> tuple[int, ...]:
    """The batch shape of the maps in a stack (its array entries' shape after the stack axis)."""
    return next((jnp.shape(e)[1:] for row in stacked for e in row if not isinstance(e, float)), ())


def stack(maps: list[Map]) -> Map:
    """Maps of one batch shape as one map whose array entries have a leading axis over the
    maps; an entry that is the same known constant in every map stays that constant."""
    shape = batch_shape(maps[0])
    return tuple(
        tuple(_stacked_entry([m[i][j] for m in maps], shape) for j in range(SIZE))
        for i in range(SIZE)
    )


def _stacked_entry(column: list[Entry], shape: tuple[int, ...]) -> Entry:
    if all(isinstance(e, float) for e in column) and len(set(column)) == 1:
        return column[0]
    return jnp.stack([_as_array(e, shape) for e in column])


def concatenate(stacks: list[Map], counts: list[int]) -> Map:
    """Stacked maps (``counts[k]`` maps in ``stacks[k]``, one batch shape) as one stack."""
    shape = next((stacked_batch_shape(m) for m in stacks if stacked_batch_shape(m)), ())

    def entry(i: int, j: int) -> Entry:
        column = [m[i][j] for m in stacks]
        if all(isinstance(e, float) for e in column) and len(set(column)) == 1:
            return column[0]
        return jnp.concatenate(
            [_as_array(e, (n, *shape)) for e, n in zip(column, counts, strict=True)]
        )

    return tuple(tuple(entry(i, j) for j in range(SIZE)) for i in range(SIZE))


def take(stacked: Map, index) -> Map:
    """The maps at ``index`` (a NumPy integer array) of a stack, in that order."""
    return tuple(
        tuple(e if isinstance(e, float) else jnp.take(e, index, axis=0) for e in row)
        for row in stacked
    )


def product(stacked: Map, count: int) -> Map:
    """The product of ``count`` stacked maps in beam order (the first acts first), pairwise:
    log2(count) levels of entry-wise products over the stack, each skipping the entries that
    are structurally zero or one in every map of the level — a lattice without coupling or
    dispersion keeps its 2x2 blocks, so a level costs ~30 multiplications per pair, not the
    343 of a dense 7x7 product."""
    while count > 1:
        if _products(stacked) > DENSE_LEVEL:  # coupled and dispersive: dense from here on
            return from_array(_dense_product(stacked_array(stacked, count)))
        if count % 2:
            stacked = _append_identity(stacked, count)
            count += 1
        first = tuple(tuple(e if isinstance(e, float) else e[0::2] for e in row) for row in stacked)
        second = tuple(
            tuple(e if isinstance(e, float) else e[1::2] for e in row) for row in stacked
        )
        stacked, count = compose(second, first), count // 2
    return tuple(tuple(e if isinstance(e, float) else e[0] for e in row) for row in stacked)


#: Multiplications per pair above which a level of :func:`product` multiplies dense 7x7
#: arrays instead (one batched product rather than hundreds of element-wise operations,
#: which XLA compiles slowly).
DENSE_LEVEL = 120


def _products(m: Map) -> int:
    """Non-trivial multiplications of the product of two maps with ``m``'s structure."""
    trivial = [[_is_zero(e) for e in row] for row in m]
    return sum(
        1
        for i in range(SIZE)
        for j in range(SIZE)
        for k in range(SIZE)
        if not (trivial[i][k] or trivial[k][j] or _is_one(m[i][k]) or _is_one(m[k][j]))
    )


def stacked_array(stacked: Map, count: int) -> Array:
    """A stack of ``count`` maps as a dense (count, ..., 7, 7) array."""
    shape = stacked_batch_shape(stacked)
    return jnp.stack(
        [jnp.stack([_as_array(e, (count, *shape)) for e in row], -1) for row in stacked], -2
    )


def _dense_product(stack: Array) -> Array:
    """Product of stacked (n, ..., 7, 7) arrays in beam order, pairwise."""
    eye = jnp.broadcast_to(jnp.eye(SIZE), stack.shape[1:])[None]
    while stack.shape[0] > 1:  # beam order: the later map of each pair on the left
        if stack.shape[0] % 2:
            stack = jnp.concatenate([stack, eye])
        stack = stack[1::2] @ stack[0::2]
    return stack[0]


def _append_identity(stacked: Map, count: int) -> Map:
    """The stack with the identity appended (so that it pairs up)."""
    shape = stacked_batch_shape(stacked)

    def entry(e: Entry, one: float) -> Entry:
        if isinstance(e, float) and e == one:
            return e
        array = _as_array(e, (count, *shape))
        return jnp.concatenate([array, jnp.full((1, *shape), one)])

    return tuple(
        tuple(entry(e, one) for e, one in zip(row, eye_row, strict=True))
        for row, eye_row in zip(stacked, identity(), strict=True)
    )


def transpose(m: Map) -> Map:
    return tuple(tuple(m[j][i] for j in range(SIZE)) for i in range(SIZE))


def _as_array(entry: Entry, shape: tuple[int, ...]) -> Array:
    return jnp.broadcast_to(jnp.asarray(entry, dtype=float), shape)


def batch_shape(m: Map) -> tuple[int, ...]:
    shapes = [jnp.shape(e) for row in m for e in row if not isinstance(e, float)]
    return jnp.broadcast_shapes(*shapes) if shapes else ()


def to_array(m: Map) -> Array:
    """The map as an array of shape (..., 7, 7)."""
    shape = batch_shape(m)
    return jnp.stack([jnp.stack([_as_array(e, shape) for e in row], -1) for row in m], -2)


def from_array(matrix: Array) -> Map:
    """Entries of a (..., 7, 7) array (all treated as non-trivial)."""
    return tuple(tuple(matrix[..., i, j] for j in range(SIZE)) for i in range(SIZE))


def apply_to_vector(m: Map, vector: Array) -> Array:
    """``m @ vector`` for a (..., 7) vector whose last entry is 1; returns (..., 7)."""
    components = [vector[..., k] for k in range(SIZE - 1)] + [1.0]
    rows = [_sum(_mul(m[i][k], components[k]) for k in range(SIZE)) for i in range(SIZE - 1)]
    shape = jnp.broadcast_shapes(batch_shape(m), vector.shape[:-1])
    return jnp.stack([_as_array(r, shape) for r in rows] + [jnp.ones(shape)], -1)


def apply_to_covariance(m: Map, covariance: Array) -> Array:
    """``m @ covariance @ m.T`` for a (..., 7, 7) covariance with zero seventh row/column."""
    n = SIZE - 1  # the constant column of m does not act on a covariance
    cov = [[covariance[..., i, j] for j in range(n)] for i in range(n)]
    left = [[_sum(_mul(m[i][k], cov[k][j]) for k in range(n)) for j in range(n)] for i in range(n)]
    out: list[list[Entry]] = [[0.0] * SIZE for _ in range(SIZE)]
    for i in range(n):
        for j in range(i, n):
            value = _sum(_mul(left[i][k], m[j][k]) for k in range(n))
            out[i][j] = out[j][i] = value
    shape = jnp.broadcast_shapes(batch_shape(m), covariance.shape[:-2])
    return jnp.stack([jnp.stack([_as_array(e, shape) for e in row], -1) for row in out], -2)


def _sum(terms) -> Entry:
    total: Entry = 0.0
    for t in terms:
        total = _add(total, t)
    return total
