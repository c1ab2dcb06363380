"""Reading XPCS two-time data: APS 8-ID-I HDF5 files, our ``.npz`` files and the ``[data]`` config.

Entry point: :func:`load_data` reads a file (the suffix picks the reader), applies the
``[data]`` table of a TOML config (:class:`DataConfig`: q ring, frame range, angles, time
step, gap, noise) and returns a validated :class:`~diffdesign.xpcs.data.XpcsData`.

APS 8-ID-I HDF5 layouts
-----------------------
The two layouts `homodyne` (2.23) reads, detected the way it detects them. Only these
datasets are read (numbers only; nothing in the file is evaluated):

================================================  ============================================
``aps_u`` (APS-U) key                             content
================================================  ============================================
xpcs/twotime/correlation_map/<name>               one (n, n) two-time matrix per bin, stored
                                                  half (one triangle and the diagonal)
xpcs/twotime/processed_bins                       (n_bins,) 1-based bin numbers b: q index
                                                  (b-1) // n_phi_grid, phi index (b-1) % n_phi_grid
xpcs/qmap/dynamic_v_list_dim0                     (n_q,) q of the rings (1/Angstrom)
xpcs/qmap/dynamic_v_list_dim1                     (n_phi_grid,) phi of the sectors (degrees)
entry/instrument/detector_1/frame_time            frame time (s); optional
================================================  ============================================

================================================  ============================================
``aps_old`` (APS before the upgrade) key          content
================================================  ============================================
exchange/C2T_all/<name>                           one half-stored (n, n) matrix per bin
xpcs/dqlist                                       (1, n_bins) or (n_bins,) q per bin (1/Angstrom)
xpcs/dphilist                                     (1, n_bins) or (n_bins,) phi per bin (degrees)
measurement/instrument/detector/exposure_period   frame time (s), shape (1, 1) or (); optional
================================================  ============================================

The k-th matrix, in the numeric order of the number that ends its name (alphabetical order for
zero-padded names such as ``c2_00001``, which is the order homodyne uses), belongs to the k-th
bin. A file is ``aps_u`` when it has ``xpcs/qmap/dynamic_v_list_dim0`` and
``xpcs/twotime/correlation_map``, else ``aps_old`` when it has ``xpcs/dqlist``,
``xpcs/dphilist`` and ``exchange/C2T_all``.

Conventions (checked against homodyne's ``data/xpcs_loader.py``):

- Half-stored matrices become full ones as ``m + m.T`` with the diagonal halved (exact, as in
  homodyne). A matrix whose two triangles are both non-zero must be symmetric and is used as
  stored (homodyne would double its off-diagonal). The diagonal is kept as stored; homodyne
  replaces it with the mean of the neighbouring off-diagonal values, and our fits leave it
  out unless asked (see :mod:`diffdesign.xpcs.data`).
- q ring: the one nearest the requested q, which must lie within ``q_rtol`` (10 %); ``aps_u``
  rings are the q indices of the bins; ``aps_old`` bins are one ring when their q agree to
  1e-3 (relative). homodyne instead keeps the old-layout bins within 10 % of the nearest q
  and falls back to the 10 nearest bins, which can mix rings.
- Frames: ``start_frame`` and ``end_frame`` are 1-based and inclusive, as in homodyne (it
  slices ``[start_frame - 1 : end_frame]``). Time restarts at 0 at ``start_frame``: homodyne
  builds ``t = linspace(0, dt * (n - 1), n)`` for the ``n`` frames kept, whatever the start.
- Time step: ``dt`` from the config, else the frame time stored in the file. homodyne never
  reads the file's frame time (its config must give ``dt``); if the two-time matrices were
  computed from averaged frames, give ``dt`` in the config.

Our ``.npz`` format
-------------------
Keys ``c2`` (n_phi, n_t, n_t), ``t`` (n_t,) s, ``phi`` (n_phi,) degrees, ``q`` 1/Angstrom,
``L`` Angstrom, ``sigma`` (scalar or c2's shape) and optionally ``metadata`` (one JSON string).
Read with ``allow_pickle=False``: arrays of Python objects are refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
from jaxtyping import ArrayLike, Float

from diffdesign._validation import check_positive, check_range
from diffdesign.xpcs.data import XpcsData

HDF5_SUFFIXES = (".h5", ".hdf", ".hdf5", ".nxs")
NPZ_SUFFIX = ".npz"

APS_U = {
    "correlation_map": "xpcs/twotime/correlation_map",
    "processed_bins": "xpcs/twotime/processed_bins",
    "q": "xpcs/qmap/dynamic_v_list_dim0",
    "phi": "xpcs/qmap/dynamic_v_list_dim1",
    "frame_time": "entry/instrument/detector_1/frame_time",
}
APS_OLD = {
    "correlation_map": "exchange/C2T_all",
    "q": "xpcs/dqlist",
    "phi": "xpcs/dphilist",
    "frame_time": "measurement/instrument/detector/exposure_period",
}
LAYOUTS = {"aps_u": APS_U, "aps_old": APS_OLD}

NPZ_KEYS = ("c2", "t", "phi", "q", "L", "sigma")
_NPZ_OPTIONAL = ("metadata",)

_Q_RTOL = 0.1  # the requested q must lie this close (relative) to a ring
_RING_RTOL = 1e-3  # old-layout bins whose q agree this closely form one ring
_SYMMETRY_RTOL = 1e-6
_MAD_TO_STD = 1.0 / 0.6744897501960817  # a Gaussian's std over its median absolute deviation


# ----------------------------------------------------------------------------- APS HDF5


class TwoTimeRing(NamedTuple):
    """The two-time matrices of one q ring as stored in a file.

    Attributes:
        c2: (n_phi, n_frames, n_frames) full symmetric matrices, in the file's bin order.
        phi: (n_phi,) angles of the bins (degrees).
        q: the ring's q (1/Angstrom).
        frame_time: the frame time stored in the file (s), or None if it has none.
        layout: ``"aps_u"`` or ``"aps_old"``.
    """

    c2: np.ndarray
    phi: np.ndarray
    q: float
    frame_time: float | None
    layout: str


def read_aps_hdf5(
    path: str | Path, *, q: float | None = None, q_rtol: float = _Q_RTOL
) -> TwoTimeRing:
    """Read the two-time matrices of one q ring from an APS 8-ID-I HDF5 file.

    Args:
        path: ``.h5``/``.hdf``/``.hdf5``/``.nxs`` file in one of the layouts of the module
            docstring.
        q: the ring to read (1/Angstrom): the nearest one, which must lie within ``q_rtol``
            (relative) of it. Optional when the file holds a single ring.
        q_rtol: relative tolerance between ``q`` and the nearest ring.

    Returns:
        A :class:`TwoTimeRing` with full symmetric matrices.

    Raises:
        ValueError: the file is missing or not HDF5, a required key is missing (named with the
            file), shapes disagree, a matrix has NaNs or is neither half-stored nor symmetric,
            or no ring matches ``q``.
    """
    path = _existing_file(path, "APS HDF5 file")
    _check_optional_number(q, "q", "read_aps_hdf5", "1/Angstrom", positive=True)
    check_positive(q_rtol, "q_rtol", "read_aps_hdf5")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"cannot read {str(path)!r} as HDF5: {error}") from None
    with handle as f:
        layout = _detect_layout(f, path)
        keys = LAYOUTS[layout]
        names = _matrix_names(f, keys["correlation_map"], path)
        if layout == "aps_u":
            ring_of_bin, q_of_bin, phi_of_bin = _aps_u_bins(f, path, len(names))
        else:
            ring_of_bin, q_of_bin, phi_of_bin = _aps_old_bins(f, path, len(names))
        selected = _select_ring(ring_of_bin, q_of_bin, q, q_rtol, path)
        matrix_keys = [f"{keys['correlation_map']}/{names[k]}" for k in selected]
        matrices = {key: _full_matrix(f, key, path) for key in matrix_keys}
        shapes = {key: m.shape for key, m in matrices.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"the two-time matrices of one ring differ in shape: {shapes}")
        c2 = np.stack(list(matrices.values()))
        frame_time = _frame_time(f, keys["frame_time"], path)
    return TwoTimeRing(
        c2=c2,
        phi=phi_of_bin[selected].astype(float),
        q=_ring_q(q_of_bin[selected]),
        frame_time=frame_time,
        layout=layout,
    )


def _ring_q(values: np.ndarray) -> float:
    """The ring's q: its bins' common value, or their mean when they differ slightly."""
    return float(values[0] if np.all(values == values[0]) else np.mean(values))


def _existing_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist")
    return path


def _detect_layout(f: h5py.File, path: Path) -> str:
    if APS_U["q"] in f and APS_U["correlation_map"] in f:
        return "aps_u"
    if all(APS_OLD[k] in f for k in ("q", "phi", "correlation_map")):
        return "aps_old"
    raise ValueError(
        f"{str(path)!r} is not an APS two-time file: APS-U needs '{APS_U['q']}' and "
        f"'{APS_U['correlation_map']}', the old layout '{APS_OLD['q']}', '{APS_OLD['phi']}' "
        f"and '{APS_OLD['correlation_map']}'; top-level keys are {sorted(f.keys())}"
    )


def _dataset(f: h5py.File, key: str, path: Path) -> np.ndarray:
    """A numeric dataset's values, with errors naming the key and the file."""
    item = f.get(key)
    if item is None:
        raise ValueError(f"{str(path)!r} lacks the dataset '{key}'")
    if not isinstance(item, h5py.Dataset):
        raise ValueError(f"'{key}' in {str(path)!r} must be a dataset; got {type(item).__name__}")
    if item.dtype.kind not in "fiu":
        raise ValueError(
            f"'{key}' in {str(path)!r} must hold numbers; got dtype {item.dtype} "
            "(only numeric datasets are read)"
        )
    return np.asarray(item[()])


