"""Reading bags: camera topics of any encoding, bad frames, topic errors that list the bag, rosbags errors."""

import cv2
import numpy as np
import pytest
from bag_helpers import STEP_NS, stamp
from rosbags.rosbag2 import Writer

from visual_anomaly.bags.io import (
    CAMERA_TOPIC,
    EPOCH_NS,
    GROUND_TRUTH_TOPIC,
    TYPESTORE,
    BagError,
    header_msg,
    open_bag,
    read_bag_frames,
)
from visual_anomaly.bags.labels import read_labels
from visual_anomaly.core import resize_frame


def test_missing_and_wrong_topics_list_the_bags_topics(bags):
    bag = bags()
    listing = ('/camera/image_raw (sensor_msgs/msg/Image)', '/ground_truth/anomaly (geometry_msgs/msg/Vector3Stamped)')
    with pytest.raises(ValueError, match='no topic /front_camera') as missing:
        read_bag_frames(bag, topic='/front_camera', progress=False)
    with pytest.raises(ValueError, match='carries geometry_msgs/msg/Vector3Stamped') as wrong:
        read_bag_frames(bag, topic=GROUND_TRUTH_TOPIC, progress=False)
    with pytest.raises(ValueError, match='carries sensor_msgs/msg/Image') as wrong_labels:
        read_labels(bag, np.array([EPOCH_NS]), topic=CAMERA_TOPIC)
    for error in (missing, wrong, wrong_labels):
        assert all(item in str(error.value) for item in listing)
    with pytest.raises(ValueError, match='12 of 12 frames have no label'):
        read_labels(bag, EPOCH_NS + 1 + STEP_NS * np.arange(12))


def _image(stamp: int, frame: np.ndarray, encoding: str = 'bgr8', step: int | None = None):
    frame = np.ascontiguousarray(frame)
    height, width = frame.shape[:2]
    return TYPESTORE.types['sensor_msgs/msg/Image'](
        header=header_msg(stamp),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step if step is not None else frame.strides[0],
        data=frame.reshape(-1),
    )


def test_other_encodings_bad_frames_and_ambiguous_topics(tmp_path, rng):
    frame_rgb = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    bag = tmp_path / 'odd'
    with Writer(bag, version=9) as writer:
        raw = writer.add_connection('/cam_a', 'sensor_msgs/msg/Image', typestore=TYPESTORE)
        packed = writer.add_connection('/cam_b', 'sensor_msgs/msg/CompressedImage', typestore=TYPESTORE)
        messages = [
            (raw, _image(EPOCH_NS, frame_rgb, 'rgb8')),
            (raw, _image(EPOCH_NS + 1, frame_rgb, 'bgr8', step=100)),  # step shorter than a row
            (raw, _image(EPOCH_NS + 2, frame_rgb[:, :, 0], 'mono8')),
            (raw, _image(EPOCH_NS + 3, frame_rgb[:, :, 0], '32FC1')),
        ]
        ok, png = cv2.imencode('.png', frame_rgb)
        assert ok
        compressed = TYPESTORE.types['sensor_msgs/msg/CompressedImage']
        messages += [
            (packed, compressed(header=header_msg(EPOCH_NS), format='png', data=png.reshape(-1))),
            (
                packed,
                compressed(header=header_msg(EPOCH_NS + 1), format='jpeg', data=np.arange(50, dtype=np.uint8)),
            ),
        ]
        for connection, msg in messages:
            writer.write(connection, stamp(msg), TYPESTORE.serialize_cdr(msg, msg.__msgtype__))

    with pytest.raises(ValueError, match=r'several image topics \(/cam_a, /cam_b\), choose one with --topic'):
        read_bag_frames(bag, progress=False)
    frames = read_bag_frames(bag, topic='/cam_a', progress=False)
    assert frames.stamps.tolist() == [EPOCH_NS, EPOCH_NS + 2]
    np.testing.assert_array_equal(frames.frames[0], resize_frame(frame_rgb, 'rgb'))
    np.testing.assert_array_equal(frames.frames[1], resize_frame(frame_rgb[:, :, 0], 'mono'))
    assert [stamp for stamp, _ in frames.rejected] == [EPOCH_NS + 1, EPOCH_NS + 3]
    assert 'step' in frames.rejected[0][1] and 'unsupported encoding' in frames.rejected[1][1]
    frames = read_bag_frames(bag, topic='/cam_b', progress=False)
    np.testing.assert_array_equal(frames.frames[0], resize_frame(frame_rgb, 'bgr'))  # PNG of the array as BGR
    assert [stamp for stamp, _ in frames.rejected] == [EPOCH_NS + 1] and 'cannot decode' in frames.rejected[0][1]
    small = read_bag_frames(bag, topic='/cam_a', image_size=32, progress=False)
    np.testing.assert_array_equal(small.frames[0], resize_frame(frame_rgb, 'rgb', 32))


def test_rosbags_errors_become_a_bag_error_naming_the_bag(bags, tmp_path):
    corrupt = tmp_path / 'corrupt'
    corrupt.mkdir()
    (corrupt / 'metadata.yaml').write_text('rosbag2_bagfile_information: {version: 9}\n')
    with pytest.raises(BagError, match=f'{corrupt}: not a readable bag') as error:
        read_bag_frames(corrupt, progress=False)
    assert isinstance(error.value, ValueError)
    ros1 = tmp_path / 'broken.bag'
    ros1.write_bytes(b'#ROSBAG V2.0\n' + b'\x00' * 64)
    with pytest.raises(BagError, match='broken.bag'):
        read_bag_frames(ros1, progress=False)
    with pytest.raises(FileNotFoundError, match='no bag at'):
        read_bag_frames(tmp_path / 'nothing', progress=False)
    # A recording cut short: its database ends in the middle.
    cut = tmp_path / 'cut'
    cut.mkdir()
    for path in bags().iterdir():
        data = path.read_bytes()
        (cut / path.name).write_bytes(data[: len(data) // 2] if path.suffix == '.db3' else data)
    with pytest.raises(BagError, match=f'{cut}: not a readable bag'):
        read_bag_frames(cut, progress=False)
    # A corrupt message met while reading: rosbags fails inside the with block.
    with pytest.raises(BagError, match=f'{bags()}: cannot read the bag'), open_bag(bags()) as reader:
        reader.deserialize(b'\x00\x01', 'sensor_msgs/msg/Image')
