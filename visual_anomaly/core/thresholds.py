"""Score normalization and decision thresholds, calibrated on held-out scores.

Scores are "higher = more anomalous". A :class:`ScoreNormalizer` maps raw scores to standard
units of the normal validation distribution (robust: median and scaled MAD), so that scores of
different kinds can be fused and thresholds read alike across models.

How many normal frames a false-positive-rate threshold needs
------------------------------------------------------------
A threshold at a target false-positive rate ``fpr`` is read off ``n`` normal scores: it sits on the
``floor(fpr * n) + 1``-th largest, with ``k = floor(fpr * n)`` frames above it. The share of *new*
normal frames (of the same kind) it flags is then Beta(k + 1, n - k) distributed, whatever the score
distribution: its spread depends on ``k`` alone. With ``k = 0`` (60 frames for a 1% target: the
threshold is the largest score) the 95% interval is 0.04-6.0%; with ``k = 10`` it is about
0.5x-1.8x the target (0.55-1.8% for 1% on 1,000 frames), inside the 0.3x-3x band a threshold must
hold. So calibration needs **at least** ``MIN_FRAMES_ABOVE / fpr`` **normal frames** (1,000 for 1%,
200 for 5%): :func:`min_calibration_frames`. The interval assumes independent frames; consecutive
video frames are not, so a patrol that covers the building is worth more than a long stop.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

THRESHOLD_METHODS = ('fpr', 'percentile', 'best_f1', 'manual')
MIN_FRAMES_ABOVE = 10  # normal frames that must lie above an fpr threshold (see the module docstring)
CONFIDENCE = 0.95  # of the reported false-positive-rate intervals
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
    """A decision threshold and how it was chosen (``method`` and its ``target``).

    An ``fpr`` threshold also records the number of normal ``frames`` it was read from and the
    ``fpr_interval`` (95%) of the false-positive rate it will have on new normal frames like them.
    """

    value: float
    method: str = 'manual'
    target: float | None = None
    frames: int | None = None
    fpr_interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.method not in THRESHOLD_METHODS:
            raise ValueError(f'threshold method must be one of {THRESHOLD_METHODS}, got {self.method!r}')
        if not np.isfinite(self.value):
            raise ValueError(f'threshold must be finite, got {self.value}')
        if self.fpr_interval is not None:  # a list once read back from JSON
            object.__setattr__(self, 'fpr_interval', tuple(float(bound) for bound in self.fpr_interval))

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """The threshold and, for an ``fpr`` one, what it promises, in one line."""
        text = f'threshold {self.value:.4f} ({self.method})'
        if self.method == 'fpr' and self.frames and self.fpr_interval:
            low, high = self.fpr_interval
            text = (
                f'threshold {self.value:.4f} at a {percent(self.target)} false-positive target on {self.frames} '
                f'normal frames: expected false-positive rate on new normal frames {percent(low, "")}-'
                f'{percent(high)} ({CONFIDENCE:.0%} CI)'
            )
        return text


def percent(rate: float, sign: str = '%') -> str:
    """A rate as a percentage with up to three significant digits: 0.0042 -> '0.42%'."""
    return f'{100 * rate:.3g}{sign}'


def min_calibration_frames(fpr: float) -> int:
    """Normal frames needed to calibrate a threshold at ``fpr``: ``MIN_FRAMES_ABOVE / fpr`` (0 for ``fpr`` 0)."""
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f'fpr must be in [0, 1), got {fpr}')
    return math.ceil(round(MIN_FRAMES_ABOVE / fpr, 6)) if fpr > 0 else 0


def calibration_shortfall(frames: int, fpr: float) -> str:
    """Why ``frames`` normal frames are too few for a threshold at ``fpr``, or '' when they suffice."""
    needed = min_calibration_frames(fpr)
    if frames >= needed:
        return ''
    low, high = threshold_fpr_interval(math.floor(fpr * frames), frames)
    return (
        f'{frames} normal frames are too few to calibrate a {percent(fpr)} false-positive rate: it needs at '
        f'least {needed} ({MIN_FRAMES_ABOVE}/fpr, so that {MIN_FRAMES_ABOVE} frames lie above the threshold); '
        f'on {frames} the false-positive rate on new normal frames can be anywhere in '
        f'{percent(low, "")}-{percent(high)} ({CONFIDENCE:.0%} CI)'
    )


def beta_quantile(q: float, a: int, b: int) -> float:
    """The ``q`` quantile of the Beta(``a``, ``b``) distribution for integers ``a, b >= 1``, in NumPy alone.

    Uses P(Beta(a, b) <= x) = P(Binomial(a + b - 1, x) >= a), summed over the binomial's bulk (40
    standard deviations), and bisection to a relative 1e-9, so that the node computes intervals
    without SciPy.
    """
    if a < 1 or b < 1 or not 0.0 <= q <= 1.0:
        raise ValueError(f'beta_quantile needs integers a, b >= 1 and q in [0, 1], got q={q}, a={a}, b={b}')
    n = a + b - 1
    j = np.arange(n + 1)
    log_choose = np.concatenate([[0.0], np.cumsum(np.log(n - j[1:] + 1.0) - np.log(j[1:]))])

    def cdf(x: float) -> float:
        spread = 40 * math.sqrt(n * x * (1 - x)) + 40
        first, last = max(0, math.floor(n * x - spread)), min(n, math.ceil(n * x + spread))
        bulk = j[first : last + 1]
        log_pmf = log_choose[bulk] + bulk * math.log(x) + (n - bulk) * math.log1p(-x)
        weights = np.exp(log_pmf - log_pmf.max())
        return float(weights[bulk >= a].sum() / weights.sum())

    low, high = 0.0, 1.0
    while high - low > 1e-9 * high:
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < q else (low, middle)
    return (low + high) / 2


def threshold_fpr_interval(above: int, frames: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Equal-tailed interval of the false-positive rate, on new normal frames, of a threshold that ``above``
    of ``frames`` normal calibration frames exceed: the rate is Beta(above + 1, frames - above) distributed."""
    if not 0 <= above < frames:
        raise ValueError(f'need 0 <= frames above the threshold < frames, got {above} of {frames}')
    tail = (1 - confidence) / 2
    return beta_quantile(tail, above + 1, frames - above), beta_quantile(1 - tail, above + 1, frames - above)


