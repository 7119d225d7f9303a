"""The Hazards&Robots layout loader on small generated datasets: labels, masks, cache, bad files, both layouts."""

import csv
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.world import generate_frames, write_hazards_layout, write_split
from visual_anomaly.core.preprocessing import resize_frame
from visual_anomaly.data.hazards import HazardsDataset, reduced_decode_flag
from visual_anomaly.data.masks import mask_path, read_masks

COUNTS = {'train': 6, 'validation': 3, 'test': 8, 'outliers': 4}
CSVS = {
    'train': 'train_frames_envs.csv',
    'validation': 'validation_frames_envs.csv',
    'test': 'frames_labels.csv',
    'outliers': 'outliers_frames_labels.csv',
}


@pytest.fixture(scope='module')
def template(tmp_path_factory) -> Path:
    # 256 px frames take the reduced (1/2) JPEG decoding path to 64 px.
    return write_hazards_layout(tmp_path_factory.mktemp('hazards') / 'hz', *COUNTS.values(), seed=0, image_size=256)


@pytest.fixture
def root(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / 'hz'))


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline='') as handle:
        return list(csv.DictReader(handle))


def direct(paths: list[Path]) -> np.ndarray:
    return np.stack([resize_frame(cv2.imread(str(path)), 'bgr', 64) for path in paths]).astype(np.int16)


def test_every_split_loads_with_csv_metadata(root: Path):
    dataset = HazardsDataset(root)
    assert dataset.splits == ('train', 'validation', 'test', 'outliers')
    for kind, count in COUNTS.items():
        rows = read_rows(root / 'metadata' / CSVS[kind])
        loaded = dataset.load(kind, progress=False)
        assert loaded.frames.shape == (count, 64, 64, 3) and loaded.frames.dtype == np.uint8
        assert len(loaded) == count and loaded.bad_files == []
        assert [path.name for path in loaded.paths] == [row['frame'] for row in rows]
        if kind in ('train', 'validation'):
            assert not loaded.labels.any() and not loaded.difficulty.any()
            assert loaded.env.tolist() == [int(row['env']) for row in rows]
            assert loaded.masks is None  # normal frames: no masks written
        else:
            assert loaded.labels.tolist() == [int(row['label']) for row in rows]
            assert loaded.difficulty.tolist() == [int(row['difficulty']) for row in rows]
            assert loaded.env is None
            assert loaded.masks.shape == (count, 64, 64) and loaded.masks.dtype == bool
            np.testing.assert_array_equal(loaded.masks.any(axis=(1, 2)), loaded.labels > 0)
        assert np.abs(loaded.frames.astype(np.int16) - direct(loaded.paths)).mean() < 3
    assert (dataset.load('test', progress=False).labels != 0).any()
    assert (dataset.load('outliers', progress=False).labels != 0).all()


def test_reduction_keeps_twice_the_target_size():
    assert reduced_decode_flag(512, 64) == cv2.IMREAD_REDUCED_COLOR_4
    assert reduced_decode_flag(256, 64) == cv2.IMREAD_REDUCED_COLOR_2
    assert reduced_decode_flag(1080, 64) == cv2.IMREAD_REDUCED_COLOR_8
    assert reduced_decode_flag(128, 64) == cv2.IMREAD_COLOR


def test_cache_is_reused_and_rebuilt_when_the_folder_changes(root: Path, tmp_path: Path):
    dataset = HazardsDataset(root)
    cache = tmp_path / 'cache'
    npy = cache / 'train_set_64.npy'
    first = dataset.load('train', cache_dir=cache, progress=False)
    assert npy.is_file() and (cache / 'train_set_64.json').is_file()
    assert not (root / '.cache_64').exists()
    written = (npy.stat().st_ino, npy.stat().st_mtime_ns)
    second = dataset.load('train', cache_dir=cache, progress=False)
    assert (npy.stat().st_ino, npy.stat().st_mtime_ns) == written
    np.testing.assert_array_equal(first.frames, second.frames)

    shutil.copyfile(root / 'test_set' / 'frame_000000.jpg', root / 'train_set' / 'frame_000001.jpg')
    third = dataset.load('train', cache_dir=cache, progress=False)
    assert (npy.stat().st_ino, npy.stat().st_mtime_ns) != written
    np.testing.assert_array_equal(third.frames[0], first.frames[0])  # the old mapping stays valid
    assert np.abs(third.frames[1].astype(np.int16) - direct([root / 'test_set' / 'frame_000000.jpg'])[0]).mean() < 3


def test_bad_files_are_reported_and_skipped_with_their_labels(root: Path, caplog):
    truncated, not_image = root / 'test_set' / 'frame_000003.jpg', root / 'test_set' / 'frame_000005.jpg'
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    not_image.write_text('not an image')
    rows = read_rows(root / 'metadata' / 'frames_labels.csv')
    kept = [i for i in range(COUNTS['test']) if i not in (3, 5)]
    for _ in range(2):  # built, then reused from the cache
        with caplog.at_level(logging.WARNING):
            loaded = HazardsDataset(root).load('test', progress=False)
        assert loaded.bad_files == [truncated, not_image]
        assert str(truncated) in caplog.text and str(not_image) in caplog.text
        assert loaded.frames.shape[0] == len(loaded) == len(kept)
        assert [path.name for path in loaded.paths] == [rows[i]['frame'] for i in kept]
        assert loaded.labels.tolist() == [int(rows[i]['label']) for i in kept]
        assert loaded.difficulty.tolist() == [int(rows[i]['difficulty']) for i in kept]
        assert np.abs(loaded.frames.astype(np.int16) - direct(loaded.paths)).mean() < 3
        every_mask = read_masks(HazardsDataset(root).split('test').paths)
        np.testing.assert_array_equal(loaded.masks, every_mask[kept])  # the bad frames' masks went too
        caplog.clear()


