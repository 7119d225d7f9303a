"""Patrol -> training set keeps frames by image change and by time: many where the view changes, few where not."""

import csv
import json

import cv2
import numpy as np
import pytest
from bag_helpers import STEP_NS

from training.world.corridor import CorridorWorld
from visual_anomaly.bags.convert import dataset_to_bag
from visual_anomaly.bags.io import EPOCH_NS
from visual_anomaly.bags.training_set import (
    DUPLICATE,
    KEPT_BY_CHANGE,
    KEPT_BY_TIME,
    change_threshold_for,
    frame_distance,
    select_frames,
    thumbnail,
)
from visual_anomaly.cli.bag import main

EVERY_NS = 5 * STEP_NS  # the default --every 0.5 at the 10 Hz of the test bags


def drive_and_stop(moving: int, still: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stamps and thumbnail-like vectors: ``moving`` frames of a changing view, ``still`` of a fixed one, ``moving``."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.12, (2 * moving, 1024)), axis=0)  # ~0.1 between neighbours
    stop = walk[moving - 1] + rng.normal(0, 0.01, (still, 1024))  # sensor noise only
    vectors = np.concatenate([walk[:moving], stop, walk[moving:] + walk[moving - 1] - walk[moving]])
    return EPOCH_NS + STEP_NS * np.arange(len(vectors), dtype=np.int64), vectors.astype(np.float32)


def test_standing_still_gives_near_duplicates_and_a_target_adds_frames_where_the_view_changes():
    stamps, vectors = drive_and_stop(moving=50, still=30)
    still = slice(51, 80)  # the robot standing still, after the first frame at the new place
    by_time = select_frames(stamps, vectors, EVERY_NS, 0.05, np.inf)
    assert (by_time[still] == DUPLICATE).all()
    assert (by_time <= KEPT_BY_CHANGE).sum() == 21  # one per 0.5 s of the 100 moving frames, and where it stopped
    threshold = change_threshold_for(stamps, vectors, EVERY_NS, 0.05, target=60)
    reasons = select_frames(stamps, vectors, EVERY_NS, 0.05, threshold)
    kept = reasons <= KEPT_BY_CHANGE
    assert 50 <= kept.sum() <= 60 and kept[still].sum() <= 1
    assert (reasons == KEPT_BY_CHANGE).sum() > (reasons == KEPT_BY_TIME).sum()
    assert kept[:50].sum() >= 20 and kept[80:].sum() >= 20  # both drives, not one
    everything = change_threshold_for(stamps, vectors, EVERY_NS, 0.05, target=1000)
    reasons = select_frames(stamps, vectors, EVERY_NS, 0.05, everything)
    assert everything == 0.05 and (reasons[:50] != DUPLICATE).all() and (reasons[81:] != DUPLICATE).all()
    assert change_threshold_for(stamps, vectors, EVERY_NS, 0.05, target=0) == np.inf
    assert change_threshold_for(stamps, vectors, EVERY_NS, 0.05, target=10) == np.inf  # time alone keeps 20


def test_a_brightness_change_or_sensor_noise_alone_is_no_change():
    y, x = np.mgrid[0:96, 0:96]
    frame = np.repeat((60 + 140 * ((x // 16 + y // 16) % 2))[..., None], 3, axis=2).astype(np.uint8)  # a checkerboard
    darker = (frame * 0.6).astype(np.uint8)
    noisy = np.clip(frame + np.random.default_rng(0).normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
    shifted = np.roll(frame, 8, axis=1)  # the view moved by half a square
    assert frame_distance(thumbnail(frame), thumbnail(darker)) < 0.01
    assert frame_distance(thumbnail(frame), thumbnail(noisy)) < 0.03
    assert frame_distance(thumbnail(frame), thumbnail(shifted)) > 0.5


@pytest.fixture(scope='module')
def drive_stop_drive(tmp_path_factory):
    """A rendered 10 Hz patrol bag: 40 frames driving, 30 standing still, 40 driving on."""
    world = CorridorWorld(seed=0, image_size=128, n_environments=1)
    rng = np.random.default_rng(0)
    first = world.patrol(40, rng, env=0)[0]
    pose = world.random_pose(rng, 0, 30.0)
    still = [world.render_pose(rng, 0, pose)[0] for _ in range(30)]
    frames = np.concatenate([first, np.stack(still), world.patrol(40, rng, env=0)[0]])
    folder = tmp_path_factory.mktemp('drive') / 'patrol' / 'train_set'
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f'frame_{i:06d}.jpg'), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return dataset_to_bag(folder.parent, folder.parents[1] / 'bag', split='train', compressed=True, progress=False)


def kept_positions(root) -> np.ndarray:
    stamps = []
    for split in ('train', 'validation'):
        with (root / 'metadata' / f'{split}_frames_envs.csv').open(newline='') as handle:
            stamps += [int(row['stamp_ns']) for row in csv.DictReader(handle)]
    return np.sort((np.array(stamps) - EPOCH_NS) // STEP_NS)


@pytest.mark.slow  # renders 110 frames
def test_a_patrol_keeps_more_frames_while_driving_and_few_while_standing(drive_stop_drive, tmp_path, capsys):
    assert main(['to-training-set', str(drive_stop_drive), str(tmp_path / 'time'), '--target', '0', '--quiet']) == 0
    by_time = kept_positions(tmp_path / 'time')
    assert main(['to-training-set', str(drive_stop_drive), str(tmp_path / 'change'), '--target', '60', '--quiet']) == 0
    out = capsys.readouterr().out
    by_change = kept_positions(tmp_path / 'change')
    source = json.loads((tmp_path / 'change' / 'metadata' / 'source.json').read_text())
    assert f'kept {len(by_change)} of 110 frames: {source["kept_by_change"]} by image change' in out
    assert source['dropped_as_duplicates'] >= 29 and source['kept'] == len(by_change) <= 60
    driving = (by_change < 40) | (by_change >= 70)
    assert ((by_time < 40) | (by_time >= 70)).sum() <= 17  # one per 0.5 s
    assert driving.sum() >= 2 * 17 and (~driving).sum() <= 1  # by change: far more while driving, not standing
    assert source['train'] + source['validation'] == len(by_change) and source['validation'] >= 5
