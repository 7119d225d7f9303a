"""Score normalization and decision thresholds, calibrated on held-out scores.

Scores are "higher = more anomalous". A :class:`ScoreNormalizer` maps raw scores to standard
units of the normal validation distribution (robust: median and scaled MAD), so that scores of
different kinds can be fused and thresholds read alike across models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

THRESHOLD_METHODS = ('fpr', 'percentile', 'best_f1', 'manual')
_MAD_TO_STD = 1.4826


def _as_scores(scores: np.ndarray, name: str = 'scores') -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError(f'{name} is empty')
    if not np.all(np.isfinite(scores)):
        raise ValueError(f'{name} contains NaN or infinite values')
    return scores


@dataclass(frozen=True)
class ScoreNormalizer:
    """``(score - center) / scale``, fitted on normal validation scores."""

    center: float = 0.0
    scale: float = 1.0

    @classmethod
    def fit(cls, normal_scores: np.ndarray) -> ScoreNormalizer:
        scores = _as_scores(normal_scores, 'normal_scores')
        center = float(np.median(scores))
        scale = float(_MAD_TO_STD * np.median(np.abs(scores - center)))
        if not scale > 0:
            scale = float(scores.std()) or 1.0
        return cls(center, scale)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return (np.asarray(scores, dtype=np.float64) - self.center) / self.scale

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Threshold:
    """A decision threshold and how it was chosen (``method`` and its ``target``)."""

    value: float
    method: str = 'manual'
    target: float | None = None

    def __post_init__(self) -> None:
        if self.method not in THRESHOLD_METHODS:
            raise ValueError(f'threshold method must be one of {THRESHOLD_METHODS}, got {self.method!r}')
        if not np.isfinite(self.value):
            raise ValueError(f'threshold must be finite, got {self.value}')

    def to_dict(self) -> dict:
        return asdict(self)


def threshold_at_fpr(normal_scores: np.ndarray, fpr: float = 0.01) -> Threshold:
    """Smallest threshold that flags at most ``fpr`` of the given normal scores."""
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f'fpr must be in [0, 1), got {fpr}')
    scores = np.sort(_as_scores(normal_scores, 'normal_scores'))
    allowed = int(np.floor(fpr * scores.size))
    # Flagging means score > threshold, so sitting on the (allowed+1)-th largest score keeps
    # at most `allowed` normal frames above it.
    value = float(scores[scores.size - 1 - allowed])
    return Threshold(value, 'fpr', fpr)


def threshold_at_percentile(normal_scores: np.ndarray, percentile: float = 95.0) -> Threshold:
    """The ``percentile``-th percentile of normal scores (the seeds' 95th-percentile rule)."""
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f'percentile must be in [0, 100], got {percentile}')
    value = float(np.percentile(_as_scores(normal_scores, 'normal_scores'), percentile))
    return Threshold(value, 'percentile', percentile)


def threshold_best_f1(scores: np.ndarray, labels: np.ndarray) -> Threshold:
    """Threshold maximizing F1 on labelled scores; needs both normal and anomalous examples.

    With no anomalies an F1-optimal threshold is meaningless (it would flag everything), so
    that case is an error rather than a silent useless threshold.
    """
    scores = _as_scores(scores)
    labels = np.asarray(labels).astype(bool).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f'{labels.size} labels for {scores.size} scores')
    if labels.all() or not labels.any():
        raise ValueError('best-F1 calibration needs both normal and anomalous examples')
    from sklearn.metrics import precision_recall_curve  # training-time only: robots score without scikit-learn

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    best = int(np.argmax(f1))
    # precision_recall_curve flags score >= t; our decision is score > threshold, so step
    # just below the chosen score.
    value = float(np.nextafter(thresholds[best], -np.inf))
    return Threshold(value, 'best_f1', float(f1[best]))
