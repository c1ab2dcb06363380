"""The ring studies at smoke size on NSLS-II: what they write, and the paper's findings.

Both studies share one compiled optics-and-Jacobian program (``diffdesign.ring.model._raw_linearise``),
so the module compiles it once; the smoke configs keep every other shape small.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from experiments.ring import _studies as studies

NSLS2 = "nsls2"  # packaged with diffdesign


@pytest.fixture(scope="module")
def correction(tmp_path_factory):
    out = tmp_path_factory.mktemp("ring_correction")
    config = studies.CorrectionStudyConfig(lattice=NSLS2).smoke()
    lines: list[str] = []
    return config, out, studies.run_correction_study(config, out, progress=lines.append), lines


@pytest.fixture(scope="module")
def degeneracy(tmp_path_factory):
    out = tmp_path_factory.mktemp("ring_degeneracy")
    config = studies.DegeneracyStudyConfig(lattice=NSLS2).smoke()
    return config, out, studies.run_degeneracy_study(config, out, progress=None)


@pytest.mark.smoke
def test_correction_study_writes_reloadable_results_and_plots(correction):
    config, out, results, lines = correction
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    for key in ("config", "lattice", "noise", "metrics", "estimator_rows", "calibration",
                "machines", "summary", "per_estimator", "tikhonov", "tsvd", "bayes_alpha",
                "evidence_alpha", "bayes_effective_cut", "example", "timing_s"):  # fmt: skip
        assert key in saved, key
    assert saved["lattice"]["n_bpm"] == 180 and saved["lattice"]["n_quadrupoles"] == 300
    assert saved["metrics"] == list(studies.METRICS)
    n_rows = 3 + len(config.tikhonov_alphas) + len(config.tsvd_cuts)
    assert len(saved["estimator_rows"]) == n_rows
    metrics = np.asarray(saved["machines"][0]["metrics"])
    assert metrics.shape == (config.n_iter + 1, n_rows, len(studies.METRICS))
    assert len(saved["machines"]) == config.n_seeds
    assert set(saved["summary"]) == {"before", *studies.ESTIMATORS}
    assert len(saved["tikhonov"]["median"]["rms_beta_beat_x"]) == len(config.tikhonov_alphas)
    assert len(saved["example"]["s_m"]) == 180
    for name in ("beta_beat_along_ring", "estimator_comparison", "regularisation_curves",
                 "beat_calibration", "convergence"):  # fmt: skip
        assert (out / f"{name}.png").stat().st_size > 10_000
    assert any(line.startswith("machine 2/2") for line in lines)
    assert [c["name"] for c in saved["verdict"]["checks"]] == [
        "chi2/dof", "beta-beat x after bayes", "beta-beat y after bayes", "K1 error after bayes",
        "finite metrics"]  # fmt: skip
    assert saved["verdict"]["flagged"] == 0


@pytest.mark.smoke
def test_bayesian_correction_reduces_the_beat_and_beats_the_pseudo_inverse(correction):
    _, _, results, _ = correction
    summary = results["summary"]
    for plane in ("x", "y"):
        before = summary["before"][f"rms_beta_beat_{plane}"]["median"]
        bayes = summary["bayes"][f"rms_beta_beat_{plane}"]["median"]
        assert before > 0.02  # 1e-3 gradient errors: a few % beat on NSLS-II
        assert bayes < before / 10
        assert bayes < summary["pinv"][f"rms_beta_beat_{plane}"]["median"]
    # The prior is calibrated on the beat: near the planted sigma (1e-3).
    assert 0.5e-3 < results["bayes_prior_sigma"]["median"] < 2e-3
    errors = summary["bayes"]["rms_error_relative"]["median"]
    assert errors < summary["pinv"]["rms_error_relative"]["median"]
    assert errors < summary["before"]["rms_error_relative"]["median"]  # the planted errors


@pytest.mark.smoke
def test_correction_study_resumes_from_its_checkpoint(correction):
    config, out, results, _ = correction
    lines: list[str] = []
    again = studies.run_correction_study(config, out, progress=lines.append)
    assert any("resuming" in line and "2 machines done" in line for line in lines)
    assert again["summary"] == json.loads(json.dumps(results["summary"]))


@pytest.mark.smoke
def test_correction_study_refuses_a_checkpoint_of_another_config(correction):
    config, out, _, _ = correction
    other = dataclasses.replace(config, noise_phase=2e-3)
    with pytest.raises(ValueError, match=r"with other settings: .*noise_phase"):
        studies.run_correction_study(other, out, progress=None)


@pytest.mark.smoke
def test_degeneracy_study_reproduces_the_papers_findings(degeneracy):
    config, out, _ = degeneracy
    saved = json.loads((out / "results.json").read_text())
    for key in ("pair", "degenerate_neighbours", "single_fault_fit", "fit_noise_scan",
                "subset", "classification", "s_bpm_m", "timing_s"):  # fmt: skip
        assert key in saved, key
    pair = saved["pair"]
    assert pair["names"] == ["QL1G2C01A", "QL2G2C01A"]
    assert pair["quadrupole_numbers"] == [10, 11]  # the paper's indices
    assert abs(pair["correlation"] - 0.9897) < 5e-4  # the paper: 0.9896
    pairs = saved["degenerate_neighbours"]["pairs"]
    assert any({p["name_i"], p["name_j"]} == set(pair["names"]) for p in pairs)
    # Fig. 3: with noisy averaged data the fit over all quadrupoles blames the neighbour.
    assert saved["single_fault_fit"]["attributed_to"] == "b"
    assert saved["single_fault_fit"]["largest"]["name"] == "QL2G2C01A"
    scan = saved["fit_noise_scan"]
    assert scan["fraction_a"][scan["noise"].index(1e-4)] == 1.0  # right when precise
    # Fig. 4: a near-orthogonal subset that keeps signal.
    subset = saved["subset"]
    assert len(subset["indices"]) == config.subset_size
    assert abs(subset["correlation"]) < 0.1 and subset["meets_signal_requirement"]
    # Figs. 5-6: the true source is identified from the measurements at the subset.
    for label in ("a", "b"):
        entry = saved["classification"][label]
        assert entry["identified"] and entry["subset"]["source"] == label
        assert len(entry["subset"]["correlation_a"]) == config.n_measurements
        other = "b" if label == "a" else "a"
        assert np.mean(entry["subset"][f"correlation_{label}"]) > 0.8
        assert abs(np.mean(entry["subset"][f"correlation_{other}"])) < 0.1
    for name in ("response_vectors", "correlation_histograms", "fitted_errors"):
        assert (out / f"{name}.png").stat().st_size > 10_000
    assert [c["name"] for c in saved["verdict"]["checks"]] == [
        "|correlation| at the 6-BPM subset", "subset signal", "source QL1G2C01A identified",
        "source QL2G2C01A identified", "finite fit"]  # fmt: skip
    assert saved["verdict"]["flagged"] == 0


def test_configs_reject_bad_values_naming_the_field():
    with pytest.raises(ValueError, match=r"error_sigma must be a number in \(0, 0.02\]; got 0.5"):
        studies.CorrectionStudyConfig(error_sigma=0.5)
    with pytest.raises(ValueError, match=r"n_seeds must be an integer in \[1, 10000\]; got 2.5"):
        studies.CorrectionStudyConfig(n_seeds=2.5)
    with pytest.raises(ValueError, match="observables must be distinct entries"):
        studies.CorrectionStudyConfig(observables=("beta_x", "tune"))
    with pytest.raises(ValueError, match=r"tsvd_cuts must hold integers .* entry 1 is 0"):
        studies.CorrectionStudyConfig(tsvd_cuts=(10, 0))
    with pytest.raises(ValueError, match=r"example_seed must be an integer in \[0, 1\]"):
        studies.CorrectionStudyConfig(n_seeds=2, example_seed=5)
    with pytest.raises(ValueError, match="quadrupoles must be a regular expression"):
        studies.CorrectionStudyConfig(quadrupoles="QL[1")
    with pytest.raises(ValueError, match="plane must be 'x' or 'y'"):
        studies.DegeneracyStudyConfig(plane="z")
    with pytest.raises(ValueError, match="quadrupole_a and quadrupole_b must differ"):
        studies.DegeneracyStudyConfig(quadrupole_b="QL1G2C01A")


def test_configs_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("n_seeds = 5\nerror_sigma = 2e-3\nobservables = ['beta_x', 'phase_x']\n")
    config = studies.CorrectionStudyConfig.from_toml(path)
    assert config == dataclasses.replace(
        studies.CorrectionStudyConfig(), n_seeds=5, error_sigma=2e-3,
        observables=("beta_x", "phase_x"),
    )  # fmt: skip
    path.write_text("n_seeds = 5\nbogus = 1\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['bogus'\] in .*c.toml; known:"):
        studies.CorrectionStudyConfig.from_toml(path)
    path.write_text("n_measurements = 'many'\n")
    with pytest.raises(ValueError, match=r"n_measurements in .* must be of type int; got 'many'"):
        studies.DegeneracyStudyConfig.from_toml(path)
    path.write_text("n_seeds = [\n")
    with pytest.raises(ValueError, match="cannot read study config"):
        studies.CorrectionStudyConfig.from_toml(path)
    with pytest.raises(ValueError, match=r"must be a \.toml file"):
        studies.CorrectionStudyConfig.from_toml(tmp_path / "c.json")


def test_unknown_quadrupole_is_named(tmp_path):
    config = studies.DegeneracyStudyConfig(lattice=NSLS2, quadrupole_a="QX9")
    with pytest.raises(ValueError, match="quadrupole_a 'QX9' is not among the fitted"):
        studies.run_degeneracy_study(config, tmp_path, progress=None)
