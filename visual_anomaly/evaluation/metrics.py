"""Detection metrics: threshold-free (ROC-AUC, PR-AUC) and at a decision threshold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from visual_anomaly.core.thresholds import CONFIDENCE, clopper_pearson, percent


def recall_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float = 0.01) -> float:
    """Recall when the threshold lets through at most ``fpr`` of these normal frames (a threshold-free
    figure: the threshold is read off the evaluated normals themselves)."""
    normal, anomalous = scores[~labels], scores[labels]
    if not len(normal) or not len(anomalous):
        return float('nan')
    allowed = int(np.floor(fpr * len(normal)))
    cut = np.sort(normal)[::-1][allowed] if allowed < len(normal) else -np.inf
    return float((anomalous > cut).mean())


def detection_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), recall at 1% FPR, and precision/recall/F1/FPR at
    ``score > threshold``; labels: 1 = anomaly."""
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
        'recall_at_1pct_fpr': recall_at_fpr(scores, labels, 0.01),
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
                'recall_at_1pct_fpr': class_metrics['recall_at_1pct_fpr'],
            }
        if exposed_classes:
            seen = np.isin(classes, list(exposed_classes))
            for group, members in (('seen', seen), ('unseen', (classes > 0) & ~seen)):
                if members.any():
                    mask = normal | members
                    entry[group] = detection_metrics(values[mask], classes[mask] > 0, threshold)
        report[kind] = entry
    return report


def compare_with_baselines(evaluation: Mapping[str, dict], decision: str) -> dict:
    """How the decision score stands against the best ``baseline:*`` score, overall and per class.

    ``margin`` is our ROC-AUC minus the best baseline's (negative: a trivial baseline ranks frames
    better); ``classes_lost`` lists the classes where some baseline beats us, with both ROC-AUCs.
    """
    baselines = {kind: entry for kind, entry in evaluation.items() if kind.startswith('baseline:')}
    ours = evaluation[decision]
    if not baselines:
        return {}
    best = max(baselines, key=lambda kind: _auc_or_minus_one(baselines[kind]['overall']))
    lost = {}
    for name, entry in ours['per_class'].items():
        rival = max(baselines, key=lambda kind, n=name: _auc_or_minus_one(baselines[kind]['per_class'][n]))
        rival_auc = baselines[rival]['per_class'][name]['roc_auc']
        if rival_auc > entry['roc_auc']:
            lost[name] = {'ours': entry['roc_auc'], 'baseline': rival, 'baseline_roc_auc': rival_auc}
    return {
        'best_baseline': best,
        'best_baseline_roc_auc': baselines[best]['overall']['roc_auc'],
        'ours_roc_auc': ours['overall']['roc_auc'],
        'margin': ours['overall']['roc_auc'] - baselines[best]['overall']['roc_auc'],
        'classes_lost': lost,
    }


def _auc_or_minus_one(entry: Mapping) -> float:
    value = entry.get('roc_auc', float('nan'))
    return value if np.isfinite(value) else -1.0


def false_positive_line(overall: Mapping) -> str:
    """'FPR on normal test frames: x% (95% CI a-b%, k of n)' from an entry of :func:`detection_metrics`
    (exact Clopper-Pearson interval)."""
    flagged, normal = overall['false_positives'], overall['false_positives'] + overall['true_negatives']
    if not normal:
        return 'FPR on normal test frames: no normal frame'
    low, high = clopper_pearson(flagged, normal)
    return (
        f'FPR on normal test frames: {percent(flagged / normal)} ({CONFIDENCE:.0%} CI {percent(low, "")}-'
        f'{percent(high)}, {flagged} of {normal})'
    )
