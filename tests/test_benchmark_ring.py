"""The ring benchmark against pyAT runs end to end (its figures come from full runs)."""

import pytest

from .script_helpers import run_smoke

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)

pytest.importorskip("at")  # the peer; the lattices are packaged with diffdesign

TIMING_KEYS = ("first_call_s", "median_s", "min_s", "compile_s", "reps")


def _check_timing(entry: dict) -> None:
    # (no order between first call and later ones: pyAT compiles nothing, and timings of a
    # ~1 ms call on a shared machine cross)
    assert set(TIMING_KEYS) <= set(entry)
    assert entry["median_s"] > 0 and entry["min_s"] > 0 and entry["first_call_s"] > 0
    assert entry["min_s"] <= entry["median_s"]
    assert entry["compile_s"] >= 0


def test_ring_benchmark_smoke(tmp_path):
    report = run_smoke("ring_vs_pyat.py", tmp_path / "ring_vs_pyat.json")
    assert report["smoke"] is True
    assert report["machine"]["cpu_count"] > 0
    assert report["versions"]["accelerator-toolbox"]
    results = report["results"]
    assert set(results) == {"esrf", "nsls2"}

    esrf = results["esrf"]
    assert (esrf["n_elements"], esrf["n_bpms"], esrf["n_quadrupoles"]) == (1636, 224, 256)

    optics = esrf["a_linear_optics"]
    _check_timing(optics["pyat"])
    _check_timing(optics["diffdesign"])
    assert optics["ratio"] == pytest.approx(
        optics["pyat"]["median_s"] / optics["diffdesign"]["median_s"]
    )
    parity = optics["parity"]
    assert parity["beta_x"] < 1e-8 and parity["beta_y"] < 1e-8
    assert parity["mu_x"] < 1e-8 and parity["mu_y"] < 1e-8
    assert parity["eta_x"] < 1e-8
    assert parity["tunes"] < 1e-9

    jacobian = esrf["b_k1_jacobian"]
    assert jacobian["shape"] == [224, 256]
    fd = jacobian["pyat_finite_difference"]
    assert fd["extrapolated"] and fd["columns_total"] == 256
    assert fd["median_s"] == pytest.approx(fd["per_column_median_s"] * 256)
    _check_timing(jacobian["diffdesign"])
    assert set(jacobian["agreement"]) == {"beta_x", "beta_y", "mu_x", "mu_y", "eta_x", "tunes"}
    # finite differences limit the agreement: O(step^2) truncation, pyAT's roundoff
    assert jacobian["max_relative_difference"] < 1e-7
    assert jacobian["max_relative_difference_peer_step"] < 1e-5

    response = results["nsls2"]["d_orbit_response"]
    assert response["shape"] == [2, 180, 2, 360]
    _check_timing(response["pyat_analytic"])
    _check_timing(response["diffdesign"])
    assert response["pyat_finite_difference"]["columns_total"] == 360
    agreement = response["agreement"]
    assert agreement["analytic_x"] < 1e-8 and agreement["analytic_y"] < 1e-8
    assert agreement["finite_difference_x"] < 1e-6 and agreement["finite_difference_y"] < 1e-6
    assert response["coupling_m_per_rad"]["diffdesign"] < 1e-12
