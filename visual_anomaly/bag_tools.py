"""``visual-anomaly-bag``: rosbag2 recordings in and out of the detector; no ROS install needed.

    visual-anomaly-bag from-dataset data/corridors runs/test_bag --compressed     # dataset split -> bag
    visual-anomaly-bag evaluate models/default.pt runs/test_bag --out runs/bag-eval --video runs/bag-eval/overlay.mp4
    visual-anomaly-bag replay runs/test_bag --out runs/live --rate 2                 # through the node over DDS
    visual-anomaly-bag to-training-set patrol_bag data/my_building                # one normal patrol -> training set
    visual-anomaly-train train --data data/my_building --no-outlier-exposure --out runs/my_building

Bags are read and written with the pure-Python ``rosbags`` library (no ROS install needed), in
rosbag2 format version 9 with sqlite3 (``.db3``) or MCAP storage; ``evaluate`` and
``to-training-set`` also read ROS 1 bags.

Conventions
-----------
- **Camera**: ``/camera/image_raw`` carries ``sensor_msgs/msg/Image`` (written as ``bgr8``; any
  encoding the node accepts is read), ``/camera/image_raw/compressed`` carries
  ``sensor_msgs/msg/CompressedImage`` (``format`` ``jpeg``, or ``png`` for PNG files). Header
  ``frame_id`` is ``camera``. When reading, ``--topic`` picks the camera topic; without it the bag
  must hold exactly one Image or CompressedImage topic.
- **Ground truth**: ``/ground_truth/anomaly``, ``geometry_msgs/msg/Vector3Stamped``, one message per
  frame with the frame's header stamp: ``x`` = integer class code (0 = normal, 1-19 the
  Hazards&Robots classes of ``ANOMALY_CLASSES``), ``y`` = difficulty, ``z`` = environment (-1 when
  unknown). This mirrors the node's ``~/anomaly`` output (``x`` score, ``y`` threshold, ``z`` flag).
- **Stamps**: frames and labels are matched by *header* stamp (what the node copies to its outputs),
  never by the bag's receive time. ``from-dataset`` stamps frame ``i`` of the split's sorted files
  at 1,700,000,000 s + i / rate (the bag's receive time is the same).
- **Annotated bags**: ``evaluate --overlay-bag`` writes ``/visual_anomaly/overlay`` (``Image``
  ``bgr8``, the heatmap over the frame with the verdict) and ``/visual_anomaly/anomaly``
  (``Vector3Stamped`` as the node publishes it) under each frame's stamp, in the input bag's storage.
- **Interval labels** (for bags without a ground-truth topic): a CSV with a header line
  ``start,end,label`` and one row per anomalous interval, in seconds. With ``time_base='auto'`` times
  of 1e8 s or more are absolute bag time (Unix seconds, as ``ros2 bag info`` prints it), smaller
  ones are relative to the first camera frame. Intervals are closed (``start <= t <= end``); labels
  are integer class codes or class names (``cable``, ``human``, ...); any positive label is an
  anomaly; frames outside every interval are normal; where intervals overlap, the later row wins.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore
from tqdm.auto import tqdm

from .core import BundleError, DetectionResult, load_bundle, resize_frame
from .core.visualization import error_heatmap, overlay
from .image_conversion import FrameError, compressed_to_bgr, image_to_bgr
from .training.corridor_world import ANOMALY_CLASSES
from .training.hazards import HazardsDataset

CAMERA_TOPIC = '/camera/image_raw'
COMPRESSED_TOPIC = '/camera/image_raw/compressed'
GROUND_TRUTH_TOPIC = '/ground_truth/anomaly'
OVERLAY_TOPIC = '/visual_anomaly/overlay'
ANOMALY_TOPIC = '/visual_anomaly/anomaly'
FRAME_ID = 'camera'
EPOCH_NS = 1_700_000_000 * 1_000_000_000  # stamp of the first frame written by dataset_to_bag
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
VECTOR_TYPE = 'geometry_msgs/msg/Vector3Stamped'
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
STORAGES = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
ABSOLUTE_TIME_S = 1e8  # interval times at least this large are absolute bag times (auto time base)
HEATMAP_GAIN = 8.0  # overlay heatmaps saturate at this multiple of the typical normal MSE (as the node)
JPEG_QUALITY = 95
_DECODE_CHUNK = 64  # messages decoded together by the thread pool
CONVENTIONS_HINT = 'topics, stamps and label files: python -m pydoc visual_anomaly.bag_tools'

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
logger = logging.getLogger(__name__)


# -- reading ---------------------------------------------------------------------------------------


@dataclass
class BagFrames:
    """Camera frames of a bag, preprocessed for the detector, in bag order."""

    topic: str
    msgtype: str
    stamps: np.ndarray  # (N,) int64 header stamps, nanoseconds
    frames64: np.ndarray  # (N, 64, 64, 3) uint8 RGB
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (header stamp ns, reason)

    def __len__(self) -> int:
        return len(self.stamps)


@dataclass
class _Decoded:
    stamp: int
    header: Any
    frame: np.ndarray | None  # BGR, full resolution (None when rejected)
    error: str | None
    jpeg: bytes | None = None  # the message's own bytes when it is a JPEG CompressedImage


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _stamp_msg(stamp_ns: int) -> Any:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return TYPESTORE.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)


def _header(stamp_ns: int, frame_id: str = FRAME_ID) -> Any:
    return TYPESTORE.types['std_msgs/msg/Header'](stamp=_stamp_msg(stamp_ns), frame_id=frame_id)


@contextmanager
def open_bag(bag_path: str | os.PathLike) -> Iterator[AnyReader]:
    """An open reader; a missing path is a FileNotFoundError, an unreadable bag a ValueError."""
    path = Path(bag_path)
    if not path.exists():
        raise FileNotFoundError(f'no bag at {path}')
    reader = AnyReader([path], default_typestore=TYPESTORE)
    try:
        reader.open()
    except (AnyReaderError, ReaderError) as error:
        raise ValueError(f'{path}: not a readable bag: {error}') from error
    try:
        yield reader
    finally:
        reader.close()


def _listing(reader: AnyReader) -> str:
    topics = sorted({(c.topic, c.msgtype) for c in reader.connections})
    return ', '.join(f'{topic} ({msgtype})' for topic, msgtype in topics) or 'no topics'


def _topic_connections(reader: AnyReader, bag_path: Path, topic: str, types: Sequence[str], what: str) -> list:
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections:
        raise ValueError(f'{bag_path}: no topic {topic}; the bag has: {_listing(reader)}')
    wrong = sorted({c.msgtype for c in connections} - set(types))
    if wrong:
        raise ValueError(
            f'{bag_path}: topic {topic} carries {", ".join(wrong)}, not {what}; the bag has: {_listing(reader)}'
        )
    return connections


def camera_connections(reader: AnyReader, bag_path: Path, topic: str | None) -> tuple[str, str, list]:
    """(topic, message type, connections) of the camera topic; errors list the bag's topics."""
    what = 'sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage'
    if topic is None:
        topics = sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES})
        if not topics:
            raise ValueError(f'{bag_path}: no {what} topic; the bag has: {_listing(reader)}')
        if len(topics) > 1:
            raise ValueError(
                f'{bag_path}: several image topics ({", ".join(topics)}), choose one with --topic; '
                f'the bag has: {_listing(reader)}'
            )
        topic = topics[0]
    connections = _topic_connections(reader, bag_path, topic, IMAGE_TYPES, what)
    msgtypes = {c.msgtype for c in connections}
    if len(msgtypes) > 1:
        raise ValueError(f'{bag_path}: topic {topic} mixes {sorted(msgtypes)}; the bag has: {_listing(reader)}')
    return topic, msgtypes.pop(), connections


