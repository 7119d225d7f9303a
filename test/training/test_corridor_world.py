"""The synthetic corridor world: determinism, labels by visibility and their masks, layout files, the demo patrol."""

import csv

import cv2
import numpy as np
import pytest

from training.demo import DemoConfig, generate_patrol
from training.world import Anomaly, CorridorWorld, generate_frames, write_hazards_layout
from training.world.anomalies import DRAWERS
from training.world.corridor import visible_ground_truth
from training.world.scene import MIN_VISIBLE_FRACTION, MIN_VISIBLE_PIXELS, Pose, camera_rotation
from visual_anomaly.data.hazards import HazardsDataset
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES, class_code, class_name

BOXES, SCREWS = class_code('boxes'), class_code('screws')


def test_generation_is_deterministic_by_seed():
    a, info_a, masks_a = generate_frames(6, seed=3, image_size=64, anomaly_fraction=0.5)
    b, info_b, masks_b = generate_frames(6, seed=3, image_size=64, anomaly_fraction=0.5)
    c, _, _ = generate_frames(6, seed=4, image_size=64, anomaly_fraction=0.5)
    assert a.shape == (6, 64, 64, 3) and a.dtype == np.uint8
    assert masks_a.shape == (6, 64, 64) and masks_a.dtype == bool
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(masks_a, masks_b)
    assert info_a == info_b
    assert not np.array_equal(a, c)


def test_anomaly_fraction_and_classes_are_honoured():
    _, infos, masks = generate_frames(20, seed=0, image_size=32, anomaly_fraction=0.25, classes=[7, 9])
    labels = [info.label for info in infos]
    assert sum(label != 0 for label in labels) == 5
    assert set(labels) == {0, 7, 9}
    assert all(info.difficulty == 0 for info in infos if info.label == 0)
    for info, mask in zip(infos, masks, strict=True):  # every anomalous frame shows its object, the others none
        assert (mask.sum() >= MIN_VISIBLE_PIXELS) == (info.label > 0)
        assert info.coverage == pytest.approx(mask.mean())


def test_the_visibility_rule_counts_model_pixels():
    painted = np.zeros((512, 512), bool)  # a model pixel is 8x8 here and counts from a quarter of its area
    for i in range(MIN_VISIBLE_PIXELS - 1):
        painted[8 * i : 8 * i + 4, 64 : 64 + 4] = True  # a quarter: counts
    painted[200:202, 200:207] = True  # 14 of 64: less than a quarter, does not count
    assert visible_ground_truth(BOXES, painted)[0] == 0
    assert not visible_ground_truth(BOXES, painted)[1].any()
    painted[300:304, 300:304] = True
    label, mask = visible_ground_truth(BOXES, painted)
    assert label == BOXES and mask.sum() == MIN_VISIBLE_PIXELS == round(MIN_VISIBLE_FRACTION * 64 * 64)
    assert visible_ground_truth(0, painted)[0] == 0


def _straight_ahead(world: CorridorWorld, anomaly: Anomaly) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """The clean and the rendered frame of ``anomaly`` seen from z = 10 m, looking down the corridor; label, mask."""
    pose = Pose(x=0.0, y=0.3, z=10.0, rotation=camera_rotation(0.0, 0.0, 0.0))
    clean, _ = world.render_pose(np.random.default_rng(0), 0, pose)
    dirty, painted = world.render_pose(np.random.default_rng(0), 0, pose, [anomaly])
    return clean, dirty, *visible_ground_truth(anomaly.label, painted)


