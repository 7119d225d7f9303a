"""Patrol -> training set: a recording of normal driving as a Hazards&Robots-layout dataset."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from visual_anomaly.bags.io import (
    JPEG_QUALITY,
    DecodedFrame,
    ReadTally,
    camera_connections,
    iter_decoded,
    open_bag,
)
from visual_anomaly.core import resize_frame

THUMBNAIL_SIZE = 32  # frames are compared on standardized grey thumbnails of this side (see frame_distance)
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


def thumbnail(frame_bgr: np.ndarray) -> np.ndarray:
    """A frame as a flat THUMBNAIL_SIZE^2 grey thumbnail with zero mean and unit standard deviation (float32)."""
    grey = cv2.cvtColor(resize_frame(frame_bgr, 'bgr', THUMBNAIL_SIZE), cv2.COLOR_RGB2GRAY).astype(np.float32).ravel()
    return (grey - grey.mean()) / max(float(grey.std()), 1.0)


def frame_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, in units of the image's contrast (brightness alone: ~0)."""
    return float(np.abs(a - b).mean())


REASONS = ('kept_by_time', 'kept_by_change', 'dropped_as_duplicates', 'dropped_as_similar')  # select_frames' codes
KEPT_BY_TIME, KEPT_BY_CHANGE, DUPLICATE, SIMILAR = range(len(REASONS))


def select_frames(
    stamps: np.ndarray, thumbnails: np.ndarray, every_ns: int, dedup_threshold: float, change_threshold: float
) -> np.ndarray:
    """Why each frame is kept or dropped: indices into REASONS, deciding frame by frame against the last kept one.

    The first frame is kept. A later frame closer than ``dedup_threshold`` to the last kept frame is a
    near-duplicate (the robot standing still); otherwise it is kept when it is at least
    ``change_threshold`` away from it (the view changed) or came ``every_ns`` or more after it (time).
    """
    reasons = np.full(len(stamps), KEPT_BY_TIME, np.int8)
    last = 0
    for i in range(1, len(stamps)):
        distance = frame_distance(thumbnails[i], thumbnails[last])
        if distance < dedup_threshold:
            reasons[i] = DUPLICATE
        elif distance >= change_threshold:
            reasons[i], last = KEPT_BY_CHANGE, i
        elif stamps[i] - stamps[last] >= every_ns:
            reasons[i], last = KEPT_BY_TIME, i
        else:
            reasons[i] = SIMILAR
    return reasons


def change_threshold_for(
    stamps: np.ndarray, thumbnails: np.ndarray, every_ns: int, dedup_threshold: float, target: int
) -> float:
    """The lowest change threshold (to 0.01) with which :func:`select_frames` keeps at most ``target`` frames.

    It is ``dedup_threshold`` when every frame that is no near-duplicate fits in the target, and
    inf (time rule only) when ``target`` is 0 or the time rule alone keeps that many.
    """

    def kept(threshold: float) -> int:
        return int((select_frames(stamps, thumbnails, every_ns, dedup_threshold, threshold) <= KEPT_BY_CHANGE).sum())

    if target <= 0:
        return math.inf
    if kept(dedup_threshold) <= target:
        return dedup_threshold
    if kept(math.inf) >= target:
        return math.inf
    low, high = dedup_threshold, 2.0 * float(np.abs(thumbnails).mean(axis=1).max()) + 0.01  # high: nothing changes
    while high - low > 0.01:
        middle = (low + high) / 2
        low, high = (low, middle) if kept(middle) <= target else (middle, high)
    return high


def _write_jpeg(path: Path, item: DecodedFrame) -> None:
    """The message's own JPEG bytes when it has them, else the frame encoded at JPEG_QUALITY."""
    if item.jpeg is not None:
        path.write_bytes(item.jpeg)
    elif not cv2.imwrite(str(path), item.frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f'could not write {path}')


def _read_thumbnails(
    bag_path: Path, topic: str | None, progress: bool, allow_partial: bool
) -> tuple[str, np.ndarray, np.ndarray, ReadTally]:
    """The camera topic, the stamps and thumbnails of its readable frames, and what was read of what the
    bag's index lists (a damaged bag raises unless ``allow_partial``)."""
    stamps, thumbnails = [], []
    with open_bag(bag_path) as reader:
        topic, msgtype, connections = camera_connections(reader, bag_path, topic)
        tally = ReadTally.of(bag_path, connections, allow_partial)
        decoded = iter_decoded(reader, connections, msgtype, tally)
        for item in tqdm(decoded, total=tally.expected, desc=f'reading {topic}', disable=not progress):
            if item.frame is None:
                logger.warning('%s: skipping the frame stamped %d ns: %s', bag_path, item.stamp, item.error)
                continue
            stamps.append(item.stamp)
            thumbnails.append(thumbnail(item.frame))
    shape = (len(thumbnails), THUMBNAIL_SIZE * THUMBNAIL_SIZE)
    if tally.missing:
        logger.warning('%s: damaged bag, %s; going on with those', bag_path, tally.describe())
    return topic, np.array(stamps, np.int64), np.array(thumbnails, np.float32).reshape(shape), tally


