"""The verdicts of the studies that gained one late (ring correct, degeneracy and optics;
ares calibrate, track and tune; joint ares, screen_lgso and screen_surrogate; lgso
benchmarks; muography image): each names its checks and flags a deliberately bad result.
Pure functions of the results' layout: the studies themselves run in their own tests."""

from __future__ import annotations

import math


def names(verdict) -> list[str]:
    return [c.name for c in verdict.checks]


def flagged(verdict) -> set[str]:
    return {c.name for c in verdict.flagged}


# ------------------------------------------------------------------------------------ ring


def ring_correction(**changes) -> dict:
    metric = {"rms_beta_beat_x": 0.08, "rms_beta_beat_y": 0.04, "rms_error_relative": 1e-3}
    after = {"rms_beta_beat_x": 0.002, "rms_beta_beat_y": 0.002, "rms_error_relative": 6e-4}
    quartiles = {name: {k: {"median": v} for k, v in m.items()}
                 for name, m in (("before", metric), ("bayes", after))}  # fmt: skip
    # 2 observables x 100 BPMs = 200 rows, 40 directions kept: whitened rms 0.9 -> chi2/dof 1.01
    machine = {"residual": [[30.0, 31.0], [0.9, 1.0]], "effective_cut": [40]}
    return {"config": {"observables": ["beta_x", "beta_y"]}, "lattice": {"n_bpm": 100},
            "estimator_rows": ["bayes", "pinv"], "machines": [machine, machine],
            "summary": quartiles, "per_estimator": {"bayes": [[0.1, 0.2]]}} | changes  # fmt: skip


def test_ring_correction_verdict_flags_misfit_worse_beat_and_nan():
    from experiments.ring._studies import correction_verdict

    good = correction_verdict(ring_correction())
    assert names(good) == ["chi2/dof", "beta-beat x after bayes", "beta-beat y after bayes",
                           "K1 error after bayes", "finite metrics"]  # fmt: skip
    assert not good.flagged
    assert "for 320 dof" in good.checks[0].detail
    bad = ring_correction(
        machines=[{"residual": [[30.0], [3.0]], "effective_cut": [40]}],
        per_estimator={"bayes": [[0.1, math.nan]]},
    )
    bad["summary"]["bayes"]["rms_beta_beat_y"]["median"] = 0.05  # worse than before
    assert flagged(correction_verdict(bad)) == {"chi2/dof", "beta-beat y after bayes",
                                                "finite metrics"}  # fmt: skip


def ring_degeneracy() -> dict:
    source = {"source": "a", "log_likelihood_ratio": 40.0}
    return {
        "pair": {"names": ["QA", "QB"], "correlation": 0.99},
        "subset": {"indices": [1, 5, 9], "correlation": 0.01, "relative_rms": [0.2, 0.3],
                   "meets_signal_requirement": True, "min_relative_rms": 0.1},
        "classification": {"a": {"identified": True, "subset": source},
                           "b": {"identified": True, "subset": {**source, "source": "b"}}},
        "single_fault_fit": {"fitted_delta_k1": [1e-3, 2e-3], "std": [1e-4, 1e-4]},
    }  # fmt: skip


def test_ring_degeneracy_verdict_flags_a_correlated_subset_and_a_missed_source():
    from experiments.ring._studies import degeneracy_verdict

    results = ring_degeneracy()
    good = degeneracy_verdict(results)
    assert names(good) == ["|correlation| at the 3-BPM subset", "subset signal",
                           "source QA identified", "source QB identified", "finite fit"]  # fmt: skip
    assert not good.flagged
    results["subset"] |= {"correlation": -0.995, "meets_signal_requirement": False}
    results["classification"]["b"] = {"identified": False,
                                       "subset": {"source": "a", "log_likelihood_ratio": 3.0}}  # fmt: skip
    bad = degeneracy_verdict(results)
    assert flagged(bad) == {"|correlation| at the 3-BPM subset", "subset signal",
                            "source QB identified"}  # fmt: skip
    assert "the subset says QA" in bad.checks[3].detail


def test_ring_optics_verdict_flags_nan_chromaticity_and_negative_beta():
    from experiments.ring.optics import optics_verdict

    optics = {"tunes_total": [20.2, 10.3], "chromaticity": [1.0, 2.0], "beta_x_m": [3.0, 5.0],
              "beta_y_m": [2.0, 4.0], "alpha_x": [0.1, -0.1], "alpha_y": [0.0, 0.2],
              "eta_x_m": [0.1, 0.0], "etap_x": [0.0, 0.0]}  # fmt: skip
    assert names(optics_verdict(optics)) == ["finite optics", "beta > 0"]
    assert not optics_verdict(optics).flagged
    bad = optics | {"chromaticity": [math.nan, 2.0], "beta_y_m": [2.0, -1.0]}
    assert flagged(optics_verdict(bad)) == {"finite optics", "beta > 0"}


