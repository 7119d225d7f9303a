import json
import math

import numpy as np
import pytest

from visual_anomaly.core import (
    ScoreNormalizer,
    Threshold,
    threshold_at_fpr,
    threshold_at_percentile,
    threshold_best_f1,
)
from visual_anomaly.core.thresholds import (
    beta_quantile,
    calibration_shortfall,
    clopper_pearson,
    min_calibration_frames,
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


@pytest.mark.parametrize(('fpr', 'frames'), [(0.01, 1000), (0.05, 200), (0.001, 10_000), (0.03, 334), (0.0, 0)])
def test_the_minimum_frames_put_ten_frames_above_the_threshold(fpr, frames):
    assert min_calibration_frames(fpr) == frames
    assert calibration_shortfall(frames, fpr) == ''
    if frames:
        assert np.floor(fpr * frames) >= 10 and np.floor(fpr * (frames - 1)) < 10
        message = calibration_shortfall(frames - 1, fpr)
        assert f'{frames - 1} normal frames are too few' in message and f'at least {frames}' in message


def test_the_shortfall_names_the_interval_of_the_largest_score():
    # 60 frames at 1%: the threshold is the largest score, and its false-positive rate is Beta(1, 60)
    assert '0.0422-5.96% (95% CI)' in calibration_shortfall(60, 0.01)


@pytest.mark.parametrize(
    ('a', 'b', 'quantiles'),  # SciPy's beta.ppf at 0.025, 0.5 and 0.975
    [
        (1, 1, (0.025, 0.5, 0.975)),
        (1, 60, (0.0004218744523, 0.01148597965, 0.05962949229)),
        (11, 990, (0.005503594192, 0.0106649571, 0.01831324306)),
        (5, 3, (0.2904208637, 0.6358839136, 0.9010117216)),
        (101, 9900, (0.008233933708, 0.01006635065, 0.01214950489)),
        (3, 100_000, (6.186640225e-06, 2.673997822e-05, 7.224354453e-05)),
    ],
)
def test_beta_quantiles_match_scipy(a, b, quantiles):
    assert [beta_quantile(q, a, b) for q in (0.025, 0.5, 0.975)] == pytest.approx(quantiles, rel=1e-7)


def test_the_fpr_interval_covers_what_a_threshold_really_flags(rng):
    """Across repeated calibrations on 1,000 normal scores, the realized false-positive rate of the
    threshold (known exactly here: the scores are standard normal) falls in its 95% interval 95% of the time."""
    covered, realized = [], []
    for _ in range(200):
        threshold = threshold_at_fpr(rng.normal(size=1000), 0.01)
        true_fpr = 0.5 * math.erfc(threshold.value / math.sqrt(2))
        low, high = threshold.fpr_interval
        covered.append(low <= true_fpr <= high)
        realized.append(true_fpr)
    assert 0.9 <= np.mean(covered) <= 0.99
    assert threshold.frames == 1000 and threshold.fpr_interval == pytest.approx((0.0055, 0.0183), abs=2e-4)
    assert 0.003 < min(realized) <= max(realized) < 0.03  # within 0.3-3x the target, every time


def test_clopper_pearson_bounds():
    assert clopper_pearson(0, 100) == pytest.approx((0.0, 1 - 0.025 ** (1 / 100)))
    assert clopper_pearson(12, 1000) == pytest.approx((0.0062155255596, 0.020867679591))  # SciPy's
    assert clopper_pearson(5, 5)[1] == 1.0
    with pytest.raises(ValueError):
        clopper_pearson(6, 5)


def test_an_fpr_threshold_describes_itself_and_survives_json(rng):
    threshold = threshold_at_fpr(rng.normal(size=1000), 0.01)
    assert 'on 1000 normal frames' in threshold.describe() and '0.55-1.83% (95% CI)' in threshold.describe()
    assert Threshold(**json.loads(json.dumps(threshold.to_dict()))) == threshold
    assert Threshold(1.5).describe() == 'threshold 1.5000 (manual)'
