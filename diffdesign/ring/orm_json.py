"""Measured orbit response matrices as JSON: BPMs and correctors identified by element name.

The format (``"format": "diffdesign-orm"``, version 1): ``bpms``, ``horizontal_correctors``,
``vertical_correctors`` (element names, in lattice order; repeated names map to successive
occurrences), ``orm_x`` (b, h) and ``orm_y`` (b, v) in m/rad, ``noise_sigma`` (m/rad, one
entry). :func:`~diffdesign.ring.loco.loco_fit` fits what :func:`read_orm_json` returns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diffdesign.ring import loco
from diffdesign.ring.lattice import Lattice
from diffdesign.ring.model import fitted_quadrupoles

__all__ = ["ORM_FORMAT", "read_orm_json", "write_orm_json"]

ORM_FORMAT = "diffdesign-orm"


def write_orm_json(
    path: str | Path,
    lattice: Lattice,
    setup: loco.LocoSetup,
    orm_x: np.ndarray,
    orm_y: np.ndarray,
    noise_sigma: float,
) -> Path:
    """Write a measured response matrix: element names identify BPMs and correctors."""
    path = Path(path)
    content = {
        "format": ORM_FORMAT,
        "version": 1,
        "units": "m/rad",
        "bpms": [lattice.names[i] for i in setup.bpms],
        "horizontal_correctors": [lattice.names[i] for i in setup.horizontal],
        "vertical_correctors": [lattice.names[i] for i in setup.vertical],
        "noise_sigma": float(noise_sigma),
        "orm_x": np.asarray(orm_x).tolist(),
        "orm_y": np.asarray(orm_y).tolist(),
    }
    path.write_text(json.dumps(content))
    return path


def read_orm_json(
    path: str | Path, lattice: Lattice, quadrupoles: str = ""
) -> tuple[loco.LocoSetup, np.ndarray, np.ndarray, float]:
    """Read a measured response matrix written by :func:`write_orm_json`.

    Names are matched to the lattice in order of appearance (repeated names, such as
    NSLS-II's, map to their successive occurrences).

    Raises:
        ValueError: malformed file, unknown names, shapes that do not match the names.
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read response matrix {str(path)!r}: {error}") from None
    if not isinstance(content, dict) or content.get("format") != ORM_FORMAT:
        raise ValueError(f"{path.name}: not a {ORM_FORMAT!r} file (key 'format')")
    for key in (
        "bpms",
        "horizontal_correctors",
        "vertical_correctors",
        "orm_x",
        "orm_y",
        "noise_sigma",
    ):
        if key not in content:
            raise ValueError(f"{path.name}: missing key {key!r}")

    def locate(names, kind):
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path.name}: {kind} must be a list of element names")
        used: dict[str, int] = {}
        found = []
        for name in names:
            matches = [i for i, n in enumerate(lattice.names) if n == name]
            k = used.get(name, 0)
            if k >= len(matches):
                raise ValueError(f"{path.name}: {kind} name {name!r} not found in the lattice")
            found.append(matches[k])
            used[name] = k + 1
        return tuple(found)

    setup = loco.LocoSetup(
        tuple(int(i) for i in fitted_quadrupoles(lattice, quadrupoles)),
        locate(content["bpms"], "bpms"),
        locate(content["horizontal_correctors"], "horizontal_correctors"),
        locate(content["vertical_correctors"], "vertical_correctors"),
    )
    _, b, h, v = setup.sizes
    orm_x = np.asarray(content["orm_x"], dtype=float)
    orm_y = np.asarray(content["orm_y"], dtype=float)
    for name, value, shape in (("orm_x", orm_x, (b, h)), ("orm_y", orm_y, (b, v))):
        if value.shape != shape:
            raise ValueError(f"{path.name}: {name} must have shape {shape}; got {value.shape}")
    noise = float(content["noise_sigma"])
    if not noise > 0.0:
        raise ValueError(f"{path.name}: noise_sigma must be > 0; got {noise}")
    return setup, orm_x, orm_y, noise
