"""Re-calibration for a new building: a bundle's threshold set on the frames of a recorded normal patrol.

No retraining: the network stays as it is, and only the score normalizers and thresholds are fitted
again, on every usable camera frame of the bag (all treated as normal). A false-positive target
``fpr`` needs at least ``10 / fpr`` frames (1,000 for 1%; see :mod:`visual_anomaly.core.thresholds`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from visual_anomaly.bags.io import read_bag_frames
from visual_anomaly.core import Threshold, load_bundle
from visual_anomaly.core.bundle import check_recalibrated_path, save_recalibrated
from visual_anomaly.core.thresholds import MIN_FRAMES_ABOVE, calibration_shortfall


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


def default_output(model: Path, bag: Path) -> Path:
    """``<model stem>.calibrated<suffix>`` beside the bag (a building's threshold lives with its recording)."""
    return bag.parent / f'{model.stem}.calibrated{model.suffix}'


def calibrate_bag(
    model: str | os.PathLike,
    bag: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    fpr: float = 0.01,
    topic: str | None = None,
    device: str = 'auto',
    batch_size: int = 256,
    progress: bool = True,
) -> Recalibration:
    """Re-calibrate bundle ``model`` (.pt or .onnx) at ``fpr`` on the camera frames of ``bag`` and write it to ``out``.

    ``out`` defaults to :func:`default_output`; it is never ``model`` itself. Raises ValueError when
    the bag holds fewer usable frames than ``fpr`` needs.
    """
    model, bag = Path(model), Path(bag)
    out = Path(out) if out is not None else default_output(model, bag)
    if not 0.0 < fpr < 1.0:
        raise ValueError(f'fpr must be in (0, 1), got {fpr}')
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    check_recalibrated_path(model, out)  # before the work, not after it
    scorer = load_bundle(model, device)
    scorer.batch_size = batch_size
    frames = read_bag_frames(bag, topic, image_size=scorer.image_size, progress=progress)
    if not len(frames):
        raise ValueError(f'{bag}: no usable frame on {frames.topic} ({len(frames.rejected)} rejected)')
    shortfall = calibration_shortfall(len(frames), fpr)
    if shortfall:
        raise ValueError(
            f'{bag}: {shortfall}; record a longer patrol, or calibrate a false-positive rate of at least '
            f'{MIN_FRAMES_ABOVE / len(frames):.3g} on this one'
        )
    previous = scorer.calibration.thresholds.get(scorer.decision_score)
    scorer.calibrate(frames.frames, fpr=fpr)
    threshold = scorer.calibration.thresholds[scorer.decision_score]
    note = {'bag': str(bag), 'topic': frames.topic, 'frames': len(frames), 'fpr': fpr, 'source_bundle': str(model)}
    bundle = save_recalibrated(model, out, scorer, note)
    rejected = len(frames.rejected)
    return Recalibration(bundle, frames.topic, len(frames), rejected, scorer.decision_score, threshold, previous)
