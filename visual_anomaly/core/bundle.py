"""The model bundle: one file with everything needed to score frames.

A bundle is a ``torch.save`` file holding only tensors, strings and numbers: the weights of the
autoencoder and the optional outlier-exposure head, plus a JSON document with the architecture,
preprocessing, score normalization, thresholds, decision score, training provenance and a
format version. It is read with ``torch.load(weights_only=True)``, so loading a bundle never
runs code from the file.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .detector import Calibration, Detector
from .preprocessing import PreprocessingConfig
from .thresholds import ScoreNormalizer, Threshold
from .torch_model import AutoencoderConfig, ConvAutoencoder, OutlierExposureHead

BUNDLE_FORMAT = 'visual_anomaly.model_bundle'
BUNDLE_VERSION = 1


class BundleError(ValueError):
    """A model bundle is missing, unreadable or not compatible; the message names the file."""


def save_bundle(path: str | os.PathLike, detector: Detector, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``detector`` (weights, calibration, config) to ``path`` atomically."""
    path = Path(path)
    calibration = detector.calibration
    metadata = {
        'autoencoder': detector.autoencoder.config.to_dict(),
        'preprocessing': detector.preprocessor.config.to_dict(),
        'oe_head': None if detector.oe_head is None else {'embedding_dim': detector.oe_head.embedding_dim},
        'normalizers': {kind: n.to_dict() for kind, n in calibration.normalizers.items()},
        'thresholds': {kind: t.to_dict() for kind, t in calibration.thresholds.items()},
        'decision_score': detector.decision_score,
        'provenance': provenance or {},
    }
    payload = {
        'format': BUNDLE_FORMAT,
        'format_version': BUNDLE_VERSION,
        'metadata': json.dumps(metadata, sort_keys=True),
        'autoencoder': {k: v.detach().cpu() for k, v in detector.autoencoder.state_dict().items()},
        'oe_head': {}
        if detector.oe_head is None
        else {k: v.detach().cpu() for k, v in detector.oe_head.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_bundle_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The bundle's JSON metadata (config, calibration, provenance) without building models."""
    return _read_payload(Path(path))[1]


def load_bundle(path: str | os.PathLike, device: str | torch.device = 'auto', backend: str = 'auto') -> Detector:
    """Build a :class:`Detector` from a bundle file; raises :class:`BundleError` on any problem.

    ``backend='auto'`` scores with ONNX Runtime on the CPU when it is installed (several times
    faster for these small networks), else with eager PyTorch; see :class:`Detector`.
    """
    path = Path(path)
    payload, metadata = _read_payload(path)
    try:
        autoencoder = ConvAutoencoder(AutoencoderConfig(**metadata['autoencoder']))
        autoencoder.load_state_dict(payload['autoencoder'])
        oe_head = None
        if metadata['oe_head'] is not None:
            oe_head = OutlierExposureHead(**metadata['oe_head'])
            oe_head.load_state_dict(payload['oe_head'])
        calibration = Calibration(
            normalizers={k: ScoreNormalizer(**v) for k, v in metadata['normalizers'].items()},
            thresholds={k: Threshold(**v) for k, v in metadata['thresholds'].items()},
        )
        preprocessing = PreprocessingConfig(**metadata['preprocessing'])
        decision_score = metadata['decision_score']
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise BundleError(f'{path}: inconsistent model bundle ({error})') from error
    return Detector(autoencoder, preprocessing, oe_head, calibration, decision_score, device, backend=backend)


def _read_payload(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if not path.is_file():
        raise BundleError(f'{path}: model bundle not found')
    try:
        payload = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        raise BundleError(
            f'{path}: refused to load, the file holds objects other than tensors and plain data '
            f'(not a visual_anomaly bundle, or tampered with)'
        ) from error
    except Exception as error:  # noqa: BLE001 - torch.load raises many types on arbitrary bytes
        raise BundleError(
            f'{path}: unreadable, truncated or not a model bundle ({error or type(error).__name__})'
        ) from error
    if not isinstance(payload, dict) or payload.get('format') != BUNDLE_FORMAT:
        raise BundleError(f'{path}: not a visual_anomaly model bundle')
    version = payload.get('format_version')
    if not isinstance(version, int) or version > BUNDLE_VERSION:
        raise BundleError(
            f'{path}: bundle format version {version} is newer than this visual_anomaly reads '
            f'({BUNDLE_VERSION}); upgrade visual_anomaly'
        )
    try:
        metadata = json.loads(payload['metadata'])
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise BundleError(f'{path}: model bundle metadata is missing or corrupt ({error})') from error
    return payload, metadata