def _frame_view(msg: Any) -> SimpleNamespace:
    """The Image fields alone: image_conversion rebuilds messages with ``type(msg)(...)``, which works on this."""
    return SimpleNamespace(
        encoding=msg.encoding,
        height=msg.height,
        width=msg.width,
        step=msg.step,
        is_bigendian=msg.is_bigendian,
        data=msg.data,
    )


def _iter_decoded(reader: AnyReader, connections: list, msgtype: str, workers: int | None = None) -> Iterator[_Decoded]:
    """Deserialize and decode the camera messages in bag order, a chunk at a time on a thread pool."""
    compressed = msgtype == COMPRESSED_TYPE

    def decode(raw: bytes) -> _Decoded:
        msg = reader.deserialize(raw, msgtype)
        stamp = stamp_ns(msg.header)
        try:
            frame = compressed_to_bgr(msg) if compressed else image_to_bgr(_frame_view(msg))
        except FrameError as error:
            return _Decoded(stamp, msg.header, None, str(error))
        data = bytes(msg.data) if compressed else None
        return _Decoded(stamp, msg.header, frame, None, data if data and data[:2] == b'\xff\xd8' else None)

    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        chunk: list[bytes] = []
        for _, _, raw in reader.messages(connections=connections):
            chunk.append(raw)
            if len(chunk) == _DECODE_CHUNK:
                yield from pool.map(decode, chunk)
                chunk = []
        yield from pool.map(decode, chunk)


def _message_count(connections: list) -> int:
    return sum(c.msgcount for c in connections)


def read_bag_frames(bag_path: str | os.PathLike, topic: str | None = None, progress: bool = True) -> BagFrames:
    """Every camera frame of ``bag_path`` resized to the detector's 64x64 RGB input, in bag order.

    Frames that cannot be converted (unsupported encoding, inconsistent size, undecodable bytes)
    are skipped and listed in ``rejected`` with the reason.
    """
    bag_path = Path(bag_path)
    with open_bag(bag_path) as reader:
        topic, msgtype, connections = camera_connections(reader, bag_path, topic)
        stamps, frames, rejected = [], [], []
        decoded = _iter_decoded(reader, connections, msgtype)
        bar = tqdm(decoded, total=_message_count(connections), desc=f'reading {topic}', disable=not progress)
        for item in bar:
            if item.frame is None:
                rejected.append((item.stamp, item.error))
                continue
            stamps.append(item.stamp)
            frames.append(resize_frame(item.frame, 'bgr', 64))
    for stamp, reason in rejected:
        logger.warning('%s: skipping the frame stamped %d ns: %s', bag_path, stamp, reason)
    return BagFrames(
        topic=topic,
        msgtype=msgtype,
        stamps=np.array(stamps, np.int64),
        frames64=np.stack(frames) if frames else np.empty((0, 64, 64, 3), np.uint8),
        rejected=rejected,
    )