def _vector(f: h5py.File, key: str, path: Path) -> np.ndarray:
    """A 1-D list, accepting the old layout's (1, n) row."""
    values = _dataset(f, key, path)
    if values.ndim == 2 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"'{key}' in {str(path)!r} must be a non-empty list (n,) or (1, n); "
            f"got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"'{key}' in {str(path)!r} has non-finite values: {values}")
    return values


def _matrix_names(f: h5py.File, key: str, path: Path) -> list[str]:
    group = f.get(key)
    if not isinstance(group, h5py.Group):
        raise ValueError(f"'{key}' in {str(path)!r} must be a group of two-time matrices")
    names = list(group.keys())
    if not names:
        raise ValueError(f"'{key}' in {str(path)!r} holds no two-time matrices")
    numbers = [re.search(r"(\d+)$", name) for name in names]
    if all(numbers):
        return [n for _, n in sorted(zip((int(m[1]) for m in numbers), names, strict=True))]
    return sorted(names)


def _aps_u_bins(f: h5py.File, path: Path, n_matrices: int):
    q_values = _vector(f, APS_U["q"], path)
    phi_values = _vector(f, APS_U["phi"], path)
    processed = _vector(f, APS_U["processed_bins"], path)
    if processed.dtype.kind not in "iu":
        raise ValueError(
            f"'{APS_U['processed_bins']}' in {str(path)!r} must hold integers (1-based bin "
            f"numbers); got dtype {processed.dtype}"
        )
    n_grid = q_values.size * phi_values.size
    bad = (processed < 1) | (processed > n_grid)
    if bad.any():
        raise ValueError(
            f"'{APS_U['processed_bins']}' in {str(path)!r} must lie in [1, {n_grid}] "
            f"({q_values.size} q x {phi_values.size} phi); got {int(processed[bad][0])}"
        )
    if processed.size != n_matrices:
        raise ValueError(
            f"'{APS_U['correlation_map']}' in {str(path)!r} holds {n_matrices} matrices but "
            f"'{APS_U['processed_bins']}' lists {processed.size} bins"
        )
    q_index, phi_index = np.divmod(processed.astype(np.int64) - 1, phi_values.size)
    return q_index, q_values[q_index], phi_values[phi_index]


