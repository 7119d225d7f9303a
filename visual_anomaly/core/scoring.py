"""Frame scoring without PyTorch: score kinds, calibration and decisions over a network's raw outputs.

Score kinds, all "higher = more anomalous" and expressed in standard units of the normal
validation scores once calibrated:

* ``reconstruction``: log of the per-frame reconstruction MSE (the published score),
* ``local``: log of the peak of the error map averaged over a small window; a small object
  (a cable, a box far ahead) raises it far more than it raises the frame-wide mean,
* ``change``: the peak of the change z-map against the patrol memory (needs a memory, see
  :mod:`visual_anomaly.core.change`): the place looked up among normal frames of the patrol and
  compared pixel by pixel,
* ``oe``: the outlier-exposure head's logit (needs an OE head),
* ``fused``: the base score (``change`` with a memory, else ``local``) raised by ``OE_WEIGHT``
  times how far ``oe`` exceeds ``OE_GATE`` (needs an OE head). The OE head only ever adds evidence where it is
  confident, so on anomaly classes it was never exposed to (where its output looks normal) the
  fused score stays the base score.

A model decides on ``fused`` when it has an OE head, else on ``change`` when it has a memory,
else on ``local``. A frame is anomalous when its decision score is greater than the threshold.

:class:`FrameScorer` holds all of this. Its subclasses only run the network: the PyTorch
:class:`~visual_anomaly.core.detector.Detector` and the exported
:class:`~visual_anomaly.core.onnx_backend.OnnxModel`, which needs no PyTorch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .preprocessing import PreprocessingConfig, resize_frames
from .thresholds import ScoreNormalizer, Threshold, calibration_shortfall, threshold_at_fpr, threshold_best_f1
from .visualization import HEATMAP_GAIN

SCORE_KINDS = ('reconstruction', 'local', 'change', 'oe', 'fused')
OE_GATE = 3.0  # normalized OE scores above this (robust standard units) raise the fused score
OE_WEIGHT = 0.5  # ... by this many units per unit above the gate
MEMORY_BATCH = 8  # frames per network call for models with a patrol memory (bounds ONNX Runtime's buffers)
CHANGE_HEATMAP_Z = 10.0  # change heatmaps saturate at this many per-pixel standard units
_MSE_FLOOR = 1e-12

logger = logging.getLogger(__name__)


class NotFittedError(ValueError, AttributeError):
    """A decision was asked of a scorer that has no calibrated threshold (as scikit-learn's ``NotFittedError``)."""


@dataclass
class DetectionResult:
    """Per-frame outputs of :meth:`FrameScorer.detect` for a batch of N frames."""

    mse: np.ndarray  # (N,) reconstruction MSE in normalized pixel units
    error_map: np.ndarray  # (N, S, S) per-pixel squared reconstruction error, averaged over channels
    anomaly_map: np.ndarray  # (N, S, S) where the evidence is: the change z-map with a memory, else error_map
    embedding: np.ndarray  # (N, D)
    oe_probability: np.ndarray | None  # (N,) sigmoid of the OE head's score (the MLP's P(anomaly)), None without one
    scores: dict[str, np.ndarray]  # normalized score of each available kind, (N,) each
    score: np.ndarray  # (N,) the decision score
    is_anomaly: np.ndarray  # (N,) bool; all False when the scorer is not calibrated
    threshold: float  # NaN when the scorer is not calibrated

    def __len__(self) -> int:
        return len(self.mse)


@dataclass
class Calibration:
    """Score normalizers and thresholds, per score kind."""

    normalizers: dict[str, ScoreNormalizer] = field(default_factory=dict)
    thresholds: dict[str, Threshold] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            'normalizers': {kind: n.to_dict() for kind, n in self.normalizers.items()},
            'thresholds': {kind: t.to_dict() for kind, t in self.thresholds.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(
            normalizers={kind: ScoreNormalizer(**n) for kind, n in data['normalizers'].items()},
            thresholds={kind: Threshold(**t) for kind, t in data['thresholds'].items()},
        )


class FrameScorer:
    """Scores, calibration and decisions; subclasses run the network in :meth:`_forward`.

    ``_forward`` maps an (N, S, S, 3) uint8 RGB batch to the raw outputs ``mse``, ``local_peak``,
    ``error_map``, ``embedding``, with a patrol memory ``change_peak`` and ``change_map``, and with an
    OE head ``oe_logit``.
    """

    backend: str
    device: Any

    def __init__(
        self,
        preprocessing: PreprocessingConfig | None,
        has_oe_head: bool,
        calibration: Calibration | None = None,
        decision_score: str | None = None,
        batch_size: int = 64,
        *,
        has_memory: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self.preprocessing = preprocessing or PreprocessingConfig()
        self.calibration = calibration or Calibration()
        self.batch_size = batch_size
        self._has_oe_head = has_oe_head
        self._has_memory = has_memory
        self.decision_score = decision_score or self.default_decision_score

    def _forward(self, batch_uint8: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # -- configuration -------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        """Side of the square RGB input the network scores."""
        return self.preprocessing.image_size

    @property
    def available_scores(self) -> tuple[str, ...]:
        kinds = ('reconstruction', 'local') + (('change',) if self._has_memory else ())
        return kinds + (('oe', 'fused') if self._has_oe_head else ())

    @property
    def default_decision_score(self) -> str:
        """``fused`` with an OE head, else ``change`` with a patrol memory, else ``local``."""
        return 'fused' if self._has_oe_head else self.base_score

    @property
    def base_score(self) -> str:
        """The score that ``fused`` raises: ``change`` with a patrol memory, else ``local``."""
        return 'change' if self._has_memory else 'local'

    @property
    def decision_score(self) -> str:
        return self._decision_score

    @decision_score.setter
    def decision_score(self, kind: str) -> None:
        if kind not in self.available_scores:
            raise ValueError(f'decision score must be one of {self.available_scores}, got {kind!r}')
        self._decision_score = kind

    @property
    def is_calibrated(self) -> bool:
        """Whether the current decision score has a threshold (from :meth:`calibrate` or :meth:`set_threshold`)."""
        return self.decision_score in self.calibration.thresholds

    @property
    def threshold_(self) -> float:
        """Threshold on the current decision score; raises :class:`NotFittedError` when not calibrated."""
        threshold = self.calibration.thresholds.get(self.decision_score)
        if threshold is None:
            raise NotFittedError(
                f'no threshold for the {self.decision_score!r} score: the model is not calibrated '
                '(calibrate() it on normal validation frames, or set_threshold())'
            )
        return threshold.value

    @property
    def typical_normal_mse(self) -> float:
        """Median reconstruction MSE of normal validation frames (1.0 when not calibrated)."""
        normalizer = self.calibration.normalizers.get('reconstruction')
        return float(np.exp(normalizer.center)) if normalizer is not None else 1.0

    @property
    def heatmap_scale(self) -> float:
        """The value of ``DetectionResult.anomaly_map`` at the top of a heatmap's colours."""
        return CHANGE_HEATMAP_Z if self._has_memory else HEATMAP_GAIN * self.typical_normal_mse

    def set_threshold(self, value: float, kind: str | None = None) -> None:
        """Override the threshold of ``kind`` (default: the decision score) by hand."""
        kind = kind or self.decision_score
        if kind not in self.available_scores:
            raise ValueError(f'score kind must be one of {self.available_scores}, got {kind!r}')
        self.calibration.thresholds[kind] = Threshold(float(value), 'manual')

    # -- scoring ---------------------------------------------------------------------------

    def _forward_all(self, batch_uint8: np.ndarray) -> dict[str, np.ndarray]:
        # the memory's comparison holds (frames x neighbours x shifts) images at once: small chunks keep it to MBs
        size = min(self.batch_size, MEMORY_BATCH) if self._has_memory else self.batch_size
        chunks = [self._forward(batch_uint8[start : start + size]) for start in range(0, len(batch_uint8), size)]
        return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}

    @staticmethod
    def _raw_scores(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raw = {
            'reconstruction': np.log(np.maximum(outputs['mse'].astype(np.float64), _MSE_FLOOR)),
            'local': np.log(np.maximum(outputs['local_peak'].astype(np.float64), _MSE_FLOOR)),
        }
        if 'change_peak' in outputs:
            raw['change'] = outputs['change_peak'].astype(np.float64)
        if 'oe_logit' in outputs:
            raw['oe'] = outputs['oe_logit'].astype(np.float64)
        return raw

    def _normalized_scores(
        self, raw: dict[str, np.ndarray], calibration: Calibration | None = None
    ) -> dict[str, np.ndarray]:
        """``raw`` scores in the units of ``calibration`` (default: the scorer's)."""
        normalizers, identity = (calibration or self.calibration).normalizers, ScoreNormalizer()
        scores = {kind: normalizers.get(kind, identity)(value) for kind, value in raw.items()}
        if 'oe' in scores:
            scores['fused'] = scores[self.base_score] + OE_WEIGHT * np.maximum(scores['oe'] - OE_GATE, 0.0)
        return scores

    def held_out_normal_scores(self) -> dict[str, np.ndarray]:
        """Raw scores, by kind, of normal frames other than the validation frames that calibration pools
        with them: none here; a detector with a freshly fitted patrol memory has its held-out peaks."""
        return {}

    def calibration_frames(self, validation_frames: int) -> int:
        """Normal frames an ``fpr`` calibration on ``validation_frames`` frames reads the decision score's
        threshold from: those and the held-out frames pooled with them."""
        decided = self.base_score if self.decision_score == 'fused' else self.decision_score
        return validation_frames + len(self.held_out_normal_scores().get(decided, ()))

    def _pooled(
        self, normal_scores: dict[str, np.ndarray], held_out_raw: dict[str, np.ndarray], calibration: Calibration
    ) -> dict[str, np.ndarray]:
        """Normalized validation scores with the held-out frames' scores appended for the kinds they have;
        the fused score takes its base score's held-out frames (with no OE term)."""
        pooled = dict(normal_scores)
        for kind, raw in held_out_raw.items():
            extra = calibration.normalizers[kind](raw)
            pooled[kind] = np.concatenate([normal_scores[kind], extra])
            if kind == self.base_score and 'fused' in normal_scores:
                pooled['fused'] = np.concatenate([normal_scores['fused'], extra])
        return pooled

    def detect_resized(self, batch_uint8: np.ndarray) -> DetectionResult:
        """Score frames already resized to the model input: (N, S, S, 3) uint8 RGB."""
        if len(batch_uint8) == 0:
            raise ValueError('no frames to score')
        outputs = self._forward_all(np.asarray(batch_uint8))
        scores = self._normalized_scores(self._raw_scores(outputs))
        score = scores[self.decision_score]
        threshold = self.threshold_ if self.is_calibrated else float('nan')
        oe_logit = outputs.get('oe_logit')
        return DetectionResult(
            mse=outputs['mse'],
            error_map=outputs['error_map'],
            anomaly_map=outputs.get('change_map', outputs['error_map']),
            embedding=outputs['embedding'],
            oe_probability=None if oe_logit is None else 1.0 / (1.0 + np.exp(-np.clip(oe_logit, -60.0, 60.0))),
            scores=scores,
            score=score,
            is_anomaly=score > threshold,
            threshold=threshold,
        )

    def detect(self, frames: Sequence[np.ndarray] | np.ndarray, color_order: str = 'rgb') -> DetectionResult:
        """Score raw uint8 frames of any size (``color_order``: rgb, bgr, rgba, bgra, mono)."""
        return self.detect_resized(resize_frames(frames, color_order, self.image_size))

    def detect_one(self, frame: np.ndarray, color_order: str = 'rgb') -> DetectionResult:
        """Score a single frame; the result holds arrays of length 1."""
        return self.detect([frame], color_order)

    def decision_function(self, frames: Sequence[np.ndarray] | np.ndarray, color_order: str = 'rgb') -> np.ndarray:
        """Decision scores, higher = more anomalous (PyOD convention)."""
        return self.detect(frames, color_order).score

    def predict(self, frames: Sequence[np.ndarray] | np.ndarray, color_order: str = 'rgb') -> np.ndarray:
        """Boolean anomaly decisions; raises :class:`NotFittedError` when not calibrated."""
        self.threshold_  # noqa: B018 - raises before any work when there is nothing to decide with
        return self.detect(frames, color_order).is_anomaly

    # -- calibration -----------------------------------------------------------------------

    def calibrate(
        self,
        normal_resized: np.ndarray,
        anomalous_resized: np.ndarray | None = None,
        fpr: float = 0.01,
        method: str = 'fpr',
        *,
        strict: bool = False,
    ) -> Calibration:
        """Fit score normalizers on normal validation frames and set every kind's threshold.

        ``method='fpr'`` flags at most ``fpr`` of the normal frames and records the interval of the
        false-positive rate to expect on new normal frames. A patrol memory fitted in this process adds
        its held-out training frames to the validation frames for the change score (and the fused
        score, whose OE term they then lack): :meth:`held_out_normal_scores`. It needs ``10 / fpr`` normal frames
        (:func:`~visual_anomaly.core.thresholds.min_calibration_frames`: 1,000 for 1%). With fewer it
        logs a warning naming the numbers, or with ``strict`` raises ValueError. ``method='best_f1'``
        maximizes F1 against ``anomalous_resized`` (which it then requires). Inputs are
        (N, S, S, 3) uint8 RGB frames at the model's input size.
        """
        if method not in ('fpr', 'best_f1'):
            raise ValueError(f"calibration method must be 'fpr' or 'best_f1', got {method!r}")
        if method == 'best_f1' and (anomalous_resized is None or len(anomalous_resized) == 0):
            raise ValueError('best_f1 calibration needs anomalous validation frames')
        held_out = self.held_out_normal_scores() if method == 'fpr' else {}
        shortfall = calibration_shortfall(self.calibration_frames(len(normal_resized)), fpr) if method == 'fpr' else ''
        if shortfall and strict:
            raise ValueError(shortfall)
        if shortfall:
            logger.warning(shortfall)
        raw_normal = self._raw_scores(self._forward_all(np.asarray(normal_resized)))
        # the new calibration replaces the old one at the end, in one step: a thread scoring meanwhile
        # (the node's diagnostics) sees the old one or the new one, never half of it
        normalizers = {kind: ScoreNormalizer.fit(values) for kind, values in raw_normal.items()}
        calibration = Calibration(normalizers=normalizers)
        normal_scores = self._normalized_scores(raw_normal, calibration)
        if method == 'fpr':
            pooled = self._pooled(normal_scores, held_out, calibration)
            thresholds = {kind: threshold_at_fpr(values, fpr) for kind, values in pooled.items()}
        else:
            anomalous_scores = self._normalized_scores(
                self._raw_scores(self._forward_all(np.asarray(anomalous_resized))), calibration
            )
            thresholds = {}
            for kind, values in normal_scores.items():
                scores = np.concatenate([values, anomalous_scores[kind]])
                labels = np.r_[np.zeros(len(values)), np.ones(len(anomalous_scores[kind]))]
                thresholds[kind] = threshold_best_f1(scores, labels)
        self.calibration = replace(calibration, thresholds=thresholds)
        return self.calibration
