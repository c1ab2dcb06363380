"""The muography benchmark against TomOpt runs end to end (its figures come from full runs)."""

import pytest

from .script_helpers import run_smoke

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)


def test_muography_benchmark_smoke(tmp_path):
    report = run_smoke("muography_vs_tomopt.py", tmp_path / "muography_vs_tomopt.json")
    assert report["smoke"] is True and report["counts"] == [500]
    entry = report["ours"]["poca/500"]
    assert entry["first_call_s"] >= entry["median_s"] > 0
    assert entry["loss"] > 0 and all(v > 0 for v in entry["gradient_norms"].values())
    assert len(entry["prediction_zxy"]) == 6  # layers
    status = report["tomopt"]["status"]
    assert status == "ok" or status.startswith("skipped")