def _aps_old_bins(f: h5py.File, path: Path, n_matrices: int):
    q_of_bin = _vector(f, APS_OLD["q"], path)
    phi_of_bin = _vector(f, APS_OLD["phi"], path)
    if not q_of_bin.size == phi_of_bin.size == n_matrices:
        raise ValueError(
            f"{str(path)!r}: '{APS_OLD['q']}' ({q_of_bin.size}), '{APS_OLD['phi']}' "
            f"({phi_of_bin.size}) and '{APS_OLD['correlation_map']}' ({n_matrices} matrices) "
            "must have one entry per bin"
        )
    # Rings are runs of q values that agree to _RING_RTOL.
    order = np.argsort(q_of_bin)
    sorted_q = q_of_bin[order]
    jumps = np.abs(np.diff(sorted_q)) > _RING_RTOL * np.abs(sorted_q[1:])
    ring = np.empty(q_of_bin.size, dtype=np.int64)
    ring[order] = np.concatenate([[0], np.cumsum(jumps)])
    return ring, q_of_bin, phi_of_bin


def _select_ring(ring_of_bin, q_of_bin, q, q_rtol, path: Path) -> np.ndarray:
    rings = np.unique(ring_of_bin)
    ring_q = np.array([q_of_bin[ring_of_bin == r].mean() for r in rings])
    listed = ", ".join(f"{value:.6g}" for value in ring_q[:20]) + (
        ", ..." if ring_q.size > 20 else ""
    )
    if q is None:
        if rings.size > 1:
            raise ValueError(
                f"{str(path)!r} holds {rings.size} q rings ({listed} 1/Angstrom); "
                "choose one with q (the [data] key q)"
            )
        nearest = 0
    else:
        nearest = int(np.argmin(np.abs(ring_q - q)))
        if abs(ring_q[nearest] - q) > q_rtol * q:
            raise ValueError(
                f"q = {q:g} 1/Angstrom matches no ring of {str(path)!r} within "
                f"{q_rtol:.0%}; its rings are at {listed} 1/Angstrom"
            )
    return np.flatnonzero(ring_of_bin == rings[nearest])


