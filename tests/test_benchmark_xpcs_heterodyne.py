"""The two-component benchmark against xpcsjax runs end to end (its figures come from full runs).

The smoke run skips the peer (xpcsjax needs its own Python 3.12 environment, absent in CI):
``--peer-python`` points at a file that does not exist.
"""

import json
import subprocess
import sys

import pytest

from diffdesign.xpcs import TWO_COMPONENT_PARAMETERS

from .script_helpers import ROOT

pytestmark = pytest.mark.smoke


def test_xpcs_heterodyne_benchmark_smoke(tmp_path):
    out = tmp_path / "het.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "xpcs_heterodyne_vs_xpcsjax.py"), "--smoke",
        "--out", str(out), "--peer-python", str(tmp_path / "no-xpcsjax-python"),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["settings"]["fixed"] == {"f2": 0.0}
    assert report["results"]["xpcsjax"] == {
        "skipped": f"no Python at {tmp_path / 'no-xpcsjax-python'}"
    }
    for label in ("one_start", "default_32_starts"):
        entry = report["results"][label]
        assert entry["converged"] is True and entry["reps"] == 1
        assert set(entry["parameters"]) == set(TWO_COMPONENT_PARAMETERS)
        assert set(entry["z"]) == set(TWO_COMPONENT_PARAMETERS) - {"f2"}
        # 2 angles x 30 frames, the fit from 20 % off: within 3 standard errors of the truth
        assert entry["max_abs_z"] < 3.0
        assert entry["first_call_s"] >= entry["median_s"] > 0
