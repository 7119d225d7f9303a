"""The training command line: generate, train, evaluate, report, on a tiny synthetic dataset."""

import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml

from training.config import load_config
from visual_anomaly.cli.train import main
from visual_anomaly.core import load_bundle


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli') / 'corridors'
    argv = [
        'generate',
        str(root),
        '--train',
        '64',
        '--validation',
        '24',
        '--test',
        '40',
        '--outliers',
        '12',
        '--image-size',
        '128',
        '--outlier-classes',
        'boxes,cones',
        '--quiet',
    ]
    assert main(argv) == 0
    return root


@pytest.fixture(scope='module')
def run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp('cli') / 'run'
    config = tmp_path_factory.mktemp('cli') / 'small.yaml'
    config.write_text(
        yaml.safe_dump(
            {'model': {'base_channels': 8}, 'training': {'batch_size': 16}, 'outlier_exposure': {'epochs': 20}}
        )
    )
    argv = [
        'train',
        '--data',
        str(dataset),
        '--out',
        str(out),
        '--config',
        str(config),
        '--epochs',
        '2',
        '--device',
        'cpu',
        '--quiet',
    ]
    assert main(argv) == 0
    return out


@pytest.mark.slow
def test_train_writes_a_complete_run_folder(run):
    for name in (
        'model.pt',
        'config.yaml',
        'metrics.json',
        'report.md',
        'roc.png',
        'scores.png',
        'heatmaps.png',
        'reconstructions.png',
        'training.png',
        'baselines.npz',
    ):
        assert (run / name).is_file(), name
    used = yaml.safe_load((run / 'config.yaml').read_text())
    assert used['model']['base_channels'] == 8 and used['training']['epochs'] == 2
    metrics = json.loads((run / 'metrics.json').read_text())
    assert metrics['decision_score'] == 'fused'
    assert metrics['provenance']['outlier_exposure']['exposed_frames'] == 12
    assert set(metrics['exposed_classes']) <= {'boxes', 'cones'}
    assert {'overall', 'per_class', 'seen', 'unseen'} <= set(metrics['evaluation']['fused'])
    assert 'unseen ROC-AUC' in (run / 'report.md').read_text()
    baselines = {'baseline:pca', 'baseline:pixel_gaussian', 'baseline:thumbnail_knn'}
    assert baselines <= set(metrics['evaluation'])  # the trivial baselines stand beside our scores
    assert metrics['against_baselines']['best_baseline'] in baselines
    assert 'Against the trivial baselines' in (run / 'report.md').read_text()
    detector = load_bundle(run / 'model.pt', device='cpu')
    assert detector.oe_head is not None and np.isfinite(detector.threshold_)


@pytest.mark.slow
def test_evaluate_reproduces_the_training_evaluation(run, dataset, tmp_path):
    assert (
        main(
            [
                'evaluate',
                str(run / 'model.pt'),
                '--data',
                str(dataset),
                '--out',
                str(tmp_path),
                '--device',
                'cpu',
                '--quiet',
            ]
        )
        == 0
    )
    trained = json.loads((run / 'metrics.json').read_text())['evaluation']
    evaluated = json.loads((tmp_path / 'metrics.json').read_text())['evaluation']
    for kind in trained:
        assert evaluated[kind]['overall'] == pytest.approx(trained[kind]['overall'])


@pytest.mark.slow
def test_an_exported_bundle_evaluates_like_the_trained_one(run, dataset, tmp_path, capsys):
    assert main(['export', str(run / 'model.pt'), str(tmp_path / 'model.onnx')]) == 0
    assert 'without PyTorch' in capsys.readouterr().out
    out = tmp_path / 'eval'
    named = ['--baselines', str(run / 'baselines.npz')]  # not beside the exported bundle: named
    assert main(['evaluate', str(tmp_path / 'model.onnx'), '--data', str(dataset), '--out', str(out), *named]) == 0
    trained = json.loads((run / 'metrics.json').read_text())['evaluation']
    evaluated = json.loads((out / 'metrics.json').read_text())['evaluation']
    for kind in trained:
        assert evaluated[kind]['overall']['roc_auc'] == pytest.approx(trained[kind]['overall']['roc_auc'], abs=1e-3)
    assert (out / 'heatmaps.png').is_file() and not (out / 'reconstructions.png').exists()
    assert main(['export', str(run / 'model.pt'), str(tmp_path / 'model.pt2')]) == 2
    assert 'must end in .onnx' in capsys.readouterr().err


@pytest.mark.slow
def test_report_is_rebuilt_from_metrics(run):
    (run / 'report.md').unlink()
    assert main(['report', str(run)]) == 0
    assert '![ROC curves](roc.png)' in (run / 'report.md').read_text()


