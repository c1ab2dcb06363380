"""The ``diffdesign xpcs fit`` job: the packaged example end to end, and config errors."""

import json

import h5py
import numpy as np
import pytest

from diffdesign.cli import main
from diffdesign.xpcs.examples import example_path
from experiments.xpcs._job import load_job


@pytest.mark.smoke
def test_cli_fits_the_packaged_example(tmp_path, capsys):
    assert main(["xpcs", "fit", "--example", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "nlsq: converged" in printed
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "fit.png").stat().st_size > 10_000
    assert results["data"]["n_phi"] == 3 and results["data"]["n_t"] == 100
    assert results["model"]["mode"] == "laminar_flow"
    nlsq = results["nlsq"]
    with h5py.File(example_path("laminar_flow_example.h5")) as f:
        truth = dict(f.attrs)
    for name in ("D0", "alpha", "gamma_dot_t0", "beta", "phi0"):
        error = abs(nlsq["parameters"][name] - truth[name])
        assert error < 3.5 * nlsq["std"][name], (name, nlsq["parameters"][name], truth[name])
    assert nlsq["reduced_chi2"] == pytest.approx(1.0, abs=0.1)  # sigma estimated from data
    assert results["cmc"] is None


def _config(tmp_path, text):
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fit]\nx = 1\n", "unknown table\\(s\\) \\['fit'\\]"),
        ("[model]\nmode = 'flow'\n", "\\[model\\] mode must be one of"),
        ("[model]\nscaling = 'auto'\n", "\\[model\\] scaling must be one of"),
        ("[model]\ninitial = { tau = 1.0 }\n", "unknown parameter 'tau'"),
        ("[model]\nbounds = { D0 = [5.0, 1.0] }\n", "bounds\\['D0'\\] must be finite"),
        ("[nlsq]\nn_starts = 0\n", "\\[nlsq\\] n_starts must be >= 1"),
        ("[nlsq]\nsolver = 'lm'\n", "\\[nlsq\\] solver must be one of"),
        ("[cmc]\nnum_samples = 0\n", "\\[cmc\\] num_samples must be >= 1"),
        ("[cmc]\nn_shards = 1.5\n", "n_shards in \\[cmc\\] must be of type int"),
        ("[cmc]\nthin = 2\n", "unknown key\\(s\\) \\['thin'\\]"),
    ],
)
def test_bad_configs_are_named_before_any_work(tmp_path, text, message):
    data = example_path("laminar_flow_example.h5")
    with pytest.raises(ValueError, match=message):
        load_job(data, _config(tmp_path, text))


def test_cli_reports_bad_input_as_an_error(tmp_path, capsys):
    config = _config(tmp_path, "[model]\nmode = 'flow'\n")
    data = example_path("laminar_flow_example.h5")
    assert main(["xpcs", "fit", str(data), "--config", str(config)]) == 2
    assert "mode must be one of" in capsys.readouterr().err


def test_job_without_data_is_named(tmp_path):
    with pytest.raises(ValueError, match="no data"):
        load_job(None, _config(tmp_path, "[model]\nmode = 'static'\n"))


def test_mode_on_the_command_line_wins(tmp_path):
    job = load_job(example_path("laminar_flow_example.h5"), None, "static")
    assert job.model.mode == "static"
    assert np.isclose(job.nlsq.n_starts, 32)


def test_missing_data_file_leaves_no_output_folder(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["xpcs", "fit", str(tmp_path / "missing.h5"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()
