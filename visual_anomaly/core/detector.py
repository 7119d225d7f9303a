"""Frame scoring: reconstruction error, outlier-exposure probability, fusion and decision.

Score kinds, all "higher = more anomalous" and expressed in standard units of the normal
validation scores once calibrated:

* ``reconstruction``: log of the per-frame reconstruction MSE (the published score),
* ``local``: log of the peak of the error map averaged over a small window; a small object
  (a cable, a box far ahead) raises it far more than it raises the frame-wide mean,
* ``oe``: the outlier-exposure head's logit (needs an OE head),
* ``fused``: ``local`` raised by how far ``oe`` exceeds ``OE_GATE`` (needs an OE head). The OE
  head only ever adds evidence where it is confident, so on anomaly classes it was never
  exposed to (where its output looks normal) the fused score stays the local score.

Without an OE head the detector decides on ``local``; with one, on ``fused``.

A frame is anomalous when its decision score is greater than the threshold.

All network math (normalization, autoencoder, error map, local window, OE head) lives in one
module, :class:`ScoringGraph`, run eagerly by PyTorch or, with ``backend='onnxruntime'``,
exported once to ONNX Runtime, which runs this small network several times faster on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import onnx_backend
from .device import resolve_device
from .preprocessing import PreprocessingConfig, Preprocessor, resize_frames
from .thresholds import ScoreNormalizer, Threshold, threshold_at_fpr, threshold_best_f1
from .torch_model import ConvAutoencoder, OutlierExposureHead

SCORE_KINDS = ('reconstruction', 'local', 'oe', 'fused')
BACKENDS = ('torch', 'onnxruntime', 'auto')
LOCAL_WINDOW = 5  # pixels of the 64x64 error map averaged by the local score
OE_GATE = 3.0  # normalized OE scores above this (robust standard units) raise the fused score
_MSE_FLOOR = 1e-12


class ScoringGraph(torch.nn.Module):
    """uint8 (N, S, S, 3) RGB frames -> the raw outputs every score is computed from."""

    def __init__(
        self, autoencoder: ConvAutoencoder, preprocessor: Preprocessor, oe_head: OutlierExposureHead | None
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.preprocessor = preprocessor
        self.oe_head = oe_head
        # the local window's mean as two 1-D convolutions: the same numbers, several times faster
        self.register_buffer('row_mean', torch.full((1, 1, 1, LOCAL_WINDOW), 1.0 / LOCAL_WINDOW))
        self.register_buffer('column_mean', torch.full((1, 1, LOCAL_WINDOW, 1), 1.0 / LOCAL_WINDOW))

    @property
    def output_names(self) -> tuple[str, ...]:
        return ('mse', 'local_peak', 'error_map', 'embedding') + (('oe_logit',) if self.oe_head is not None else ())

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        images = self.preprocessor.normalize_tensor(frames)
        reconstruction, embedding = self.autoencoder(images)
        error_map = (reconstruction - images).square().mean(dim=1)
        conv2d = torch.nn.functional.conv2d
        window = conv2d(conv2d(error_map[:, None], self.row_mean), self.column_mean)
        outputs = (error_map.mean(dim=(1, 2)), window.amax(dim=(1, 2, 3)), error_map, embedding)
        return outputs + ((self.oe_head(embedding),) if self.oe_head is not None else ())


@dataclass
class DetectionResult:
    """Per-frame outputs of :meth:`Detector.detect` for a batch of N frames."""

    mse: np.ndarray  # (N,) reconstruction MSE in normalized pixel units
    error_map: np.ndarray  # (N, S, S) per-pixel squared error, averaged over channels
    embedding: np.ndarray  # (N, D)
    oe_probability: np.ndarray | None  # (N,) P(anomaly) from the OE head, None without one
    scores: dict[str, np.ndarray]  # normalized score of each available kind, (N,) each
    score: np.ndarray  # (N,) the decision score
    is_anomaly: np.ndarray  # (N,) bool
    threshold: float

    def __len__(self) -> int:
        return len(self.mse)


@dataclass
class Calibration:
    """Score normalizers and thresholds, per score kind."""

    normalizers: dict[str, ScoreNormalizer] = field(default_factory=dict)
    thresholds: dict[str, Threshold] = field(default_factory=dict)


class Detector:
    """Scores camera frames with an autoencoder and an optional outlier-exposure head."""

    def __init__(
        self,
        autoencoder: ConvAutoencoder,
        preprocessing: PreprocessingConfig | None = None,
        oe_head: OutlierExposureHead | None = None,
        calibration: Calibration | None = None,
        decision_score: str | None = None,
        device: str | torch.device = 'auto',
        batch_size: int = 64,
        backend: str = 'torch',
    ) -> None:
        """``backend``: ``torch`` (eager), ``onnxruntime`` (CPU; the weights are exported at the
        first scoring, so use it for a trained model), or ``auto`` (onnxruntime when installed and
        the device is the CPU)."""
        if backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
        self.device = resolve_device(device)
        self.autoencoder = autoencoder.to(self.device).eval()
        self.oe_head = oe_head.to(self.device).eval() if oe_head is not None else None
        self.preprocessor = Preprocessor(preprocessing)
        self.calibration = calibration or Calibration()
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self.batch_size = batch_size
        self.decision_score = decision_score or ('fused' if self.oe_head is not None else 'local')
        if backend == 'auto':
            backend = 'onnxruntime' if self.device.type == 'cpu' and onnx_backend.available() else 'torch'
        if backend == 'onnxruntime' and self.device.type != 'cpu':
            raise ValueError(f'the onnxruntime backend runs on the CPU, not on {self.device}')
        if backend == 'onnxruntime' and not onnx_backend.available():
            raise ValueError('the onnxruntime backend needs the onnxruntime and onnx packages (pip install both)')
        self.backend = backend
        self._graph = ScoringGraph(self.autoencoder, self.preprocessor, self.oe_head).to(self.device)
        self._onnx: onnx_backend.OnnxScorer | None = None

    # -- configuration -------------------------------------------------------------------

    @property
    def available_scores(self) -> tuple[str, ...]:
        return SCORE_KINDS if self.oe_head is not None else ('reconstruction', 'local')

    @property
    def decision_score(self) -> str:
        return self._decision_score

    @decision_score.setter
    def decision_score(self, kind: str) -> None:
        if kind not in self.available_scores:
            raise ValueError(f'decision score must be one of {self.available_scores}, got {kind!r}')
        self._decision_score = kind

    @property
    def threshold_(self) -> float:
        """Threshold on the current decision score (+inf when not calibrated)."""
        threshold = self.calibration.thresholds.get(self.decision_score)
        return threshold.value if threshold is not None else float('inf')

    @property
    def typical_normal_mse(self) -> float:
        """Median reconstruction MSE of normal validation frames (1.0 when not calibrated)."""
        normalizer = self.calibration.normalizers.get('reconstruction')
        return float(np.exp(normalizer.center)) if normalizer is not None else 1.0

    def set_oe_head(self, head: OutlierExposureHead) -> None:
        """Attach a trained outlier-exposure head and decide on the fused score; recalibrate afterwards."""
        self.oe_head = head.to(self.device).eval()
        self.decision_score = 'fused'
        self._graph = ScoringGraph(self.autoencoder, self.preprocessor, self.oe_head).to(self.device)
        self._onnx = None

    def set_threshold(self, value: float, kind: str | None = None) -> None:
        """Override the threshold of ``kind`` (default: the decision score) by hand."""
        kind = kind or self.decision_score
        if kind not in self.available_scores:
            raise ValueError(f'score kind must be one of {self.available_scores}, got {kind!r}')
        self.calibration.thresholds[kind] = Threshold(float(value), 'manual')

    # -- scoring ---------------------------------------------------------------------------

    def _forward(self, batch_uint8: np.ndarray) -> dict[str, np.ndarray]:
        if self.backend == 'onnxruntime':
            if self._onnx is None:
                self._onnx = onnx_backend.OnnxScorer(self._graph, self.preprocessor.config.image_size)
            return self._onnx(batch_uint8)
        frames = self.preprocessor.checked_tensor(batch_uint8, self.device)
        with torch.inference_mode():
            outputs = self._graph(frames)
        names = self._graph.output_names
        return {name: value.float().cpu().numpy() for name, value in zip(names, outputs, strict=True)}

    def _forward_all(self, batch_uint8: np.ndarray) -> dict[str, np.ndarray]:
        chunks = [
            self._forward(batch_uint8[start : start + self.batch_size])
            for start in range(0, len(batch_uint8), self.batch_size)
        ]
        return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}

    def _raw_scores(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raw = {
            'reconstruction': np.log(np.maximum(outputs['mse'].astype(np.float64), _MSE_FLOOR)),
            'local': np.log(np.maximum(outputs['local_peak'].astype(np.float64), _MSE_FLOOR)),
        }
        if 'oe_logit' in outputs:
            raw['oe'] = outputs['oe_logit'].astype(np.float64)
        return raw

    def _normalized_scores(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        identity = ScoreNormalizer()
        scores = {kind: self.calibration.normalizers.get(kind, identity)(value) for kind, value in raw.items()}
        if 'oe' in scores:
            scores['fused'] = scores['local'] + np.maximum(scores['oe'] - OE_GATE, 0.0)
        return scores

    def detect_resized(self, batch_uint8: np.ndarray) -> DetectionResult:
        """Score frames already resized to the model input: (N, S, S, 3) uint8 RGB."""
        if len(batch_uint8) == 0:
            raise ValueError('no frames to score')
        outputs = self._forward_all(np.asarray(batch_uint8))
        scores = self._normalized_scores(self._raw_scores(outputs))
        score = scores[self.decision_score]
        threshold = self.threshold_
        oe_logit = outputs.get('oe_logit')
        return DetectionResult(
            mse=outputs['mse'],
            error_map=outputs['error_map'],
            embedding=outputs['embedding'],
            oe_probability=None if oe_logit is None else 1.0 / (1.0 + np.exp(-oe_logit)),
            scores=scores,
            score=score,
            is_anomaly=score > threshold,
            threshold=threshold,
        )

    @torch.inference_mode()
    def reconstruct(self, batch_uint8: np.ndarray) -> np.ndarray:
        """The autoencoder's reconstructions of (N, S, S, 3) uint8 RGB frames, as uint8 RGB images."""
        images = self.preprocessor.normalize(batch_uint8, self.device)
        return self.preprocessor.denormalize(self.autoencoder(images)[0].float(), batch_uint8)

    def detect(self, frames: Sequence[np.ndarray] | np.ndarray, color_order: str = 'rgb') -> DetectionResult:
        """Score raw uint8 frames of any size (``color_order``: rgb, bgr, rgba, bgra, mono)."""
        return self.detect_resized(resize_frames(frames, color_order, self.preprocessor.config.image_size))

    def detect_one(self, frame: np.ndarray, color_order: str = 'rgb') -> DetectionResult:
        """Score a single frame; the result holds arrays of length 1."""
        return self.detect([frame], color_order)

    def decision_function(self, frames: Sequence[np.ndarray] | np.ndarray, color_order: str = 'rgb') -> np.ndarray:
        """Decision scores, higher = more anomalous (PyOD convention)."""
        return self.detect(frames, color_order).score

    def predict(self, frames: Sequence[np.ndarray] | np.ndarray, color_order: str = 'rgb') -> np.ndarray:
        """Boolean anomaly decisions."""
        return self.detect(frames, color_order).is_anomaly

    # -- calibration -----------------------------------------------------------------------

    def calibrate(
        self,
        normal_resized: np.ndarray,
        anomalous_resized: np.ndarray | None = None,
        fpr: float = 0.01,
        method: str = 'fpr',
    ) -> Calibration:
        """Fit score normalizers on normal validation frames and set every kind's threshold.

        ``method='fpr'`` flags at most ``fpr`` of the normal frames; ``method='best_f1'``
        maximizes F1 against ``anomalous_resized`` (which it then requires). Inputs are
        (N, S, S, 3) uint8 RGB frames at the model's input size.
        """
        if method not in ('fpr', 'best_f1'):
            raise ValueError(f"calibration method must be 'fpr' or 'best_f1', got {method!r}")
        if method == 'best_f1' and (anomalous_resized is None or len(anomalous_resized) == 0):
            raise ValueError('best_f1 calibration needs anomalous validation frames')
        raw_normal = self._raw_scores(self._forward_all(np.asarray(normal_resized)))
        normalizers = {kind: ScoreNormalizer.fit(values) for kind, values in raw_normal.items()}
        self.calibration = Calibration(normalizers=normalizers)
        normal_scores = self._normalized_scores(raw_normal)
        if method == 'fpr':
            thresholds = {kind: threshold_at_fpr(values, fpr) for kind, values in normal_scores.items()}
        else:
            anomalous_scores = self._normalized_scores(
                self._raw_scores(self._forward_all(np.asarray(anomalous_resized)))
            )
            thresholds = {}
            for kind, values in normal_scores.items():
                scores = np.concatenate([values, anomalous_scores[kind]])
                labels = np.r_[np.zeros(len(values)), np.ones(len(anomalous_scores[kind]))]
                thresholds[kind] = threshold_best_f1(scores, labels)
        self.calibration = replace(self.calibration, thresholds=thresholds)
        return self.calibration