def read_labels(bag_path: str | os.PathLike, stamps: np.ndarray, topic: str = GROUND_TRUTH_TOPIC) -> np.ndarray:
    """Class codes (int64, 0 = normal) of the frames stamped ``stamps``, from the ground-truth topic.

    Labels match frames by exact header stamp; frames without one are an error.
    """
    bag_path = Path(bag_path)
    table: dict[int, int] = {}
    with open_bag(bag_path) as reader:
        try:
            connections = _topic_connections(reader, bag_path, topic, (VECTOR_TYPE,), VECTOR_TYPE)
        except ValueError as error:
            raise ValueError(f'{error}. Without a ground-truth topic, label the frames with an intervals CSV') from None
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            table[stamp_ns(msg.header)] = int(round(msg.vector.x))
    stamps = np.asarray(stamps, np.int64)
    missing = [int(s) for s in stamps if int(s) not in table]
    if missing:
        raise ValueError(
            f'{bag_path}: {len(missing)} of {len(stamps)} frames have no label on {topic} '
            f"(first at stamp {missing[0]} ns); labels must carry their frame's header stamp"
        )
    return np.array([table[int(s)] for s in stamps], np.int64)


def _class_code(text: str, where: str) -> int:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    codes = {name: code for code, name in ANOMALY_CLASSES.items()}
    if text.lower() not in codes:
        raise ValueError(
            f'{where}: unknown label {text!r}; use an integer class code (any positive = anomalous) '
            f'or one of {", ".join(codes)}'
        )
    return codes[text.lower()]


def labels_from_intervals(csv_path: str | os.PathLike, stamps: np.ndarray, time_base: str = 'auto') -> np.ndarray:
    """Class codes of the frames stamped ``stamps`` from a ``start,end,label`` CSV of anomalous intervals.

    ``time_base``: ``relative`` (seconds after the first frame), ``absolute`` (bag time, Unix seconds)
    or ``auto`` (absolute when the times are >= 1e8 s); see the module docstring.
    """
    if time_base not in ('auto', 'relative', 'absolute'):
        raise ValueError(f"time_base must be 'auto', 'relative' or 'absolute', got {time_base!r}")
    csv_path = Path(csv_path)
    stamps = np.asarray(stamps, np.int64)
    with csv_path.open(newline='') as handle:
        lines = [line for line in handle if line.strip() and not line.lstrip().startswith('#')]
    reader = csv.DictReader(lines, skipinitialspace=True)
    columns = [name.strip() for name in reader.fieldnames or []]
    if not {'start', 'end', 'label'} <= set(columns):
        raise ValueError(f'{csv_path}: expected the columns start,end,label; found {columns}')
    intervals = []
    for number, row in enumerate(reader, start=2):
        row = {key.strip(): (value or '').strip() for key, value in row.items() if key is not None}
        where = f'{csv_path} line {number}'
        try:
            start, end = float(row['start']), float(row['end'])
        except ValueError:
            raise ValueError(f'{where}: start and end must be seconds, got {row["start"]!r}, {row["end"]!r}') from None
        if end < start:
            raise ValueError(f'{where}: end {end} is before start {start}')
        intervals.append((start, end, _class_code(row['label'], where)))
    absolute = [start >= ABSOLUTE_TIME_S for start, _, _ in intervals]
    if time_base == 'auto' and intervals and any(absolute) != all(absolute):
        raise ValueError(f'{csv_path}: mixes absolute (>= {ABSOLUTE_TIME_S:g} s) and relative times')
    use_absolute = time_base == 'absolute' or (time_base == 'auto' and any(absolute))
    origin = 0 if use_absolute or not len(stamps) else int(stamps[0])
    times_s = (stamps - origin) / 1e9
    labels = np.zeros(len(stamps), np.int64)
    for start, end, code in intervals:
        # a little slack so that an interval typed to the millisecond includes the frames at its ends
        labels[(times_s >= start - 1e-6) & (times_s <= end + 1e-6)] = code
    return labels


# -- writing ---------------------------------------------------------------------------------------


def _storage(name: str) -> StoragePlugin:
    if name not in STORAGES:
        raise ValueError(f'storage must be one of {", ".join(STORAGES)}, got {name!r}')
    return STORAGES[name]