@pytest.mark.slow
def test_bad_inputs_fail_with_a_message(run, dataset, tmp_path, capsys):
    assert main(['evaluate', str(tmp_path / 'missing.pt'), '--data', str(dataset), '--out', str(tmp_path)]) == 2
    assert 'missing.pt' in capsys.readouterr().err
    bad = tmp_path / 'bad.yaml'
    bad.write_text('training:\n  epocs: 3\n')
    with pytest.raises(ValueError, match="unknown keys \\['epocs'\\]"):
        load_config(bad)
    assert main(['train', '--data', str(tmp_path), '--out', str(tmp_path / 'r'), '--quiet']) == 2


@pytest.mark.slow
def test_help_explains_the_subcommands():
    result = subprocess.run(
        [sys.executable, '-m', 'visual_anomaly.cli.train', '--help'], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for word in ('generate', 'train', 'evaluate', 'report', 'export', 'Hazards&Robots'):
        assert word in result.stdout


def test_a_missing_dataset_is_one_line(tmp_path, capsys):
    assert main(['train', '--data', str(tmp_path / 'nonexistent'), '--out', str(tmp_path / 'run')]) == 2
    error = capsys.readouterr().err
    assert error.startswith('visual-anomaly-train train: no split folder in') and error.count('\n') == 1
    assert not (tmp_path / 'run').exists()


def test_a_missing_split_is_one_line(tmp_path, capsys):
    (tmp_path / 'data' / 'train_set').mkdir(parents=True)
    cv2.imwrite(str(tmp_path / 'data' / 'train_set' / 'frame_000000.jpg'), np.zeros((64, 64, 3), np.uint8))
    argv = ['train', '--data', str(tmp_path / 'data'), '--out', str(tmp_path / 'run'), '--quiet']
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("visual-anomaly-train train: no 'validation' split in") and error.count('\n') == 1


def test_a_bad_configuration_is_one_line(tmp_path, capsys):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('training:\n  epocs: 3\n')
    assert main(['train', '--data', str(tmp_path), '--out', str(tmp_path / 'run'), '--config', str(bad)]) == 2
    assert capsys.readouterr().err == (
        f"visual-anomaly-train train: {bad}: unknown keys ['epocs'] in 'training'; known: "
        "['augment', 'batch_size', 'device', 'early_stopping_patience', 'epochs', 'grad_clip_norm', "
        "'learning_rate', 'lr_patience', 'min_delta', 'mixed_precision', 'seed']\n"
    )


@pytest.mark.parametrize('command', ['generate', 'train', 'evaluate', 'report', 'export', 'mnist'])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, '--help'])
    assert exit_.value.code == 0
    assert f'visual-anomaly-train {command}' in capsys.readouterr().out


def _copy(dataset, tmp_path):
    import shutil

    return shutil.copytree(dataset, tmp_path / 'data')


@pytest.mark.parametrize(
    ('damage', 'message'),
    [
        ('banana', r'frames_labels\.csv line 3: label .banana. is not an integer'),
        ('short', r'frames_labels\.csv has 39 rows but .*test_set has 40 image files'),
    ],
)
def test_a_bad_split_fails_the_run_before_training_and_leaves_no_bundle(dataset, tmp_path, capsys, damage, message):
    data = _copy(dataset, tmp_path)
    csv_path = data / 'metadata' / 'frames_labels.csv'  # the RA-L name of the test CSV
    lines = csv_path.read_text().splitlines()
    if damage == 'banana':
        frame, _, *rest = lines[2].split(',')
        lines[2] = ','.join([frame, 'banana', *rest])
    else:
        del lines[-1]
    csv_path.write_text('\n'.join(lines) + '\n')
    out = tmp_path / 'run'
    assert main(['train', '--data', str(data), '--out', str(out), '--epochs', '1', '--device', 'cpu', '--quiet']) == 2
    captured = capsys.readouterr()
    assert re.search(message, captured.err), captured.err
    assert 'autoencoder:' not in captured.out  # no epoch ran
    assert not out.exists() or not list(out.glob('model*.pt'))


def test_an_empty_outliers_folder_says_how_to_train_without_exposure(dataset, tmp_path, capsys):
    data = _copy(dataset, tmp_path)
    for path in (data / 'outliers_set').iterdir():
        path.unlink()
    out = tmp_path / 'run'
    assert main(['train', '--data', str(data), '--out', str(out), '--epochs', '1', '--device', 'cpu', '--quiet']) == 2
    assert 'pass --no-outlier-exposure' in capsys.readouterr().err
