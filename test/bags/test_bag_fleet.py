"""Many bags on Ray: the same frames, scores and outputs as each bag alone, failures named, one fleet report."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from visual_anomaly.bags.calibrate import calibrate_bag
from visual_anomaly.bags.convert import dataset_to_bag
from visual_anomaly.bags.evaluate import evaluate_bag, read_scores_csv
from visual_anomaly.bags.fleet import bag_names, find_bags, robot_of
from visual_anomaly.bags.io import (
    GROUND_TRUTH_TOPIC,
    TYPESTORE,
    VECTOR_TYPE,
    header_msg,
    open_writer,
    vector_msg,
    write_message,
)
from visual_anomaly.bags.training_set import bag_to_training_set
from visual_anomaly.cli.bag import main
from visual_anomaly.core import AutoencoderConfig, ConvAutoencoder, Detector, load_bundle, save_bundle
from visual_anomaly.data.hazards import HazardsDataset
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES
from visual_anomaly.evaluation.metrics import evaluation_metrics

pytestmark = [
    pytest.mark.slow,  # a Ray instance and its workers (about 10 s), each bag's plots
    pytest.mark.off_robot(reason='Ray is an off-robot dependency (fleet evaluation runs off the robot)'),
]


@pytest.fixture(scope='module', autouse=True)
def local_ray():
    """One local Ray instance of 2 CPUs for the module; the fleet tools use it and leave it running."""
    import ray  # off-robot only: not in the robot lane's environment

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level='ERROR')
    yield
    ray.shutdown()


def _no_camera_bag(path):
    """A bag with ground truth but no camera topic."""
    with open_writer(path, 'sqlite3') as writer:
        connection = writer.add_connection(GROUND_TRUTH_TOPIC, VECTOR_TYPE, typestore=TYPESTORE)
        write_message(writer, connection, 1, vector_msg(header_msg(1), 0, 0, 0))
    return path


@pytest.fixture(scope='module')
def fleet(world, bags, tmp_path_factory):
    """robot1/{a: Image sqlite3, b: CompressedImage mcap}, robot2/{c: a normal patrol, mcap; broken; no_camera}."""
    root = tmp_path_factory.mktemp('fleet')
    shutil.copytree(bags(False, 'sqlite3'), root / 'robot1' / 'a')
    shutil.copytree(bags(True, 'mcap'), root / 'robot1' / 'b')
    dataset_to_bag(world['root'], root / 'robot2' / 'c', split='validation', storage='mcap', progress=False)
    (root / 'robot2' / 'broken').mkdir()
    (root / 'robot2' / 'broken' / 'metadata.yaml').write_text('rosbag2_bagfile_information: {version: 9}\n')
    _no_camera_bag(root / 'robot2' / 'no_camera')
    torch.manual_seed(1)
    other = Detector(ConvAutoencoder(AutoencoderConfig(base_channels=8)), device='cpu')
    other.calibrate(np.asarray(HazardsDataset(world['root']).load('train', progress=False).frames))
    return {'root': root, 'good': ['robot1/a', 'robot1/b', 'robot2/c'], 'other': save_bundle(root / 'other.pt', other)}


def test_bags_are_found_named_and_given_a_robot(fleet, tmp_path, capsys):
    root = fleet['root']
    found = find_bags([root / 'robot2', root / 'robot1', root / 'robot1' / 'a'])
    assert [path.relative_to(root).as_posix() for path in found] == [
        'robot2/broken', 'robot2/c', 'robot2/no_camera', 'robot1/a', 'robot1/b'
    ]  # fmt: skip
    assert sorted(bag_names(found).values()) == sorted(
        ['robot1/a', 'robot1/b', 'robot2/broken', 'robot2/c', 'robot2/no_camera']
    )
    assert robot_of('robot1/a', '/camera/image_raw') == 'robot1'
    assert robot_of('x/a', '/robot7/camera/image_raw/compressed') == 'robot7'
    assert robot_of('a', '/camera/image_raw') == '-'
    (tmp_path / 'empty').mkdir()
    model, good = str(fleet['other']), [str(root / name) for name in fleet['good']]
    assert main(['evaluate', model, *good, '--out', str(tmp_path / 'e'), '--labels', 'x.csv']) == 2
    assert main(['calibrate', model, *good]) == 2
    assert main(['evaluate', model, str(tmp_path / 'empty'), '--out', str(tmp_path / 'e')]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[0].endswith('--labels: for one bag only; give one bag, or several without these options')
    assert errors[1].endswith('several bags need --out FOLDER (a calibrated bundle per bag goes into it)')
    assert errors[2].endswith('empty: no bag in this folder (rosbag2 folders with metadata.yaml, or ROS 1 .bag files)')
    assert len(errors) == 3
    with pytest.raises(ValueError, match='empty: no bag in this folder'):
        find_bags([tmp_path / 'empty'])
    with pytest.raises(FileNotFoundError, match='no bag or folder at'):
        find_bags([tmp_path / 'nothing'])


def test_fleet_evaluation_equals_each_bag_alone_and_names_the_failures(world, fleet, tmp_path, capsys):
    out = tmp_path / 'fleet'
    argv = ['evaluate', str(world['bundle']), str(fleet['root']), '--out', str(out), '--device', 'cpu']
    assert main([*argv, '--compare', str(fleet['other']), '--quiet']) == 1  # two bags fail
    captured = capsys.readouterr()
    failed = [line for line in captured.err.splitlines() if line.startswith('FAILED')]
    assert len(failed) == 4  # two bags, each with both models
    assert any(line.startswith('FAILED robot2/broken (') and 'not a readable bag' in line for line in failed)
    assert any(line.startswith('FAILED robot2/no_camera (') and 'no sensor_msgs/msg/Image' in line for line in failed)

    report = json.loads((out / 'metrics.json').read_text())
    alone = {}
    for name in fleet['good']:
        single = tmp_path / 'alone' / name
        alone[name] = evaluate_bag(world['bundle'], fleet['root'] / name, single, device='cpu', progress=False)
        assert (out / 'bags' / name / 'scores.csv').read_bytes() == (single / 'scores.csv').read_bytes()
        fleet_bag = json.loads((out / 'bags' / name / 'metrics.json').read_text())
        np.testing.assert_equal(fleet_bag['evaluation'], alone[name]['evaluation'])
    columns = [read_scores_csv(tmp_path / 'alone' / name / 'scores.csv') for name in fleet['good']]
    kinds = list(world['thresholds'])
    joined = {kind: np.concatenate([c[kind] for c in columns]) for kind in kinds}
    labels = np.concatenate([c['label'] for c in columns])
    np.testing.assert_equal(
        report['evaluation'], evaluation_metrics(joined, world['thresholds'], labels, ANOMALY_CLASSES)
    )
    assert report['frames'] == len(labels) == sum(m['frames'] for m in alone.values())
    assert [row['bag'] for row in report['per_bag']] == fleet['good']
    assert [(r['robot'], r['bags'], r['frames']) for r in report['per_robot']] == [
        ('robot1', 2, alone['robot1/a']['frames'] * 2), ('robot2', 1, alone['robot2/c']['frames'])
    ]  # fmt: skip
    assert {f['bag'] for f in report['failed']} == {'robot2/broken', 'robot2/no_camera'}
    rates = {row['bag']: row['wrong_rate'] for row in report['per_bag']}
    assert [rates[name] for name in report['worst_bags']] == sorted(rates.values(), reverse=True)
    for stretch in report['worst_stretches']:
        rows = read_scores_csv(tmp_path / 'alone' / stretch['bag'] / 'scores.csv')
        inside = (rows['stamp_ns'] >= stretch['start_stamp_ns']) & (rows['stamp_ns'] <= stretch['end_stamp_ns'])
        wrong = (rows['is_anomaly'] > 0) != (rows['label'] > 0)
        assert inside.sum() == stretch['frames'] and wrong[inside].all()
    assert sum(s['frames'] for s in report['worst_stretches']) == sum(r['wrong_frames'] for r in report['per_bag'])

    changes = report['compare']['per_bag']
    assert sorted(row['bag'] for row in changes) == fleet['good']
    for row in changes:
        theirs = json.loads((out / 'compare' / row['bag'] / 'metrics.json').read_text())['evaluation']
        o = theirs[alone[row['bag']]['decision_score']]['overall']
        assert row['other_wrong_frames'] == o['false_positives'] + o['false_negatives']
    assert [abs(row['wrong_frames_change']) for row in changes] == sorted(
        (abs(row['wrong_frames_change']) for row in changes), reverse=True
    )
    for name in ('report.md', 'bags.csv', 'robots.csv', 'classes.csv', 'stretches.csv', 'compare.csv', 'roc.png'):
        assert (out / name).is_file(), name
    assert 'robot2/broken' in (out / 'report.md').read_text()


def test_fleet_calibration_and_training_sets_equal_each_bag_alone(patrol, fleet, tmp_path, capsys):
    patrols = tmp_path / 'patrols'
    for name in ('north', 'south'):
        shutil.copytree(patrol['bag'], patrols / name)
    shutil.copytree(fleet['root'] / 'robot2' / 'broken', patrols / 'broken')
    model = fleet['other']
    out = tmp_path / 'calibrated'
    assert main(['calibrate', str(model), str(patrols), '--out', str(out), '--fpr', '0.4', '--quiet']) == 1
    assert capsys.readouterr().err.startswith('FAILED broken: ')
    for name in ('north', 'south'):
        alone = calibrate_bag(model, patrols / name, tmp_path / f'{name}.pt', fpr=0.4, device='cpu', progress=False)
        mine = load_bundle(out / name / 'other.calibrated.pt', 'cpu').calibration.thresholds
        assert mine == load_bundle(alone.bundle, 'cpu').calibration.thresholds
    rows = json.loads((out / 'calibration.json').read_text())
    assert [(row['bag'], bool(row['error'])) for row in rows] == [('broken', True), ('north', False), ('south', False)]

    sets = tmp_path / 'sets'
    assert main(['to-training-set', str(patrols / 'north'), str(patrols / 'south'), str(sets), '--quiet']) == 0
    alone = bag_to_training_set(patrols / 'north', tmp_path / 'alone_set', progress=False)
    for split in ('train_set', 'validation_set'):
        mine = sorted(path.read_bytes() for path in (sets / 'north' / split).iterdir())
        assert mine == sorted(path.read_bytes() for path in (alone / split).iterdir())
    assert (sets / 'south' / 'metadata' / 'source.json').is_file()


def test_many_bags_without_ray_is_one_sentence_and_one_bag_still_works(world, patrol, fleet, tmp_path, without_ray):
    run = [sys.executable, '-c', 'import sys; from visual_anomaly.cli.bag import main; sys.exit(main(sys.argv[1:]))']
    env = {**os.environ, **without_ray}
    many = [*run, 'evaluate', str(world['bundle']), str(fleet['root']), '--out', str(tmp_path / 'many'), '--quiet']
    done = subprocess.run(many, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and 'Ray, which is not installed' in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    one = [*run, 'to-training-set', str(patrol['bag']), str(tmp_path / 'one'), '--quiet']
    done = subprocess.run(one, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / 'one' / 'metadata' / 'source.json').is_file()
