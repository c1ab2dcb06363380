"""benchmarks/bo_vs_botorch.py --smoke: both sides run the same problem and the ratios are
the script's own timings."""

import pytest

from tests.script_helpers import run_smoke

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)


def test_bo_benchmark_smoke(tmp_path):
    results = run_smoke("bo_vs_botorch.py", tmp_path / "bo_vs_botorch.json")
    problem, summary = results["problem"], results["summary"]
    assert problem["budget"] == 8 and problem["seeds"] == [0]
    for side in ("diffdesign", "botorch"):
        (run,) = results["runs"][side]
        assert len(run["step_s"]) == problem["budget"] - problem["n_initial"]
        assert summary[side]["median_steady_step_s"] == pytest.approx(
            sum(run["step_s"][1:]) / 2, rel=1e-12
        )  # the median of the two steady steps of 3
        # same initial design on both sides; the incumbent never gets worse
        assert (
            run["initial_best_machine_mae_m"]
            == results["runs"]["diffdesign"][0]["initial_best_machine_mae_m"]
        )
        assert run["best_machine_mae_m"] <= run["initial_best_machine_mae_m"]
    assert summary["steady_step_ratio"] == pytest.approx(
        summary["botorch"]["median_steady_step_s"] / summary["diffdesign"]["median_steady_step_s"],
        rel=1e-12,
    )
    assert results["versions"]["botorch"]
