"""Trained surrogates as artefacts: a folder of weights and a card, refused on mismatch.

An artefact folder holds

* ``weights.npz``: every array of a :class:`~diffdesign.surrogates.surrogate.Surrogate`,
  keyed by its path (``params/splines_0/Dense_0/kernel``, ``context_mean``, ...), read
  with ``allow_pickle=False``;
* ``card.json``: what the surrogate is (simulator name and version, flow architecture,
  dimensions), how it was trained (settings, seed, data size), how good it is (validation
  metrics), the command that regenerates it and the SHA-256 of the weights.

Artefacts live in the repository's top-level ``surrogates/`` folder (:data:`ARTEFACTS`),
one folder per simulator, loaded by name (or from an explicit folder).
:func:`load_surrogate` refuses a folder that holds a pickle, whose weights need one or do
not match the card's hash or the flow's shapes, or whose card names another simulator,
version, flow architecture or dimensions than the caller expects.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from diffdesign.surrogates.flows import ConditionalFlow
from diffdesign.surrogates.surrogate import Surrogate, init

#: The repository's folder of trained surrogates (not an import package).
ARTEFACTS = Path(__file__).resolve().parents[2] / "surrogates"
WEIGHTS = "weights.npz"
CARD = "card.json"
#: File endings that betray a pickle.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill")
_STANDARDISATION = ("context_mean", "context_scale", "y_mean", "y_scale")


def flow_architecture(flow: ConditionalFlow) -> dict[str, Any]:
    """The flow's hyperparameters as JSON values (what a card must match)."""
    return {
        "y_dim": int(flow.y_dim),
        "n_layers": int(flow.n_layers),
        "n_bins": int(flow.n_bins),
        "hidden": [int(width) for width in flow.hidden],
        "bound": float(flow.bound),
    }


