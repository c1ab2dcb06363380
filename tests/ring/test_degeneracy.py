"""Degenerate quadrupoles: the paper's Eq. 17 on NSLS-II (pyAT fixture), BPM subsets, classification."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from diffdesign.ring import degeneracy as dg

FIXTURE = Path(__file__).parent / "data" / "nsls2_ql1_ql2_columns.json"


@pytest.fixture(scope="module")
def nsls2():
    """beta_x-beat columns d(Δβx/βx)/dK1 of QL1G2C01A and QL2G2C01A at the 180 BPMs."""
    data = json.loads(FIXTURE.read_text())
    a, b = (np.asarray(data["columns"][name]) for name in data["quadrupoles"])
    return data, a, b


@pytest.fixture(scope="module")
def subset(nsls2):
    _, a, b = nsls2
    return dg.orthogonal_bpm_subset(a, b, 6)


def test_eq17_reproduces_the_nsls2_correlation(nsls2):
    data, a, b = nsls2
    assert data["n_bpm"] == 180 and a.shape == (180,)
    assert data["normal_quadrupole_number"] == {"QL1G2C01A": 10, "QL2G2C01A": 11}  # as the paper
    pearson = float(dg.column_correlation(np.stack([a, b], 1))[0, 1])
    cosine = float(dg.column_correlation(np.stack([a, b], 1), centred=False)[0, 1])
    # README: 0.9897 (the paper: 0.9896). Both definitions agree to 1e-5 over the whole
    # ring (a beta-beat has almost no mean), so this number cannot tell them apart.
    assert abs(pearson - 0.9897) < 5e-4
    assert abs(cosine - 0.9897) < 5e-4
    np.testing.assert_allclose(pearson, data["pearson_correlation"], rtol=1e-12)
    np.testing.assert_allclose(cosine, data["cosine_correlation"], rtol=1e-12)


def test_column_correlation_matches_numpy(rng):
    J = rng.normal(size=(40, 5)) + 3.0  # a large mean separates Pearson from the cosine
    J[:, 3] = 0.0
    pearson = np.asarray(dg.column_correlation(J))
    cosine = np.asarray(dg.column_correlation(J, centred=False))
    seen = [0, 1, 2, 4]
    np.testing.assert_allclose(pearson[np.ix_(seen, seen)], np.corrcoef(J[:, seen].T), rtol=1e-12)
    unit = J[:, seen] / np.linalg.norm(J[:, seen], axis=0)
    np.testing.assert_allclose(cosine[np.ix_(seen, seen)], unit.T @ unit, rtol=1e-12)
    # A column nobody sees correlates with nothing (and with itself: 1).
    np.testing.assert_array_equal(pearson[3], [0, 0, 0, 1, 0])


def test_degenerate_pairs(rng):
    base = rng.normal(size=(50, 4))
    J = np.column_stack(
        [
            base[:, 0],
            base[:, 1],
            base[:, 1] + 0.05 * rng.normal(size=50),  # near-copy of column 1
            base[:, 2],
            -base[:, 0] + 0.2 * rng.normal(size=50),  # anti-correlated with column 0
            base[:, 3],
        ]
    )
    pairs = dg.degenerate_pairs(J, 0.95, names=list("ABCDEF"))
    assert [(p.i, p.j) for p in pairs] == [(1, 2), (0, 4)]
    assert pairs[0].correlation > 0.99 and pairs[1].correlation < -0.95
    assert (pairs[0].name_i, pairs[0].name_j) == ("B", "C")
    assert [(p.i, p.j) for p in dg.degenerate_pairs(J, 0.95, neighbours_only=True)] == [(1, 2)]


def test_subset_is_near_orthogonal_and_keeps_signal(nsls2, subset):
    _, a, b = nsls2
    indices = np.asarray(subset.indices)
    assert indices.shape == (6,) and len(set(indices.tolist())) == 6
    assert np.all(np.diff(indices) > 0) and indices.min() >= 0 and indices.max() < 180
    assert abs(float(subset.correlation)) < 0.1  # the paper: 0.0612 at its subset
    np.testing.assert_allclose(
        subset.correlation, np.corrcoef(a[indices], b[indices])[0, 1], atol=1e-12
    )
    assert bool(subset.meets_signal_requirement)
    relative = [np.std(x[indices]) / np.std(x) for x in (a, b)]
    np.testing.assert_allclose(subset.relative_rms, relative, rtol=1e-10)
    assert min(relative) >= 0.1


def test_subset_search_beats_random_sampling(nsls2, subset):
    """Among 50 000 random 6-subsets, none is better than the search's."""
    _, a, b = nsls2
    rng = np.random.default_rng(7)
    picks = np.argsort(rng.random((50_000, 180)), axis=1)[:, :6]
    xa, xb = a[picks], b[picks]
    xa, xb = xa - xa.mean(1, keepdims=True), xb - xb.mean(1, keepdims=True)
    corr = np.sum(xa * xb, 1) / np.sqrt(np.sum(xa**2, 1) * np.sum(xb**2, 1))
    feasible = (xa.std(1) >= 0.1 * a.std()) & (xb.std(1) >= 0.1 * b.std())
    assert feasible.sum() > 1000
    assert abs(float(subset.correlation)) <= np.min(np.abs(corr[feasible]))


def test_subset_respects_eligibility_and_the_signal_trade_off(nsls2, subset):
    _, a, b = nsls2
    eligible = np.ones(180, dtype=bool)
    eligible[np.asarray(subset.indices)] = False
    other = dg.orthogonal_bpm_subset(a, b, 6, eligible=eligible)
    assert not set(np.asarray(other.indices).tolist()) & set(np.asarray(subset.indices).tolist())
    assert abs(float(other.correlation)) < 0.1
    # Demanding half of the ring-wide signal makes near-orthogonality impossible for
    # columns that correlate at 0.99: the search reports the best it can (about 0.93).
    strict = dg.orthogonal_bpm_subset(a, b, 6, min_relative_rms=0.5)
    assert bool(strict.meets_signal_requirement)
    assert 0.8 < abs(float(strict.correlation)) < 0.99


