"""Make ``laminar_flow_example.h5``: synthetic laminar-flow two-time data in the APS-U layout.

Deterministic: ``diffdesign.xpcs.synthetic_c2`` with ``jax.random.key(0)``, homodyne's
trapezoid model, the truth below, three angles and 100 frames of 0.02 s. The parameters are
chosen so that diffusion and shear both decay within the 2 s window (with ANCHORS' benchmark
truth at dt = 0.1 s the shear decorrelates within two frames and the data barely constrain
the diffusion). The truth and
the settings are stored as root attributes of the file, so a fit can be compared with them::

    import h5py
    with h5py.File(example_path("laminar_flow_example.h5")) as f:
        truth = dict(f.attrs)

Rebuild (next to this script, or at ``--out``)::

    python -m diffdesign.xpcs.examples.make_example
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

from diffdesign.xpcs.io import write_aps_hdf5
from diffdesign.xpcs.model import synthetic_c2

OUTPUT = Path(__file__).resolve().parent / "laminar_flow_example.h5"

#: Physical truth (homodyne's names and units: Angstrom^2/s, 1/s, degrees).
TRUTH = {
    "D0": 50000.0,
    "alpha": -0.2,
    "D_offset": 100.0,
    "gamma_dot_t0": 0.002,
    "beta": -0.2,
    "gamma_dot_t_offset": 1e-4,
    "phi0": 10.0,
}
CONTRAST = 0.3
OFFSET = 1.0
NOISE = 0.01  # std of the Gaussian noise added to c2
DT = 0.02  # s
Q = 0.0054  # 1/Angstrom
L = 2e6  # Angstrom
PHI = (-60.0, 0.0, 60.0)  # degrees
N_FRAMES = 100
SEED = 0


def make_c2() -> np.ndarray:
    """The (3, 80, 80) noisy two-time matrices of the example."""
    t = DT * np.arange(N_FRAMES)
    c2 = synthetic_c2(
        jax.random.key(SEED),
        TRUTH,
        t,
        np.asarray(PHI),
        Q,
        L,
        np.full(len(PHI), CONTRAST),
        np.full(len(PHI), OFFSET),
        NOISE,
    )
    return np.asarray(c2)


def write_example(path: str | Path = OUTPUT) -> Path:
    """Write the example file (APS-U layout, frame time DT, truth as root attributes)."""
    attributes = {
        "description": "synthetic laminar-flow two-time data made by diffdesign "
        "(diffdesign.xpcs.examples.make_example)",
        "mode": "laminar_flow",
        **TRUTH,
        "contrast": CONTRAST,
        "offset": OFFSET,
        "noise": NOISE,
        "dt": DT,
        "q": Q,
        "L": L,
        "seed": SEED,
    }
    return write_aps_hdf5(
        path, make_c2(), q=Q, phi=np.asarray(PHI), frame_time=DT, attributes=attributes
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUTPUT, help="file to write (.h5)")
    args = parser.parse_args(argv)
    path = write_example(args.out)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