def _arrays(surrogate: Surrogate) -> dict[str, np.ndarray]:
    flat = traverse_util.flatten_dict(jax.device_get(surrogate.params), sep="/")
    arrays = {f"params/{path}": np.asarray(value) for path, value in flat.items()}
    for field in _STANDARDISATION:
        arrays[field] = np.asarray(getattr(surrogate, field))
    return arrays


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomic(path: Path, write) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_surrogate(
    folder: str | Path, surrogate: Surrogate, card: Mapping[str, Any], flow: ConditionalFlow
) -> Path:
    """Write ``weights.npz`` and ``card.json`` into ``folder`` (created if needed).

    Args:
        folder: the artefact folder.
        surrogate: the trained weights and standardisation.
        card: JSON-serialisable description; must hold ``simulator`` (``{"name",
            "version"}``) and ``command``. The flow architecture, the dimensions and the
            weights' hash are added here.
        flow: the flow the weights belong to.

    Returns:
        The folder. The weights are written first and the card last, each atomically, so
        a folder whose card names the weights' hash is complete.

    Raises:
        ValueError: if the card lacks a required field or is not JSON-serialisable.
    """
    for field in ("simulator", "command"):
        if field not in card:
            raise ValueError(f"card must hold {field!r}; got fields {sorted(card)}")
    simulator = card["simulator"]
    if not isinstance(simulator, Mapping) or not {"name", "version"} <= set(simulator):
        raise ValueError(f"card['simulator'] must hold 'name' and 'version'; got {simulator!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = _arrays(surrogate)
    _write_atomic(folder / WEIGHTS, lambda stream: np.savez(stream, **arrays))
    full = {
        **card,
        "flow": flow_architecture(flow),
        "dimensions": {
            "c_dim": int(arrays["context_mean"].shape[0]),
            "y_dim": int(arrays["y_mean"].shape[0]),
        },
        "weights": {"file": WEIGHTS, "sha256": _sha256(folder / WEIGHTS)},
    }
    try:
        text = json.dumps(full, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise ValueError(f"card must be JSON-serialisable (finite numbers): {error}") from None
    _write_atomic(folder / CARD, lambda stream: stream.write(text.encode()))
    return folder


def resolve(name: str | Path) -> Path:
    """The artefact folder of ``name``: a folder path as given, else ``ARTEFACTS / name``."""
    path = Path(name)
    if path.is_dir():
        return path
    if len(path.parts) == 1:
        return ARTEFACTS / path
    return path


def _refuse_pickles(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise ValueError(
                f"surrogate artefact {folder} holds a pickle ({path.name}); artefacts are "
                "weights in .npz and a JSON card only"
            )
        if path.suffix.lower() == ".npz":
            try:
                with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
                    for key in data.files:
                        data[key]
            except (OSError, EOFError, zipfile.BadZipFile) as error:
                raise ValueError(
                    f"surrogate artefact {folder}: {path.name} is not a readable .npz "
                    f"({type(error).__name__}: {error})"
                ) from None
            except ValueError as error:
                raise ValueError(
                    f"surrogate artefact {folder}: {path.name} needs pickle to load "
                    f"({error}); refused"
                ) from None


def _mismatch(field: str, expected, found) -> ValueError:
    return ValueError(
        f"surrogate card field {field!r} does not match: expected {expected!r}, found {found!r}"
    )


def load_surrogate(
    name: str | Path,
    *,
    simulator: str,
    version: str,
    flow: ConditionalFlow,
    c_dim: int,
) -> tuple[Surrogate, dict[str, Any]]:
    """Load an artefact, refusing one that is not what the caller expects.

    Args:
        name: a folder name under :data:`ARTEFACTS` (e.g. ``"ares_screen"``) or a folder path.
        simulator: expected ``card["simulator"]["name"]``.
        version: expected ``card["simulator"]["version"]``.
        flow: the flow the weights must fit (its architecture is compared with the card's).
        c_dim: expected number of context inputs (``psi_dim + x_dim``).

    Returns:
        ``(surrogate, card)``: the weights as float32 JAX arrays (bit-equal to those saved)
        and the card.

    Raises:
        FileNotFoundError: if the folder, its card or its weights are missing.
        ValueError: for a pickle in the folder, weights that need pickle or do not match
            the card's hash or the flow's shapes, or a card field (named in the message
            with the expected and the found value) that does not match.
    """
    folder = resolve(name)
    if not folder.is_dir():
        raise FileNotFoundError(f"no surrogate artefact folder {folder}")
    _refuse_pickles(folder)
    card_path, weights_path = folder / CARD, folder / WEIGHTS
    for path in (card_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"surrogate artefact {folder} has no {path.name}")
    try:
        card = json.loads(card_path.read_text())
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{card_path} is not valid UTF-8 JSON: {error}") from None
    if not isinstance(card, Mapping):
        kind = type(card).__name__
        raise ValueError(f"{card_path} must hold a JSON object (the card); got {kind}")
    expected = {
        "simulator.name": simulator,
        "simulator.version": version,
        **{f"flow.{key}": value for key, value in flow_architecture(flow).items()},
        "dimensions.c_dim": c_dim,
        "dimensions.y_dim": flow.y_dim,
    }
    for field, value in expected.items():
        found = card
        for part in field.split("."):
            found = found.get(part) if isinstance(found, Mapping) else None
        if found != value:
            raise _mismatch(field, value, found)
    digest = _sha256(weights_path)
    recorded = card.get("weights", {}).get("sha256")
    if digest != recorded:
        raise _mismatch("weights.sha256", recorded, digest)
    with np.load(weights_path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    # the flow's parameter shapes, traced only (initialising the network runs it op by op)
    template = jax.eval_shape(lambda: init(flow, jax.random.key(0), 0, c_dim))
    wanted = {f"params/{path}": value.shape for path, value in
              traverse_util.flatten_dict(template.params, sep="/").items()}  # fmt: skip
    wanted |= {field: getattr(template, field).shape for field in _STANDARDISATION}
    shapes = {key: value.shape for key, value in arrays.items()}
    if shapes != wanted:
        missing = sorted(set(wanted) - set(shapes))
        extra = sorted(set(shapes) - set(wanted))
        wrong = sorted(k for k in set(wanted) & set(shapes) if wanted[k] != shapes[k])
        raise ValueError(
            f"weights in {weights_path} do not fit the flow: missing {missing}, "
            f"unexpected {extra}, wrong shapes {wrong}"
        )
    params = traverse_util.unflatten_dict(
        {
            tuple(key.split("/")[1:]): jnp.asarray(value)
            for key, value in arrays.items()
            if key.startswith("params/")
        }
    )
    surrogate = Surrogate(params, *(jnp.asarray(arrays[field]) for field in _STANDARDISATION))
    return surrogate, card
