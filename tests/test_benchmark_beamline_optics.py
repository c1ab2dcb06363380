"""benchmarks/beamline_optics.py --smoke: both cases run, agree with their peers, and the
report's ratios are its own timings'."""

import pytest

from tests.script_helpers import run_smoke

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)


def test_beamline_optics_benchmark_smoke(tmp_path):
    results = run_smoke("beamline_optics.py", tmp_path / "beamline_optics.json")["results"]
    line, ring = results["a_twiss_along_line"], results["b_periodic_ring"]
    assert (line["elements"], line["settings"]) == (78, 30)  # 10 cells of 3 quadrupoles
    assert line["max_relative_difference"] < 1e-12  # Cheetah's tracked beam
    assert ring["elements"] == 238  # one NSLS-II superperiod
    assert ring["beta_relative_difference_pyat_400_steps"] < 1e-9
    assert ring["phase_difference_rad_pyat_400_steps"] < 1e-9
    assert ring["dispersion_difference_m_pyat_400_steps"] < 1e-9
    assert ring["tunes_per_cell"] == pytest.approx([2.21475, 1.08399], abs=1e-5)
    for entry, peer in ((line, "cheetah"), (ring, "pyat")):
        ratio = entry[peer]["median_s"] / entry["diffdesign"]["median_s"]
        assert entry[f"speedup_over_{peer}"] == pytest.approx(ratio)