def test_objects_out_of_view_or_too_small_are_normal_and_one_close_by_is_anomalous():
    world = CorridorWorld(seed=1, image_size=256, jpeg_quality=None, noise_std=0.0)
    behind = Anomaly(label=BOXES, x=0.0, z=8.0, scale=1.0, seed=3)
    clean, dirty, label, mask = _straight_ahead(world, behind)
    assert label == 0 and not mask.any() and np.array_equal(clean, dirty)
    far_screws = Anomaly(label=SCREWS, x=0.0, z=18.0, scale=1.0, seed=3)  # a few frame pixels, under a model pixel
    clean, dirty, label, mask = _straight_ahead(world, far_screws)
    assert not np.array_equal(clean, dirty) and label == 0 and not mask.any()
    close_box = Anomaly(label=BOXES, x=0.0, z=10.8, scale=1.0, seed=3)  # 0.8 m ahead, plainly in view
    clean, dirty, label, mask = _straight_ahead(world, close_box)
    assert label == BOXES and mask.mean() > 0.05
    small = [cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA).astype(int) for f in (clean, dirty)]
    changed = np.abs(small[1] - small[0]).max(axis=2) > 20
    assert changed.sum() > 0.8 * mask.sum()  # the mask covers the box...
    assert (changed & ~mask).sum() <= 0.02 * changed.sum()  # ...and little else changed


def test_every_anomaly_class_of_the_taxonomy_has_its_drawer():
    assert set(DRAWERS) == set(ANOMALY_CLASSES) - {0}


@pytest.mark.parametrize('label', sorted(set(ANOMALY_CLASSES) - {0}))
def test_every_anomaly_class_changes_the_frame(label):
    world = CorridorWorld(seed=1, image_size=128, jpeg_quality=None, noise_std=0.0)
    pose_rng = np.random.default_rng(5)
    pose = world.random_pose(pose_rng, env=0, camera_z=10.0)
    clean, _ = world.render_pose(np.random.default_rng(0), 0, pose)
    anomaly = world.place_anomaly(np.random.default_rng(2), label, 0, z=12.0)
    dirty, painted = world.render_pose(np.random.default_rng(0), 0, pose, [anomaly])
    changed = np.abs(dirty.astype(int) - clean.astype(int)).max(axis=2) > 10
    assert changed.mean() > 0.0005, f'{class_name(label)} left the frame unchanged'
    assert not (changed & (painted == 0)).any(), f'{class_name(label)} changed pixels it did not report'


def test_patrol_is_coherent_and_labels_anomalies_in_view():
    world = CorridorWorld(seed=0, image_size=64)
    frames, infos, masks = world.patrol(
        160, np.random.default_rng(0), anomaly_rate=0.4, classes=[9, 11], speed_m_per_frame=0.1
    )
    positions = np.array([info.camera_z for info in infos])
    np.testing.assert_allclose(np.diff(positions), 0.1, atol=1e-9)
    labels = np.array([info.label for info in infos])
    assert set(labels.tolist()) == {0, 9, 11}  # classes come in turn
    assert 0.25 < (labels > 0).mean() < 0.6
    np.testing.assert_array_equal(masks.sum(axis=(1, 2)) >= MIN_VISIBLE_PIXELS, labels > 0)
    assert not masks[labels == 0].any()
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
    assert sorted(p.name for p in (root / 'test_set_masks').glob('*.png')) == [
        row['frame'].replace('.jpg', '.png') for row in rows
    ]
    assert not (root / 'train_set_masks').exists() and (root / 'outliers_set_masks').is_dir()
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


@pytest.mark.slow  # renders the demo's 600-frame patrol (about a minute)
@pytest.mark.off_robot(reason="the off-robot demo's patrol; the shorter tests above render the same world")
def test_the_demo_patrol_shows_a_third_anomalous_frames_of_many_classes(tmp_path):
    config = DemoConfig()
    infos = generate_patrol(tmp_path, config.frames, config.anomaly_rate, config.render_size, config.seed)
    labels = np.array([info.label for info in infos])
    assert len(labels) == 600
    assert 0.28 <= (labels > 0).mean() <= 0.45
    assert len(set(labels.tolist()) - {0}) >= 10
    test = HazardsDataset(tmp_path).load('test', progress=False)  # what the bag's /ground_truth/anomaly carries
    np.testing.assert_array_equal(test.labels, labels)
    np.testing.assert_array_equal(test.masks.any(axis=(1, 2)), labels > 0)
