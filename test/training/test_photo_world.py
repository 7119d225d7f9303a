"""The photo worlds: masks follow visibility, the two buildings look different, determinism, patrols, datasets."""

import csv

import numpy as np
import pytest

from training.world import PhotoWorld, make_world, world_classes
from training.world.photo_assets import PHOTO_CLASSES, photo_class_code
from training.world.scene import MIN_VISIBLE_PIXELS
from visual_anomaly.cli.train import main as train_main
from visual_anomaly.data.hazards import HazardsDataset

pytestmark = pytest.mark.off_robot(reason='photo worlds render with scikit-image, which robots do not install')

SIZE = 64


@pytest.fixture(scope='module')
def worlds():
    return {name: PhotoWorld(name, image_size=SIZE, n_environments=2) for name in ('photo-b', 'photo-c')}


@pytest.mark.parametrize('name', ['photo-b', 'photo-c'])
def test_every_class_renders_in_view_with_its_mask(worlds, name):
    rng = np.random.default_rng(0)
    for code in [code for code in PHOTO_CLASSES if code]:
        frame, info, mask = worlds[name].render(rng, code)
        assert frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8
        assert info.label == code, PHOTO_CLASSES[code]
        assert mask.sum() >= MIN_VISIBLE_PIXELS
        assert info.coverage == pytest.approx(mask.mean())
    frame, info, mask = worlds[name].render(rng, 0)
    assert info.label == 0 and not mask.any() and info.coverage == 0


def test_the_object_is_where_its_mask_is(worlds):
    """Rendered with and without the object from the same pose, the frames differ inside the mask."""
    world = worlds['photo-b']
    pose = world.random_pose(np.random.default_rng(1), 0, 100.0)
    box = world.place_anomaly(np.random.default_rng(2), photo_class_code('box'), 0, 101.5)
    clean, _ = world.render_pose(np.random.default_rng(3), 0, pose, [], gain=1.0)
    with_box, painted = world.render_pose(np.random.default_rng(3), 0, pose, [box], gain=1.0)
    inside = painted > 0.5
    assert inside.sum() > 20
    change = np.abs(with_box.astype(int) - clean.astype(int)).mean(-1)
    assert change[inside].mean() > 5 * change[~inside].mean() + 5


def test_the_two_buildings_differ_in_look(worlds):
    rng = np.random.default_rng(0)
    means = {}
    for name, world in worlds.items():
        frames = np.stack([world.render(rng, 0)[0] for _ in range(6)])
        means[name] = frames.reshape(-1, 3).mean(0)
    b, c = means['photo-b'], means['photo-c']
    assert np.abs(b - c).max() > 20  # C is dimmer and warmer, with a green floor
    assert c[1] / c[2] > 1.08 * b[1] / b[2]  # green over blue: 1.33 in C, 1.18 in B


def test_rendering_is_deterministic_by_seed(worlds):
    world = worlds['photo-c']
    a = [world.render(np.random.default_rng(5), 7) for _ in range(2)]
    np.testing.assert_array_equal(a[0][0], a[1][0])
    np.testing.assert_array_equal(a[0][2], a[1][2])
    assert a[0][1] == a[1][1]
    other = world.render(np.random.default_rng(6), 7)
    assert not np.array_equal(a[0][0], other[0])


def test_a_patrol_shows_its_share_of_anomalies_labelled_by_visibility(worlds):
    frames, infos, masks = worlds['photo-b'].patrol(
        160, np.random.default_rng(0), 0.3, classes=['person', 'tape'], env=1, speed_m_per_frame=0.15,
        appear_ahead_m=2.5,
    )  # fmt: skip
    assert frames.shape == (160, SIZE, SIZE, 3) and masks.shape == (160, 64, 64) and len(infos) == 160
    labels = np.array([info.label for info in infos])
    assert set(labels) == {0, 1, 5}
    assert 0.1 < (labels > 0).mean() < 0.6
    assert all((mask.sum() >= MIN_VISIBLE_PIXELS) == (label > 0) for mask, label in zip(masks, labels, strict=True))
    z = [info.camera_z for info in infos]
    assert np.allclose(np.diff(z), 0.15, atol=1e-6)
    clean = worlds['photo-b'].patrol(50, np.random.default_rng(0), 0.0)[1]
    assert all(info.label == 0 for info in clean)


def test_class_names_and_worlds_are_checked():
    assert photo_class_code('Open_Door') == 9 and photo_class_code('3') == 3
    assert world_classes('photo-c', ['cable', 'debris']) == [8, 10]
    assert world_classes('corridor', ['boxes']) == [9]
    with pytest.raises(ValueError, match='unknown photo-world anomaly class'):
        world_classes('photo-b', ['boxes'])
    with pytest.raises(ValueError, match='unknown world'):
        make_world('photo-x')


def test_generate_writes_a_photo_dataset_with_its_class_names(tmp_path):
    root = tmp_path / 'photo'
    argv = ['generate', str(root), '--train', '4', '--validation', '4', '--test', '6', '--outliers', '4']
    argv += ['--image-size', '64', '--world', 'photo-c', '--outlier-classes', 'tape,person', '--quiet']
    assert train_main(argv) == 0
    outliers = HazardsDataset(root).split('outliers')
    assert set(outliers.labels.tolist()) <= {1, 5} and len(outliers.labels) == 4
    with (root / 'metadata' / 'class_names.csv').open() as handle:
        assert {int(row['code']): row['name'] for row in csv.DictReader(handle)} == PHOTO_CLASSES
    assert train_main(['generate', str(tmp_path / 'bad'), '--world', 'photo-b', '--outlier-classes', 'boxes']) == 2
