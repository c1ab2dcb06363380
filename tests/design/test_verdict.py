"""Verdicts: each check passes and fails where its threshold says, studies flag the
suspicious results issue 26 lists, and the command prints the block."""

import math

import numpy as np
import pytest

from diffdesign.cli import _print_summary
from diffdesign.core.verdict import (
    Check,
    StudySummary,
    Verdict,
    all_finite,
    at_bounds,
    bound_below,
    chi2_per_dof,
    converged,
    correlations,
    coverage,
    divergences,
    improved,
    rhat,
    values_at_bounds,
    within_budget,
)


@pytest.mark.parametrize(
    ("chi2", "dof", "passed"),
    [(100.0, 100, True), (530.0, 100, False), (20.0, 100, False), (math.nan, 100, False)],
)
def test_chi2_per_dof(chi2, dof, passed):
    check = chi2_per_dof(chi2, dof)
    assert check.passed is passed
    assert f"for {dof} dof" in check.detail


def test_bound_below_flags_an_estimate_under_its_bound():
    # INFERNO smoke: "optimal classifier" 14.55 below the "analytic bound" 15.14
    assert not bound_below("b", 15.14, 14.55).passed
    assert bound_below("b", 15.14, 15.2).passed
    assert bound_below("b", 15.14, 15.0, tolerance=0.01).passed


def test_improved_and_budget():
    assert improved("loss", 1.0, 0.5).passed
    assert not improved("loss", 0.5, 0.7).passed
    assert not improved("loss", 0.5, math.nan).passed
    assert within_budget("b", 10.05, 10.0).passed  # 1 % tolerance
    assert not within_budget("b", 10.5, 10.0).passed


def test_correlations_name_the_worst_pair():
    c = np.eye(3)
    c[1, 2] = c[2, 1] = -0.9999
    c[0, 1] = c[1, 0] = 0.5
    check = correlations(c, ["D0", "contrast", "offset"])
    assert not check.passed
    assert "contrast-offset -0.9999" in check.detail
    assert correlations(np.eye(2), ["a", "b"]).passed


