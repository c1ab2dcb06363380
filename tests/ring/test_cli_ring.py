"""`diffdesign ring ...`: optics on a small ring, the study wrappers' wiring, bad input.

The studies themselves run in ``test_studies.py``; here their entry points are replaced by
stand-ins that record the config they get, so the wrappers are checked without rerunning
them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from diffdesign import ring
from diffdesign.cli import main
from experiments.ring import _studies as studies

SMALL_RING = Path(__file__).parent / "data" / "small_ring.m"


@pytest.mark.smoke
def test_ring_optics_prints_and_writes_the_optics(tmp_path, capsys):
    assert main(["ring", "optics", str(SMALL_RING), "--out", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert "tunes" in output and "chromaticity" in output
    saved = json.loads((tmp_path / "optics.json").read_text())
    lattice = ring.load_lattice(SMALL_RING)
    expected = jax.jit(ring.linear_optics)(lattice)
    np.testing.assert_allclose(saved["tunes"], expected["tunes"], rtol=1e-12)
    np.testing.assert_allclose(saved["beta_x_m"], expected["beta_x"], rtol=1e-12)
    np.testing.assert_allclose(saved["eta_x_m"], expected["eta_x"], rtol=1e-12)
    assert len(saved["names"]) == len(saved["s_m"]) == 16 and saved["refpoints"] == "BPMs"
    assert np.all(np.isfinite(saved["chromaticity"]))
    assert f"Qx {saved['tunes_total'][0]:.6f}" in output
    checks = saved["verdict"]["checks"]
    assert [c["name"] for c in checks] == ["finite optics", "beta > 0"]
    assert saved["verdict"]["flagged"] == 0 and "verdict: all 2 checks passed" in output
    assert (tmp_path / "optics.png").stat().st_size > 10_000


@pytest.mark.slow  # ~34 s on 2 cores: in CI's second stage (-m slow)
def test_ring_optics_reports_unstable_optics(tmp_path, capsys):
    unstable = tmp_path / "unstable.m"
    unstable.write_text(SMALL_RING.read_text().replace(", 1.1, 'StrMPole", ", 4.0, 'StrMPole"))
    assert main(["ring", "optics", str(unstable), "--out", str(tmp_path / "out")]) == 2
    assert "are unstable" in capsys.readouterr().err
    assert not (tmp_path / "out" / "optics.json").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.m", None, "lattice file '.*missing.m' does not exist"),
        ("ring.txt", "", r"lattice file must end in .m \(AT\), .mat .* or .json \(diffdesign\); got 'ring.txt'"),
        ("broken.m", "ring = {atdrift('D', 1.0)", "broken.m"),
    ],
)
def test_ring_commands_reject_bad_lattice_files(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    for command in ("optics", "correct", "degeneracy"):
        assert main(["ring", command, str(path), "--out", str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err
        assert error.startswith("diffdesign: error: ") and "Traceback" not in error
        assert re.search(message, error), error


@pytest.fixture
def recorded(monkeypatch):
    """Replace both studies by stand-ins returning canned results; record their configs."""
    calls = {}
    summary = {m: {"median": 0.01, "q25": 0.005, "q75": 0.02} for m in studies.METRICS}

    def correction(config, out):
        calls["correct"] = (config, out)
        return {
            "machines": [{}] * config.n_seeds,
            "summary": {n: summary for n in ("before", *studies.ESTIMATORS)},
            "verdict": {"flagged": 0, "checks": []},  # the command prints the study's own
        }

    def degeneracy(config, out):
        calls["degeneracy"] = (config, out)
        source = {"source": "a", "log_likelihood_ratio": 12.0}
        return {
            "pair": {"names": ["QA", "QB"], "correlation": 0.99, "paper_correlation": 0.9896},
            "subset": {"indices": [1, 2, 3], "correlation": 0.01},
            "single_fault_fit": {"largest": {"name": "QB"}},
            "classification": {"a": {"identified": True, "subset": source, "subset_accuracy": 1.0}},
            "verdict": {"flagged": 0, "checks": []},
        }

    monkeypatch.setattr(studies, "run_correction_study", correction)
    monkeypatch.setattr(studies, "run_degeneracy_study", degeneracy)
    return calls


def test_study_commands_pass_config_lattice_and_smoke(tmp_path, capsys, recorded):
    config = tmp_path / "study.toml"
    config.write_text("n_seeds = 7\nnoise_phase = 2e-3\n")
    assert main(["ring", "correct", str(SMALL_RING), "--config", str(config),
                 "--out", str(tmp_path / "c")]) == 0  # fmt: skip
    got, out = recorded["correct"]
    assert (got.n_seeds, got.noise_phase, got.lattice) == (7, 2e-3, str(SMALL_RING))
    assert out == str(tmp_path / "c")
    table = capsys.readouterr().out
    assert "median over 7 machines" in table and "bayes" in table and "tsvd_best" in table

    assert main(["ring", "correct", str(SMALL_RING), "--config", str(config), "--smoke"]) == 0
    got, out = recorded["correct"]
    assert got.n_seeds == studies.CorrectionStudyConfig.SMOKE["n_seeds"]
    assert got.noise_phase == 2e-3 and out == "results/ring_correction"

    assert main(["ring", "degeneracy", str(SMALL_RING), "--smoke", "--out", "x"]) == 0
    got, _ = recorded["degeneracy"]
    assert got == studies.DegeneracyStudyConfig(lattice=str(SMALL_RING)).smoke()
    assert "fit blames QB" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("command", "content", "message"),
    [
        ("correct", "bogus_key = 1\n", r"unknown key\(s\) \['bogus_key'\] in .*; known: \["),
        ("correct", "error_sigma = 0.5\n", r"error_sigma must be a number in \(0, 0.02\]"),
        ("correct", "n_seeds = 0\n", r"n_seeds must be an integer in \[1, 10000\]; got 0"),
        ("degeneracy", "plane = 'z'\n", "plane must be 'x' or 'y'; got 'z'"),
        ("degeneracy", "n_measurements = [\n", "cannot read study config"),
    ],
)
def test_study_commands_reject_bad_configs(tmp_path, capsys, recorded, command, content, message):
    config = tmp_path / "bad.toml"
    config.write_text(content)
    assert main(["ring", command, str(SMALL_RING), "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert re.search(message, error), error
    assert not recorded  # nothing ran


def test_study_commands_reject_missing_or_misnamed_configs(tmp_path, capsys, recorded):
    assert main(["ring", "correct", str(SMALL_RING), "--config", str(tmp_path / "no.toml")]) == 2
    assert "cannot read study config" in capsys.readouterr().err
    assert main(["ring", "degeneracy", str(SMALL_RING), "--config", str(SMALL_RING)]) == 2
    assert "must be a .toml file; got 'small_ring.m'" in capsys.readouterr().err


def test_unwritable_output_is_an_error_not_a_traceback(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["ring", "optics", str(SMALL_RING), "--out", str(blocked)]) == 2
    error = capsys.readouterr().err  # after the compile progress lines, if it compiled here
    assert "Traceback" not in error
    assert error.splitlines()[-1].startswith("diffdesign: error: "), error
    assert str(blocked) in error.splitlines()[-1]


def test_ring_needs_a_command_and_takes_a_lattice_name(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ring"])
    assert exit_info.value.code == 2
    assert main(["ring", "optics", "no-such-ring"]) == 2
    error = capsys.readouterr().err
    assert "unknown lattice name 'no-such-ring'" in error and "'nsls2'" in error


def test_study_commands_default_to_the_config_lattice_then_nsls2(tmp_path, recorded):
    assert main(["ring", "correct", "--smoke", "--out", str(tmp_path / "a")]) == 0
    assert recorded["correct"][0].lattice == "nsls2"
    config = tmp_path / "study.toml"
    config.write_text(f"lattice = {str(SMALL_RING)!r}\n")
    assert main(["ring", "degeneracy", "--config", str(config), "--out", str(tmp_path)]) == 0
    assert recorded["degeneracy"][0].lattice == str(SMALL_RING)
    assert main(["ring", "degeneracy", "esrf", "--config", str(config), "--out", "x"]) == 0
    assert recorded["degeneracy"][0].lattice == "esrf"
