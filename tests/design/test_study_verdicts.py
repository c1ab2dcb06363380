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
