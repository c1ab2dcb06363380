"""Make the packaged examples: synthetic laminar-flow and two-component two-time data (APS-U).

``laminar_flow_example.h5``:

Deterministic: ``diffdesign.xpcs.synthetic_c2`` with ``jax.random.key(0)``, homodyne's
trapezoid model, the truth below, three angles and 100 frames of 0.02 s. The parameters are
chosen so that diffusion and shear both decay within the 2 s window (with ANCHORS' benchmark
truth at dt = 0.1 s the shear decorrelates within two frames and the data barely constrain
the diffusion). The truth and
the settings are stored as root attributes of the file, so a fit can be compared with them::

    import h5py
    with h5py.File(example_path("laminar_flow_example.h5")) as f:
        truth = dict(f.attrs)

``two_component_example.h5``: the two-component (heterodyne) model of
:mod:`diffdesign.xpcs.heterodyne` with ``TWO_COMPONENT_TRUTH`` (a reference and a drifting
sample whose fraction grows in time), four angles, 80 frames of 0.04 s, noise 0.005,
``jax.random.key(SEED)`` mirrored to a symmetric matrix; the same attributes.

Rebuild both (next to this script, or into ``--out-dir``)::

    python -m diffdesign.xpcs.examples.make_example
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

from diffdesign.xpcs.heterodyne import two_component_g2
from diffdesign.xpcs.io import write_aps_hdf5
from diffdesign.xpcs.model import symmetric_noise, synthetic_c2

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "laminar_flow_example.h5"
TWO_COMPONENT_OUTPUT = HERE / "two_component_example.h5"

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


#: Two-component truth (xpcsjax's names; Angstrom^2/s, Angstrom/s, 1/s, s, degrees).
TWO_COMPONENT_TRUTH = {
    "D0_ref": 1500.0, "alpha_ref": -0.3, "D_offset_ref": 50.0, "D0_sample": 6000.0,
    "alpha_sample": 0.4, "D_offset_sample": -20.0, "v0": 250.0, "v_beta": 0.6,
    "v_offset": -15.0, "f0": 0.2, "f1": 0.35, "f2": 0.0, "f3": 0.1, "phi0_het": 7.0,
}  # fmt: skip
TWO_COMPONENT = {
    "contrast": (0.25, 0.3, 0.27, 0.33), "offset": (1.0, 1.02, 0.98, 1.0), "noise": 0.005,
    "dt": 0.04, "q": 0.012, "phi": (-30.0, 10.0, 83.0, 150.0), "n_frames": 80,
}  # fmt: skip


def make_two_component_c2() -> np.ndarray:
    """The (4, 80, 80) noisy two-component matrices (time from 0, as the reader gives it)."""
    spec = TWO_COMPONENT
    t = spec["dt"] * np.arange(spec["n_frames"])
    clean = two_component_g2(TWO_COMPONENT_TRUTH, t, np.asarray(spec["phi"]), spec["q"],
                             np.asarray(spec["contrast"]), np.asarray(spec["offset"]))  # fmt: skip
    noise = symmetric_noise(jax.random.key(SEED), clean.shape, clean.dtype)
    return np.asarray(clean + spec["noise"] * noise)


def write_two_component_example(path: str | Path = TWO_COMPONENT_OUTPUT) -> Path:
    """Write the two-component example (APS-U layout, truth as root attributes)."""
    spec = TWO_COMPONENT
    attributes = {
        "description": "synthetic two-component (heterodyne) two-time data made by diffdesign "
        "(diffdesign.xpcs.examples.make_example)",
        "mode": "two_component",
        **TWO_COMPONENT_TRUTH,
        **{f"contrast[{k}]": c for k, c in enumerate(spec["contrast"])},
        **{f"offset[{k}]": o for k, o in enumerate(spec["offset"])},
        "noise": spec["noise"],
        "dt": spec["dt"],
        "q": spec["q"],
        "seed": SEED,
    }
    return write_aps_hdf5(
        path, make_two_component_c2(), q=spec["q"], phi=np.asarray(spec["phi"]),
        frame_time=spec["dt"], attributes=attributes,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE, help="folder to write into")
    args = parser.parse_args(argv)
    for write, name in ((write_example, OUTPUT.name),
                        (write_two_component_example, TWO_COMPONENT_OUTPUT.name)):  # fmt: skip
        path = write(args.out_dir / name)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