def _full_matrix(f: h5py.File, key: str, path: Path) -> np.ndarray:
    """A stored two-time matrix made full: mirror a half-stored one (homodyne's rule)."""
    stored = _dataset(f, key, path).astype(float)
    if stored.ndim != 2 or stored.shape[0] != stored.shape[1] or stored.shape[0] < 2:
        raise ValueError(f"'{key}' in {str(path)!r} must be a square matrix; got {stored.shape}")
    bad = ~np.isfinite(stored)
    if bad.any():
        first = np.argwhere(bad)[0].tolist()
        raise ValueError(
            f"'{key}' in {str(path)!r} has {int(bad.sum())} NaN or infinite values "
            f"(first at {first})"
        )
    if not np.tril(stored, -1).any() or not np.triu(stored, 1).any():
        full = stored + stored.T
        full[np.diag_indices_from(full)] /= 2.0
        return full
    if not np.allclose(stored, stored.T, rtol=_SYMMETRY_RTOL, atol=0.0):
        raise ValueError(
            f"'{key}' in {str(path)!r} is neither half-stored (one triangle zero) nor "
            "symmetric; a two-time matrix is symmetric in (t1, t2)"
        )
    return stored


def _frame_time(f: h5py.File, key: str, path: Path) -> float | None:
    if key not in f:
        return None
    value = _dataset(f, key, path)
    if value.size != 1 or not np.isfinite(value).all() or value.ravel()[0] <= 0:
        raise ValueError(
            f"'{key}' in {str(path)!r} must be one positive frame time (s); got {value.tolist()}"
        )
    return float(value.ravel()[0])


