"""The ARES study runner: config validation, a small end-to-end run, resume."""

import json

import numpy as np
import pytest

from diffdesign.cli import main
from experiments.ares._study import StudyConfig, run_study

SMALL = {
    "budget": 5,
    "n_initial": 3,
    "n_calibration": 6,
    "design_sizes": [3],
    "design_draws": 2,
    "methods": ["gradient_calibrated", "bo_calibrated", "random", "bo_fitted_offsets"],
}


@pytest.mark.smoke
def test_small_study_end_to_end_and_resume(tmp_path):
    lines = []
    results = run_study(StudyConfig.from_mapping(SMALL), tmp_path, progress=lines.append)
    for name in ("results.json", "offsets.json", "offsets.png", "tuning.png", "design.png",
                 "calibration_loss.png", "failure_mode.png"):  # fmt: skip
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["calibration"]["mean_absolute_error_um"] < 10.0  # 6 settings, 10 um noise
    assert set(saved["tuning"]) == set(SMALL["methods"])
    bo = saved["tuning"]["bo_calibrated"]
    assert bo["machine_evaluations"] == 5 and len(bo["incumbent_true_mae_m"]) == 5
    fitted = saved["tuning"]["bo_fitted_offsets"]["fitted_offsets_m"]
    assert fitted[:3] == [None, None, None] and np.all(np.abs(fitted[-1]) <= 2e-3)
    assert (
        saved["tuning"]["gradient_calibrated"]["true_mae_m"]
        < 0.2 * saved["tuning"]["random"]["true_mae_m"]
    )

    # A longer budget resumes every search from its checkpoint: the first 5 evaluations stay.
    lines.clear()
    longer = run_study(
        StudyConfig.from_mapping(SMALL | {"budget": 6}), tmp_path, progress=lines.append
    )
    assert any("resumed" in line for line in lines)
    for name in ("bo_calibrated", "random", "bo_fitted_offsets"):
        np.testing.assert_array_equal(
            longer["tuning"][name]["mae_m"][:5], results["tuning"][name]["mae_m"]
        )
        assert longer["tuning"][name]["machine_evaluations"] == 6


@pytest.mark.smoke
def test_cli_tune_reads_the_offsets_file(tmp_path, capsys):
    offsets = {"offsets_m": [[0.0, 2e-4], [1e-4, -3e-4], [-1e-4, 1.5e-4]]}
    (tmp_path / "offsets.json").write_text(json.dumps(offsets))
    code = main(["ares", "tune", "--offsets", str(tmp_path / "offsets.json"), "--sigma-x", "2e-4",
                 "--out", str(tmp_path / "tune")])  # fmt: skip
    assert code == 0
    tuned = json.loads((tmp_path / "tune" / "tuned_settings.json").read_text())
    assert abs(tuned["predicted_screen_beam_m"]["sigma_x"] - 2e-4) < 1e-5
    assert [c["name"] for c in tuned["verdict"]["checks"]] == [
        "predicted objective", "settings at magnet limits", "finite beam"]  # fmt: skip
    assert tuned["verdict"]["flagged"] == 0
    assert "verdict: all 3 checks passed" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text('{"offsets_m": [[0, 0], [0, 0]]}')
    assert main(["ares", "tune", "--offsets", str(tmp_path / "bad.json")]) == 2
    assert "must have shape (3, 2)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("budgets = 3", r"unknown key\(s\) \['budgets'\]"),
        ("budget = 'many'", "budget in .* must be of type int; got 'many'"),
        ("budget = 4\nn_initial = 4", "need 2 <= n_initial < budget"),
        ("design = 'clever'", "design must be 'random' or 'd_optimal'"),
        ("true_offsets = [[0.0, 1.0]]", r"true_offsets must be a 3 x 2 list"),
        ("methods = ['bo_magic']", r"unknown tuning methods \['bo_magic'\]"),
        ("[target]\nsize = 1e-4", r"target keys must be among"),
        ("screen_noise = -1e-5", r"screen_noise must lie in \[0.0, inf\]"),
        ("budget = [", "cannot read study config"),
    ],
)
def test_bad_config_is_named(tmp_path, content, match):
    path = tmp_path / "study.toml"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        StudyConfig.from_toml(path)


def test_config_file_with_target(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text("budget = 20\nscreen_noise = 0\n[target]\nsigma_x = 1e-4\nmu_y = 5e-5\n")
    config = StudyConfig.from_toml(path)
    assert config.budget == 20 and dict(config.target) == {"sigma_x": 1e-4, "mu_y": 5e-5}
    assert config.screen_noise == 0.0