def test_at_bounds_from_names_and_from_values():
    check = at_bounds(["a", "c"], 3)
    assert (check.name, check.passed, check.detail) == ("parameters at bounds", False, "a, c")
    assert at_bounds([], 3).detail == "none of 3" and at_bounds([], 3).passed
    named = at_bounds(["q1 dx"], 6, "offsets at bounds", "widen the bound")
    assert (named.name, named.to_json()["advice"]) == ("offsets at bounds", "widen the bound")
    # the values-vs-bounds form is the same check
    check = values_at_bounds({"a": 1.0, "b": 0.5}, {"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0})
    assert check == at_bounds(["a"], 2)
    assert values_at_bounds({"a": 0.5}, {"a": 0.0}, {"a": 1.0}).passed
    assert not values_at_bounds({"a": -1e9}, {"a": -math.inf}, {"a": 0.0}, rtol=1.0).passed


def test_converged_divergences_and_coverage():
    assert converged("fit", True, 12, "more steps").detail == "converged after 12 steps"
    assert not converged("fit", False, 100, "more steps").passed
    assert divergences(0).passed and not divergences(3).passed
    assert coverage("coverage", 0.94, 0.95, 1000).passed
    assert not coverage("coverage", 0.70, 0.95, 1000).passed
    assert not coverage("coverage", math.nan, 0.95, 1000).passed
    # few trials widen the allowance by two binomial standard errors
    assert coverage("coverage", 0.82, 0.95, 20).passed
    assert not coverage("coverage", 0.82, 0.95, 2000).passed


def test_bound_below_tolerance_with_negative_estimates():
    # a minimum of -0.858 and a best value found of -0.86 (noise of the estimate)
    assert not bound_below("b", -0.858, -0.86).passed
    assert bound_below("b", -0.858, -0.86, tolerance=0.01).passed


def test_rhat_and_finite():
    assert rhat({"D0": 1.005, "alpha": 1.0}).passed
    bad = rhat({"D0": 1.005, "alpha": 1.2})
    assert not bad.passed and "alpha 1.200" in bad.detail
    assert not all_finite("rows", [1.0, math.nan]).passed
    assert all_finite("rows", [1.0, 2.0]).passed


def test_verdict_block_and_json():
    verdict = Verdict((Check("a", True, "fine"),)) + Check("b", False, "bad", "try this")
    assert [c.name for c in verdict.flagged] == ["b"]
    assert verdict.to_json() == {
        "flagged": 1,
        "checks": [
            {"name": "a", "passed": True, "detail": "fine", "advice": ""},
            {"name": "b", "passed": False, "detail": "bad", "advice": "try this"},
        ],
    }
    lines = verdict.lines()
    assert lines[0] == "verdict: 1 of 2 checks flagged"
    assert lines[1].split() == ["ok", "a", "fine"]
    assert lines[2].split() == ["FLAG", "b", "bad"]
    assert lines[3].strip() == "-> try this"
    assert Verdict().lines() == []


def test_command_prints_figures_then_verdict(capsys):
    _print_summary(StudySummary({"final chi2": "530 for 100 dof"},
                                Verdict((chi2_per_dof(530.0, 100),))))  # fmt: skip
    out = capsys.readouterr().out
    assert "final chi2  530 for 100 dof" in out
    assert "verdict: 1 of 1 checks flagged" in out
    assert out.index("final chi2") < out.index("verdict")
    _print_summary({"plain": "dict"})  # a study returning its figures alone
    assert "plain  dict" in capsys.readouterr().out


# ------------------------------------------------------------------ the studies' verdicts


def test_loco_verdict_flags_a_chi2_of_five_per_dof():
    from experiments.ring._loco import loco_verdict

    summary = {"final_chi2": 5.3 * 1000, "degrees_of_freedom": 1000, "rms_z_score": 1.1,
               "max_abs_z_score": 3.0}  # fmt: skip
    verdict = loco_verdict(summary)
    assert [c.name for c in verdict.flagged] == ["chi2/dof"]
    assert not loco_verdict({**summary, "final_chi2": 1000.0}).flagged


def test_muography_verdicts_flag_a_worse_design_and_a_cost_over_budget():
    from experiments.muography._studies import design_verdict, sweep_verdict

    results = {"config": {"loss": "x0_error"},
               "validation": {"initial": {"x0_error": 0.2}, "final": {"x0_error": 0.3}}}  # fmt: skip
    assert not design_verdict(results).checks[0].passed
    rows = {"rows": [{"budget": 5.0, "cost": 4.9}, {"budget": 10.0, "cost": 12.0}]}
    assert [c.name for c in sweep_verdict(rows).flagged] == ["budget 10"]


def test_inferno_verdict_flags_an_estimate_below_the_bound_and_nan_rows():
    from experiments.inferno._study import study_verdict

    q = {"median": 15.5, "q16": 15.0, "q84": 16.0}
    results = {"rows": {"analytic": [15.14], "optimal_classifier": [14.55],
                        "classifier": [{**q, "median": math.nan}]},
               "matching_inferno": {"0": q}}  # fmt: skip
    flagged = {c.name for c in study_verdict(results).flagged}
    assert flagged == {"bound <= optimal classifier, benchmark 0", "finite medians"}


def test_xpcs_verdict_flags_contrast_offset_degeneracy_and_rhat():
    from experiments.xpcs._job import fit_verdict

    names = ["D0", "alpha", "D_offset", "contrast", "offset"]
    c = np.eye(5)
    c[3, 4] = c[4, 3] = -0.9999
    nlsq = {"parameters": dict.fromkeys(names, 1.0), "correlation": c.tolist(),
            "converged": True, "num_steps": 12, "chi2": 1010.0, "n_points": 1005,
            "at_bound": []}  # fmt: skip
    cmc = {"parameters": {n: {"r_hat_max": 1.0} for n in names}, "divergences": 0}
    verdict = fit_verdict({"nlsq": nlsq, "cmc": cmc})
    assert [c.name for c in verdict.flagged] == ["correlation"]
    cmc["parameters"]["alpha"]["r_hat_max"] = 1.05
    assert {c.name for c in fit_verdict({"nlsq": nlsq, "cmc": cmc}).flagged} == {
        "correlation", "R-hat"}  # fmt: skip


def ares_calibration(**changes) -> dict:
    """A calibration object of results.json (``CalibrationResult.to_json``'s layout)."""
    return {"quadrupoles": ["AREAMQZM1", "AREAMQZM2", "AREAMQZM3"],
            "at_bound": [[False, False], [False, False], [False, False]],
            "converged": True, "num_steps": 9, "chi2": 40.0, "dof": 42,
            "identifiability": {"correlation": np.eye(6).tolist()}} | changes  # fmt: skip


def test_ares_calibration_verdict_flags_offsets_at_their_bounds():
    from experiments.ares._study import calibration_verdict

    verdict = calibration_verdict(ares_calibration(), 1e-5)
    assert [c.name for c in verdict.checks] == [
        "calibration", "offsets at bounds", "correlation", "chi2/dof"]  # fmt: skip
    assert not verdict.flagged
    bad = calibration_verdict(
        ares_calibration(at_bound=[[True, False], [False, False], [False, True]]), 0.0
    )
    assert [c.name for c in bad.flagged] == ["offsets at bounds"]
    assert bad.flagged[0].detail == "AREAMQZM1 dx, AREAMQZM3 dy"
    assert "chi2/dof" not in {c.name for c in bad.checks}  # noise-free: chi2 ~ 0 by design
