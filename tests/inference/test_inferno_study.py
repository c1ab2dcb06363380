"""The INFERNO benchmark study runs end to end (smoke sizes), resumes, validates its config."""

import json

import numpy as np
import pytest

from diffdesign.cli import main
from experiments.inferno._study import InfernoStudyConfig


@pytest.mark.smoke
def test_study_runs_writes_results_and_resumes(tmp_path, capsys):
    assert main(["inferno", "benchmarks", "--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["rows"]) >= {"analytic", "optimal_classifier", "classifier", "inferno_2"}
    assert len(results["rows"]["classifier_all"]) == 2
    assert all(np.isfinite(results["rows"]["analytic"]))
    widths = results["profile_benchmark_2"]["half_width"]
    assert set(widths) == {"classifier", "inferno_2"}
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "table_2.png",
        "training.png",
        "profile_benchmark_2.png",
    }
    table = (tmp_path / "results.md").read_text().splitlines()
    assert list(results["matching_inferno"]) == ["2"]  # the smoke trains benchmark 2 only
    assert table[2].startswith("| 2 | ") and table[2].endswith("| 15.65 |")  # paper's bound
    assert len(table) == 3 + 4  # + the profile lines
    out = capsys.readouterr().out
    assert "analytical likelihood" in out and "[ 14.71]" in out
    # a rerun finds the finished checkpoints and trains nothing
    assert main(["inferno", "benchmarks", "--smoke", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["rows"]["inferno_2_all"] == results["rows"]["inferno_2_all"]
    # the training time is the checkpointed one's, nothing added
    assert again["wall_s"]["inferno_2_training"] == results["wall_s"]["inferno_2_training"] > 0
    err = capsys.readouterr().err
    assert "at step 20/20" in err and "step/s" not in err  # resumed, no progress bar ran


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("n_initialisations = 0\n", "n_initialisations must be >= 1"),
        ("benchmarks = [5]\n", "benchmarks must be a non-empty subset"),
        ("temperature = 0.0\n", "temperature must be > 0"),
        ("n_profile = 200\n", "n_profile"),
        ("hidden = []\n", "hidden"),
        ("colour = 1\n", "unknown key"),
        ('seed = "a"\n', "seed .* must be of type int"),
    ],
)
def test_config_errors(tmp_path, content, match):
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    with pytest.raises(ValueError, match=match):
        InfernoStudyConfig.from_toml(bad)


def test_cli_reports_a_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("n_bins = 1\n")
    assert main(["inferno", "benchmarks", "--config", str(bad), "--out", str(tmp_path)]) == 2
    assert "n_bins must be >= 2" in capsys.readouterr().err
