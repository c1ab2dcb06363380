"""Checkpoints of long runs: a PyTree of arrays and JSON metadata in one ``.npz`` file.

The file is written atomically (a temporary file synced to disk, then a rename), so an
interrupted run, even by ``kill -9`` or a power cut, leaves either the previous checkpoint
or the new one, never half of each. It holds only
numeric arrays and a UTF-8 JSON string stored as bytes, and is read with
``allow_pickle=False``: nothing in it is ever unpickled.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jaxtyping import ArrayLike, PyTree

_FORMAT = "diffdesign.checkpoint"
_VERSION = 1
_METADATA = "__metadata__"
#: what reading a damaged, truncated or foreign file raises (BadZipFile is no OSError)
_UNREADABLE = (
    OSError, EOFError, KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile,
)  # fmt: skip


def save_checkpoint(path: str | os.PathLike, tree: PyTree, metadata: Mapping[str, Any]) -> None:
    """Write ``tree``'s leaves and ``metadata`` (JSON-able) to ``path`` (``.npz``) atomically."""
    path = Path(path)
    leaves = jax.tree.leaves(tree)
    header = {"format": _FORMAT, "version": _VERSION, "n_leaves": len(leaves), **metadata}
    encoded = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    arrays = {f"leaf_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    tmp = path.with_name(path.name + ".tmp.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays, **{_METADATA: encoded})
        handle.flush()
        os.fsync(handle.fileno())  # the data is on disk before the rename makes it the checkpoint
    tmp.replace(path)


def check_settings(saved: Mapping[str, Any], settings: Mapping[str, Any], what: str) -> None:
    """Refuse a saved run or checkpoint made with other ``settings`` (compared as JSON, so
    tuples equal the lists they were saved as), naming each difference.

    Raises:
        ValueError: ``"{what} with other settings: {key: {saved, now}}; ..."``.
    """
    now = json.loads(json.dumps(dict(settings)))
    changed = {
        key: {"saved": saved.get(key), "now": value}
        for key, value in now.items()
        if saved.get(key) != value
    }
    if changed:
        raise ValueError(
            f"{what} with other settings: {changed}; use another output folder or delete it"
        )


def load_checkpoint(
    path: str | os.PathLike,
    template: PyTree,
    settings: Mapping[str, Any] | None = None,
    *,
    growing: bool = False,
    finite: bool = False,
) -> tuple[PyTree, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint` into the structure of ``template``.

    Args:
        path: the ``.npz`` file.
        template: a PyTree with the structure, shapes and dtypes the run expects.
        settings: if given, must equal ``metadata["settings"]`` key by key (a checkpoint of a
            run with other settings is refused, naming the differences).
        growing: accept any length of the leading axis (buffers that grow during a run);
            the other axes must still match.
        finite: refuse a checkpoint with NaN or infinite numbers (the state of a run that
            never saves a non-finite state: one with them diverged or was damaged, and
            resuming it would continue from garbage).

    Returns:
        ``(tree, metadata)``.

    Raises:
        ValueError: if the file is not such a checkpoint or does not fit ``template`` or
            ``settings`` (or, with ``finite``, holds NaN or infinite numbers).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            header = json.loads(archive[_METADATA].tobytes().decode())
            n = header.get("n_leaves")
            leaves = [archive[f"leaf_{i}"] for i in range(n)]
    except _UNREADABLE as error:
        raise ValueError(
            f"{path} is not a readable diffdesign checkpoint: {type(error).__name__}: {error}"
        ) from None
    if header.get("format") != _FORMAT or header.get("version") != _VERSION:
        raise ValueError(f"{path} is not a diffdesign checkpoint (version {_VERSION})")
    if settings is not None:
        check_settings(header.get("settings", {}), settings, f"checkpoint {path} was written")
    expected, treedef = jax.tree.flatten(template)

    def fits(saved, wanted):
        saved, wanted = np.shape(saved), np.shape(wanted)
        if growing and saved and wanted:
            return saved[1:] == wanted[1:]
        return saved == wanted

    if len(leaves) != len(expected) or not all(
        fits(a, b) for a, b in zip(leaves, expected, strict=True)
    ):
        raise ValueError(f"checkpoint {path} does not match the structure of this run")
    if finite:
        for i, leaf in enumerate(leaves):
            if leaf.dtype.kind in "fc" and not np.all(np.isfinite(leaf)):
                bad = leaf[~np.isfinite(leaf)].ravel()[0]
                raise ValueError(
                    f"checkpoint {path} holds non-finite numbers ({bad} in leaf_{i}, shape "
                    f"{leaf.shape}): the saved state diverged or was damaged; delete it to "
                    "start again"
                )
    tree = jax.tree.unflatten(
        treedef,
        [np.asarray(a, dtype=np.asarray(b).dtype) for a, b in zip(leaves, expected, strict=True)],
    )
    return tree, header


def save_record(path: str | os.PathLike, arrays: Mapping[str, ArrayLike], metadata) -> None:
    """Write named arrays (a finished piece of a study) and JSON ``metadata`` atomically."""
    names = sorted(arrays)
    shapes = [list(np.shape(arrays[k])) for k in names]
    dtypes = [np.asarray(arrays[k]).dtype.str for k in names]
    record = {"names": names, "shapes": shapes, "dtypes": dtypes}
    save_checkpoint(path, [np.asarray(arrays[k]) for k in names], {**metadata, "record": record})


def load_record(
    path: str | os.PathLike, settings: Mapping[str, Any] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a record of :func:`save_record` (refused if made with other ``settings``)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            record = json.loads(archive[_METADATA].tobytes().decode())["record"]
        template = [
            np.zeros(shape, dtype=np.dtype(dtype))
            for shape, dtype in zip(record["shapes"], record["dtypes"], strict=True)
        ]
        names = list(record["names"])
    except _UNREADABLE as error:
        raise ValueError(
            f"{path} is not a readable diffdesign record: {type(error).__name__}: {error}"
        ) from None
    if len(names) != len(template):
        raise ValueError(f"{path} is not a readable diffdesign record: names and shapes differ")
    leaves, header = load_checkpoint(path, template, settings)
    return dict(zip(names, leaves, strict=True)), header