# ------------------------------------------------------------------------------------ ARES


def test_ares_track_verdict_flags_a_beam_off_the_screen():
    from experiments.ares.track import track_verdict

    beam = {"mu_x": 1e-4, "sigma_x": 2e-4, "mu_y": -1e-4, "sigma_y": 1e-4}
    good = track_verdict({"screen_beam_m": beam})
    assert names(good) == ["finite beam", "beam on the screen"] and not good.flagged
    off = track_verdict({"screen_beam_m": beam | {"mu_y": 7e-3}})
    assert flagged(off) == {"beam on the screen"}
    assert flagged(track_verdict({"screen_beam_m": beam | {"sigma_x": math.nan}})) >= {
        "finite beam"}  # fmt: skip


def test_ares_tune_verdict_flags_a_worse_objective_and_a_magnet_at_its_limit():
    from diffdesign.beamline import ares
    from experiments.ares.tune import tune_verdict

    settings = dict(zip(ares.SETTING_NAMES, [10.0, -10.0, 0.0, 10.0, 0.0], strict=True))
    beam = {"mu_x": 0.0, "sigma_x": 1e-4, "mu_y": 0.0, "sigma_y": 1e-4}
    tuned = {"settings": settings, "predicted_screen_beam_m": beam,
             "start_objective_m": 2e-4, "predicted_objective_m": 1e-6}  # fmt: skip
    good = tune_verdict(tuned)
    assert names(good) == ["predicted objective", "settings at magnet limits", "finite beam"]
    assert not good.flagged
    bad = tune_verdict(tuned | {"predicted_objective_m": 3e-4,
                                "settings": settings | {"AREAMQZM2.k1": -29.999}})  # fmt: skip
    assert flagged(bad) == {"predicted objective", "settings at magnet limits"}
    assert bad.checks[1].detail == "AREAMQZM2.k1"


# ----------------------------------------------------------------------------------- joint


def joint_ares() -> dict:
    design = {"loss": 1.0, "rms_bound_um": 1.4, "cost_keur": 23.0}
    entry = {"coverage_95": 0.96, "n_realisations": 200, "predicted_rms_bound_um": 1.4,
             "realised_rms_error_um": 1.35, "nuts": {"divergences": [0, 0]}}  # fmt: skip
    return {"chosen_cost_weight": 0.01,
            "designs": {"published": design | {"loss": 5.5}, "joint@0.01": design,
                        "geometry_then_settings@0.01": design,
                        "settings_then_geometry@0.01": design, "joint_equal_cost": design},
            "realised": {"published": dict(entry), "joint": dict(entry)}}  # fmt: skip


def test_joint_ares_verdict_flags_a_worse_design_low_coverage_and_divergences():
    from experiments.joint._ares_study import joint_verdict

    results = joint_ares()
    good = joint_verdict(results)
    assert names(good) == [
        "loss, joint vs published", "loss, geometry_then_settings vs published",
        "loss, settings_then_geometry vs published", "loss, joint_equal_cost vs published",
        "95 % coverage, published", "95 % coverage, joint", "divergences", "finite figures"]  # fmt: skip
    assert not good.flagged
    results["designs"]["joint@0.01"] = results["designs"]["joint@0.01"] | {"loss": 6.0}
    results["realised"]["joint"] |= {"coverage_95": 0.7, "nuts": {"divergences": [0, 3]}}
    assert flagged(joint_verdict(results)) == {"loss, joint vs published",
                                               "95 % coverage, joint", "divergences"}  # fmt: skip


def test_screen_lgso_verdict_flags_a_worse_design_and_calls_over_budget():
    from experiments.joint.screen_lgso import METHODS, study_verdict

    score = {"black_box_loss": 0.7, "rms_bound_um": 1.6, "cost_keur": 23.0}
    results = {"published": score | {"black_box_loss": 1.75},
               "methods": {name: score | {"black_box_calls": 1000} for name in METHODS},
               "sizes": {"budget": 45_000}, "surrogate_sweep": {"sizes": [dict(score)]}}  # fmt: skip
    good = study_verdict(results)
    assert names(good) == [*(f"black-box loss, {m} vs published" for m in METHODS),
                           "black-box calls, cma_es", "black-box calls, numerical",
                           "finite scores"]  # fmt: skip
    assert not good.flagged
    results["methods"]["numerical"] |= {"black_box_loss": 2.0, "black_box_calls": 45_001}
    results["surrogate_sweep"]["sizes"][0]["rms_bound_um"] = math.inf
    assert flagged(study_verdict(results)) == {
        "black-box loss, numerical vs published", "black-box calls, numerical", "finite scores"}  # fmt: skip


