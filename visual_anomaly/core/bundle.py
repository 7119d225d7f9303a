"""The model bundle: one file with everything needed to score frames.

Both formats carry the same JSON metadata: architecture, preprocessing, score normalization,
thresholds, decision score, training provenance and a format version.

* ``.pt`` (what training writes): a ``torch.save`` file holding only tensors, strings and
  numbers: the weights of the autoencoder and the optional outlier-exposure head, the optional
  patrol memory (normal frames as uint8, per-pixel statistics), plus the metadata. It is read
  with ``torch.load(weights_only=True)``, so loading a bundle never runs code from the file. It
  loads as a :class:`Detector` (PyTorch or ONNX Runtime, CPU or GPU).
* ``.onnx`` (written by :func:`export_onnx` from a ``.pt`` bundle): the whole scoring graph
  (normalization, autoencoder, error map, local window, patrol memory, OE head) with the
  metadata in the model's metadata properties. It loads as an :class:`OnnxModel`, which scores with onnxruntime
  and NumPy alone, for robots without PyTorch.

PyTorch is imported only to read or write ``.pt`` bundles.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .bundle_checks import (
    CHECKSUM_KEY,
    BundleError,
    check_onnx_interface,
    check_pieces_agree,
    check_tensors,
    checksum,
    verify_checksum,
)
from .device import check_device_spec
from .onnx_backend import OnnxModel, OnnxSession, is_sealed, serialize_sealed
from .preprocessing import PreprocessingConfig
from .scoring import Calibration, FrameScorer

if TYPE_CHECKING:
    from .detector import Detector

BUNDLE_FORMAT = 'visual_anomaly.model_bundle'
BUNDLE_VERSION = 1
ONNX_FORMAT_KEY = 'visual_anomaly.format_version'  # metadata properties of an exported bundle
ONNX_METADATA_KEY = 'visual_anomaly.metadata'

logger = logging.getLogger(__name__)


def _metadata(detector: Detector, provenance: dict[str, Any] | None) -> dict[str, Any]:
    return {
        'autoencoder': detector.autoencoder.config.to_dict(),
        'preprocessing': detector.preprocessing.to_dict(),
        'oe_head': _oe_head_metadata(detector.oe_head),
        'memory': None if detector.memory is None else detector.memory.config.to_dict(),
        **detector.calibration.to_dict(),
        'decision_score': detector.decision_score,
        'provenance': provenance or {},
    }


def _oe_head_metadata(head: Any) -> dict[str, Any] | None:
    if head is None:
        return None
    from .torch_model import ChangeClassifier, head_kind

    reads = 'change' if isinstance(head, ChangeClassifier) else 'embedding'
    return {'embedding_dim': head.embedding_dim, 'input': reads, 'head': head_kind(head)}


def _write_atomically(path: Path, write: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    write(tmp)
    os.replace(tmp, path)
    return path


def _tensors(module: Any) -> dict[str, Any]:
    return {} if module is None else {k: v.detach().cpu() for k, v in module.state_dict().items()}


def save_bundle(path: str | os.PathLike, detector: Detector, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``detector`` (weights, patrol memory, calibration, config) to a ``.pt`` bundle at ``path`` atomically."""
    import torch

    payload = {
        'format': BUNDLE_FORMAT,
        'format_version': BUNDLE_VERSION,
        'metadata': json.dumps(_metadata(detector, provenance), sort_keys=True),
        'autoencoder': _tensors(detector.autoencoder),
        'oe_head': _tensors(detector.oe_head),
        'memory': _tensors(detector.memory),
    }
    payload[CHECKSUM_KEY] = checksum(payload)
    return _write_atomically(Path(path), lambda tmp: torch.save(payload, tmp))


