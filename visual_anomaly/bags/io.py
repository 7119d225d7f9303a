"""Reading and writing bags: topics, stamps, messages and camera frames (conventions: ``visual_anomaly.bags``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag1 import ReaderError as Rosbag1ReaderError
from rosbags.rosbag2 import ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore
from tqdm.auto import tqdm

from visual_anomaly.core import resize_frame
from visual_anomaly.data.image_conversion import FrameError, compressed_to_bgr, image_to_bgr
from visual_anomaly.data.images import JPEG_START

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
JPEG_QUALITY = 95
READ_ERRORS = (AnyReaderError, ReaderError, Rosbag1ReaderError)  # what rosbags raises for a bad bag
_DECODE_CHUNK = 64  # messages decoded together by the thread pool

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
logger = logging.getLogger(__name__)


class BagError(ValueError):
    """A bag that cannot be read or written; the message names the bag."""


@dataclass
class BagFrames:
    """Camera frames of a bag, preprocessed for the detector, in bag order."""

    topic: str
    msgtype: str
    stamps: np.ndarray  # (N,) int64 header stamps, nanoseconds
    frames: np.ndarray  # (N, S, S, 3) uint8 RGB at the detector's input size S
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (header stamp ns, reason)
    missing: int = 0  # messages the bag's index lists that could not be read (a damaged bag, allow_partial)

    def __len__(self) -> int:
        return len(self.stamps)


@dataclass
class DecodedFrame:
    """One camera message: its header and its frame, or why it has none."""

    stamp: int
    header: Any
    frame: np.ndarray | None  # BGR, full resolution (None when rejected)
    error: str | None
    jpeg: bytes | None = None  # the message's own bytes when it is a JPEG CompressedImage


# -- messages --------------------------------------------------------------------------------------


def stamp_ns(header: Any) -> int:
    """A message header's stamp in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def header_msg(stamp: int, frame_id: str = FRAME_ID) -> Any:
    """A ``std_msgs/msg/Header`` stamped ``stamp`` nanoseconds."""
    sec, nanosec = divmod(int(stamp), 1_000_000_000)
    time = TYPESTORE.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)
    return TYPESTORE.types['std_msgs/msg/Header'](stamp=time, frame_id=frame_id)


def image_msg(frame_bgr: np.ndarray, header: Any) -> Any:
    """A ``bgr8`` Image of ``frame_bgr``."""
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


def compressed_msg(data: bytes, image_format: str, header: Any) -> Any:
    """A CompressedImage holding ``data`` (``image_format``: ``jpeg`` or ``png``)."""
    return TYPESTORE.types[COMPRESSED_TYPE](
        header=header, format=image_format, data=np.frombuffer(data, np.uint8).copy()
    )


def vector_msg(header: Any, x: float, y: float, z: float) -> Any:
    """A Vector3Stamped, as the ground truth and the node's ``~/anomaly`` output use it."""
    vector = TYPESTORE.types['geometry_msgs/msg/Vector3'](x=float(x), y=float(y), z=float(z))
    return TYPESTORE.types[VECTOR_TYPE](header=header, vector=vector)


# -- reading ---------------------------------------------------------------------------------------


@contextmanager
def open_bag(bag_path: str | os.PathLike) -> Iterator[AnyReader]:
    """An open reader; a missing path is a FileNotFoundError, an unreadable bag a :class:`BagError`.

    Errors of the rosbags library inside the ``with`` block also become a :class:`BagError`.
    """
    path = Path(bag_path)
    if not path.exists():
        raise FileNotFoundError(f'no bag at {path}')
    try:
        reader = AnyReader([path], default_typestore=TYPESTORE)
        reader.open()
    except READ_ERRORS as error:
        raise BagError(f'{path}: not a readable bag: {error}') from error
    try:
        yield reader
    except READ_ERRORS as error:
        raise BagError(f'{path}: cannot read the bag: {error}') from error
    finally:
        reader.close()


