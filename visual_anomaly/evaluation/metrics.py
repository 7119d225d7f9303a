"""Detection metrics: threshold-free (ROC-AUC, PR-AUC) and at a decision threshold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score


def detection_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC-AUC, PR-AUC, and precision/recall/F1/FPR at ``score > threshold``; labels: 1 = anomaly."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    predicted = scores > threshold
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[False, True]).ravel()
    both_classes = 0 < labels.sum() < len(labels)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        'roc_auc': float(roc_auc_score(labels, scores)) if both_classes else float('nan'),
        'pr_auc': float(average_precision_score(labels, scores)) if both_classes else float('nan'),
        'precision': float(precision),
        'recall': float(recall),
        'f1': float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
        'false_positive_rate': float(fp / (fp + tn)) if fp + tn else 0.0,
        'true_positives': int(tp),
        'false_positives': int(fp),
        'true_negatives': int(tn),
        'false_negatives': int(fn),
        'threshold': float(threshold),
    }


def evaluation_metrics(
    scores: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    classes: np.ndarray,
    names: Mapping[int, str],
    exposed_classes: Sequence[int] = (),
) -> dict[str, dict]:
    """For every score kind: overall metrics at its threshold, per anomaly class, and seen/unseen groups.

    ``classes`` holds integer class codes (0 = normal); ``exposed_classes`` are the codes shown to
    outlier exposure during training, reported apart from the never-seen ones.
    """
    classes = np.asarray(classes)
    normal = classes == 0
    report = {}
    for kind, values in scores.items():
        values = np.asarray(values)
        threshold = thresholds.get(kind, float('inf'))
        entry = {'overall': detection_metrics(values, classes > 0, threshold), 'per_class': {}}
        for code in sorted(set(classes.tolist()) - {0}):
            mask = normal | (classes == code)
            class_metrics = detection_metrics(values[mask], classes[mask] == code, threshold)
            entry['per_class'][names.get(code, str(code))] = {
                'frames': int((classes == code).sum()),
                'roc_auc': class_metrics['roc_auc'],
                'pr_auc': class_metrics['pr_auc'],
                'recall': class_metrics['recall'],
            }
        if exposed_classes:
            seen = np.isin(classes, list(exposed_classes))
            for group, members in (('seen', seen), ('unseen', (classes > 0) & ~seen)):
                if members.any():
                    mask = normal | members
                    entry[group] = detection_metrics(values[mask], classes[mask] > 0, threshold)
        report[kind] = entry
    return report
