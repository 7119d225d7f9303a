"""Patrol -> training set: subsampled, near-duplicates dropped, validation as whole stretches."""

import csv
import json

import numpy as np
import pytest
import yaml
from bag_helpers import STEP_NS

from visual_anomaly.bags.io import EPOCH_NS
from visual_anomaly.bags.training_set import bag_to_training_set, validation_mask
from visual_anomaly.cli.bag import main
from visual_anomaly.cli.train import main as train_main
from visual_anomaly.core import load_bundle
from visual_anomaly.data.hazards import HazardsDataset


@pytest.mark.slow  # trains a model for an epoch
def test_patrol_becomes_a_trainable_training_set(patrol, tmp_path):
    root = bag_to_training_set(
        patrol['bag'], tmp_path / 'mine', every_s=0.0, validation_fraction=0.25, block_s=1.0, progress=False
    )
    source = json.loads((root / 'metadata' / 'source.json').read_text())
    assert (source['frames'], source['kept'], source['dropped_as_duplicates'], source['dropped_as_similar']) == (
        36,
        24,
        12,
        0,
    )
    assert (source['train'], source['validation']) == (18, 6)
    # Each kept file is the recorded JPEG itself; map it back to its position in the patrol by stamp.
    positions = {}
    for split in ('train', 'validation'):
        with (root / 'metadata' / f'{split}_frames_envs.csv').open(newline='') as handle:
            rows = list(csv.DictReader(handle))
        assert [row['frame'] for row in rows] == [f'frame_{i:06d}.jpg' for i in range(len(rows))]
        assert {row['env'] for row in rows} == {'0'}
        positions[split] = [(int(row['stamp_ns']) - EPOCH_NS) // STEP_NS for row in rows]
        for row, position in zip(rows, positions[split], strict=True):
            original = patrol['source'][patrol['order'][position]]
            assert (root / f'{split}_set' / row['frame']).read_bytes() == original.read_bytes()
    kept = sorted(positions['train'] + positions['validation'])
    assert [patrol['order'][p] for p in kept] == list(range(24))  # one frame per standstill, none lost
    rank = {p: i for i, p in enumerate(kept)}
    validation_ranks = [rank[p] for p in positions['validation']]
    assert validation_ranks == list(range(validation_ranks[0], validation_ranks[0] + 6))  # one contiguous stretch

    dataset = HazardsDataset(root)
    assert dataset.splits == ('train', 'validation')
    train, validation = dataset.load('train', progress=False), dataset.load('validation', progress=False)
    assert (len(train), len(validation)) == (18, 6) and not train.labels.any()
    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump({'model': {'base_channels': 8}, 'training': {'batch_size': 8, 'augment': False}}))
    run = tmp_path / 'run'
    argv = ['train', '--data', str(root), '--out', str(run), '--config', str(config), '--epochs', '1']
    assert train_main([*argv, '--device', 'cpu', '--no-outlier-exposure', '--quiet']) == 0
    assert load_bundle(run / 'model.pt', 'cpu').threshold_ < float('inf')

    with pytest.raises(FileExistsError):
        bag_to_training_set(patrol['bag'], root, progress=False)


def test_patrol_subsampling_by_time_from_the_command_line(patrol, tmp_path, capsys):
    root = tmp_path / 'every'
    argv = ['to-training-set', str(patrol['bag']), str(root), '--every', '0.25', '--dedup-threshold', '0']
    assert main([*argv, '--target', '0', '--quiet']) == 0  # target 0: by time only
    assert 'kept 12 of 36 frames: 0 by image change (change rule off), 12 by time' in capsys.readouterr().out
    source = json.loads((root / 'metadata' / 'source.json').read_text())
    assert (source['kept'], source['dropped_as_similar'], source['dropped_as_duplicates']) == (12, 24, 0)
    assert source['change_threshold'] is None
    stamps = []
    for split in ('train', 'validation'):
        with (root / 'metadata' / f'{split}_frames_envs.csv').open(newline='') as handle:
            stamps += [int(row['stamp_ns']) for row in csv.DictReader(handle)]
    assert sorted(stamps) == [EPOCH_NS + 3 * STEP_NS * i for i in range(12)]
    assert source['validation'] == 1  # round(0.1 * 12)


def test_too_few_kept_frames_and_bad_options_are_refused(patrol, tmp_path):
    with pytest.raises(ValueError, match=r'only 1 frame\(s\) kept of 36.*lower --every'):
        bag_to_training_set(patrol['bag'], tmp_path / 'one', every_s=100.0, target_frames=0, progress=False)
    assert not (tmp_path / 'one').exists()  # the failed run created it, and removed it again
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'notes.txt').write_text("the user's own")
    with pytest.raises(ValueError, match='no topic /no/such/topic; the bag has'):
        bag_to_training_set(patrol['bag'], mine, topic='/no/such/topic', progress=False)
    assert sorted(p.name for p in mine.iterdir()) == ['notes.txt']  # no .staging left, the user's file kept
    with pytest.raises(ValueError, match='validation_fraction must be in'):
        bag_to_training_set(patrol['bag'], tmp_path / 'bad', validation_fraction=1.0)
    with pytest.raises(ValueError, match='block_s > 0'):
        bag_to_training_set(patrol['bag'], tmp_path / 'bad', block_s=0.0)
    with pytest.raises(ValueError, match='target_frames must be >= 0'):
        bag_to_training_set(patrol['bag'], tmp_path / 'bad', target_frames=-1)


def test_validation_stretches_spread_over_a_long_patrol():
    stamps = EPOCH_NS + 500_000_000 * np.arange(1000, dtype=np.int64)  # 2 Hz for 500 s
    mask, segments = validation_mask(stamps, 0.1, 30.0, seed=3)
    assert mask.sum() == 100 and len(segments) == 2  # 50 s of validation in stretches of about 30 s
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
    starts, stops = edges[::2], edges[1::2]
    assert len(starts) == 2 and starts[0] < 500 <= starts[1]  # one stretch in each half of the patrol
    assert (stops - starts).tolist() == [50, 50]
    again, _ = validation_mask(stamps, 0.1, 30.0, seed=3)
    np.testing.assert_array_equal(mask, again)
    assert segments == [
        (int(stamps[starts[0]]), int(stamps[stops[0] - 1])),
        (int(stamps[starts[1]]), int(stamps[stops[1] - 1])),
    ]
    none, no_segments = validation_mask(stamps, 0.0, 30.0, seed=3)
    assert not none.any() and no_segments == []