def _bag_storage(bag_path: Path) -> str:
    """The storage of a rosbag2 folder ('sqlite3' or 'mcap'); 'sqlite3' for anything else."""
    try:
        info = yaml.safe_load((bag_path / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        return info['storage_identifier'] if info['storage_identifier'] in STORAGES else 'sqlite3'
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return 'sqlite3'


@contextmanager
def _writer(bag_path: Path, storage: str) -> Iterator[Writer]:
    if bag_path.exists():
        raise FileExistsError(f'{bag_path} exists; rosbag2 writes a new folder, give a path that does not exist')
    bag_path.parent.mkdir(parents=True, exist_ok=True)
    writer = Writer(bag_path, version=9, storage_plugin=_storage(storage))
    try:
        writer.open()
    except WriterError as error:
        raise ValueError(f'cannot write {bag_path}: {error}') from error
    try:
        yield writer
    finally:
        writer.close()


def _write(writer: Writer, connection: Any, stamp_ns: int, msg: Any) -> None:
    writer.write(connection, int(stamp_ns), TYPESTORE.serialize_cdr(msg, msg.__msgtype__))


def _image_msg(frame_bgr: np.ndarray, header: Any) -> Any:
    height, width = frame_bgr.shape[:2]
    return TYPESTORE.types[IMAGE_TYPE](
        header=header,
        height=height,
        width=width,
        encoding='bgr8',
        is_bigendian=0,
        step=width * 3,
        data=np.ascontiguousarray(frame_bgr, np.uint8).reshape(-1),
    )


def _compressed_msg(data: bytes, image_format: str, header: Any) -> Any:
    return TYPESTORE.types[COMPRESSED_TYPE](
        header=header, format=image_format, data=np.frombuffer(data, np.uint8).copy()
    )


def _vector_msg(header: Any, x: float, y: float, z: float) -> Any:
    vector = TYPESTORE.types['geometry_msgs/msg/Vector3'](x=float(x), y=float(y), z=float(z))
    return TYPESTORE.types[VECTOR_TYPE](header=header, vector=vector)


def _fit_size(frame: np.ndarray, image_size: int) -> np.ndarray:
    """Resize so that the longer side is ``image_size`` pixels (aspect ratio kept, INTER_AREA)."""
    height, width = frame.shape[:2]
    scale = image_size / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return frame if size == (width, height) else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _read_image_file(path: Path) -> tuple[bytes, np.ndarray]:
    """The file's bytes and its BGR decoding; ValueError when it is not a whole image."""
    data = path.read_bytes()
    if data[:2] == b'\xff\xd8' and b'\xff\xd9' not in data[-1024:]:
        raise ValueError('truncated JPEG (no end-of-image marker)')
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if frame is None:
        raise ValueError('not a decodable image')
    return data, frame


def dataset_to_bag(
    dataset_root: str | os.PathLike,
    bag_path: str | os.PathLike,
    split: str = 'test',
    rate_hz: float = 10.0,
    compressed: bool = False,
    topic: str | None = None,
    storage: str = 'sqlite3',
    image_size: int | None = None,
    progress: bool = True,
) -> Path:
    """Write a Hazards&Robots-layout split as a camera stream with ground truth (see the module docstring).

    Frames are the split's files in sorted order; frame ``i`` is stamped ``EPOCH + i / rate_hz``.
    ``compressed`` writes CompressedImage messages holding the files' own bytes (JPEG or PNG) when
    ``image_size`` is None, else re-encoded as JPEG; otherwise ``bgr8`` Images. ``image_size`` resizes
    frames to that longer side. Unreadable files are skipped with a warning (their stamps stay unused).
    """
    if not rate_hz > 0:
        raise ValueError(f'rate_hz must be positive, got {rate_hz}')
    if image_size is not None and image_size < 1:
        raise ValueError(f'image_size must be positive, got {image_size}')
    _storage(storage)
    dataset = HazardsDataset(dataset_root)
    if split not in dataset.splits:
        raise ValueError(f'no {split!r} split in {dataset_root}; available: {", ".join(dataset.splits)}')
    index = dataset.split(split)
    bag_path = Path(bag_path)
    topic = topic or (COMPRESSED_TOPIC if compressed else CAMERA_TOPIC)
    env = index.env if index.env is not None else np.full(len(index.paths), -1, np.int64)
    skipped = []
    with _writer(bag_path, storage) as writer:
        camera = writer.add_connection(topic, COMPRESSED_TYPE if compressed else IMAGE_TYPE, typestore=TYPESTORE)
        truth = writer.add_connection(GROUND_TRUTH_TOPIC, VECTOR_TYPE, typestore=TYPESTORE)
        bar = tqdm(index.paths, desc=f'{index.folder.name} -> {bag_path.name}', disable=not progress)
        for i, path in enumerate(bar):
            try:
                data, frame = _read_image_file(path)
            except (OSError, ValueError) as error:
                skipped.append(path)
                logger.warning('skipping %s: %s', path, error)
                continue
            stamp = EPOCH_NS + round(i * 1e9 / rate_hz)
            header = _header(stamp)
            if image_size is not None:
                frame = _fit_size(frame, image_size)
            if not compressed:
                msg = _image_msg(frame, header)
            elif image_size is None and data[:2] == b'\xff\xd8':
                msg = _compressed_msg(data, 'jpeg', header)
            elif image_size is None and data[:4] == b'\x89PNG':
                msg = _compressed_msg(data, 'png', header)
            else:
                ok, encoded = cv2.imencode('.jpg', frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    raise ValueError(f'cannot encode {path} as JPEG')
                msg = _compressed_msg(encoded.tobytes(), 'jpeg', header)
            _write(writer, camera, stamp, msg)
            _write(writer, truth, stamp, _vector_msg(header, index.labels[i], index.difficulty[i], env[i]))
    if skipped:
        logger.warning('%d unreadable files of %s were left out of %s', len(skipped), index.folder, bag_path)
    return bag_path


# -- evaluation ------------------------------------------------------------------------------------


def _score_batches(detector: Any, frames64: np.ndarray, batch_size: int, progress: bool) -> DetectionResult:
    """``detector.detect_resized`` over ``frames64`` in batches (with a progress bar), merged into one result."""
    parts = [
        detector.detect_resized(frames64[start : start + batch_size])
        for start in tqdm(range(0, len(frames64), batch_size), desc='scoring', unit='batch', disable=not progress)
    ]
    oe = [part.oe_probability for part in parts]
    return DetectionResult(
        mse=np.concatenate([part.mse for part in parts]),
        error_map=np.concatenate([part.error_map for part in parts]),
        embedding=np.concatenate([part.embedding for part in parts]),
        oe_probability=None if oe[0] is None else np.concatenate(oe),
        scores={kind: np.concatenate([part.scores[kind] for part in parts]) for kind in parts[0].scores},
        score=np.concatenate([part.score for part in parts]),
        is_anomaly=np.concatenate([part.is_anomaly for part in parts]),
        threshold=parts[0].threshold,
    )


def _write_scores_csv(path: Path, stamps: np.ndarray, classes: np.ndarray, result: DetectionResult) -> Path:
    kinds = list(result.scores)
    with path.open('w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(['stamp_ns', 'time_s', 'label', 'score', 'is_anomaly', *kinds])
        for i, stamp in enumerate(stamps):
            writer.writerow(
                [
                    int(stamp),
                    f'{(stamp - stamps[0]) / 1e9:.6f}',
                    int(classes[i]),
                    repr(float(result.score[i])),
                    int(result.is_anomaly[i]),
                    *(repr(float(result.scores[kind][i])) for kind in kinds),
                ]
            )
    return path


def _frame_rate(stamps: np.ndarray) -> float:
    gaps = np.diff(stamps)
    gaps = gaps[gaps > 0]
    return float(np.clip(1e9 / np.median(gaps), 1.0, 120.0)) if gaps.size else 10.0


def _write_overlays(
    bag_path: Path,
    frames: BagFrames,
    classes: np.ndarray,
    result: DetectionResult,
    error_scale: float,
    overlay_bag: Path | None,
    video: Path | None,
    progress: bool,
) -> None:
    """Second pass over the camera topic: heatmap overlays into a bag and/or an MP4, one per scored frame."""
    video_writer, i = None, -1
    with open_bag(bag_path) as reader, _maybe_writer(overlay_bag, _bag_storage(bag_path)) as writer:
        _, msgtype, connections = camera_connections(reader, bag_path, frames.topic)
        if writer is not None:
            overlay_connection = writer.add_connection(OVERLAY_TOPIC, IMAGE_TYPE, typestore=TYPESTORE)
            anomaly_connection = writer.add_connection(ANOMALY_TOPIC, VECTOR_TYPE, typestore=TYPESTORE)
        decoded = _iter_decoded(reader, connections, msgtype)
        try:
            for item in tqdm(decoded, total=len(frames) + len(frames.rejected), desc='overlays', disable=not progress):
                if item.frame is None:
                    continue
                i += 1  # the same messages in the same order as the scoring pass
                if i >= len(frames) or item.stamp != frames.stamps[i]:
                    raise ValueError(f'{bag_path} changed while it was evaluated')
                flag, score = bool(result.is_anomaly[i]), float(result.score[i])
                label = f'{"ANOMALY" if flag else "normal"} {score:.2f} / {result.threshold:.2f}'
                if classes[i] > 0:
                    label += f' [{ANOMALY_CLASSES.get(int(classes[i]), int(classes[i]))}]'
                heat = error_heatmap(result.error_map[i], error_scale, item.frame.shape[1::-1])
                image = overlay(item.frame, heat, 0.5, label, flag)
                if writer is not None:
                    header = _header(item.stamp, item.header.frame_id)
                    _write(writer, overlay_connection, item.stamp, _image_msg(image, header))
                    _write(writer, anomaly_connection, item.stamp, _vector_msg(header, score, result.threshold, flag))
                if video is not None:
                    if video_writer is None:
                        video_size = image.shape[1::-1]
                        video.parent.mkdir(parents=True, exist_ok=True)
                        fourcc = cv2.VideoWriter_fourcc(*'mp4v')
                        video_writer = cv2.VideoWriter(str(video), fourcc, _frame_rate(frames.stamps), video_size)
                        if not video_writer.isOpened():
                            raise ValueError(f'OpenCV cannot write an mp4v video to {video}')
                    if image.shape[1::-1] != video_size:
                        image = cv2.resize(image, video_size, interpolation=cv2.INTER_AREA)
                    video_writer.write(image)
        finally:
            if video_writer is not None:
                video_writer.release()


@contextmanager
def _maybe_writer(bag_path: Path | None, storage: str) -> Iterator[Writer | None]:
    if bag_path is None:
        yield None
        return
    with _writer(bag_path, storage) as writer:
        yield writer


def evaluate_bag(
    bundle_path: str | os.PathLike,
    bag_path: str | os.PathLike,
    out: str | os.PathLike,
    topic: str | None = None,
    labels_csv: str | os.PathLike | None = None,
    device: str = 'auto',
    batch_size: int = 256,
    overlay_bag: str | os.PathLike | None = None,
    video: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Score every camera frame of a bag with a model bundle and write metrics, plots and report.md into ``out``.

    Labels come from the ground-truth topic, or from ``labels_csv`` (intervals) when given. ``out``
    also receives ``timeline.png`` (score over time) and ``scores.csv`` (one row per frame: header
    stamp, seconds since the first frame, label, decision score, flag, every score kind).
    ``overlay_bag`` and ``video`` add annotated outputs (see the module docstring). Returns the
    metrics with ``frames``, ``rejected`` (count), ``seconds`` (wall time of the whole evaluation)
    and ``frames_per_second`` (detector throughput on the 64x64 frames, decoding excluded).
    """
    started = time.perf_counter()
    from .training.cli import evaluate_frames, exposed_classes_of  # matplotlib and sklearn: only when needed
    from .training.report import plot_score_timeline

    bag_path, out = Path(bag_path), Path(out)
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    if overlay_bag is not None and Path(overlay_bag).exists():
        raise FileExistsError(f'{overlay_bag} exists; give a path for a new bag folder')
    detector = load_bundle(bundle_path, device)
    frames = read_bag_frames(bag_path, topic, progress)
    if not len(frames):
        raise ValueError(f'{bag_path}: no usable frame on {frames.topic} ({len(frames.rejected)} rejected)')
    if labels_csv is not None:
        classes = labels_from_intervals(labels_csv, frames.stamps)
    else:
        classes = read_labels(bag_path, frames.stamps)
    read_seconds = time.perf_counter() - started

    scoring_started = time.perf_counter()
    result = _score_batches(detector, frames.frames64, batch_size, progress)
    score_seconds = time.perf_counter() - scoring_started

    out.mkdir(parents=True, exist_ok=True)
    times_s = (frames.stamps - frames.stamps[0]) / 1e9
    timeline = plot_score_timeline(times_s, result.score, result.threshold, classes, out / 'timeline.png')
    _write_scores_csv(out / 'scores.csv', frames.stamps, classes, result)
    extra = {
        'bundle': str(bundle_path),
        'bag': str(bag_path),
        'topic': frames.topic,
        'message_type': frames.msgtype,
        'labels': str(labels_csv) if labels_csv is not None else GROUND_TRUTH_TOPIC,
        'rejected': len(frames.rejected),
        'rejected_frames': [{'stamp_ns': stamp, 'reason': reason} for stamp, reason in frames.rejected[:100]],
        'duration_s': float(times_s[-1]),
    }
    metrics = evaluate_frames(
        detector,
        frames.frames64,
        classes,
        out,
        f'Evaluation of {Path(bundle_path).name} on the bag {bag_path.name} ({frames.topic})',
        exposed_classes_of(Path(bundle_path)),
        extra=extra,
        extra_images={'Score over time': timeline},
        result=result,
    )
    if overlay_bag is not None or video is not None:
        _write_overlays(
            bag_path,
            frames,
            classes,
            result,
            HEATMAP_GAIN * detector.typical_normal_mse,
            Path(overlay_bag) if overlay_bag is not None else None,
            Path(video) if video is not None else None,
            progress,
        )
        metrics['outputs'] = {
            key: str(value) for key, value in (('overlay_bag', overlay_bag), ('video', video)) if value is not None
        }
    metrics['read_seconds'] = round(read_seconds, 3)
    metrics['frames_per_second'] = round(len(frames) / max(score_seconds, 1e-9), 1)
    metrics['seconds'] = round(time.perf_counter() - started, 3)
    (out / 'metrics.json').write_text(json.dumps(metrics, indent=2, default=float))
    return metrics


# -- training sets from a patrol -------------------------------------------------------------------


def _validation_mask(stamps: np.ndarray, fraction: float, block_s: float, seed: int) -> tuple[np.ndarray, list]:
    """Contiguous validation segments holding ``fraction`` of the frames, one per stratum of the patrol.

    The number of segments is about ``fraction * duration / block_s`` (at least one), so each segment
    covers roughly ``block_s`` seconds; segment ``j`` starts at a seeded random place in the ``j``-th
    equal part of the frame sequence, which spreads validation over the whole patrol.
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


def bag_to_training_set(
    bag_path: str | os.PathLike,
    out_root: str | os.PathLike,
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
    for name in ('train_set', 'validation_set', 'metadata'):
        if (out_root / name).exists():
            raise FileExistsError(f'{out_root / name} exists; choose a new output folder')
    staging = out_root / '.staging'
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    every_ns = round(every_s * 1e9)
    kept_stamps: list[int] = []
    counts = {'frames': 0, 'rejected': 0, 'dropped_by_time': 0, 'dropped_as_duplicates': 0}
    last_stamp, last_small = None, None
    with open_bag(bag_path) as reader:
        topic, msgtype, connections = camera_connections(reader, bag_path, topic)
        decoded = _iter_decoded(reader, connections, msgtype)
        for item in tqdm(decoded, total=_message_count(connections), desc=f'reading {topic}', disable=not progress):
            counts['frames'] += 1
            if item.frame is None:
                counts['rejected'] += 1
                logger.warning('%s: skipping the frame stamped %d ns: %s', bag_path, item.stamp, item.error)
                continue
            if last_stamp is not None and item.stamp - last_stamp < every_ns:
                counts['dropped_by_time'] += 1
                continue
            small = resize_frame(item.frame, 'bgr', 64).astype(np.int16)
            if last_small is not None and np.abs(small - last_small).mean() < dedup_threshold:
                counts['dropped_as_duplicates'] += 1
                continue
            last_stamp, last_small = item.stamp, small
            name = staging / f'{len(kept_stamps):06d}.jpg'
            if item.jpeg is not None:
                name.write_bytes(item.jpeg)
            elif not cv2.imwrite(str(name), item.frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                raise OSError(f'could not write {name}')
            kept_stamps.append(item.stamp)
    stamps = np.array(kept_stamps, np.int64)
    if len(stamps) < 2:
        shutil.rmtree(staging)
        raise ValueError(
            f'{bag_path}: only {len(stamps)} frame(s) kept of {counts["frames"]} on {topic}; '
            'lower --every or --dedup-threshold'
        )
    validation, segments = _validation_mask(stamps, validation_fraction, block_s, seed)
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
    staging.rmdir()
    source = {
        'bag': str(bag_path),
        'topic': topic,
        'every_s': every_s,
        'dedup_threshold': dedup_threshold,
        'validation_fraction': validation_fraction,
        'block_s': block_s,
        'seed': seed,
        **counts,
        'kept': len(stamps),
        'train': int((~validation).sum()),
        'validation': int(validation.sum()),
        'validation_segments_ns': segments,
    }
    (out_root / 'metadata' / 'source.json').write_text(json.dumps(source, indent=1))
    return out_root


# -- command line ----------------------------------------------------------------------------------


def _add_from_dataset(commands: Any) -> None:
    sub = commands.add_parser(
        'from-dataset',
        help='write a dataset split (Hazards&Robots layout) as a camera bag with ground truth',
        description='Write the frames of a Hazards&Robots-layout split, in sorted file order, as a camera '
        f'stream ({CAMERA_TOPIC} Image bgr8, or {COMPRESSED_TOPIC} CompressedImage with --compressed) plus '
        f'{GROUND_TRUTH_TOPIC} (Vector3Stamped: x class code, y difficulty, z environment) under the same stamps. '
        'Play it with "ros2 bag play" or score it offline with "visual-anomaly-bag evaluate".',
    )
    sub.add_argument('data', type=Path, help='dataset root (train_set/, test_set/, metadata/, ...)')
    sub.add_argument('bag', type=Path, help='output bag folder (must not exist)')
    sub.add_argument('--split', default='test', choices=('test', 'outliers', 'validation', 'train'))
    sub.add_argument('--rate', type=float, default=10.0, help='frame rate in Hz for the stamps (default 10)')
    sub.add_argument('--compressed', action='store_true', help='CompressedImage with the JPEG files as they are')
    sub.add_argument('--topic', help=f'camera topic (default {CAMERA_TOPIC}, or {COMPRESSED_TOPIC})')
    sub.add_argument('--storage', default='sqlite3', choices=tuple(STORAGES), help='rosbag2 storage (default sqlite3)')
    sub.add_argument('--image-size', type=int, help='resize frames to this longer side in pixels (default: as stored)')
    sub.set_defaults(handler=_run_from_dataset)


def _add_evaluate(commands: Any) -> None:
    sub = commands.add_parser(
        'evaluate',
        help='score every frame of a bag with a model bundle: metrics, plots, report',
        description='Score every camera frame of a bag offline with the detector (no ROS graph, no dropped '
        'frames) and compare with the ground truth: metrics.json, report.md, ROC curves, score histogram, '
        f'score over time and scores.csv in --out. Labels come from {GROUND_TRUTH_TOPIC} or from --labels.',
    )
    sub.add_argument('bundle', type=Path, help='model bundle (.pt), e.g. models/default.pt')
    sub.add_argument('bag', type=Path, help='rosbag2 folder (sqlite3 or mcap) or ROS 1 .bag')
    sub.add_argument('--out', type=Path, required=True, help='folder for metrics, plots and report.md')
    sub.add_argument('--topic', help="camera topic (default: the bag's only Image/CompressedImage topic)")
    sub.add_argument(
        '--labels',
        type=Path,
        help='CSV of anomalous intervals "start,end,label" in seconds (relative to the first frame, '
        'or absolute bag time when >= 1e8); replaces the ground-truth topic',
    )
    sub.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:N')
    sub.add_argument('--batch-size', type=int, default=256, help='frames per detector batch')
    sub.add_argument('--overlay-bag', type=Path, help=f'also write {OVERLAY_TOPIC} and {ANOMALY_TOPIC} to this new bag')
    sub.add_argument('--video', type=Path, help='also write the overlays as an MP4 video (mp4v)')
    sub.set_defaults(handler=_run_evaluate)


def _add_to_training_set(commands: Any) -> None:
    sub = commands.add_parser(
        'to-training-set',
        help='turn a recording of a normal patrol into a training set',
        description='Turn a bag of normal driving in your own building into a Hazards&Robots-layout '
        'training set (train_set/, validation_set/, metadata/), then train with '
        '"visual-anomaly-train train --data OUT --no-outlier-exposure --out RUN". Frames are subsampled in '
        'time, near-duplicates (robot standing still) dropped, and validation is taken as whole stretches '
        'of the patrol. Record anything unusual separately: every frame here is treated as normal.',
    )
    sub.add_argument('bag', type=Path, help='rosbag2 folder (sqlite3 or mcap) or ROS 1 .bag')
    sub.add_argument('out', type=Path, help='dataset root to create')
    sub.add_argument('--topic', help="camera topic (default: the bag's only Image/CompressedImage topic)")
    sub.add_argument('--every', type=float, default=0.5, help='keep at most one frame per this many seconds')
    sub.add_argument('--validation-fraction', type=float, default=0.1, help='share of kept frames for validation')
    sub.add_argument(
        '--dedup-threshold',
        type=float,
        default=2.0,
        help='drop frames differing from the last kept one by less than this mean grey level at 64x64',
    )
    sub.add_argument('--block-seconds', type=float, default=30.0, help='length of each validation stretch')
    sub.add_argument('--seed', type=int, default=0, help='seed for placing the validation stretches')
    sub.set_defaults(handler=_run_to_training_set)


def _run_from_dataset(args: argparse.Namespace) -> None:
    bag = dataset_to_bag(
        args.data,
        args.bag,
        args.split,
        args.rate,
        args.compressed,
        args.topic,
        args.storage,
        args.image_size,
        not args.quiet,
    )
    print(f'wrote {bag}')


def _run_evaluate(args: argparse.Namespace) -> None:
    from .training.cli import _summary

    metrics = evaluate_bag(
        args.bundle,
        args.bag,
        args.out,
        args.topic,
        args.labels,
        args.device,
        args.batch_size,
        args.overlay_bag,
        args.video,
        not args.quiet,
    )
    print(_summary(metrics))
    print(
        f'{metrics["frames"]} frames scored ({metrics["rejected"]} rejected) on {metrics["topic"]}, '
        f'{metrics["frames_per_second"]:.0f} frames/s; metrics, plots and report.md in {args.out}'
    )


def _run_to_training_set(args: argparse.Namespace) -> None:
    root = bag_to_training_set(
        args.bag,
        args.out,
        args.topic,
        args.every,
        args.validation_fraction,
        args.dedup_threshold,
        args.seed,
        args.block_seconds,
        not args.quiet,
    )
    s = json.loads((root / 'metadata' / 'source.json').read_text())
    print(
        f'kept {s["kept"]} of {s["frames"]} frames ({s["dropped_by_time"]} by time, '
        f'{s["dropped_as_duplicates"]} near-duplicates, {s["rejected"]} unreadable): '
        f'{s["train"]} train, {s["validation"]} validation in {root}\n'
        f'next: visual-anomaly-train train --data {root} --no-outlier-exposure --out runs/{root.name}'
    )


def _add_live_arguments(sub: argparse.ArgumentParser, bag_help: str) -> None:
    """The arguments ``replay`` and ``record`` share."""
    sub.add_argument('bag', type=Path, help=bag_help)
    sub.add_argument('--out', type=Path, required=True, help='folder for live_metrics.json and live_timeline.png')
    sub.add_argument('--topic', help="camera topic (default: the bag's only Image/CompressedImage topic)")
    sub.add_argument('--labels', type=Path, help='CSV of anomalous intervals instead of the ground-truth topic')


def _add_replay(commands: Any) -> None:
    sub = commands.add_parser(
        'replay',
        help='play a bag through DDS into the node (started here) and report what it said',
        description="Start the detector node as its own process, publish the bag's camera frames over DDS at "
        "their recorded pace (times --rate), record the node's anomaly outputs and diagnostics, and report "
        'detection metrics, end-to-end latency, processing time and dropped frames (live_metrics.json, '
        'live_timeline.png in --out). This is what the robot would have said, frame drops included.',
    )
    _add_live_arguments(sub, 'rosbag2 folder (sqlite3 or mcap) with a camera topic and ground truth')
    sub.add_argument('--model', help='model bundle for the node (default: the shipped default model)')
    sub.add_argument('--rate', type=float, default=1.0, help='playback speed, a multiple of the recorded pace')
    sub.add_argument('--device', default='cpu', help="the node's device: auto, cpu, cuda, cuda:N")
    sub.set_defaults(handler=_run_replay)


def _add_record(commands: Any) -> None:
    sub = commands.add_parser(
        'record',
        help="record a running node's outputs while the bag is played elsewhere (ros2 bag play)",
        description="For a robot's ROS install: with the node running (ros2 launch visual_anomaly "
        'visual_anomaly.launch.py image:=/camera/image_raw) start this, then "ros2 bag play BAG" '
        "in another shell. It records the node's anomaly outputs and diagnostics until the node goes quiet "
        'and writes the same report as "replay" (without end-to-end latency, which needs the publish times). '
        'Frames lost in transport before the node (best-effort QoS) are counted as unaccounted.',
    )
    _add_live_arguments(sub, 'the bag being played (for its frame stamps and ground truth)')
    sub.add_argument('--idle', type=float, default=5.0, help='stop after this many seconds without an answer')
    sub.set_defaults(handler=_run_record)


def _live_summary(metrics: dict) -> str:
    detection = metrics['detection']
    counters = metrics['node_counters']
    latency = metrics['end_to_end_ms']
    lines = [
        f'frames: {metrics["frames_published"]} in the bag, {counters.get("processed", 0)} processed, '
        f'{counters.get("dropped", 0)} dropped, {counters.get("rejected", 0)} rejected, '
        f'{metrics["frames_unaccounted"]} unaccounted',
    ]
    if detection:
        lines.append(
            f"detection at the node's threshold: ROC-AUC {detection['roc_auc']:.3f}, F1 {detection['f1']:.3f}, "
            f'precision {detection["precision"]:.3f}, recall {detection["recall"]:.3f}'
        )
    if metrics['processing_ms']:
        lines.append('node processing (ms): ' + ', '.join(f'{k} {v:.1f}' for k, v in metrics['processing_ms'].items()))
    if latency:
        lines.append('end-to-end latency (ms): ' + ', '.join(f'{k} {v:.1f}' for k, v in latency.items()))
    return '\n'.join(lines)


def _run_replay(args: argparse.Namespace) -> int:
    from .live_replay import replay_bag

    metrics = replay_bag(
        args.bag, args.out, args.model, args.topic, args.rate, args.device, args.labels, not args.quiet
    )
    print(_live_summary(metrics))
    print(f'report in {args.out}')
    return 1 if 'node_log_tail' in metrics else 0


def _run_record(args: argparse.Namespace) -> None:
    from .live_replay import record_live

    print('recording; play the bag now (ros2 bag play ...)', flush=True)
    metrics = record_live(args.bag, args.out, args.topic, args.labels, args.idle)
    print(_live_summary(metrics))
    print(f'report in {args.out}')


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='visual-anomaly-bag',
        description='rosbag2 tools for the visual anomaly detector: make camera bags from datasets, score\n'
        'recorded bags offline against ground truth, replay them live through the node, and turn a\n'
        'patrol recording into a training set. Bags are read and written with the rosbags library.\n'
        '"visual-anomaly-bag COMMAND --help" for details.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f'examples:\n{__doc__.split(chr(10) * 2)[1]}\n\n{CONVENTIONS_HINT}',
    )
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for add in (_add_from_dataset, _add_evaluate, _add_replay, _add_record, _add_to_training_set):
        add(commands)
    for sub in commands.choices.values():
        sub.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; errors print one line and return 2."""
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except (BundleError, ValueError, OSError, RuntimeError, AnyReaderError, ReaderError, WriterError) as error:
        print(f'{parser.prog} {args.command}: {error}', file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == '__main__':
    sys.exit(main())
