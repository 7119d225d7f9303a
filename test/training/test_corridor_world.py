"""The synthetic corridor world: determinism, labels, layout files, visible anomalies."""

import csv

import cv2
import numpy as np
import pytest

from training.world import CorridorWorld, generate_frames, write_hazards_layout
from training.world.anomalies import DRAWERS
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES, class_name


def test_generation_is_deterministic_by_seed():
    a, info_a = generate_frames(6, seed=3, image_size=64, anomaly_fraction=0.5)
    b, info_b = generate_frames(6, seed=3, image_size=64, anomaly_fraction=0.5)
    c, _ = generate_frames(6, seed=4, image_size=64, anomaly_fraction=0.5)
    assert a.shape == (6, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert info_a == info_b
    assert not np.array_equal(a, c)


def test_anomaly_fraction_and_classes_are_honoured():
    _, infos = generate_frames(20, seed=0, image_size=32, anomaly_fraction=0.25, classes=[7, 9])
    labels = [info.label for info in infos]
    assert sum(label != 0 for label in labels) == 5
    assert set(labels) == {0, 7, 9}
    assert all(info.difficulty == 0 for info in infos if info.label == 0)


def test_every_anomaly_class_of_the_taxonomy_has_its_drawer():
    assert set(DRAWERS) == set(ANOMALY_CLASSES) - {0}


@pytest.mark.parametrize('label', sorted(set(ANOMALY_CLASSES) - {0}))
def test_every_anomaly_class_changes_the_frame(label):
    world = CorridorWorld(seed=1, image_size=128, jpeg_quality=None, noise_std=0.0)
    pose_rng = np.random.default_rng(5)
    pose = world.random_pose(pose_rng, env=0, camera_z=10.0)
    clean, _ = world.render_pose(np.random.default_rng(0), 0, pose)
    anomaly = world.place_anomaly(np.random.default_rng(2), label, 0, z=12.0)
    dirty, coverage = world.render_pose(np.random.default_rng(0), 0, pose, [anomaly])
    changed = np.abs(dirty.astype(int) - clean.astype(int)).max(axis=2) > 10
    assert coverage > 0
    assert changed.mean() > 0.0005, f'{class_name(label)} left the frame unchanged'


def test_patrol_is_coherent_and_labels_anomalies_in_view():
    world = CorridorWorld(seed=0, image_size=64)
    frames, infos = world.patrol(120, np.random.default_rng(0), anomaly_rate=0.4, classes=[9], speed_m_per_frame=0.1)
    positions = np.array([info.camera_z for info in infos])
    np.testing.assert_allclose(np.diff(positions), 0.1, atol=1e-9)
    labels = np.array([info.label for info in infos])
    assert set(labels.tolist()) == {0, 9}
    assert 0.15 < (labels > 0).mean() < 0.7
    # consecutive frames differ far less than frames far apart in the patrol
    small = frames.astype(np.float32)
    near = np.abs(small[1:] - small[:-1]).mean()
    far = np.abs(small[60:] - small[:-60]).mean()
    assert near < far


def test_hazards_layout_matches_the_dataset(tmp_path):
    root = write_hazards_layout(
        tmp_path / 'corridors',
        n_train=6,
        n_validation=3,
        n_test=8,
        n_outliers=4,
        image_size=64,
        test_anomaly_fraction=0.5,
        outlier_classes=[9, 11],
    )
    for split, count in (('train_set', 6), ('validation_set', 3), ('test_set', 8), ('outliers_set', 4)):
        files = sorted((root / split).glob('*.jpg'))
        assert len(files) == count
        image = cv2.imread(str(files[0]))
        assert image.shape == (64, 64, 3)
    with (root / 'metadata' / 'frames_labels.csv').open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row['frame'] for row in rows] == sorted(p.name for p in (root / 'test_set').glob('*.jpg'))
    assert sum(int(row['label']) > 0 for row in rows) == 4
    with (root / 'metadata' / 'outliers_frames_labels.csv').open() as handle:
        assert {int(row['label']) for row in csv.DictReader(handle)} <= {9, 11}
    for name in ('train_frames_envs.csv', 'validation_frames_envs.csv'):
        with (root / 'metadata' / name).open() as handle:
            assert all(0 <= int(row['env']) < 4 for row in csv.DictReader(handle))


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match='anomaly_fraction'):
        generate_frames(2, anomaly_fraction=1.5)
    with pytest.raises(ValueError, match='unknown anomaly class'):
        CorridorWorld(image_size=32).place_anomaly(np.random.default_rng(0), 42, 0, 1.0)
