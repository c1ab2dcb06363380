"""The muography studies run end to end (smoke sizes) and their configs are validated."""

import json

import pytest

from diffdesign.cli import main
from diffdesign.muography.studies import MuographyStudyConfig


@pytest.mark.parametrize("command", ["image", "design", "sweep"])
def test_studies_run_and_write_results(tmp_path, command, capsys):
    assert main(["muography", command, "--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["image_muons"] == 2000
    pngs = {p.name for p in tmp_path.glob("*.png")}
    expected = {"image": {"x0_maps.png", "depth_profile.png"},
                "design": {"history.png", "layout_initial.png", "layout_final.png"},
                "sweep": {"budget_sweep.png"}}[command]  # fmt: skip
    assert expected <= pngs
    assert capsys.readouterr().out.strip()


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = 0\n")
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        MuographyStudyConfig.from_toml(bad)
    bad.write_text('estimator = "mlem"\n')
    with pytest.raises(ValueError, match="estimator must be one of"):
        MuographyStudyConfig.from_toml(bad)
    bad.write_text("colour = 1\n")
    with pytest.raises(ValueError, match="unknown key"):
        MuographyStudyConfig.from_toml(bad)
    bad.write_text("budgets = [-1.0]\n")
    with pytest.raises(ValueError, match="budgets must be positive"):
        MuographyStudyConfig.from_toml(bad)
