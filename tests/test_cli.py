"""The command line: the README's main job runs, writes its files and rejects bad input."""

import json

import numpy as np
import pytest

from diffdesign.beamline import ares
from diffdesign.cli import main

from .script_helpers import run_smoke


def test_ares_track_writes_results_and_plot(tmp_path, capsys):
    code = main(["ares", "track", "--q1", "12", "--q2", "-9", "--cv", "1e-3", "--q3", "5",
                 "--ch", "-2e-3", "--misalignments", "1e-4", "0", "0", "-1e-4", "5e-5", "0",
                 "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    result = json.loads((tmp_path / "screen_beam.json").read_text())
    expected = ares.screen_beam(
        np.array([12, -9, 1e-3, 5, -2e-3]), np.array([[1e-4, 0], [0, -1e-4], [5e-5, 0]])
    )
    for name in ares.OBSERVABLES:
        np.testing.assert_allclose(result["screen_beam_m"][name], expected[name], rtol=1e-14)
    assert (tmp_path / "envelope.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "sigma_x" in out
    assert [c["name"] for c in result["verdict"]["checks"]] == ["finite beam",
                                                                "beam on the screen"]  # fmt: skip
    assert result["verdict"]["flagged"] == 0 and "verdict: all 2 checks passed" in out
    # one self-contained HTML report: the command, the figure, the plot embedded
    report = (tmp_path / "report.html").read_text()
    assert f"report: {tmp_path / 'report.html'}" in out
    assert "diffdesign ares track --q1 12 --q2 -9" in report
    assert "MAE on the screen" in report
    assert report.count("data:image/png;base64,") == 1
    assert "envelope.png" in report and "src=\"http" not in report


def test_ares_track_rejects_out_of_range_settings(tmp_path, capsys):
    assert main(["ares", "track", "--q2", "45", "--out", str(tmp_path)]) == 2
    assert "--q2 (1/m^2) must lie in [-30.0, 30.0]; got 45.0" in capsys.readouterr().err
    assert not (tmp_path / "screen_beam.json").exists()
    assert not (tmp_path / "report.html").exists()


def test_report_embeds_verdict_config_and_results(tmp_path):
    from diffdesign.core.verdict import Verdict, chi2_per_dof
    from diffdesign.report import write_report

    (tmp_path / "results.json").write_text(json.dumps({"chi2": 530.0, "note": "<b>"}))
    path = write_report(tmp_path, "diffdesign ring loco", "diffdesign ring loco --smoke",
                        {"final chi2": "530 for 100 dof"}, Verdict((chi2_per_dof(530, 100),)),
                        "iterations = 3  # <tag>")  # fmt: skip
    text = path.read_text()
    assert "Verdict: 1 of 1 checks flagged" in text and "FLAG" in text
    assert "iterations = 3  # &lt;tag&gt;" in text  # escaped
    assert "&quot;note&quot;: &quot;&lt;b&gt;&quot;" in text
    assert not (tmp_path / "report.html.tmp").exists()


def test_no_abbreviations_and_a_version(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["ares", "track", "--smok"])
    assert "unrecognized arguments: --smok" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("diffdesign ")
    with pytest.raises(SystemExit):  # defaults and units in --help
        main(["ares", "track", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--cv CV AREAMCVM1 kick in rad (default: 0.0)" in text
    assert "--smoke tiny sizes, to check that it runs --seed" in text  # no "(default: False)"


@pytest.mark.smoke
def test_benchmark_smoke(tmp_path):
    """The benchmark script runs end to end on tiny sizes (its figures come from full runs)."""
    report = run_smoke("beamline_vs_cheetah.py", tmp_path / "bench.json")
    for entry in report["results"].values():
        assert entry["speedup"] > 0
        assert entry.get("max_relative_difference", 0.0) < 1e-9