def _listing(reader: AnyReader) -> str:
    topics = sorted({(c.topic, c.msgtype) for c in reader.connections})
    return ', '.join(f'{topic} ({msgtype})' for topic, msgtype in topics) or 'no topics'


def topic_connections(reader: AnyReader, bag_path: Path, topic: str, types: Sequence[str], what: str) -> list:
    """The connections of ``topic``, which must carry one of ``types`` (``what`` names them in errors)."""
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
    connections = topic_connections(reader, bag_path, topic, IMAGE_TYPES, what)
    msgtypes = {c.msgtype for c in connections}
    if len(msgtypes) > 1:
        raise ValueError(f'{bag_path}: topic {topic} mixes {sorted(msgtypes)}; the bag has: {_listing(reader)}')
    return topic, msgtypes.pop(), connections


def message_count(connections: list) -> int:
    """How many messages ``connections`` hold together, by the bag's index."""
    return sum(c.msgcount for c in connections)


@dataclass
class ReadTally:
    """The messages a bag's index lists on a topic against those read from it, so that a damaged bag
    is never taken for a whole one: :meth:`finish` raises a :class:`BagError` when some are missing,
    unless ``allow_partial``."""

    bag_path: Path
    topic: str
    expected: int
    allow_partial: bool = False
    read: int = 0
    stopped: str = ''  # why reading ended early, when it did

    @classmethod
    def of(cls, bag_path: Path, connections: list, allow_partial: bool = False) -> ReadTally:
        return cls(bag_path, connections[0].topic, message_count(connections), allow_partial)

    @property
    def missing(self) -> int:
        return max(self.expected - self.read, 0)

    def describe(self) -> str:
        """E.g. "its index lists 60 messages on /camera but 32 could be read (reading stopped: ...)"."""
        stopped = f' (reading stopped: {self.stopped})' if self.stopped else ''
        return f'its index lists {self.expected} messages on {self.topic} but {self.read} could be read{stopped}'

    def finish(self) -> None:
        if self.missing and not self.allow_partial:
            raise BagError(f'{self.bag_path}: damaged bag, {self.describe()}; --allow-partial goes on with those')


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


def raw_messages(reader: AnyReader, connections: list, tally: ReadTally) -> Iterator[tuple[Any, int, bytes]]:
    """(connection, bag time in ns, raw message) of ``connections`` in bag order, until the end or the first
    damaged record (``tally.stopped`` then says what failed)."""
    try:
        yield from reader.messages(connections=connections)
    except Exception as error:  # noqa: BLE001 - rosbags' parsers raise many types on damaged bytes
        tally.stopped = f'{type(error).__name__}: {error}'


def deserialized(reader: AnyReader, raw: bytes, msgtype: str) -> Any | None:
    """The message, or None when its bytes are damaged."""
    try:
        return reader.deserialize(raw, msgtype)
    except Exception:  # noqa: BLE001 - damaged bytes raise anything from the CDR parser
        return None


def iter_decoded(
    reader: AnyReader, connections: list, msgtype: str, tally: ReadTally, workers: int | None = None
) -> Iterator[DecodedFrame]:
    """Deserialize and decode the camera messages in bag order, a chunk at a time on a thread pool.

    Messages that cannot be deserialized, and those after a damaged record, are not yielded: ``tally``
    counts what was read, and at the end raises unless it is everything the index lists.
    """
    compressed = msgtype == COMPRESSED_TYPE

    def decode(raw: bytes) -> DecodedFrame | None:
        msg = deserialized(reader, raw, msgtype)
        if msg is None:
            return None  # counted as missing
        stamp = stamp_ns(msg.header)
        try:
            frame = compressed_to_bgr(msg) if compressed else image_to_bgr(_frame_view(msg))
        except FrameError as error:
            return DecodedFrame(stamp, msg.header, None, str(error))
        data = bytes(msg.data) if compressed else None
        return DecodedFrame(stamp, msg.header, frame, None, data if data and data[:2] == JPEG_START else None)

    def decoded(chunk: list[bytes]) -> Iterator[DecodedFrame]:
        for item in pool.map(decode, chunk):
            if item is not None:
                tally.read += 1
                yield item

    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        chunk: list[bytes] = []
        for _, _, raw in raw_messages(reader, connections, tally):
            chunk.append(raw)
            if len(chunk) == _DECODE_CHUNK:
                yield from decoded(chunk)
                chunk = []
        yield from decoded(chunk)
    tally.finish()


