"""benchmarks/space_charge.py --smoke: the three models run on one beam and the report's
figures are its own."""

import pytest

from tests.script_helpers import run_smoke

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)


def test_space_charge_benchmark_smoke(tmp_path):
    report = run_smoke("space_charge.py", tmp_path / "space_charge.json")
    results = report["results"]
    reference = results["reference"]
    # space charge grows the beam: the reference's exit sizes beat the charge-free ones
    for plane in ("sigma_x", "sigma_y"):
        assert reference["exit"][plane] > 1.1 * reference["no_space_charge"][plane]
    runs = (*results["envelope"].values(), *results["ours"].values(), *results["cheetah"].values())
    for run in runs:
        for plane, error in run["relative_error"].items():
            assert error == pytest.approx(abs(run["exit"][plane] / reference["exit"][plane] - 1))
            assert error < 0.05  # every model within 5% of the converged particle run
    ratio = results["envelope_cost_ratio"]
    chosen = results["ours"][ratio["particle_run"]]
    envelope = results["envelope"][ratio["envelope_run"]]
    assert ratio["ratio_particle_over_envelope"] == pytest.approx(
        chosen["timing"]["median_s"] / envelope["timing"]["median_s"]
    )
    memory = results["gradient_memory"]
    assert set(memory["checkpointed_2"]) == set(memory["every_kick"]) == {"2", "4"}
