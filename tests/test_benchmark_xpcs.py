"""The XPCS benchmark against homodyne runs end to end (its figures come from full runs).

The smoke run skips the peer (homodyne needs its own Python 3.12 environment, absent in CI):
``--peer-python`` points at a file that does not exist.
"""

import json
import math
import subprocess
import sys

import pytest

from .script_helpers import ROOT

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)

TIMING_KEYS = ("first_call_s", "median_s", "min_s", "compile_s", "reps")


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _run_smoke(tmp_path) -> dict:
    out = tmp_path / "xpcs_vs_homodyne.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "xpcs_vs_homodyne.py"),
        "--smoke",
        "--out",
        str(out),
        "--peer-python",
        str(tmp_path / "no-homodyne-python"),
    ]
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return json.loads(out.read_text())


def _check_accuracy(accuracy: dict, truth: dict) -> None:
    assert set(accuracy["parameters"]) == set(truth)
    for name, entry in accuracy["parameters"].items():
        assert entry["truth"] == truth[name]
        assert math.isfinite(entry["fit"])
        assert _positive(entry["std"])
        assert entry["abs_error"] == abs(entry["fit"] - truth[name])
        assert math.isfinite(entry["z"])
    assert accuracy["summary"]["max_abs_z"] >= 0
    assert accuracy["summary"]["z_available_for"] == len(truth)


def test_xpcs_benchmark_smoke(tmp_path):
    report = _run_smoke(tmp_path)
    assert report["smoke"] is True
    assert report["machine"]["cpu_count"] > 0
    assert report["versions"]["diffdesign"]["jax"]
    assert report["versions"]["homodyne"] is None
    datasets = report["datasets"]
    assert set(datasets) == {"A", "B"}
    assert set(report["ratios"]) == {"A", "B"}
    assert (datasets["A"]["mode"], datasets["A"]["n_phi"]) == ("static", 1)
    assert (datasets["B"]["mode"], datasets["B"]["n_phi"]) == ("laminar_flow", 3)

    for entry in datasets.values():
        assert entry["n_t"] == 40
        assert entry["n_points_one_triangle"] == entry["n_phi"] * 40 * 39 // 2
        assert entry["homodyne"]["status"].startswith("skipped")
        truth_objective = entry["truth_objective"]
        assert _positive(truth_objective["reduced_chi2"])

        fit = entry["diffdesign"]["nlsq"]["normal-equations"]
        assert fit["status"] == "ok", fit
        assert fit["cold_process"]["process"] == "ok"
        assert _positive(fit["first_call_s"]) and _positive(fit["steady_s"])
        assert set(TIMING_KEYS) <= set(fit["timing"])
        assert fit["steady_s"] == fit["timing"]["median_s"]
        # the fresh process and this one fit the same data to the same answer
        assert fit["cold_vs_steady_max_relative_difference"] < 1e-6
        _check_accuracy(fit["accuracy"], entry["truth"])
        # the objective is the fit's own chi^2 (the same one-triangle likelihood)
        assert math.isclose(fit["objective"]["chi2"], fit["result"]["chi2"], rel_tol=1e-9)
        # no peer: the ratios exist but are empty
        assert entry["ratios"]["nlsq_first_call"] is None
        assert entry["ratios"]["nlsq_steady_state"] is None

    cmc = datasets["A"]["diffdesign"]["cmc"]
    assert cmc["cmc_status"] == "ok"
    assert (cmc["num_warmup"], cmc["num_samples"], cmc["num_chains"]) == (30, 30, 2)
    assert cmc["n_shards"] == 1
    assert _positive(cmc["wall_s"]) and _positive(cmc["sampling_wall_s"])
    assert _positive(cmc["ess_bulk_min"]) and _positive(cmc["ess_per_s"])
    assert _positive(cmc["rhat_max"])
    assert cmc["divergences"] >= 0
    _check_accuracy(cmc["accuracy"], datasets["A"]["truth"])
    assert datasets["A"]["homodyne"]["cmc"]["cmc_status"].startswith("skipped")
    assert "cmc" not in datasets["B"]["diffdesign"]
    assert "| A: static" in report["markdown"]