def read_bag_frames(
    bag_path: str | os.PathLike,
    topic: str | None = None,
    *,
    image_size: int = 64,
    progress: bool = True,
    allow_partial: bool = False,
) -> BagFrames:
    """Every camera frame of ``bag_path`` resized to the detector's ``image_size`` RGB input, in bag order.

    Frames that cannot be converted (unsupported encoding, inconsistent size, undecodable bytes)
    are skipped and listed in ``rejected`` with the reason. A damaged bag, where fewer messages can be
    read than its index lists, is a :class:`BagError`; with ``allow_partial`` a warning, and
    ``missing`` says how many.
    """
    bag_path = Path(bag_path)
    with open_bag(bag_path) as reader:
        topic, msgtype, connections = camera_connections(reader, bag_path, topic)
        stamps, frames, rejected = [], [], []
        tally = ReadTally.of(bag_path, connections, allow_partial)
        decoded = iter_decoded(reader, connections, msgtype, tally)
        for item in tqdm(decoded, total=tally.expected, desc=f'reading {topic}', disable=not progress):
            if item.frame is None:
                rejected.append((item.stamp, item.error))
                continue
            stamps.append(item.stamp)
            frames.append(resize_frame(item.frame, 'bgr', image_size))
    for stamp, reason in rejected:
        logger.warning('%s: skipping the frame stamped %d ns: %s', bag_path, stamp, reason)
    if tally.missing:
        logger.warning('%s: damaged bag, %s; going on with those', bag_path, tally.describe())
    return BagFrames(
        topic=topic,
        msgtype=msgtype,
        stamps=np.array(stamps, np.int64),
        frames=np.stack(frames) if frames else np.empty((0, image_size, image_size, 3), np.uint8),
        rejected=rejected,
        missing=tally.missing,
    )


# -- writing ---------------------------------------------------------------------------------------


def storage_plugin(name: str) -> StoragePlugin:
    """The rosbags storage plugin called ``name`` ('sqlite3' or 'mcap'); ValueError for any other."""
    if name not in STORAGES:
        raise ValueError(f'storage must be one of {", ".join(STORAGES)}, got {name!r}')
    return STORAGES[name]


def bag_storage(bag_path: Path) -> str:
    """The storage of a rosbag2 folder ('sqlite3' or 'mcap'); 'sqlite3' for anything else."""
    try:
        info = yaml.safe_load((bag_path / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        return info['storage_identifier'] if info['storage_identifier'] in STORAGES else 'sqlite3'
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return 'sqlite3'


@contextmanager
def open_writer(bag_path: Path, storage: str) -> Iterator[Writer]:
    """A writer of the new rosbag2 folder ``bag_path``; errors of the rosbags library become a :class:`BagError`."""
    if bag_path.exists():
        raise FileExistsError(f'{bag_path} exists; rosbag2 writes a new folder, give a path that does not exist')
    bag_path.parent.mkdir(parents=True, exist_ok=True)
    writer = Writer(bag_path, version=9, storage_plugin=storage_plugin(storage))
    try:
        writer.open()
    except WriterError as error:
        raise BagError(f'cannot write {bag_path}: {error}') from error
    try:
        yield writer
    except WriterError as error:
        raise BagError(f'cannot write {bag_path}: {error}') from error
    finally:
        writer.close()


def write_message(writer: Writer, connection: Any, stamp: int, msg: Any) -> None:
    """Write ``msg`` on ``connection`` with receive time ``stamp`` (nanoseconds)."""
    writer.write(connection, int(stamp), TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
