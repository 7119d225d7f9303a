"""Dataset -> bag: every frame and its ground truth under one header stamp, in sqlite3 or MCAP."""

import logging

import numpy as np
import pytest
import yaml
from bag_helpers import STEP_NS, messages, stamp

from visual_anomaly.bags.convert import dataset_to_bag
from visual_anomaly.bags.io import (
    CAMERA_TOPIC,
    COMPRESSED_TOPIC,
    EPOCH_NS,
    GROUND_TRUTH_TOPIC,
    read_bag_frames,
)
from visual_anomaly.bags.labels import read_labels
from visual_anomaly.data.hazards import HazardsDataset


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
@pytest.mark.parametrize('compressed', [False, True], ids=['image', 'compressed'])
def test_round_trip_gives_the_dataset_frames_and_labels(world, bags, compressed, storage):
    test = world['test']
    bag = bags(compressed, storage)
    assert (bag / 'metadata.yaml').is_file()
    assert yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']['storage_identifier'] == (
        storage
    )
    frames = read_bag_frames(bag, progress=False)
    assert frames.topic == (COMPRESSED_TOPIC if compressed else CAMERA_TOPIC)
    assert frames.rejected == []
    np.testing.assert_array_equal(frames.stamps, EPOCH_NS + STEP_NS * np.arange(len(test)))
    # The strongest statement: the 64x64 frames equal the dataset cache bit for bit, on both paths.
    np.testing.assert_array_equal(frames.frames, test.frames)
    camera = messages(bag, frames.topic)
    if compressed:  # the files' own JPEG bytes, not a re-encoding
        assert all(msg.format == 'jpeg' for _, msg in camera)
        assert [bytes(msg.data) for _, msg in camera] == [path.read_bytes() for path in test.paths]
    else:
        assert all(msg.encoding == 'bgr8' and msg.header.frame_id == 'camera' for _, msg in camera)
        assert (camera[0][1].height, camera[0][1].width) == (128, 128)
    truth = messages(bag, GROUND_TRUTH_TOPIC)
    assert [stamp(msg) for _, msg in truth] == frames.stamps.tolist() == [t for t, _ in camera]
    assert [msg.vector.x for _, msg in truth] == test.labels.tolist()
    assert [msg.vector.y for _, msg in truth] == test.difficulty.tolist()
    np.testing.assert_array_equal(read_labels(bag, frames.stamps), test.labels)


def test_unreadable_files_are_left_out_and_their_stamps_stay_unused(world, tmp_path, caplog):
    paths = HazardsDataset(world['root']).split('validation').paths
    folder = tmp_path / 'data' / 'validation_set'
    folder.mkdir(parents=True)
    for path in paths:
        (folder / path.name).write_bytes(path.read_bytes())
    whole = paths[2].read_bytes()
    (folder / paths[2].name).write_bytes(whole[: len(whole) // 2])  # a JPEG without its end-of-image marker
    (folder / paths[5].name).write_bytes(b'not an image')
    with caplog.at_level(logging.WARNING):
        bag = dataset_to_bag(tmp_path / 'data', tmp_path / 'bag', split='validation', progress=False)
    assert 'truncated JPEG' in caplog.text and 'not a decodable image' in caplog.text
    frames = read_bag_frames(bag, progress=False)
    kept = [i for i in range(len(paths)) if i not in (2, 5)]
    np.testing.assert_array_equal(frames.stamps, EPOCH_NS + STEP_NS * np.array(kept))
    assert len(messages(bag, GROUND_TRUTH_TOPIC)) == len(kept)


@pytest.mark.parametrize('compressed', [False, True], ids=['image', 'compressed'])
def test_image_size_resizes_the_longer_side(world, tmp_path, compressed):
    bag = dataset_to_bag(
        world['root'], tmp_path / 'small', split='validation', compressed=compressed, image_size=32, progress=False
    )
    (_, msg), *_ = messages(bag, COMPRESSED_TOPIC if compressed else CAMERA_TOPIC)
    if compressed:
        assert msg.format == 'jpeg' and bytes(msg.data[:2]) == b'\xff\xd8'
    else:
        assert (msg.height, msg.width) == (32, 32)
    with pytest.raises(ValueError, match='image_size must be positive'):
        dataset_to_bag(world['root'], tmp_path / 'none', image_size=0)
    only_train = tmp_path / 'only_train' / 'train_set'
    only_train.mkdir(parents=True)
    with pytest.raises(ValueError, match="no 'test' split in .*only_train; available: train"):
        dataset_to_bag(only_train.parent, tmp_path / 'none', split='test')
