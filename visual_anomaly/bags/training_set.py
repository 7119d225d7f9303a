"""Patrol -> training set: a recording of normal driving as a Hazards&Robots-layout dataset."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from visual_anomaly.bags.io import (
    JPEG_QUALITY,
    DecodedFrame,
    camera_connections,
    iter_decoded,
    message_count,
    open_bag,
)
from visual_anomaly.core import resize_frame

DEDUP_SIZE = 64  # near-duplicates are compared on thumbnails of this side, in grey levels
OUTPUT_FOLDERS = ('train_set', 'validation_set', 'metadata')

logger = logging.getLogger(__name__)


def validation_mask(stamps: np.ndarray, fraction: float, block_s: float, seed: int) -> tuple[np.ndarray, list]:
    """Contiguous validation segments holding ``fraction`` of the frames, one per stratum of the patrol.

    The number of segments is about ``fraction * duration / block_s`` (at least one), so each segment
    covers roughly ``block_s`` seconds; segment ``j`` starts at a seeded random place in the ``j``-th
    equal part of the frame sequence, which spreads validation over the whole patrol. Returns the
    mask and the (first, last) header stamps of each segment.
    """
    count = len(stamps)
    mask = np.zeros(count, bool)
    n_val = max(1, round(fraction * count)) if fraction > 0 else 0
    if n_val == 0:
        return mask, []
    if n_val >= count:
        raise ValueError(f'validation_fraction {fraction} leaves no training frame out of {count}')
    duration_s = (stamps[-1] - stamps[0]) / 1e9
    n_segments = int(np.clip(round(fraction * duration_s / block_s), 1, n_val))
    rng = np.random.default_rng(seed)
    strata = np.linspace(0, count, n_segments + 1).round().astype(int)
    lengths = np.diff(np.linspace(0, n_val, n_segments + 1).round().astype(int))
    segments = []
    for (low, high), length in zip(zip(strata[:-1], strata[1:], strict=True), lengths, strict=True):
        if length == 0:
            continue
        start = low + int(rng.integers(0, max(1, high - low - length + 1)))
        mask[start : start + length] = True
        segments.append((int(stamps[start]), int(stamps[start + length - 1])))
    return mask, segments


@dataclass
class _Subsampler:
    """Keeps at most one frame per ``every_ns`` and drops near-duplicates of the last kept frame; counts both."""

    every_ns: int
    dedup_threshold: float
    counts: dict[str, int] = field(
        default_factory=lambda: {'frames': 0, 'rejected': 0, 'dropped_by_time': 0, 'dropped_as_duplicates': 0}
    )
    last_stamp: int | None = None
    last_small: np.ndarray | None = None

    def keep(self, item: DecodedFrame) -> bool:
        self.counts['frames'] += 1
        if item.frame is None:
            self.counts['rejected'] += 1
            return False
        if self.last_stamp is not None and item.stamp - self.last_stamp < self.every_ns:
            self.counts['dropped_by_time'] += 1
            return False
        small = resize_frame(item.frame, 'bgr', DEDUP_SIZE).astype(np.int16)
        if self.last_small is not None and np.abs(small - self.last_small).mean() < self.dedup_threshold:
            self.counts['dropped_as_duplicates'] += 1
            return False
        self.last_stamp, self.last_small = item.stamp, small
        return True


def _write_jpeg(path: Path, item: DecodedFrame) -> None:
    """The message's own JPEG bytes when it has them, else the frame encoded at JPEG_QUALITY."""
    if item.jpeg is not None:
        path.write_bytes(item.jpeg)
    elif not cv2.imwrite(str(path), item.frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f'could not write {path}')


def _stage_frames(
    bag_path: Path, staging: Path, topic: str | None, subsampler: _Subsampler, progress: bool
) -> tuple[str, np.ndarray]:
    """Write the kept frames of the camera topic to ``staging/NNNNNN.jpg``; returns the topic and their stamps."""
    kept_stamps: list[int] = []
    with open_bag(bag_path) as reader:
        topic, msgtype, connections = camera_connections(reader, bag_path, topic)
        decoded = iter_decoded(reader, connections, msgtype)
        for item in tqdm(decoded, total=message_count(connections), desc=f'reading {topic}', disable=not progress):
            if item.frame is None:
                logger.warning('%s: skipping the frame stamped %d ns: %s', bag_path, item.stamp, item.error)
            if subsampler.keep(item):
                _write_jpeg(staging / f'{len(kept_stamps):06d}.jpg', item)
                kept_stamps.append(item.stamp)
    return topic, np.array(kept_stamps, np.int64)


