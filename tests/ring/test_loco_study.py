"""The LOCO study runs end to end, and measured response matrices round-trip through JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffdesign import ring
from diffdesign.ring.orm_json import read_orm_json, write_orm_json
from experiments.ring._loco import LocoStudyConfig, run_loco_study, study_setup

SMALL_RING = str(Path(__file__).parent / "data" / "small_ring.m")


def test_loco_study_on_the_small_ring(tmp_path):
    config = LocoStudyConfig(lattice=SMALL_RING, iterations=3)
    results = run_loco_study(config, tmp_path, say=lambda _: None)
    summary = results["summary"]
    dof = summary["degrees_of_freedom"]
    assert abs(summary["final_chi2"] - dof) < 4 * np.sqrt(2 * dof)
    assert (
        summary["rms_relative_k1_error_after_fit"] < 0.5 * summary["rms_relative_k1_error_planted"]
    )
    assert (tmp_path / "loco_fit.png").stat().st_size > 10_000
    reloaded = json.loads((tmp_path / "results.json").read_text())
    assert reloaded["sizes"] == {
        "quadrupoles": 16,
        "bpms": 16,
        "horizontal_correctors": 16,
        "vertical_correctors": 16,
    }
    lattice = ring.load_lattice(SMALL_RING)
    setup, orm_x, orm_y, noise = read_orm_json(tmp_path / "measured_orm.json", lattice)
    assert setup == study_setup(lattice, config)
    assert orm_x.shape == (16, 16) and orm_y.shape == (16, 16) and noise == config.noise_sigma


def test_bad_loco_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="noise_sigma must be a number in"):
        LocoStudyConfig(noise_sigma=-1.0)
    lattice = ring.load_lattice(SMALL_RING)
    setup = study_setup(lattice, LocoStudyConfig(lattice=SMALL_RING))
    path = write_orm_json(
        tmp_path / "orm.json", lattice, setup, np.zeros((16, 16)), np.zeros((16, 16)), 0.01
    )
    content = json.loads(path.read_text())
    content["bpms"][0] = "NOSUCHBPM"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="'NOSUCHBPM' not found"):
        read_orm_json(path, lattice)
    content["bpms"][0] = lattice.names[setup.bpms[0]]
    content["orm_x"] = content["orm_x"][:-1]
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="orm_x must have shape"):
        read_orm_json(path, lattice)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read response matrix"):
        read_orm_json(path, lattice)