def test_responsive_bpms():
    a = np.array([1.0, 0.01, 0.0, -2.0])
    b = np.array([0.0, 0.02, 0.001, 0.0])
    mask = dg.responsive_bpms(a, b, error_size=0.01, noise_sigma=1e-3, min_snr=2.0)
    np.testing.assert_array_equal(mask, [True, False, False, True])


def test_classify_single_source_on_orthogonal_candidates(rng):
    a = np.array([1.0, -1.0, 2.0, 0.5, -0.5, -1.0])
    b = np.array([1.0, 1.0, -0.2, -1.0, 0.3, -1.1])
    b = b - (np.dot(b - b.mean(), a - a.mean()) / np.sum((a - a.mean()) ** 2)) * (a - a.mean())
    assert abs(np.corrcoef(a, b)[0, 1]) < 1e-12
    patterns = 0.7 * b + 0.1 * rng.normal(size=(300, 6)) + rng.normal(size=(300, 1))  # offsets
    result = dg.classify_single_source(patterns, a, b)
    assert int(result.source) == 1 and float(result.probability_a) < 1e-6
    assert float(result.votes_a) < 0.05
    assert np.mean(result.correlation_b) > 0.9 and abs(np.mean(result.correlation_a)) < 0.1


def test_degeneracy_experiment_reproduces_the_papers_picture(nsls2, subset):
    """A 1 % K1 error of one quadrupole, 800 measurements with 0.1 % beat noise per BPM."""
    _, a, b = nsls2
    error_size, noise, key = 0.016, 1e-3, jax.random.key(3)
    for true_source in (0, 1):
        run = dg.degeneracy_experiment(
            a, b, subset.indices, true_source, error_size, noise, 800, key
        )
        r_true, r_other = (
            (run.subset.correlation_a, run.subset.correlation_b)
            if true_source == 0
            else (run.subset.correlation_b, run.subset.correlation_a)
        )
        # At the subset the histograms separate: near 1 for the source, near 0 otherwise.
        assert float(np.mean(r_true)) > 0.8 and abs(float(np.mean(r_other))) < 0.05
        assert float(run.subset_accuracy) > 0.99
        assert int(run.subset.source) == true_source
        # Over all BPMs both candidates correlate alike (their columns do, at 0.99): the
        # histograms overlap and cannot be told apart by eye ...
        gap = abs(float(np.mean(run.all_bpms.correlation_a - run.all_bpms.correlation_b)))
        assert gap < 0.015
        # ... yet the all-BPM correlation test, the likelihood-ratio test for white noise
        # and exact responses, is no less accurate: the subset's gain is legibility.
        assert int(run.all_bpms.source) == true_source
        assert float(run.all_bpms_accuracy) >= float(run.subset_accuracy)
    # Where the subset signal drowns in noise, its per-measurement votes fail first.
    noisy = dg.degeneracy_experiment(a, b, subset.indices, 0, error_size, 1e-2, 800, key)
    assert float(noisy.signal_to_noise[0]) < 0.3
    assert float(noisy.subset_accuracy) < 0.7 < float(noisy.all_bpms_accuracy)


def test_bad_inputs(nsls2):
    _, a, b = nsls2
    with pytest.raises(ValueError, match="jacobian must be a non-empty 2-D"):
        dg.column_correlation(a)
    with pytest.raises(ValueError, match="jacobian must be finite"):
        dg.column_correlation(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="threshold must lie in"):
        dg.degenerate_pairs(np.eye(3), 1.5)
    with pytest.raises(ValueError, match="names must have one entry per column"):
        dg.degenerate_pairs(np.eye(3), names=["a"])
    with pytest.raises(ValueError, match="column_a and column_b must have the same shape"):
        dg.orthogonal_bpm_subset(a, b[:10], 6)
    with pytest.raises(ValueError, match="k must be an integer >= 3"):
        dg.orthogonal_bpm_subset(a, b, 2)
    with pytest.raises(ValueError, match="exceeds the number of eligible BPMs"):
        dg.orthogonal_bpm_subset(a, b, 6, eligible=np.arange(180) < 4)
    with pytest.raises(ValueError, match="eligible must be a bool array"):
        dg.orthogonal_bpm_subset(a, b, 6, eligible=np.ones(180))
    with pytest.raises(ValueError, match="column_a must not be constant"):
        dg.orthogonal_bpm_subset(np.ones(180), b, 6)
    with pytest.raises(ValueError, match="min_relative_rms must lie in"):
        dg.orthogonal_bpm_subset(a, b, 6, min_relative_rms=1.0)
    with pytest.raises(ValueError, match=r"measured_patterns must have shape \(n_meas, 6\)"):
        dg.classify_single_source(np.ones((5, 4)), a[:6], b[:6])
    with pytest.raises(ValueError, match="subset must hold distinct indices"):
        dg.degeneracy_experiment(a, b, [1, 1, 2], 0, 0.01, 1e-3, 10, jax.random.key(0))
    with pytest.raises(ValueError, match="true_source must be 0"):
        dg.degeneracy_experiment(a, b, [1, 2, 3], 2, 0.01, 1e-3, 10, jax.random.key(0))
    with pytest.raises(ValueError, match="noise_sigma must be > 0"):
        dg.degeneracy_experiment(a, b, [1, 2, 3], 0, 0.01, 0.0, 10, jax.random.key(0))