def screen_metrics() -> dict:
    on_screen = {"68": {"mu_x": 0.67, "sigma_x": 0.69, "mu_y": 0.70, "sigma_y": 0.68},
                 "95": {"mu_x": 0.95, "sigma_x": 0.93, "mu_y": 0.94, "sigma_y": 0.96}}  # fmt: skip
    return {"n_beams": 400, "repeats": 64, "on_screen_fraction": 0.7,
            "coverage": {level: {"on_screen": c} for level, c in on_screen.items()},
            "bins": [{"mean_error": {"mu_x": 0.01}, "std_error": {"mu_x": 0.1}}],
            "training": {"first_loss": -0.8, "final_loss": -7.9}}  # fmt: skip


def test_screen_surrogate_verdict_flags_no_learning_and_narrow_intervals():
    from experiments.joint.screen_surrogate import training_verdict

    metrics = screen_metrics()
    good = training_verdict(metrics)
    assert names(good) == ["training loss", "68 % coverage", "95 % coverage",
                           "finite validation"]  # fmt: skip
    assert not good.flagged and good.checks[2].detail.startswith("sigma_x: 0.930")
    metrics["training"]["final_loss"] = -0.5
    metrics["coverage"]["95"]["on_screen"]["mu_y"] = 0.80
    metrics["bins"][0]["std_error"]["mu_x"] = math.nan
    bad = training_verdict(metrics)
    assert flagged(bad) == {"training loss", "95 % coverage", "finite validation"}
    assert bad.checks[2].detail.startswith("mu_y: 0.800")


# ------------------------------------------------------------------------------------ lgso


def test_lgso_verdict_flags_a_worse_end_a_value_below_the_minimum_and_overspending():
    from experiments.lgso._study import study_verdict

    entry = {"median_start_objective": 3.6, "median_final_objective": -0.85,
             "median_best_objective": -0.857, "median_calls_spent": 30_000.0}  # fmt: skip
    results = {"config": {"problems": ["three_hump"], "budgets": [30_000.0]},
               "problems": {"three_hump": {"optimum": -0.858}},
               "summary": {"three_hump": {"lgso": dict(entry), "cma_es": dict(entry)}}}  # fmt: skip
    good = study_verdict(results)
    assert names(good) == ["objective, three_hump lgso", "objective, three_hump cma_es",
                           "three_hump: true minimum <= best found",
                           "three_hump: simulator calls", "finite objectives"]  # fmt: skip
    assert not good.flagged
    results["summary"]["three_hump"]["cma_es"] |= {
        "median_final_objective": 4.0, "median_best_objective": -0.95,
        "median_calls_spent": 31_000.0}  # fmt: skip
    assert flagged(study_verdict(results)) == {
        "objective, three_hump cma_es", "three_hump: true minimum <= best found",
        "three_hump: simulator calls"}  # fmt: skip


# ------------------------------------------------------------------------------- muography


def test_muography_image_verdict_flags_an_invisible_block_and_a_worse_likelihood():
    from experiments.muography._studies import image_verdict

    poca = {"x0_error": 0.5, "lead_median_x0_m": 0.02, "beryllium_median_x0_m": 0.3,
            "prediction_xyz_m": [[0.02, 0.3]]}  # fmt: skip
    results = {"estimators": {"poca": poca, "likelihood": poca | {"x0_error": 0.2}}}
    good = image_verdict(results)
    assert names(good) == ["finite images", "block seen, poca", "block seen, likelihood",
                           "X0 error, likelihood vs PoCA"]  # fmt: skip
    assert not good.flagged
    results["estimators"]["likelihood"] = poca | {
        "x0_error": 0.9, "lead_median_x0_m": 0.4, "prediction_xyz_m": [[math.nan, 0.3]]}  # fmt: skip
    assert flagged(image_verdict(results)) == {
        "finite images", "block seen, likelihood", "X0 error, likelihood vs PoCA"}  # fmt: skip
