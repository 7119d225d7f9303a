"""The PyTorch detector: the whole scoring network as one module, run eagerly or by ONNX Runtime.

All network math (normalization, autoencoder, error map, local window, patrol memory, OE head)
lives in one module, :class:`ScoringGraph`. :class:`Detector` runs it with eager PyTorch on the CPU or a GPU
or, with ``backend='onnxruntime'``, exported once to ONNX Runtime, which runs this small network
several times faster on a CPU. Scores, calibration and decisions come from
:class:`~visual_anomaly.core.scoring.FrameScorer` (see there for the score kinds).
"""

from __future__ import annotations

import numpy as np
import torch

from . import onnx_backend
from .change import PatrolMemory
from .device import resolve_device
from .preprocessing import PreprocessingConfig, Preprocessor, image_mean
from .scoring import Calibration, FrameScorer
from .torch_model import ChangeClassifier, ConvAutoencoder, OutlierExposureHead, RealNVPHead

OEHead = OutlierExposureHead | RealNVPHead | ChangeClassifier

BACKENDS = ('torch', 'onnxruntime', 'auto')
LOCAL_WINDOW = 5  # pixels of the 64x64 error map averaged by the local score


class ScoringGraph(torch.nn.Module):
    """uint8 (N, S, S, 3) RGB frames -> the raw outputs every score is computed from."""

    def __init__(
        self,
        autoencoder: ConvAutoencoder,
        preprocessor: Preprocessor,
        oe_head: OEHead | None,
        memory: PatrolMemory | None = None,
    ) -> None:
        super().__init__()
        if isinstance(oe_head, ChangeClassifier) and memory is None:
            raise ValueError('an outlier-exposure head on the change evidence needs a patrol memory')
        self.autoencoder = autoencoder
        self.preprocessor = preprocessor
        self.oe_head = oe_head
        self.memory = memory
        # the local window's mean as two 1-D convolutions: the same numbers, several times faster
        self.register_buffer('row_mean', torch.full((1, 1, 1, LOCAL_WINDOW), 1.0 / LOCAL_WINDOW))
        self.register_buffer('column_mean', torch.full((1, 1, LOCAL_WINDOW, 1), 1.0 / LOCAL_WINDOW))

    @property
    def output_names(self) -> tuple[str, ...]:
        names = ('mse', 'local_peak', 'error_map', 'embedding')
        names += ('change_peak', 'change_map') if self.memory is not None else ()
        return names + (('oe_logit',) if self.oe_head is not None else ())

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        images = self.preprocessor.normalize_tensor(frames)
        reconstruction, embedding = self.autoencoder(images)
        error_map = (reconstruction - images).square().mean(dim=1)
        conv2d = torch.nn.functional.conv2d
        window = conv2d(conv2d(error_map[:, None], self.row_mean), self.column_mean)
        mse = image_mean(error_map).flatten()
        outputs = (mse, window.amax(dim=(1, 2, 3)), error_map, embedding)
        if isinstance(self.oe_head, ChangeClassifier):
            change_map, evidence = self.memory.evidence(images)
            return outputs + (change_map.amax(dim=(1, 2)), change_map, self.oe_head(evidence))
        if self.memory is not None:
            change_map = self.memory(images)
            outputs += (change_map.amax(dim=(1, 2)), change_map)
        return outputs + ((self.oe_head(embedding),) if self.oe_head is not None else ())


class Detector(FrameScorer):
    """Scores camera frames with an autoencoder and an optional outlier-exposure head."""

    def __init__(
        self,
        autoencoder: ConvAutoencoder,
        preprocessing: PreprocessingConfig | None = None,
        oe_head: OEHead | None = None,
        calibration: Calibration | None = None,
        decision_score: str | None = None,
        device: str | torch.device = 'auto',
        batch_size: int = 64,
        backend: str = 'torch',
        memory: PatrolMemory | None = None,
    ) -> None:
        """``backend``: ``torch`` (eager), ``onnxruntime`` (CPU; the weights are exported at the
        first scoring, so use it for a trained model), or ``auto`` (onnxruntime when installed and
        the device is the CPU)."""
        if backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
        has_memory = memory is not None
        super().__init__(
            preprocessing, oe_head is not None, calibration, decision_score, batch_size, has_memory=has_memory
        )
        self.device = resolve_device(device)
        self.autoencoder = autoencoder.to(self.device).eval()
        self.oe_head = oe_head.to(self.device).eval() if oe_head is not None else None
        self.memory = memory.to(self.device).eval() if memory is not None else None
        self.preprocessor = Preprocessor(self.preprocessing)
        if backend == 'auto':
            backend = 'onnxruntime' if self.device.type == 'cpu' and onnx_backend.available() else 'torch'
        if backend == 'onnxruntime' and self.device.type != 'cpu':
            raise ValueError(f'the onnxruntime backend runs on the CPU, not on {self.device}')
        if backend == 'onnxruntime' and not onnx_backend.available():
            raise ValueError('the onnxruntime backend needs the onnxruntime and onnx packages (pip install both)')
        self.backend = backend
        self._rebuild_graph()

    def _rebuild_graph(self) -> None:
        self._graph = ScoringGraph(self.autoencoder, self.preprocessor, self.oe_head, self.memory).to(self.device)
        self._onnx: onnx_backend.OnnxSession | None = None

    def set_oe_head(self, head: OEHead) -> None:
        """Attach a trained outlier-exposure head and decide on the fused score; recalibrate afterwards."""
        self.oe_head = head.to(self.device).eval()
        self._has_oe_head = True
        self.decision_score = 'fused'
        self._rebuild_graph()

    def set_memory(self, memory: PatrolMemory) -> None:
        """Attach a fitted patrol memory and decide on its change score (fused with an OE head);
        recalibrate afterwards."""
        self.memory = memory.to(self.device).eval()
        self._has_memory = True
        self.decision_score = self.default_decision_score
        self._rebuild_graph()

    def held_out_normal_scores(self) -> dict[str, np.ndarray]:
        """The patrol memory's held-out peaks as raw change scores, when it was fitted in this process."""
        peaks = None if self.memory is None else self.memory.held_out_peaks
        return {} if peaks is None else {'change': peaks}

    def export_onnx(self, properties: dict[str, str] | None = None) -> bytes:
        """The scoring graph with the current weights as an ONNX model, with metadata ``properties``."""
        return onnx_backend.export_graph(self._graph, self.image_size, properties)

    def _forward(self, batch_uint8: np.ndarray) -> dict[str, np.ndarray]:
        if self.backend == 'onnxruntime':
            if self._onnx is None:
                self._onnx = onnx_backend.OnnxSession(self.export_onnx())
            return self._onnx(batch_uint8)
        frames = self.preprocessor.checked_tensor(batch_uint8, self.device)
        with torch.inference_mode():
            outputs = self._graph(frames)
        names = self._graph.output_names
        return {name: value.float().cpu().numpy() for name, value in zip(names, outputs, strict=True)}

    @torch.inference_mode()
    def reconstruct(self, batch_uint8: np.ndarray) -> np.ndarray:
        """The autoencoder's reconstructions of (N, S, S, 3) uint8 RGB frames, as uint8 RGB images."""
        images = self.preprocessor.normalize(batch_uint8, self.device)
        return self.preprocessor.denormalize(self.autoencoder(images)[0].float(), batch_uint8)