def export_onnx(path: str | os.PathLike, detector: Detector, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``detector``'s scoring graph and calibration to an ``.onnx`` bundle that runs without PyTorch."""
    properties = {
        ONNX_FORMAT_KEY: str(BUNDLE_VERSION),
        ONNX_METADATA_KEY: json.dumps(_metadata(detector, provenance), sort_keys=True),
    }
    model = detector.export_onnx(properties)
    return _write_atomically(Path(path), lambda tmp: tmp.write_bytes(model))


def read_bundle_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The bundle's JSON metadata (config, calibration, provenance) of a ``.pt`` or ``.onnx`` bundle."""
    path = Path(path)
    return _read_onnx(path)[1] if path.suffix == '.onnx' else _read_payload(path)[1]


def load_bundle(path: str | os.PathLike, device: str = 'auto', backend: str = 'auto') -> FrameScorer:
    """Build a scorer from a bundle file and score a blank frame with it; raises :class:`BundleError`
    on any problem, the warm-up's included.

    A ``.pt`` bundle gives a :class:`Detector`: ``backend='auto'`` scores with ONNX Runtime on
    the CPU when it is installed (several times faster for these small networks), else with
    eager PyTorch. A ``.onnx`` bundle gives an :class:`OnnxModel` (CPU, onnxruntime only).
    """
    path = Path(path)
    scorer = _load_onnx(path, device, backend) if path.suffix == '.onnx' else _load_pt(path, device, backend)
    size = scorer.image_size
    try:
        scorer.detect_resized(np.zeros((1, size, size, 3), np.uint8))  # builds the backend now, not at frame 1
    except Exception as error:  # noqa: BLE001 - onnxruntime and PyTorch raise their own types at run time
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BundleError(f'{path}: the model fails on a blank frame ({reason})') from error
    return scorer


def _load_pt(path: Path, device: str, backend: str) -> FrameScorer:
    payload, metadata = _read_payload(path)
    from .detector import Detector

    try:
        preprocessing = PreprocessingConfig(**metadata['preprocessing'])
        autoencoder, oe_head, memory = _checked_modules(path, payload, metadata, preprocessing)
        calibration = Calibration.from_dict(metadata)
        decision_score = metadata['decision_score']
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise BundleError(f'{path}: inconsistent model bundle ({error})') from error
    return Detector(
        autoencoder, preprocessing, oe_head, calibration, decision_score, device, backend=backend, memory=memory
    )


def _checked_modules(
    path: Path, payload: dict[str, Any], metadata: dict[str, Any], preprocessing: PreprocessingConfig
) -> tuple[Any, Any, Any]:
    """The autoencoder, OE head and patrol memory of a ``.pt`` payload, each built only once its
    stored tensors are known to fit the metadata (:mod:`~visual_anomaly.core.bundle_checks`)."""
    import torch

    from .change import MemoryConfig, PatrolMemory
    from .preprocessing import Preprocessor
    from .torch_model import AutoencoderConfig, ChangeClassifier, ConvAutoencoder, make_oe_head

    memory = None
    if metadata.get('memory') is not None:
        tensors, config = payload['memory'], MemoryConfig(**metadata['memory'])
        normalize = Preprocessor(preprocessing).normalize_tensor
        frames = tensors.get('frames')
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else ()
        check_tensors(
            path,
            'patrol memory',
            lambda: PatrolMemory(torch.empty(shape, dtype=torch.uint8), normalize, config),
            tensors,
        )
        memory = PatrolMemory(frames, normalize, config)
        memory.load_state_dict(tensors)
    check_pieces_agree(path, metadata, None if memory is None else memory.frames.shape[1])
    config = AutoencoderConfig(**metadata['autoencoder'])
    check_tensors(path, 'autoencoder', lambda: ConvAutoencoder(config), payload['autoencoder'])
    autoencoder = ConvAutoencoder(config)
    autoencoder.load_state_dict(payload['autoencoder'])
    oe_head = None
    if metadata['oe_head'] is not None:
        head_metadata = dict(metadata['oe_head'])
        reads, kind = head_metadata.pop('input', 'embedding'), head_metadata.pop('head', 'mlp')
        dim = head_metadata['embedding_dim']

        def build() -> Any:
            return ChangeClassifier(dim, kind) if reads == 'change' else make_oe_head(kind, dim)

        check_tensors(path, 'outlier-exposure head', build, payload['oe_head'])
        oe_head = build()
        oe_head.load_state_dict(payload['oe_head'])
    return autoencoder, oe_head, memory


def _load_onnx(path: Path, device: str, backend: str) -> OnnxModel:
    if backend not in ('auto', 'onnxruntime'):
        raise BundleError(f'{path}: an .onnx bundle runs with onnxruntime; use the .pt bundle for backend {backend!r}')
    if check_device_spec(device) not in ('auto', 'cpu'):
        logger.warning('an .onnx bundle runs on the CPU; device %r ignored (use the .pt bundle on a GPU)', device)
    session, metadata = _read_onnx(path)
    try:
        check_onnx_interface(path, session.session, metadata)
        calibration = Calibration.from_dict(metadata)
        preprocessing = PreprocessingConfig(**metadata['preprocessing'])
        return OnnxModel(session, preprocessing, calibration, metadata['decision_score'])
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise BundleError(f'{path}: inconsistent model bundle ({error})') from error


def _read_onnx(path: Path) -> tuple[OnnxSession, dict[str, Any]]:
    if not path.is_file():
        raise BundleError(f'{path}: model bundle not found')
    data = path.read_bytes()
    try:
        session = OnnxSession(data)
    except ImportError as error:
        raise BundleError(f'{path}: an .onnx bundle needs onnxruntime (pip install onnxruntime)') from error
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types on arbitrary bytes
        raise BundleError(f'{path}: unreadable, truncated or not an ONNX model ({error})') from error
    version = session.properties.get(ONNX_FORMAT_KEY)
    if version is None or ONNX_METADATA_KEY not in session.properties:
        raise BundleError(f'{path}: an ONNX model, but not a visual_anomaly bundle (no {ONNX_METADATA_KEY})')
    _check_version(path, int(version) if version.isdigit() else version)
    _check_seal(path, data)
    try:
        metadata = json.loads(session.properties[ONNX_METADATA_KEY])
    except json.JSONDecodeError as error:
        raise BundleError(f'{path}: model bundle metadata is corrupt ({error})') from error
    return session, metadata


def _check_seal(path: Path, data: bytes) -> None:
    sealed = is_sealed(data)
    if sealed is None:
        logger.warning(
            '%s: no checksum to verify its graph against (exported by an older visual_anomaly); export it again '
            '(visual-anomaly-train export) to add one',
            path,
        )
    elif not sealed:
        raise BundleError(
            f'{path}: damaged or altered model bundle, its graph, weights and metadata do not match the checksum '
            'stored with them (use an intact copy, or export it again)'
        )


def _check_version(path: Path, version: object) -> None:
    if not isinstance(version, int) or version > BUNDLE_VERSION:
        raise BundleError(
            f'{path}: bundle format version {version} is newer than this visual_anomaly reads '
            f'({BUNDLE_VERSION}); upgrade visual_anomaly'
        )


def _read_payload(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if not path.is_file():
        raise BundleError(f'{path}: model bundle not found')
    try:
        import torch
    except ImportError as error:
        raise BundleError(
            f'{path}: a .pt bundle needs PyTorch; without it, load the .onnx bundle exported from it '
            f'(visual-anomaly-train export)'
        ) from error
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
    _check_version(path, payload.get('format_version'))
    if not verify_checksum(path, payload):
        logger.warning(
            '%s: no checksum to verify its weights against (saved by an older visual_anomaly); '
            're-saving it, e.g. re-calibrating it, adds one',
            path,
        )
    try:
        metadata = json.loads(payload['metadata'])
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise BundleError(f'{path}: model bundle metadata is missing or corrupt ({error})') from error
    return payload, metadata


def check_recalibrated_path(source: str | os.PathLike, out: str | os.PathLike) -> None:
    """Raise :class:`BundleError` unless ``out`` can receive bundle ``source`` re-calibrated (see
    :func:`save_recalibrated`): the same format, and not ``source`` itself."""
    source, out = Path(source), Path(out)
    if out.suffix != source.suffix:
        raise BundleError(f'{out}: a re-calibrated {source.suffix} bundle must be written as {source.suffix} too')
    if out.exists() and out.resolve() == source.resolve():
        raise BundleError(f'{out}: would overwrite the bundle being re-calibrated; write it to another file')


def save_recalibrated(
    source: str | os.PathLike, out: str | os.PathLike, scorer: FrameScorer, note: dict[str, Any] | None = None
) -> Path:
    """Copy bundle ``source`` to ``out`` with the calibration and decision score of ``scorer`` (loaded from it).

    Same format as ``source`` (.pt, or .onnx, which needs the ``onnx`` package); the weights or the
    graph are copied unchanged, ``note`` becomes the provenance's ``recalibration``. Refuses to
    overwrite ``source``.
    """
    source, out = Path(source), Path(out)
    check_recalibrated_path(source, out)

    def updated(metadata: dict[str, Any]) -> str:
        provenance = {**metadata.get('provenance', {}), 'recalibration': note or {}}
        calibration = {**scorer.calibration.to_dict(), 'decision_score': scorer.decision_score}
        return json.dumps({**metadata, **calibration, 'provenance': provenance}, sort_keys=True)

    if source.suffix != '.onnx':
        import torch

        payload, metadata = _read_payload(source)
        payload = {**payload, 'metadata': updated(metadata)}
        payload[CHECKSUM_KEY] = checksum(payload)
        return _write_atomically(out, lambda tmp: torch.save(payload, tmp))
    metadata = _read_onnx(source)[1]
    try:
        import onnx
    except ImportError as error:
        raise BundleError(f'{out}: writing an .onnx bundle needs the onnx package (pip install onnx)') from error
    model = onnx.load_from_string(source.read_bytes())
    next(p for p in model.metadata_props if p.key == ONNX_METADATA_KEY).value = updated(metadata)
    return _write_atomically(out, lambda tmp: tmp.write_bytes(serialize_sealed(model)))
