"""The camera-in-the-loop design study (experiments/joint/screen_lgso.py) in its smoke size."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from experiments.joint import screen_lgso

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)

#: |black-box loss - idealised model loss| allowed for the idealised design: the idealised
#: screen and the camera share the photon and jitter constants, so for beams inside the
#: field of view their scatters agree within saturation effects (measured std ratios
#: 0.87 .. 1.07 per observable), i.e. ln of the bound within ~0.15, plus the Monte Carlo
#: error of 64 shots per std (~9 % each, ~0.05 on the loss): 0.25.
CONSISTENCY = 0.25


def test_smoke_writes_every_method_with_finite_values(tmp_path):
    args = argparse.Namespace(smoke=True, out=str(tmp_path), seed=None, quiet=True, config=None)
    summary = screen_lgso.run(args)
    assert set(screen_lgso.METHODS) <= set(summary.figures)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [c["name"] for c in results["verdict"]["checks"]] == [
        *(f"black-box loss, {name} vs published" for name in screen_lgso.METHODS),
        "black-box calls, cma_es", "black-box calls, numerical", "finite scores"]  # fmt: skip
    assert (tmp_path / "black_box_loss.png").stat().st_size > 0
    for name in screen_lgso.METHODS:
        record = results["methods"][name]
        for field in ("black_box_loss", "rms_bound_um", "cost_keur", "wall_s"):
            assert math.isfinite(record[field]), (name, field, record[field])
        assert record["black_box_calls"] >= 0
    assert results["methods"]["cma_es"]["black_box_calls"] > 0
    assert results["methods"]["numerical"]["black_box_calls"] > 0
    assert results["methods"]["surrogate"]["black_box_calls"] == 200_000
    consistency = results["idealised_consistency"]
    assert abs(consistency["difference"]) < CONSISTENCY, consistency
    sweep = results["surrogate_sweep"]
    assert [r["rows"] for r in sweep["sizes"]] == list(screen_lgso.SMOKE["surrogate_rows"])
    threshold = results["target"]["within_10pc_threshold"]
    for record in sweep["sizes"]:
        for field in ("black_box_loss", "training_s", "design_wall_s", "ratio_to_better_baseline"):
            assert math.isfinite(record[field]), (field, record[field])
        assert record["black_box_calls"] == record["rows"]
        assert record["within_10pc"] == (record["black_box_loss"] <= threshold)
        low, high = record["ratio_bracket"]
        assert low <= high == record["ratio_to_better_baseline"]
        assert record["five_times_fewer"] == (record["within_10pc"] and high >= screen_lgso.FEWER)
        # trained into the run's folder, never into surrogates/
        assert (tmp_path / "surrogates" / f"ares_screen_{record['rows']}" / "card.json").exists()
    crossing = sweep["better_baseline_crossing"]
    assert crossing["at_most"] is None or crossing["after"] < crossing["at_most"]