def write_aps_hdf5(
    path: str | Path,
    c2: Float[ArrayLike, "n_bins n n"],
    *,
    q: float | Float[ArrayLike, " n_bins"],
    phi: Float[ArrayLike, " n_bins"],
    frame_time: float | None = None,
    layout: str = "aps_u",
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Path:
    """Write two-time matrices in an APS 8-ID-I layout (upper triangle + diagonal, gzip).

    Args:
        path: the file to write (``.h5``, ``.hdf``, ``.hdf5`` or ``.nxs``); replaced if present.
        c2: (n_bins, n, n) symmetric two-time matrices, one per (q, phi) bin.
        q: the bins' q (1/Angstrom): a scalar for one ring or one value per bin.
        phi: (n_bins,) the bins' angles (degrees).
        frame_time: the frame time (s) to store, or None to store none.
        layout: ``"aps_u"`` (bins on a q x phi grid, so they read back ordered by q, then
            phi) or ``"aps_old"`` (bins in the order given).
        attributes: scalars stored as attributes of the file's root (e.g. the truth of
            synthetic data); :func:`read_aps_hdf5` ignores them.

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix.lower() not in HDF5_SUFFIXES:
        raise ValueError(f"APS HDF5 file must end in one of {HDF5_SUFFIXES}; got {path.name!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}; got {layout!r}")
    c2 = np.asarray(c2, dtype=float)
    if c2.ndim != 3 or c2.shape[1] != c2.shape[2] or c2.shape[1] < 2:
        raise ValueError(f"c2 must have shape (n_bins, n, n) with n >= 2; got {c2.shape}")
    n_bins = c2.shape[0]
    phi = np.asarray(phi, dtype=float)
    if phi.shape != (n_bins,):
        raise ValueError(f"phi must have one angle per bin, shape ({n_bins},); got {phi.shape}")
    q = np.asarray(q, dtype=float)
    if q.shape not in ((), (n_bins,)):
        raise ValueError(f"q must be a scalar or have shape ({n_bins},); got {q.shape}")
    q = np.broadcast_to(q, (n_bins,))
    for name, value in (("c2", c2), ("phi", phi), ("q", q)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} must be finite to be written")
    check_positive(q, "q", "write_aps_hdf5", "1/Angstrom")
    if frame_time is not None:
        check_positive(frame_time, "frame_time", "write_aps_hdf5", "s")
    if not np.allclose(c2, np.swapaxes(c2, 1, 2), rtol=_SYMMETRY_RTOL, atol=0.0):
        raise ValueError("c2 must be symmetric in (t1, t2): only the upper triangle is stored")
    attributes = dict(attributes or {})
    for name, value in attributes.items():
        if not isinstance(value, str | int | float | bool):
            raise ValueError(f"attribute {name!r} must be a str or a number; got {value!r}")

    keys = LAYOUTS[layout]
    with h5py.File(path, "w") as f:
        if layout == "aps_u":
            q_values, q_index = np.unique(q, return_inverse=True)
            phi_values, phi_index = np.unique(phi, return_inverse=True)
            bins = q_index * phi_values.size + phi_index + 1
            if np.unique(bins).size != n_bins:
                raise ValueError("two bins share the same (q, phi); each bin must be distinct")
            order = np.argsort(bins)
            f.create_dataset(keys["q"], data=q_values)
            f.create_dataset(keys["phi"], data=phi_values)
            f.create_dataset(keys["processed_bins"], data=bins[order].astype(np.int64))
            names = [f"c2_{b:05d}" for b in bins[order]]
        else:
            order = np.arange(n_bins)
            f.create_dataset(keys["q"], data=q[None, :])
            f.create_dataset(keys["phi"], data=phi[None, :])
            names = [f"c2_{k + 1:05d}" for k in range(n_bins)]
        group = f.create_group(keys["correlation_map"])
        for name, k in zip(names, order, strict=True):
            group.create_dataset(name, data=np.triu(c2[k]), compression="gzip", shuffle=True)
        if frame_time is not None:
            shape = () if layout == "aps_u" else (1, 1)
            f.create_dataset(keys["frame_time"], data=np.full(shape, float(frame_time)))
        f.attrs.update(attributes)
    return path


# ----------------------------------------------------------------------------- npz


def write_npz(path: str | Path, data: XpcsData, **metadata: Any) -> Path:
    """Write ``data`` as ``.npz`` (keys c2, t, phi, q, L, sigma) plus JSON ``metadata``.

    Args:
        path: the ``.npz`` file to write; replaced if present.
        data: the measurement.
        **metadata: JSON-serialisable values (str, numbers, bools, lists, dicts; NumPy
            scalars and arrays become numbers and lists), stored as one JSON string.
    """
    path = Path(path)
    if path.suffix != NPZ_SUFFIX:
        raise ValueError(f"npz file must end in {NPZ_SUFFIX}; got {path.name!r}")
    if not isinstance(data, XpcsData):
        raise TypeError(f"data must be an XpcsData; got {type(data).__name__}")
    for name, value in metadata.items():
        try:
            json.dumps(value, default=_json_numpy)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"metadata {name!r} must be JSON-serialisable; got {value!r} ({error})"
            ) from None
    arrays = {key: np.asarray(getattr(data, key)) for key in NPZ_KEYS}
    text = json.dumps(metadata, default=_json_numpy)
    np.savez(path, **arrays, metadata=np.asarray(text))
    return path


def _json_numpy(value):
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _npz_arrays(path: str | Path) -> dict[str, np.ndarray]:
    path = _existing_file(path, "npz file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{str(path)!r} is not an .npz archive")
    with np.load(path, allow_pickle=False) as archive:
        present = set(archive.files)
        missing = [key for key in NPZ_KEYS if key not in present]
        unknown = sorted(present - set(NPZ_KEYS) - set(_NPZ_OPTIONAL))
        if missing or unknown:
            raise ValueError(
                f"{str(path)!r}: missing keys {missing}, unknown keys {unknown}; an XPCS npz "
                f"holds {list(NPZ_KEYS)} and optionally {list(_NPZ_OPTIONAL)}"
            )
        arrays = {}
        for key in sorted(present):
            try:
                arrays[key] = archive[key]
            except ValueError:
                raise ValueError(
                    f"key {key!r} of {str(path)!r} holds Python objects (a pickle); they are "
                    "never loaded (allow_pickle=False): store plain numeric arrays"
                ) from None
    for key in NPZ_KEYS:
        if arrays[key].dtype.kind not in "fiu":
            raise ValueError(
                f"key {key!r} of {str(path)!r} must hold numbers; got dtype {arrays[key].dtype}"
            )
    return arrays


def read_npz(path: str | Path) -> XpcsData:
    """Read an ``.npz`` written by :func:`write_npz` (never unpickling anything).

    Raises:
        ValueError: missing or unknown keys (named), object arrays, non-numeric arrays, or
            data that :class:`XpcsData` rejects (shapes, NaNs, time grid, q, L, sigma).
    """
    arrays = _npz_arrays(path)
    return XpcsData(*(arrays[key] for key in NPZ_KEYS))


def read_npz_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata :func:`write_npz` stored (an empty dict when there is none)."""
    arrays = _npz_arrays(path)
    if "metadata" not in arrays:
        return {}
    text = arrays["metadata"]
    if text.dtype.kind != "U" or text.shape != ():
        raise ValueError(f"'metadata' of {str(path)!r} must be one JSON string")
    try:
        content = json.loads(str(text))
    except json.JSONDecodeError as error:
        raise ValueError(f"'metadata' of {str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(content, dict):
        raise ValueError(f"'metadata' of {str(path)!r} must be a JSON object")
    return content


# ----------------------------------------------------------------------------- config


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML file (every table), with a clear error if it cannot be read."""
    path = _existing_file(path, "config file")
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"cannot read config {str(path)!r}: {error}") from None


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The ``[data]`` table of a config: which data to read and how.

    Attributes:
        file: the data file; relative paths in a config file are resolved against the
            config's folder by :func:`load_data_config`.
        q: the q ring to read (1/Angstrom); optional when the file holds a single ring.
        L: gap / characteristic length of the flow (Angstrom). APS files do not carry it,
            so it is required for them (static fits do not use it); overrides an npz's L.
        dt: time step (s); overrides the file's frame time (or an npz's time grid).
        start_frame, end_frame: first and last frame kept, 1-based and inclusive as in
            homodyne; ``end_frame`` None keeps up to the last frame. Time restarts at 0 at
            ``start_frame``.
        phi: angles to keep (degrees), each matched to the nearest angle of the file within
            ``phi_tolerance``, in the order given.
        phi_range: ``[low, high]`` (degrees): keep the angles in it (modulo 360), in file order.
        phi_tolerance: how far (degrees) a ``phi`` entry may lie from the file's angle.
        sigma: noise standard deviation of c2; if None, the npz's sigma or, for APS files,
            :func:`estimate_sigma` of the selected data.

    Example (a TOML file)::

        [data]
        file = "laminar_flow_example.h5"
        q = 0.0054          # 1/Angstrom
        L = 2e6             # Angstrom
        start_frame = 1
        end_frame = 60
        phi = [-30, 0, 30]  # degrees
    """

    file: str | None = None
    q: float | None = None
    L: float | None = None
    dt: float | None = None
    start_frame: int = 1
    end_frame: int | None = None
    phi: tuple[float, ...] | None = None
    phi_range: tuple[float, float] | None = None
    phi_tolerance: float = 1.0
    sigma: float | None = None

    def __post_init__(self):
        if self.file is not None and (not isinstance(self.file, str) or not self.file):
            raise ValueError(f"file in [data] must be a non-empty path string; got {self.file!r}")
        for name, unit in (("q", "1/Angstrom"), ("L", "Angstrom"), ("dt", "s"), ("sigma", "")):
            _check_optional_number(getattr(self, name), name, "[data]", unit, positive=True)
        if not _is_number(self.phi_tolerance) or not 0.0 < self.phi_tolerance <= 180.0:
            raise ValueError(
                f"phi_tolerance in [data] must be a number in (0, 180] degrees; "
                f"got {self.phi_tolerance!r}"
            )
        for name in ("q", "L", "dt", "sigma", "phi_tolerance"):
            if getattr(self, name) is not None:  # TOML integers become floats
                object.__setattr__(self, name, float(getattr(self, name)))
        _check_integer(self.start_frame, "start_frame")
        check_range(self.start_frame, "start_frame", low=1, owner="[data]")
        if self.end_frame is not None:
            _check_integer(self.end_frame, "end_frame")
            if self.end_frame <= self.start_frame:
                raise ValueError(
                    f"end_frame must be > start_frame in [data] (1-based, inclusive; omit "
                    f"end_frame to keep up to the last frame); got start_frame "
                    f"{self.start_frame}, end_frame {self.end_frame}"
                )
        if self.phi is not None and self.phi_range is not None:
            raise ValueError("give phi (a list of angles) or phi_range in [data], not both")
        for name in ("phi", "phi_range"):
            value = getattr(self, name)
            if isinstance(value, list | tuple):
                _check_angles(value, name, min_length=1 if name == "phi" else 2)
                object.__setattr__(self, name, tuple(float(v) for v in value))
            elif value is not None:
                raise ValueError(f"{name} in [data] must be a list of angles; got {value!r}")
        if self.phi is not None:
            wrapped = np.mod(np.asarray(self.phi, dtype=float), 360.0)
            if np.unique(wrapped).size != len(self.phi):
                raise ValueError(f"phi in [data] lists an angle twice; got {list(self.phi)}")
        if self.phi_range is not None:
            low, high = self.phi_range[0], self.phi_range[-1]
            if len(self.phi_range) != 2 or not 0.0 <= high - low <= 360.0:
                raise ValueError(
                    "phi_range in [data] must be [low, high] degrees with "
                    f"low <= high <= low + 360; got {list(self.phi_range)}"
                )

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], source: str | None = None) -> DataConfig:
        """Build from a parsed ``[data]`` table; unknown keys are errors listing the known ones.

        ``source`` (e.g. the config file's path) is added to error messages.
        """
        where = "[data]" if source is None else f"[data] of {source}"
        if not isinstance(table, Mapping):
            raise ValueError(f"{where} must be a table; got {table!r}")
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in {where}; allowed: {known}")
        try:
            return cls(**table)
        except ValueError as error:
            if source is None:
                raise
            raise ValueError(f"{error} (in {source})") from None


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_optional_number(value, name: str, owner: str, unit: str, *, positive=False) -> None:
    if value is None:
        return
    if not _is_number(value):
        raise ValueError(f"{name} in {owner} must be a number ({unit or 'no unit'}); got {value!r}")
    if positive:
        check_positive(value, name, owner, unit)
    else:
        check_range(value, name, owner=owner, unit=unit)