def clopper_pearson(flagged: int, frames: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a rate observed as ``flagged`` of ``frames``; (0, 1) for no frame."""
    if not 0 <= flagged <= frames:
        raise ValueError(f'need 0 <= flagged <= frames, got {flagged} of {frames}')
    tail = (1 - confidence) / 2
    low = beta_quantile(tail, flagged, frames - flagged + 1) if flagged > 0 else 0.0
    high = beta_quantile(1 - tail, flagged + 1, frames - flagged) if flagged < frames else 1.0
    return low, high


def threshold_at_fpr(normal_scores: np.ndarray, fpr: float = 0.01) -> Threshold:
    """Smallest threshold that flags at most ``fpr`` of the given normal scores.

    It records the number of frames and the interval of the false-positive rate it will have on new
    normal frames (:func:`threshold_fpr_interval`); fewer than :func:`min_calibration_frames` make that
    interval wide (callers warn or refuse: see the module docstring).
    """
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f'fpr must be in [0, 1), got {fpr}')
    scores = np.sort(_as_scores(normal_scores, 'normal_scores'))
    allowed = int(np.floor(fpr * scores.size))
    # Flagging means score > threshold, so sitting on the (allowed+1)-th largest score keeps
    # at most `allowed` normal frames above it.
    value = float(scores[scores.size - 1 - allowed])
    above = int(np.count_nonzero(scores > value))
    return Threshold(value, 'fpr', fpr, int(scores.size), threshold_fpr_interval(above, int(scores.size)))


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