def _write_splits(out_root: Path, staging: Path, stamps: np.ndarray, validation: np.ndarray) -> None:
    """Move the staged frames into ``train_set/`` and ``validation_set/`` and list them in ``metadata/``."""
    (out_root / 'metadata').mkdir()
    for split, members in (('train', ~validation), ('validation', validation)):
        folder = out_root / f'{split}_set'
        folder.mkdir()
        rows = []
        for number, kept in enumerate(np.flatnonzero(members)):
            name = f'frame_{number:06d}.jpg'
            os.replace(staging / f'{kept:06d}.jpg', folder / name)
            rows.append((name, 0, int(stamps[kept])))
        with (out_root / 'metadata' / f'{split}_frames_envs.csv').open('w', newline='') as handle:
            writer = csv.writer(handle)
            writer.writerow(('frame', 'env', 'stamp_ns'))
            writer.writerows(rows)


def _new_staging(out_root: Path) -> Path:
    """An empty ``out_root/.staging``; the dataset's folders must not exist yet."""
    for name in OUTPUT_FOLDERS:
        if (out_root / name).exists():
            raise FileExistsError(f'{out_root / name} exists; choose a new output folder')
    staging = out_root / '.staging'
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def bag_to_training_set(
    bag_path: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    topic: str | None = None,
    every_s: float = 0.5,
    validation_fraction: float = 0.1,
    dedup_threshold: float = 2.0,
    seed: int = 0,
    block_s: float = 30.0,
    progress: bool = True,
) -> Path:
    """Turn a recording of normal driving into a Hazards&Robots-layout training set under ``out_root``.

    Keeps at most one frame per ``every_s`` seconds and drops a frame whose 64x64 version differs from
    the last kept one by less than ``dedup_threshold`` grey levels (mean absolute difference), e.g.
    while the robot stands still. Validation takes ``validation_fraction`` of the kept frames as
    contiguous segments of about ``block_s`` seconds (whole stretches of the patrol, so validation
    frames are not near-copies of training frames). Writes ``train_set/`` and ``validation_set/``
    (``frame_NNNNNN.jpg``: the message's own JPEG bytes when it is a JPEG CompressedImage, else JPEG
    quality 95), ``metadata/{train,validation}_frames_envs.csv`` (frame, env 0, stamp_ns) and
    ``metadata/source.json`` with the counts.
    """
    if every_s < 0 or dedup_threshold < 0 or block_s <= 0:
        raise ValueError('every_s and dedup_threshold must be >= 0 and block_s > 0')
    if not 0 <= validation_fraction < 1:
        raise ValueError(f'validation_fraction must be in [0, 1), got {validation_fraction}')
    bag_path, out_root = Path(bag_path), Path(out_root)
    staging = _new_staging(out_root)
    subsampler = _Subsampler(round(every_s * 1e9), dedup_threshold)
    topic, stamps = _stage_frames(bag_path, staging, topic, subsampler, progress)
    if len(stamps) < 2:
        shutil.rmtree(staging)
        raise ValueError(
            f'{bag_path}: only {len(stamps)} frame(s) kept of {subsampler.counts["frames"]} on {topic}; '
            'lower --every or --dedup-threshold'
        )
    validation, segments = validation_mask(stamps, validation_fraction, block_s, seed)
    _write_splits(out_root, staging, stamps, validation)
    staging.rmdir()
    settings = {
        'every_s': every_s,
        'dedup_threshold': dedup_threshold,
        'validation_fraction': validation_fraction,
        'block_s': block_s,
        'seed': seed,
    }
    source = {'bag': str(bag_path), 'topic': topic, **settings, **subsampler.counts, 'kept': len(stamps)}
    source.update(train=int((~validation).sum()), validation=int(validation.sum()), validation_segments_ns=segments)
    (out_root / 'metadata' / 'source.json').write_text(json.dumps(source, indent=1))
    return out_root
