"""benchmarks/long_lattice.py --smoke: every case runs, gives Cheetah's beam, and the
report's ratios are its own timings'."""

import pytest

from tests.script_helpers import run_smoke

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)


def test_long_lattice_benchmark_smoke(tmp_path):
    results = run_smoke("long_lattice.py", tmp_path / "long_lattice.json")["results"]
    assert set(results) == {"a_four_correctors", "b_every_quadrupole", "c_batch_10",
                            "d_cost_against_length", "e_ares_linac", "f_particles"}  # fmt: skip
    particles = results.pop("f_particles")
    assert (particles["elements"], particles["particles"], particles["kicks"]) == (78, 1000, 64)
    plain = particles["no_space_charge"]
    assert plain["sigma_x_relative_difference"] < 1e-12  # Cheetah's particles
    assert plain["speedup_over_cheetah"] == pytest.approx(
        plain["cheetah"]["median_s"] / plain["diffdesign"]["median_s"]
    )
    assert results["e_ares_linac"]["elements"] == 195
    assert results["b_every_quadrupole"]["settings"] == 30  # 10 cells of 3 quadrupoles
    for name, entry in results.items():
        if name == "d_cost_against_length":
            assert list(entry) == ["43", "78"]
            for row in entry.values():
                ratio = row["cheetah"]["median_s"] / row["diffdesign"]["median_s"]
                assert row["speedup"] == pytest.approx(ratio)
            continue
        assert entry["max_relative_difference"] < 1e-12  # the same beam as Cheetah's
        for peer in ("cheetah", "cheetah_merged"):
            if peer in entry:
                ratio = entry[peer]["median_s"] / entry["diffdesign"]["median_s"]
                assert entry[f"speedup_over_{peer}"] == pytest.approx(ratio)