def test_csv_that_does_not_match_the_folder_is_an_error(root: Path):
    labels = root / 'metadata' / 'frames_labels.csv'
    lines = labels.read_text().splitlines(keepends=True)
    labels.write_text(''.join(lines[:-1]))
    with pytest.raises(ValueError, match=r'frames_labels\.csv has 7 rows but .*test_set has 8 image files'):
        HazardsDataset(root).split('test')
    lines[1], lines[2] = lines[2], lines[1]
    labels.write_text(''.join(lines))
    with pytest.raises(ValueError, match=r"row 0 names 'frame_000001\.jpg'.*frame_000000\.jpg"):
        HazardsDataset(root).split('test')


def test_data_in_brief_folder_names(root: Path):
    meta = root / 'metadata'
    (root / 'train_set').rename(root / 'training_set')
    (root / 'outliers_set').rename(root / 'training_mixed_set')
    (meta / 'train_frames_envs.csv').rename(meta / 'training_frames_envs.csv')
    (meta / 'outliers_frames_labels.csv').rename(meta / 'training_mixed_frames_labels.csv')
    (meta / 'frames_labels.csv').rename(meta / 'test_frames_labels.csv')
    dataset = HazardsDataset(root)
    assert dataset.splits == ('train', 'validation', 'test', 'outliers')
    assert dataset.split('train').env.tolist() == [int(r['env']) for r in read_rows(meta / 'training_frames_envs.csv')]
    outliers = dataset.split('outliers')
    assert outliers.folder.name == 'training_mixed_set'
    assert outliers.labels.tolist() == [int(r['label']) for r in read_rows(meta / 'training_mixed_frames_labels.csv')]
    assert dataset.split('test').csv == meta / 'test_frames_labels.csv'
    assert dataset.load('outliers', progress=False).frames.shape == (COUNTS['outliers'], 64, 64, 3)


def test_missing_csv_is_a_clear_error_except_for_normal_splits(root: Path):
    (root / 'metadata' / 'frames_labels.csv').unlink()
    (root / 'metadata' / 'train_frames_envs.csv').unlink()
    dataset = HazardsDataset(root)
    with pytest.raises(FileNotFoundError, match=r'test_set.*frames_labels\.csv.*outliers_frames_labels\.csv'):
        dataset.split('test')
    train = dataset.split('train')
    assert train.csv is None and train.env is None and not train.labels.any() and len(train.paths) == COUNTS['train']
    with pytest.raises(FileNotFoundError, match='expected some of'):
        HazardsDataset(root / 'metadata')


def test_masks_round_trip_through_the_layout(tmp_path: Path):
    frames, infos, masks = generate_frames(10, seed=5, image_size=128, anomaly_fraction=0.5, classes=[9, 12])
    assert masks.any(axis=(1, 2)).sum() == 5
    write_split(tmp_path, 'test_set', frames, infos, masks=masks)
    loaded = HazardsDataset(tmp_path).load('test', progress=False)
    np.testing.assert_array_equal(loaded.masks, masks)
    np.testing.assert_array_equal(loaded.labels, [info.label for info in infos])
    first = loaded.paths[0]
    assert mask_path(first) == tmp_path / 'test_set_masks' / 'frame_000000.png'
    with pytest.raises(ValueError, match='10 masks for 9 frames'):
        write_split(tmp_path, 'test_set', frames[:9], infos[:9], masks=masks)


def test_masks_of_any_size_are_read_at_the_model_size(tmp_path: Path):
    frames, infos, _ = generate_frames(3, seed=1, image_size=256)
    write_split(tmp_path, 'test_set', frames, infos)
    (tmp_path / 'test_set_masks').mkdir()
    full = np.zeros((256, 256), np.uint8)
    full[40:48, 100] = 255  # a line a quarter of a model pixel wide: counts
    full[200, 200] = 255  # a sixteenth of one: does not
    cv2.imwrite(str(tmp_path / 'test_set_masks' / 'frame_000000.png'), full)
    (tmp_path / 'test_set_masks' / 'frame_000001.png').write_bytes(b'not a png')
    with pytest.raises(ValueError, match=r'frame_000001\.png'):
        HazardsDataset(tmp_path).load('test', progress=False)
    (tmp_path / 'test_set_masks' / 'frame_000001.png').unlink()  # a frame without a mask has nothing marked
    masks = HazardsDataset(tmp_path).load('test', progress=False).masks
    expected = np.zeros((3, 64, 64), bool)
    expected[0, 10:12, 25] = True
    np.testing.assert_array_equal(masks, expected)
