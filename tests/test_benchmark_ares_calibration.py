"""The ARES calibration benchmark runs end to end (its figures come from full runs)."""

import pytest

from .script_helpers import run_smoke

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)

pytest.importorskip("cheetah")

SEED_VARIANTS = ("manual_per_config", "manual_vectorised", "adam_per_config", "adam_vectorised")


def test_ares_calibration_benchmark_smoke(tmp_path):
    report = run_smoke("ares_calibration.py", tmp_path / "ares_calibration.json")
    assert report["smoke"] is True
    assert (tmp_path / "ares_calibration_loss.png").stat().st_size > 10_000

    seed = report["seed_method"]
    assert set(seed) == set(SEED_VARIANTS)
    for name, entry in seed.items():
        iterations = entry["iterations"]
        assert iterations == 5
        assert len(entry["loss_history"]) == len(entry["error_history_um"]) == iterations + 1
        assert entry["wall_s"] > 0
        # 7 loss evaluations (the iterate and 6 forward differences) per iteration
        assert entry["config_evaluations"] == 7 * 15 * iterations
        expected_calls = 7 * iterations * (1 if name.endswith("vectorised") else 15)
        assert entry["cheetah_calls"] == expected_calls
        assert report["speedup"][name]["vs_steady_state"] > 0
    # per-config and vectorised evaluation follow the same path
    for update in ("manual", "adam"):
        assert seed[f"{update}_per_config"]["error_um"] == pytest.approx(
            seed[f"{update}_vectorised"]["error_um"], rel=1e-9
        )

    ours = report["ours"]["noise_free"]
    assert ours["converged"]
    assert ours["error_um"] < 0.1
    assert ours["median_s"] > 0 and ours["first_call_s"] >= ours["median_s"]
    count = ours["model_evaluations"]
    assert count["model_passes"] == 2 * count["solver_steps"] + 3
    assert "explanation" in count
    noisy = report["ours"]["noisy"]
    assert noisy["error_um"] < 5 * noisy["rms_std_um"]
    assert report["targets"]["error_met"]
