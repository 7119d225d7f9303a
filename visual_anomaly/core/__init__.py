"""ROS-free detector core: model, preprocessing, scoring, thresholds and model bundle I/O."""

from .bundle import BundleError, load_bundle, read_bundle_metadata, save_bundle
from .detector import SCORE_KINDS, Calibration, DetectionResult, Detector
from .device import resolve_device
from .preprocessing import COLOR_ORDERS, PreprocessingConfig, Preprocessor, resize_frame, resize_frames
from .thresholds import (
    ScoreNormalizer,
    Threshold,
    threshold_at_fpr,
    threshold_at_percentile,
    threshold_best_f1,
)
from .torch_model import AutoencoderConfig, ConvAutoencoder, OutlierExposureHead

__all__ = [
    'COLOR_ORDERS',
    'SCORE_KINDS',
    'AutoencoderConfig',
    'BundleError',
    'Calibration',
    'ConvAutoencoder',
    'DetectionResult',
    'Detector',
    'OutlierExposureHead',
    'PreprocessingConfig',
    'Preprocessor',
    'ScoreNormalizer',
    'Threshold',
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
