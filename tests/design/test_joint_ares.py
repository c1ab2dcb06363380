"""``diffdesign joint ares --smoke``: every stage runs, results reload, a rerun resumes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)

ROOT = Path(__file__).resolve().parents[2]


def _run(out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "diffdesign.cli", "joint", "ares", "--smoke", "--quiet",
               "--out", str(out)]  # fmt: skip
    return subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)


def test_joint_ares_smoke_runs_and_resumes(tmp_path):
    out = tmp_path / "joint"
    _run(out)
    results = json.loads((out / "results.json").read_text())
    designs = results["designs"]
    published, joint = designs["published"], designs["joint@0.01"]
    # today's screen: 20 kEUR station + 10 kEUR optics
    assert published["cost_keur"] == 30.0
    assert published["resolutions_um"] == [13.2792]
    # the joint multistart's first start is the published design, and it keeps the best
    # point of every path: it cannot end worse than where it started
    assert joint["loss"] <= published["loss"]
    for name in ("published", "joint"):
        entry = results["realised"][name]
        assert entry["n_realisations"] == 8
        assert 0.0 <= entry["coverage_95"] <= 1.0
        assert np.isfinite(entry["realised_rms_error_um"])
    assert [c["name"] for c in results["verdict"]["checks"]] == [
        "loss, joint vs published", "loss, geometry_then_settings vs published",
        "loss, settings_then_geometry vs published", "loss, joint_equal_cost vs published",
        "95 % coverage, published", "95 % coverage, joint", "divergences", "finite figures"]  # fmt: skip
    assert {p.name for p in out.glob("*.png")} == {
        "designs.png", "front.png", "realised.png", "surrogate_fidelity.png"
    }
    again = _run(out)
    assert "done before" in again.stdout + again.stderr
    assert json.loads((out / "results.json").read_text()) == results
