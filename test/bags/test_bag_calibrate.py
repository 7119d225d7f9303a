"""``visual-anomaly-bag calibrate``: a bundle's threshold set on a normal patrol of a building it never saw."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.world import CorridorWorld
from visual_anomaly.bags.convert import dataset_to_bag
from visual_anomaly.cli.bag import main
from visual_anomaly.core import load_bundle, read_bundle_metadata, resize_frames

pytestmark = pytest.mark.slow  # hundreds of rendered frames, scored by the shipped model

MODELS = Path(__file__).resolve().parents[2] / 'models'
FPR = 0.05
CALIBRATION, HELD_OUT = 250, 600  # 250 >= 10 / FPR


def _frames(count: int, seed: int) -> list[np.ndarray]:
    """Normal RGB frames of a corridor world the shipped model was not trained on (its world seed is 0)."""
    world, rng = CorridorWorld(seed=5, image_size=128), np.random.default_rng(seed)
    return [world.render(rng)[0] for _ in range(count)]


def _write_bag(frames: list[np.ndarray], base: Path, bag: Path) -> Path:
    """``frames`` as JPEG files of a dataset under ``base``, then as a compressed-image bag at ``bag``."""
    folder = base / 'train_set'
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f'frame_{i:06d}.jpg'), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return dataset_to_bag(base, bag, split='train', compressed=True, progress=False)


@pytest.fixture(scope='module')
def building(tmp_path_factory):
    """A normal patrol bag of the new building, the same frames split into two bags (two days), and held-out
    normal frames of it at the model's input size."""
    base, frames = tmp_path_factory.mktemp('building'), _frames(CALIBRATION, seed=1)
    half = CALIBRATION // 2
    days = [
        _write_bag(part, base / f'day{i}', base / 'days' / f'day{i}_bag')
        for i, part in enumerate((frames[:half], frames[half:]))
    ]
    bag = _write_bag(frames, base / 'patrol', base / 'site' / 'patrol_bag')
    return {'bag': bag, 'days': days, 'held_out': resize_frames(_frames(HELD_OUT, seed=2), 'rgb', 64)}


def test_calibrate_writes_a_bundle_whose_threshold_holds_on_new_normal_frames(building, capsys):
    bag, held_out = building['bag'], building['held_out']
    assert main(['calibrate', str(MODELS / 'default.pt'), str(bag), '--fpr', str(FPR), '--quiet']) == 0
    out = bag.parent / 'default.calibrated.pt'  # the default: beside the bag
    printed = capsys.readouterr().out
    assert f'{CALIBRATION} normal frames' in printed and str(out) in printed and '95% CI' in printed

    shipped, calibrated = load_bundle(MODELS / 'default.pt', 'cpu'), load_bundle(out, 'cpu')
    assert abs(calibrated.threshold_ - shipped.threshold_) > 0.1
    before = shipped.detect_resized(held_out).is_anomaly.mean()
    after = calibrated.detect_resized(held_out).is_anomaly.mean()
    assert 0.3 * FPR <= after <= 3 * FPR, f'{after:.3f} of {HELD_OUT} held-out normal frames flagged'
    assert abs(after - FPR) < abs(before - FPR)
    threshold = calibrated.calibration.thresholds[calibrated.decision_score]
    assert (threshold.method, threshold.target, threshold.frames) == ('fpr', FPR, CALIBRATION)
    low, high = threshold.fpr_interval
    assert low < FPR < high < 3 * FPR
    assert read_bundle_metadata(out)['provenance']['recalibration']['frames'] == CALIBRATION
    np.testing.assert_array_equal(  # the network is unchanged: same raw error maps
        calibrated.detect_resized(held_out[:4]).error_map, shipped.detect_resized(held_out[:4]).error_map
    )


def test_an_onnx_bundle_is_recalibrated_as_onnx_with_the_same_threshold(building, tmp_path, capsys):
    out = tmp_path / 'building.onnx'
    argv = ['calibrate', str(MODELS / 'default.onnx'), str(building['bag']), '--fpr', str(FPR), '--out', str(out)]
    assert main([*argv, '--quiet']) == 0
    assert str(out) in capsys.readouterr().out
    assert main(['calibrate', str(MODELS / 'default.pt'), str(building['bag']), '--fpr', str(FPR), '--quiet']) == 0
    from_pt = load_bundle(building['bag'].parent / 'default.calibrated.pt', 'cpu')
    from_onnx = load_bundle(out)
    assert type(from_onnx).__name__ == 'OnnxModel'
    assert from_onnx.threshold_ == pytest.approx(from_pt.threshold_, abs=1e-4)


def test_too_few_frames_and_overwriting_the_model_are_refused(building, tmp_path, capsys):
    model = tmp_path / 'model.pt'
    model.write_bytes((MODELS / 'default.pt').read_bytes())
    bag = str(building['bag'])
    assert main(['calibrate', str(model), bag, '--quiet']) == 2  # a 1% target needs 1,000 frames
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('visual-anomaly-bag calibrate:')
    assert f'{CALIBRATION} normal frames are too few' in err and 'at least 1000' in err and '0.04' in err
    assert main(['calibrate', str(model), bag, '--fpr', str(FPR), '--out', str(model), '--quiet']) == 2
    assert 'would overwrite' in capsys.readouterr().err
    assert main(['calibrate', str(model), bag, '--fpr', str(FPR), '--out', str(tmp_path / 'x.onnx'), '--quiet']) == 2
    assert 'must be written as .pt' in capsys.readouterr().err
    assert model.read_bytes() == (MODELS / 'default.pt').read_bytes()


