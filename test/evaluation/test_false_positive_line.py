"""The evaluation reports' false-positive rate with its exact confidence interval."""

import numpy as np

from visual_anomaly.evaluation.metrics import detection_metrics, false_positive_line


def test_the_false_positive_rate_comes_with_its_clopper_pearson_interval():
    scores = np.r_[np.arange(1000.0), [5000.0] * 10]
    labels = np.r_[np.zeros(1000), np.ones(10)].astype(bool)
    overall = detection_metrics(scores, labels, threshold=987.5)  # 12 of 1,000 normal frames above
    assert false_positive_line(overall) == 'FPR on normal test frames: 1.2% (95% CI 0.622-2.09%, 12 of 1000)'
    none_flagged = detection_metrics(scores, labels, threshold=1e9)
    assert false_positive_line(none_flagged).startswith('FPR on normal test frames: 0% (95% CI 0-0.368%')