def _check_integer(value, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} in [data] must be an integer frame number; got {value!r}")


def _check_angles(values, name: str, min_length: int) -> None:
    if len(values) < min_length:
        raise ValueError(
            f"{name} in [data] must be a list of at least {min_length} angles (degrees); "
            f"got {values!r}"
        )
    for i, value in enumerate(values):
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"{name} in [data] must hold finite angles; entry {i} is {value!r}")


def load_data_config(path: str | Path) -> DataConfig:
    """The ``[data]`` table of a TOML config (other tables are left to their readers).

    A missing ``[data]`` table gives the defaults. ``file`` is resolved against the config's
    folder. Use :func:`read_toml` for the whole parsed file.
    """
    path = Path(path)
    content = read_toml(path)
    config = DataConfig.from_mapping(content.get("data", {}), repr(str(path)))
    if config.file is not None and not Path(config.file).is_absolute():
        config = dataclasses.replace(config, file=str(path.parent / config.file))
    return config


# ----------------------------------------------------------------------------- noise


def estimate_sigma(c2: Float[ArrayLike, "n_phi n_t n_t"]) -> np.ndarray:
    """Noise standard deviation of each angle's two-time matrix, estimated from the data.

    Along each off-diagonal (fixed lag t2 - t1 > 0) a two-time matrix is a smooth function of
    t1 plus independent noise, so its second differences are almost pure noise, with
    variance 6 sigma^2. Pooling them over the upper triangle, sigma is the median absolute
    deviation of the second differences, scaled to a Gaussian std and divided by sqrt(6).
    The median ignores the few places where the signal curves fast (early times, strong
    aging). Only the upper triangle is used (the lower one mirrors it), never the diagonal.

    Args:
        c2: (n_phi, n_t, n_t) two-time matrices, n_t >= 4.

    Returns:
        (n_phi,) the noise std of each angle (same units as c2). Broadcast it to c2's shape
        (``sigma[:, None, None]``) for :class:`XpcsData`.
    """
    c2 = np.asarray(c2, dtype=float)
    if c2.ndim != 3 or c2.shape[1] != c2.shape[2]:
        raise ValueError(f"c2 must have shape (n_phi, n_t, n_t); got {c2.shape}")
    n_t = c2.shape[1]
    if n_t < 4:
        raise ValueError(f"estimate_sigma needs n_t >= 4 times (second differences); got {n_t}")
    if not np.all(np.isfinite(c2)):
        raise ValueError("c2 must be finite to estimate its noise")
    second = [
        np.diff(np.diagonal(c2, offset=lag, axis1=1, axis2=2), n=2, axis=-1)
        for lag in range(1, n_t - 2)
    ]
    second = np.concatenate(second, axis=-1)
    deviation = np.abs(second - np.median(second, axis=-1, keepdims=True))
    return _MAD_TO_STD * np.median(deviation, axis=-1) / np.sqrt(6.0)