def _stage_frames(bag_path: Path, staging: Path, topic: str, kept: np.ndarray, progress: bool) -> None:
    """Write the ``kept`` readable frames of the camera topic (indices, in order) to ``staging/NNNNNN.jpg``."""
    rank = {int(index): number for number, index in enumerate(kept)}
    with open_bag(bag_path) as reader:
        topic, msgtype, connections = camera_connections(reader, bag_path, topic)
        tally = ReadTally.of(bag_path, connections, allow_partial=True)  # what the first pass read, checked there
        decoded = (item for item in iter_decoded(reader, connections, msgtype, tally) if item.frame is not None)
        for index, item in enumerate(
            tqdm(decoded, total=tally.expected, desc='writing kept frames', disable=not progress)
        ):
            if index in rank:
                _write_jpeg(staging / f'{rank[index]:06d}.jpg', item)


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


@contextlib.contextmanager
def _staging(out_root: Path) -> Iterator[Path]:
    """An empty ``out_root/.staging`` for the run; the dataset's folders must not exist yet. When the run
    fails, the staging folder goes, and so does ``out_root`` if the run created it."""
    for name in OUTPUT_FOLDERS:
        if (out_root / name).exists():
            raise FileExistsError(f'{out_root / name} exists; choose a new output folder')
    created = not out_root.exists()
    staging = out_root / '.staging'
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(out_root if created else staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)


def bag_to_training_set(
    bag_path: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    topic: str | None = None,
    every_s: float = 0.5,
    dedup_threshold: float = 0.05,
    target_frames: int = 2000,
    validation_fraction: float = 0.1,
    seed: int = 0,
    block_s: float = 30.0,
    progress: bool = True,
    allow_partial: bool = False,
) -> Path:
    """Turn a recording of normal driving into a Hazards&Robots-layout training set under ``out_root``.

    Frames are kept by image change and by time (:func:`select_frames`, distances of
    :func:`frame_distance`): never a near-duplicate of the last kept frame (closer than
    ``dedup_threshold``: the robot standing still); a frame that changed enough since the last kept
    one, by the lowest change threshold that keeps about ``target_frames`` (0: time only); and a frame
    ``every_s`` seconds or more after it. Validation takes ``validation_fraction`` of the kept frames
    as contiguous segments of about ``block_s`` seconds (whole stretches of the patrol, so validation
    frames are not near-copies of training frames). Writes ``train_set/`` and ``validation_set/``
    (``frame_NNNNNN.jpg``: the message's own JPEG bytes when it is a JPEG CompressedImage, else JPEG
    quality 95), ``metadata/{train,validation}_frames_envs.csv`` (frame, env 0, stamp_ns) and
    ``metadata/source.json`` with the settings, the change threshold used and the counts of REASONS.
    A damaged bag (fewer camera messages readable than its index lists) is a ``BagError`` unless
    ``allow_partial``; ``source.json`` then counts them as ``missing``.
    """
    if every_s < 0 or dedup_threshold < 0 or target_frames < 0 or block_s <= 0:
        raise ValueError('every_s, dedup_threshold and target_frames must be >= 0 and block_s > 0')
    if not 0 <= validation_fraction < 1:
        raise ValueError(f'validation_fraction must be in [0, 1), got {validation_fraction}')
    bag_path, out_root = Path(bag_path), Path(out_root)
    with _staging(out_root) as staging:
        topic, readable, thumbnails, tally = _read_thumbnails(bag_path, topic, progress, allow_partial)
        total = tally.expected
        every_ns = round(every_s * 1e9)
        change = change_threshold_for(readable, thumbnails, every_ns, dedup_threshold, target_frames)
        reasons = select_frames(readable, thumbnails, every_ns, dedup_threshold, change)
        kept = np.flatnonzero(reasons <= KEPT_BY_CHANGE)
        if len(kept) < 2:
            raise ValueError(
                f'{bag_path}: only {len(kept)} frame(s) kept of {total} on {topic}; '
                'lower --every or --dedup-threshold, or raise --target'
            )
        _stage_frames(bag_path, staging, topic, kept, progress)
        stamps = readable[kept]
        validation, segments = validation_mask(stamps, validation_fraction, block_s, seed)
        _write_splits(out_root, staging, stamps, validation)
    settings = {
        'every_s': every_s,
        'dedup_threshold': dedup_threshold,
        'target_frames': target_frames,
        'change_threshold': round(change, 3) if math.isfinite(change) else None,  # None: frames kept by time only
        'validation_fraction': validation_fraction,
        'block_s': block_s,
        'seed': seed,
    }
    counts = {name: int((reasons == code).sum()) for code, name in enumerate(REASONS)}
    source = {'bag': str(bag_path), 'topic': topic, **settings, 'frames': total, 'missing': tally.missing}
    source['rejected'] = tally.read - len(readable)
    source.update(counts, kept=len(kept), train=int((~validation).sum()), validation=int(validation.sum()))
    source['validation_segments_ns'] = segments
    (out_root / 'metadata' / 'source.json').write_text(json.dumps(source, indent=1))
    return out_root
