"""ONNX Runtime execution of the detector's scoring graph, with or without PyTorch.

The eager PyTorch forward of a small autoencoder on a CPU spends most of its time in per-operator
overhead; ONNX Runtime runs the same graph (exported from the same module, so the math is
written once) several times faster, most of all at batch size 1, which is what a camera node
does. A :class:`~visual_anomaly.core.detector.Detector` exports its graph in memory; an exported
``.onnx`` bundle is scored by :class:`OnnxModel`, which needs only onnxruntime and NumPy.
PyTorch and ``onnx`` are imported only to export.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from typing import TYPE_CHECKING

import numpy as np

from .preprocessing import PreprocessingConfig
from .scoring import Calibration, FrameScorer

if TYPE_CHECKING:
    import onnx
    import torch


#: metadata property holding the SHA-256 (hex) of the whole file with this value blanked (see :func:`seal`)
CHECKSUM_PROPERTY = 'visual_anomaly.sha256'
_BLANK = b'0' * 64
# a metadata entry as protobuf writes it: field 1 (key, length-prefixed), then field 2 (value, 64 bytes)
_ENTRY = b'\x0a' + bytes([len(CHECKSUM_PROPERTY)]) + CHECKSUM_PROPERTY.encode() + b'\x12\x40'


def _checksum_at(model: bytes) -> int | None:
    """Offset of the checksum property's 64-byte value in serialized ``model`` bytes, None when it has none."""
    at = model.rfind(_ENTRY)  # metadata properties are serialized after the graph, at the end
    return None if at < 0 or at + len(_ENTRY) + 64 > len(model) else at + len(_ENTRY)


def seal(model: bytes) -> bytes:
    """``model`` (serialized ONNX with a :data:`CHECKSUM_PROPERTY` entry) with that entry set to the SHA-256 of
    the file as it is with the value blanked: any changed byte, weights included, breaks the seal, and
    checking it needs neither the ``onnx`` package nor parsing."""
    at = _checksum_at(model)
    if at is None:
        raise ValueError(f'the model has no {CHECKSUM_PROPERTY} property to seal')
    digest = hashlib.sha256(model[:at] + _BLANK + model[at + 64 :]).hexdigest().encode()
    return model[:at] + digest + model[at + 64 :]


def is_sealed(model: bytes) -> bool | None:
    """Whether serialized ``model`` matches its :func:`seal`; None when it carries none (an older export)."""
    at = _checksum_at(model)
    return None if at is None else seal(model) == model


def available() -> bool:
    """Whether ``onnxruntime`` (to run the graph) and ``onnx`` (which torch needs to export it) are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_graph(graph: torch.nn.Module, image_size: int, properties: dict[str, str] | None = None) -> bytes:
    """A scoring graph (uint8 NHWC frames in, its ``output_names`` out) as sealed ONNX bytes (:func:`seal`) with
    metadata ``properties``."""
    import onnx
    import torch

    example = torch.zeros(2, image_size, image_size, 3, dtype=torch.uint8)
    buffer = io.BytesIO()
    output_names = list(graph.output_names)
    with warnings.catch_warnings():  # the exporter's notes on constant folding are not for users
        warnings.simplefilter('ignore')
        torch.onnx.export(
            graph.eval(),
            (example,),
            buffer,
            input_names=['frames'],
            output_names=output_names,
            dynamic_axes={name: {0: 'batch'} for name in ['frames', *output_names]},
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in (properties or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return serialize_sealed(model)


def serialize_sealed(model: onnx.ModelProto) -> bytes:
    """An ONNX ``model``'s bytes, sealed (:func:`seal`); the checksum property is added when it has none."""
    entry = next((prop for prop in model.metadata_props if prop.key == CHECKSUM_PROPERTY), None)
    if entry is None:
        entry = model.metadata_props.add()
        entry.key = CHECKSUM_PROPERTY
    entry.value = _BLANK.decode()
    return seal(model.SerializeToString())


class OnnxSession:
    """An ONNX Runtime CPU session over exported scoring-graph bytes: uint8 batch -> named outputs."""

    def __init__(self, model: bytes, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # errors reach the caller as exceptions, not as log lines
        self.session = onnxruntime.InferenceSession(model, options, providers=['CPUExecutionProvider'])
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.properties: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, batch_uint8: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch_uint8)
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f'expected an (N, H, W, 3) uint8 batch, got {batch.shape} {batch.dtype}')
        outputs = self.session.run(self.output_names, {'frames': batch})
        return dict(zip(self.output_names, outputs, strict=True))


class OnnxModel(FrameScorer):
    """An exported scoring graph with its calibration: scores frames on the CPU without PyTorch."""

    backend = 'onnxruntime'
    device = 'cpu'

    def __init__(
        self,
        session: OnnxSession,
        preprocessing: PreprocessingConfig,
        calibration: Calibration | None = None,
        decision_score: str | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(
            preprocessing,
            'oe_logit' in session.output_names,
            calibration,
            decision_score,
            batch_size,
            has_memory='change_peak' in session.output_names,
        )
        self.session = session

    def _forward(self, batch_uint8: np.ndarray) -> dict[str, np.ndarray]:
        return self.session(batch_uint8)