# ----------------------------------------------------------------------------- load


def select_angles(phi: Float[ArrayLike, " n_phi"], config: DataConfig) -> np.ndarray:
    """Indices of the angles ``config`` keeps (``phi``, ``phi_range``, or all)."""
    phi = np.asarray(phi, dtype=float)
    available = ", ".join(f"{a:g}" for a in phi)
    if config.phi is not None:
        chosen: list[int] = []
        for wanted in config.phi:
            distance = np.abs(np.mod(phi - wanted + 180.0, 360.0) - 180.0)
            nearest = int(np.argmin(distance))
            if distance[nearest] > config.phi_tolerance:
                raise ValueError(
                    f"phi = {wanted:g} in [data] matches no angle within "
                    f"{config.phi_tolerance:g} degrees; available: [{available}]"
                )
            if nearest in chosen:
                raise ValueError(
                    f"phi entries in [data] pick the angle {phi[nearest]:g} twice; "
                    f"available: [{available}]"
                )
            chosen.append(nearest)
        return np.asarray(chosen, dtype=np.int64)
    if config.phi_range is not None:
        low, high = config.phi_range
        keep = np.flatnonzero(np.mod(phi - low, 360.0) <= high - low)
        if keep.size == 0:
            raise ValueError(
                f"phi_range {list(config.phi_range)} in [data] keeps no angle; "
                f"available: [{available}]"
            )
        return keep
    return np.arange(phi.size)