def test_bags_of_one_building_are_pooled_into_one_threshold(building, tmp_path, capsys):
    model, days = str(MODELS / 'default.pt'), [str(day) for day in building['days']]
    assert main(['calibrate', model, days[0], '--fpr', str(FPR), '--out', str(tmp_path / 'x.pt'), '--quiet']) == 2
    assert f'{CALIBRATION // 2} normal frames are too few' in capsys.readouterr().err  # one day: 125 < 10 / FPR
    assert main(['calibrate', model, *days, '--pool', '--fpr', str(FPR), '--quiet']) == 2
    assert '2 bags pooled into one bundle need its path' in capsys.readouterr().err
    out = tmp_path / 'pooled.pt'
    folder = str(building['days'][0].parent)  # a folder: its bags, sorted by path
    assert main(['calibrate', model, folder, '--pool', '--fpr', str(FPR), '--out', str(out), '--quiet']) == 0
    assert f'{CALIBRATION} normal frames' in capsys.readouterr().out
    assert main(['calibrate', model, str(building['bag']), '--fpr', str(FPR), '--quiet']) == 0
    pooled, one_bag = load_bundle(out, 'cpu'), load_bundle(building['bag'].parent / 'default.calibrated.pt', 'cpu')
    assert pooled.calibration.thresholds[pooled.decision_score].frames == CALIBRATION
    assert pooled.threshold_ == pytest.approx(one_bag.threshold_, rel=1e-6)  # the same frames, in one bag
    assert all(day in read_bundle_metadata(out)['provenance']['recalibration']['bag'] for day in days)


@pytest.fixture(scope='module')
def patrol_bag(tmp_path_factory):
    """A 480-frame normal patrol (in driving order) of the new building, as a bag, and its frames at 64x64."""
    world, rng = CorridorWorld(seed=5, image_size=128), np.random.default_rng(3)
    frames = world.patrol(480, rng, 0.0, speed_m_per_frame=0.1)[0]
    base = tmp_path_factory.mktemp('patrol')
    folder = base / 'data' / 'train_set'
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f'frame_{i:06d}.jpg'), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    bag = dataset_to_bag(folder.parent, base / 'patrol_bag', split='train', compressed=True, progress=False)
    return bag, resize_frames(frames, 'rgb', 64)


def _with_boxes(frames: np.ndarray, seed: int) -> np.ndarray:
    """The frames with a faint 4x4 box (40 grey levels off what it covers) at a random place on each."""
    rng, boxed = np.random.default_rng(seed), frames.copy().astype(np.int16)
    for frame in boxed:
        y, x = rng.integers(10, 54, size=2)
        frame[y : y + 4, x : x + 4] += rng.choice([-40, 40])
    return np.clip(boxed, 0, 255).astype(np.uint8)


def test_memory_learns_the_new_building_from_half_the_patrol(patrol_bag, tmp_path, capsys):
    bag, frames = patrol_bag
    out = tmp_path / 'learnt.pt'
    # 2.5% needs 400 normal frames: the 240 kept out of the memory, with the memory's own 240 held out
    argv = ['calibrate', str(MODELS / 'default.pt'), str(bag), '--fpr', '0.025', '--out', str(out), '--memory']
    assert main([*argv, '--quiet']) == 0
    printed = capsys.readouterr().out
    assert 'patrol memory of 240 frames learnt; 240 normal frames' in printed
    learnt, shipped = load_bundle(out, 'cpu'), load_bundle(MODELS / 'default.pt', 'cpu')
    assert learnt.base_score == 'change' and learnt.memory.size == 240
    assert learnt.calibration.thresholds[learnt.decision_score].frames == 480
    assert read_bundle_metadata(out)['provenance']['recalibration']['memory_frames'] == 240
    held_out = frames[(np.arange(480) * 20 // 480) % 2 == 1]  # the stretches kept out of the memory
    boxed = _with_boxes(held_out, seed=4)
    labels = np.r_[np.zeros(len(held_out)), np.ones(len(boxed))]
    auc = {
        name: roc_auc_score(labels, model.detect_resized(np.concatenate([held_out, boxed])).score)
        for name, model in (('learnt', learnt), ('shipped', shipped))
    }
    assert auc['learnt'] > 0.85 and auc['learnt'] > auc['shipped'] + 0.2, auc  # measured: 0.90 vs 0.57
    assert main([*argv[:-1], '--out', str(tmp_path / 'x.onnx'), '--memory', '--quiet']) == 2
    onnx_argv = ['calibrate', str(MODELS / 'default.onnx'), str(bag), '--fpr', str(FPR), '--memory', '--quiet']
    assert main(onnx_argv) == 2
    assert 'needs the .pt bundle' in capsys.readouterr().err
