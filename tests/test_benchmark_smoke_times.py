"""benchmarks/smoke_times.py --smoke: times one command's smoke run and its silences."""

import pytest

from tests.script_helpers import run_smoke

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)


def test_smoke_times_records_one_command(tmp_path):
    report = run_smoke("smoke_times.py", tmp_path / "smoke_times.json")
    assert list(report["commands"]) == ["ares/track"] and report["of"] == 1
    run = report["commands"]["ares/track"]["cold"]
    assert run["rc"] == 0 and run["status"] == "ok"
    assert run["command"].startswith("diffdesign ares track --smoke --out ")
    # the wall time bounds every gap between output lines, the first line comes after start
    assert 0 < run["first_output_s"] <= run["wall_s"]
    assert 0 < run["longest_silence_s"] <= run["wall_s"]
    assert any(line.startswith("MAE on the screen") for line in run["tail"])
    assert run["within_target"] == (run["wall_s"] <= report["target_s"])
    assert report["slowest_cold_s"] == run["wall_s"]