def _frames(n_frames: int, config: DataConfig) -> slice:
    """The 0-based slice of the 1-based inclusive frame range, checked against the data."""
    end = n_frames if config.end_frame is None else config.end_frame
    if end > n_frames:
        raise ValueError(f"end_frame must be <= {n_frames} (the data's frames); got {end}")
    if end - config.start_frame + 1 < 3:
        raise ValueError(
            f"frames {config.start_frame}..{end} leave {max(end - config.start_frame + 1, 0)} "
            f"times; a fit needs at least 3 (the data has {n_frames} frames)"
        )
    return slice(config.start_frame - 1, end)


def load_data(path: str | Path, config: DataConfig | None = None) -> XpcsData:
    """Read XPCS data and apply the ``[data]`` config: q ring, frames, angles, dt, L, sigma.

    Args:
        path: an APS file (``.h5``, ``.hdf``, ``.hdf5``, ``.nxs``; see the module docstring)
            or an ``.npz`` of :func:`write_npz`.
        config: the ``[data]`` settings (defaults if None; ``config.file`` is not used here).

    Returns:
        The validated data. Time restarts at 0 at ``start_frame`` (homodyne's convention).
        sigma: the config's, else the npz's, else :func:`estimate_sigma` of the kept data.

    Raises:
        ValueError: an unknown suffix, a file error (see the readers), L or dt unknown for an
            APS file, a frame range outside the data or leaving < 3 times, angles that match
            nothing, or an estimated sigma of 0.
    """
    config = DataConfig() if config is None else config
    if not isinstance(config, DataConfig):
        raise TypeError(f"config must be a DataConfig; got {type(config).__name__}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        ring = read_aps_hdf5(path, q=config.q)
        c2, phi, q, L, sigma = ring.c2, ring.phi, ring.q, config.L, None
        dt = config.dt if config.dt is not None else ring.frame_time
        if dt is None:
            raise ValueError(
                f"{str(path)!r} stores no frame time ('{LAYOUTS[ring.layout]['frame_time']}'); "
                "give dt (s) in [data]"
            )
        if L is None:
            raise ValueError(
                f"L (Angstrom) is required: APS files such as {str(path)!r} do not carry the "
                "flow gap; set L in [data] (static fits do not use it)"
            )
        t = dt * np.arange(c2.shape[-1])
    elif suffix == NPZ_SUFFIX:
        stored = read_npz(path)
        c2, t, phi = np.asarray(stored.c2), np.asarray(stored.t), np.asarray(stored.phi)
        q, sigma = float(stored.q), np.asarray(stored.sigma)
        L = config.L if config.L is not None else float(stored.L)
        if config.dt is not None:
            t = config.dt * np.arange(t.size)
        if config.q is not None and abs(q - config.q) > _Q_RTOL * config.q:
            raise ValueError(
                f"q = {config.q:g} 1/Angstrom in [data] does not match the q of "
                f"{str(path)!r}, {q:g} 1/Angstrom (tolerance {_Q_RTOL:.0%})"
            )
    else:
        raise ValueError(
            f"cannot tell the format of {str(path)!r} from its suffix; use one of "
            f"{[*HDF5_SUFFIXES, NPZ_SUFFIX]}"
        )

    frames = _frames(c2.shape[-1], config)
    angles = select_angles(phi, config)
    c2 = c2[angles][:, frames, frames]
    t = t[frames] - t[frames][0]
    if config.sigma is not None:
        sigma = np.asarray(config.sigma, dtype=float)
    elif sigma is not None and sigma.ndim:
        sigma = sigma[angles][:, frames, frames]
    elif sigma is None:
        sigma = _estimated_sigma(c2, phi[angles])
    return XpcsData(c2=c2, t=t, phi=phi[angles], q=q, L=L, sigma=sigma)


def _estimated_sigma(c2: np.ndarray, phi: np.ndarray) -> np.ndarray:
    if c2.shape[-1] < 4:
        raise ValueError(
            f"the kept data has {c2.shape[-1]} times, too few to estimate sigma (>= 4); "
            "give sigma in [data]"
        )
    sigma = estimate_sigma(c2)
    if np.any(sigma <= 0):
        bad = float(phi[np.argmin(sigma)])
        raise ValueError(
            f"the estimated noise sigma is 0 at phi = {bad:g} degrees (noise-free or "
            "quantised data); give sigma in [data]"
        )
    return np.broadcast_to(sigma[:, None, None], c2.shape)


__all__ = [
    "APS_OLD",
    "APS_U",
    "HDF5_SUFFIXES",
    "NPZ_KEYS",
    "DataConfig",
    "TwoTimeRing",
    "estimate_sigma",
    "load_data",
    "load_data_config",
    "read_aps_hdf5",
    "read_npz",
    "read_npz_metadata",
    "read_toml",
    "select_angles",
    "write_aps_hdf5",
    "write_npz",
]
