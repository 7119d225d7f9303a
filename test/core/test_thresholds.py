import numpy as np
import pytest

from visual_anomaly.core import (
    ScoreNormalizer,
    Threshold,
    threshold_at_fpr,
    threshold_at_percentile,
    threshold_best_f1,
)


def test_fpr_threshold_flags_at_most_the_target_share(rng):
    normal = rng.normal(size=10_000)
    for fpr in (0.0, 0.001, 0.01, 0.05, 0.2):
        threshold = threshold_at_fpr(normal, fpr)
        flagged = np.mean(normal > threshold.value)
        assert flagged <= fpr
        assert flagged >= fpr - 2e-4
        assert threshold.method == 'fpr' and threshold.target == fpr


def test_percentile_threshold(rng):
    normal = rng.normal(size=1000)
    assert threshold_at_percentile(normal, 95).value == pytest.approx(np.percentile(normal, 95))


def test_best_f1_separates_separable_scores():
    scores = np.array([0.1, 0.2, 0.3, 0.9, 1.0, 1.1])
    labels = np.array([0, 0, 0, 1, 1, 1])
    threshold = threshold_best_f1(scores, labels)
    np.testing.assert_array_equal(scores > threshold.value, labels.astype(bool))
    assert threshold.target == pytest.approx(1.0)


def test_best_f1_refuses_a_single_class():
    # The known pitfall: without anomalies an F1 threshold flags everything.
    with pytest.raises(ValueError, match='both'):
        threshold_best_f1(np.arange(5.0), np.zeros(5))


@pytest.mark.parametrize('bad', [np.array([]), np.array([1.0, np.nan])])
def test_empty_or_nan_scores_rejected(bad):
    with pytest.raises(ValueError):
        threshold_at_fpr(bad)


def test_normalizer_is_robust_and_standardizes(rng):
    normal = rng.normal(5.0, 2.0, size=20_000)
    normalizer = ScoreNormalizer.fit(np.r_[normal, [1e6] * 50])  # a few wild outliers
    z = normalizer(normal)
    assert abs(np.median(z)) < 0.05 and abs(np.std(z) - 1) < 0.05


def test_threshold_validation():
    with pytest.raises(ValueError):
        Threshold(float('nan'))
    with pytest.raises(ValueError):
        Threshold(1.0, method='magic')
