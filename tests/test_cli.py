"""The command line: the README's main job runs, writes its files and rejects bad input."""

import json

import numpy as np

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
    assert "sigma_x" in capsys.readouterr().out


def test_ares_track_rejects_out_of_range_settings(tmp_path, capsys):
    assert main(["ares", "track", "--q2", "45", "--out", str(tmp_path)]) == 2
    assert "--q2 (1/m^2) must lie in [-30.0, 30.0]; got 45.0" in capsys.readouterr().err
    assert not (tmp_path / "screen_beam.json").exists()


def test_benchmark_smoke(tmp_path):
    """The benchmark script runs end to end on tiny sizes (its figures come from full runs)."""
    report = run_smoke("beamline_vs_cheetah.py", tmp_path / "bench.json")
    for entry in report["results"].values():
        assert entry["speedup"] > 0
        assert entry.get("max_relative_difference", 0.0) < 1e-9
