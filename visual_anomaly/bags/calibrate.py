"""Re-calibration for a new building: a bundle's threshold set on the frames of a recorded normal patrol.

No retraining: the network stays as it is, and the score normalizers and thresholds are fitted
again, on every usable camera frame of the bag (all treated as normal). A false-positive target
``fpr`` needs at least ``10 / fpr`` frames (1,000 for 1%; see :mod:`visual_anomaly.core.thresholds`).
With ``memory``, the bundle also learns the building's patrol memory from the bag (see
:mod:`visual_anomaly.core.change`): alternate stretches of the patrol become the memory and the
calibration frames, so the threshold is read from frames the memory does not hold.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visual_anomaly.bags.io import BagFrames, read_bag_frames
from visual_anomaly.core import FrameScorer, Threshold, load_bundle, read_bundle_metadata, save_bundle
from visual_anomaly.core.bundle import check_recalibrated_path, save_recalibrated
from visual_anomaly.core.change import MemoryFitConfig, fit_memory
from visual_anomaly.core.thresholds import MIN_FRAMES_ABOVE, calibration_shortfall

MEMORY_STRETCHES = 20  # a patrol is cut into this many stretches: even ones -> memory, odd ones -> calibration


@dataclass(frozen=True)
class Recalibration:
    """What :func:`calibrate_bag` did: the new bundle and its threshold, and the one it replaced."""

    bundle: Path
    topic: str
    frames: int
    rejected: int
    decision_score: str
    threshold: Threshold
    previous: Threshold | None
    memory_frames: int = 0  # frames of the patrol memory learnt from the bag (0: the bundle's memory kept)


def default_output(model: Path, bag: Path) -> Path:
    """``<model stem>.calibrated<suffix>`` beside the bag (a building's threshold lives with its recording)."""
    return bag.parent / f'{model.stem}.calibrated{model.suffix}'


def calibrate_bag(
    model: str | os.PathLike,
    bag: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    *,
    fpr: float = 0.01,
    topic: str | None = None,
    device: str = 'auto',
    batch_size: int = 256,
    progress: bool = True,
    memory: bool = False,
    allow_partial: bool = False,
) -> Recalibration:
    """Re-calibrate bundle ``model`` (.pt or .onnx) at ``fpr`` on the camera frames of ``bag`` and write it to ``out``.

    ``bag`` may be several bags of one building (patrols on other days, in other light): their frames
    are pooled in the order given, and ``out`` must be named. ``out`` defaults to
    :func:`default_output`; it is never ``model`` itself. Raises ValueError when
    the bag holds fewer usable frames than ``fpr`` needs. ``memory`` (a ``.pt`` bundle only) also
    learns the patrol memory from half of the bag's frames and calibrates on the other half together
    with the memory's held-out training frames (so a 1% target needs 1,000 frames in all). A damaged
    bag is a ``BagError`` unless ``allow_partial``.
    """
    model, bags = Path(model), [Path(bag)] if isinstance(bag, str | os.PathLike) else [Path(b) for b in bag]
    if not bags:
        raise ValueError('calibration needs at least one bag')
    if out is None and len(bags) > 1:
        raise ValueError(f'{len(bags)} bags pooled into one bundle need its path (out)')
    out = Path(out) if out is not None else default_output(model, bags[0])
    if not 0.0 < fpr < 1.0:
        raise ValueError(f'fpr must be in (0, 1), got {fpr}')
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    check_recalibrated_path(model, out)  # before the work, not after it
    if memory and model.suffix == '.onnx':
        raise ValueError(f'{model}: learning a patrol memory needs the .pt bundle (export the result to .onnx after)')
    scorer = load_bundle(model, device)
    scorer.batch_size = batch_size
    frames = _pooled_frames(bags, topic, scorer.image_size, progress, allow_partial)
    where = ', '.join(map(str, bags))
    previous = scorer.calibration.thresholds.get(scorer.decision_score)
    normal = learn_memory(scorer, frames.frames) if memory else frames.frames
    pooled = scorer.calibration_frames(len(normal))  # with the new memory's held-out frames
    shortfall = calibration_shortfall(pooled, fpr)
    if shortfall:
        raise ValueError(
            f'{where}: {shortfall}; record a longer patrol, or calibrate a false-positive rate of at least '
            f'{MIN_FRAMES_ABOVE / pooled:.3g} on this one'
        )
    scorer.calibrate(normal, fpr=fpr)
    threshold = scorer.calibration.thresholds[scorer.decision_score]
    note = {'bag': where, 'topic': frames.topic, 'frames': len(normal), 'fpr': fpr, 'source_bundle': str(model)}
    note['held_out_memory_frames'] = pooled - len(normal)
    note['missing'] = frames.missing
    if memory:
        note['memory_frames'] = scorer.memory.size
        provenance = {**read_bundle_metadata(model).get('provenance', {}), 'recalibration': note}
        bundle = save_bundle(out, scorer, provenance)
    else:
        bundle = save_recalibrated(model, out, scorer, note)
    learnt = scorer.memory.size if memory else 0
    return Recalibration(
        bundle, frames.topic, len(normal), len(frames.rejected), scorer.decision_score, threshold, previous, learnt
    )


def _pooled_frames(
    bags: list[Path], topic: str | None, image_size: int, progress: bool, allow_partial: bool
) -> BagFrames:
    """The usable camera frames of ``bags``, one bag after the other; a bag with none is an error naming it."""
    parts = []
    for bag in bags:
        part = read_bag_frames(bag, topic, image_size=image_size, progress=progress, allow_partial=allow_partial)
        if not len(part):
            raise ValueError(f'{bag}: no usable frame on {part.topic} ({len(part.rejected)} rejected)')
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    return BagFrames(
        topic=', '.join(dict.fromkeys(part.topic for part in parts)),
        msgtype=parts[0].msgtype,
        stamps=np.concatenate([part.stamps for part in parts]),
        frames=np.concatenate([part.frames for part in parts]),
        rejected=[item for part in parts for item in part.rejected],
        missing=sum(part.missing for part in parts),
    )


def learn_memory(scorer: FrameScorer, frames: np.ndarray, stretches: int = MEMORY_STRETCHES) -> np.ndarray:
    """Give ``scorer`` a patrol memory of every other one of ``stretches`` equal stretches of ``frames`` (in
    patrol order); the frames of the other stretches, for calibration."""
    if not hasattr(scorer, 'set_memory'):
        raise ValueError('learning a patrol memory needs a .pt bundle')
    in_memory = (np.arange(len(frames)) * stretches // max(len(frames), 1)) % 2 == 0
    fit = MemoryFitConfig() if scorer.memory is None else MemoryFitConfig(**scorer.memory.config.to_dict())
    scorer.set_memory(fit_memory(frames[in_memory], scorer.preprocessing, fit))
    return frames[~in_memory]
