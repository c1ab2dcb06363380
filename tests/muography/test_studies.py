"""The muography studies run end to end (smoke sizes) and their configs are validated."""

import json

import pytest

from diffdesign.cli import main
from experiments.muography._studies import MuographyStudyConfig


@pytest.mark.smoke
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
    out = capsys.readouterr().out
    assert results["verdict"]["checks"] and "verdict: " in out
    if command == "image":
        assert [c["name"] for c in results["verdict"]["checks"]] == [
            "finite images", "block seen, poca", "block seen, likelihood",
            "X0 error, likelihood vs PoCA"]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("epochs = 0\n", "epochs must be >= 1"),
        ('estimator = "mlem"\n', "estimator must be one of"),
        ("colour = 1\n", "unknown key"),
        ("budgets = [-1.0]\n", "budgets must be finite and > 0"),
    ],
)
def test_config_errors(tmp_path, content, match):
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    with pytest.raises(ValueError, match=match):
        MuographyStudyConfig.from_toml(bad)
