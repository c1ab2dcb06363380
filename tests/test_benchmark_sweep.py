"""benchmarks/sweep_ares.py --smoke: runs, and its figures follow from its own timings."""

import pytest

from tests.script_helpers import run_smoke

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)


def test_sweep_benchmark_smoke(tmp_path):
    results = run_smoke("sweep_ares.py", tmp_path / "sweep_ares.json")
    n = results["points"]
    assert n == 4 and results["one_by_one_cli"]["points_timed"] == 1
    cli, batched = results["one_by_one_cli"], results["batched"]
    separate = results["one_by_one_in_process"]
    speed = results["speedup"]
    assert speed["batched_cli_vs_one_by_one_cli"] == pytest.approx(
        cli["median_per_point_s"] * n / batched["cli_wall_s"], rel=1e-12
    )
    assert speed["batched_steady_vs_one_by_one_in_process"] == pytest.approx(
        separate["wall_s"] / batched["steady_run_s"], rel=1e-12
    )
    # the batched and the one-by-one calibrations agree (a flat minimum: see README)
    assert cli["max_relative_difference"]["chi2_per_dof"] < 1e-11
    assert separate["max_relative_difference"]["chi2_per_dof"] < 1e-11
    assert separate["max_offset_difference_in_std"] < 1e-5
    assert cli["max_offset_difference_in_std"] < 1e-5
