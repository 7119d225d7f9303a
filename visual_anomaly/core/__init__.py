"""ROS-free detector core: model, preprocessing, scoring, thresholds and model bundle I/O.

Names are imported on first use, so that scoring an ``.onnx`` bundle (``load_bundle``,
``OnnxModel``, ``FrameScorer``, ...) never imports PyTorch; the PyTorch models, the
:class:`Detector` and ``.pt`` bundles import it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    'bundle': ('BundleError', 'export_onnx', 'load_bundle', 'read_bundle_metadata', 'save_bundle'),
    'detector': ('Detector',),
    'device': ('check_device_spec', 'resolve_device'),
    'onnx_backend': ('OnnxModel',),
    'resources': ('default_model_path',),
    'preprocessing': ('COLOR_ORDERS', 'PreprocessingConfig', 'Preprocessor', 'resize_frame', 'resize_frames'),
    'scoring': ('SCORE_KINDS', 'Calibration', 'DetectionResult', 'FrameScorer', 'NotFittedError'),
    'thresholds': (
        'ScoreNormalizer',
        'Threshold',
        'threshold_at_fpr',
        'threshold_at_percentile',
        'threshold_best_f1',
    ),
    'torch_model': ('AutoencoderConfig', 'ConvAutoencoder', 'OutlierExposureHead', 'RealNVPHead'),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [
    'AutoencoderConfig',
    'BundleError',
    'COLOR_ORDERS',
    'Calibration',
    'ConvAutoencoder',
    'DetectionResult',
    'Detector',
    'FrameScorer',
    'NotFittedError',
    'OnnxModel',
    'OutlierExposureHead',
    'PreprocessingConfig',
    'Preprocessor',
    'RealNVPHead',
    'SCORE_KINDS',
    'ScoreNormalizer',
    'Threshold',
    'check_device_spec',
    'default_model_path',
    'export_onnx',
    'load_bundle',
    'read_bundle_metadata',
    'resize_frame',
    'resize_frames',
    'resolve_device',
    'save_bundle',
    'threshold_at_fpr',
    'threshold_at_percentile',
    'threshold_best_f1',
]

if TYPE_CHECKING:
    from .bundle import BundleError, export_onnx, load_bundle, read_bundle_metadata, save_bundle
    from .detector import Detector
    from .device import check_device_spec, resolve_device
    from .onnx_backend import OnnxModel
    from .preprocessing import COLOR_ORDERS, PreprocessingConfig, Preprocessor, resize_frame, resize_frames
    from .resources import default_model_path
    from .scoring import SCORE_KINDS, Calibration, DetectionResult, FrameScorer, NotFittedError
    from .thresholds import ScoreNormalizer, Threshold, threshold_at_fpr, threshold_at_percentile, threshold_best_f1
    from .torch_model import AutoencoderConfig, ConvAutoencoder, OutlierExposureHead, RealNVPHead


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{module}', __name__), name)
    globals()[name] = value
    return value
