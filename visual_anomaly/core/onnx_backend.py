"""ONNX Runtime execution of the detector's scoring graph.

The eager PyTorch forward of a small autoencoder on a CPU spends most of its time in per-operator
overhead; ONNX Runtime runs the same graph (exported once, in memory, from the same module, so
the math is written once) several times faster, most of all at batch size 1, which is what a
camera node does. Scores agree with the eager path to within float32 rounding.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import torch


def available() -> bool:
    """Whether ``onnxruntime`` (to run the graph) and ``onnx`` (which torch needs to export it) are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxScorer:
    """A :class:`~visual_anomaly.core.detector.ScoringGraph` exported to an ONNX Runtime CPU session."""

    def __init__(self, graph: torch.nn.Module, image_size: int, threads: int | None = None) -> None:
        import onnxruntime

        example = torch.zeros(2, image_size, image_size, 3, dtype=torch.uint8)
        buffer = io.BytesIO()
        self.output_names = list(graph.output_names)
        with warnings.catch_warnings():  # the exporter's notes on constant folding are not for users
            warnings.simplefilter('ignore')
            torch.onnx.export(
                graph.eval(),
                (example,),
                buffer,
                input_names=['frames'],
                output_names=self.output_names,
                dynamic_axes={name: {0: 'batch'} for name in ['frames', *self.output_names]},
                dynamo=False,
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=['CPUExecutionProvider'])

    def __call__(self, batch_uint8: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch_uint8)
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f'expected an (N, H, W, 3) uint8 batch, got {batch.shape} {batch.dtype}')
        outputs = self.session.run(self.output_names, {'frames': batch})
        return dict(zip(self.output_names, outputs, strict=True))
