"""Training ends on convergence, not after a fixed number of epochs, and says how it ended."""

import json

import numpy as np
import pytest
import torch

from training.autoencoder import (
    CONVERGED,
    MAX_EPOCHS,
    EarlyStopping,
    TrainConfig,
    TrainingHistory,
    fit_autoencoder,
)
from training.config import load_config
from training.run import train_run
from training.world import write_hazards_layout
from visual_anomaly.core import AutoencoderConfig, ConvAutoencoder, PreprocessingConfig, Preprocessor


def smooth_frames(n: int, seed: int) -> np.ndarray:
    """``n`` 64x64 RGB frames of smooth random blobs: easy to learn, so the loss falls at first."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 4, 4, 3))
    return np.repeat(np.repeat(coarse, 16, axis=1), 16, axis=2).astype(np.uint8)


def fit(config: TrainConfig) -> TrainingHistory:
    torch.manual_seed(0)
    model = ConvAutoencoder(AutoencoderConfig(base_channels=4, embedding_dim=16))
    train, validation = smooth_frames(16, seed=1), smooth_frames(4, seed=2)
    return fit_autoencoder(model, train, validation, Preprocessor(PreprocessingConfig()), config, progress=False)


def test_a_run_still_improving_at_its_last_epoch_says_so():
    history = fit(TrainConfig(epochs=3, batch_size=8, augment=False, device='cpu'))
    assert history.val_loss[-1] < history.val_loss[0]
    assert (len(history.val_loss), history.best_epoch, history.stop_reason) == (3, 2, MAX_EPOCHS)
    assert history.still_improving
    assert history.summary().startswith('WARNING: still improving at the last epoch')
    assert 'raise --epochs' in history.summary()


def test_a_plateau_ends_training_long_before_the_maximum():
    # A learning rate this small leaves the loss flat: no epoch improves on the first by min_delta.
    config = TrainConfig(epochs=100, batch_size=8, learning_rate=1e-12, early_stopping_patience=3, device='cpu')
    history = fit(config)
    assert (len(history.val_loss), history.stop_reason) == (4, CONVERGED)  # the first epoch and 3 without progress
    assert not history.still_improving
    assert history.summary().startswith('converged after 4 epochs')


def test_gains_below_min_delta_do_not_count_as_progress():
    losses = [1.0, 0.8, 0.7998, 0.7996, 0.7994, 0.7993]  # after epoch 1: under 0.1% in all
    default = EarlyStopping(patience=3, min_delta=TrainConfig().min_delta)
    assert [default.reached(epoch, loss) for epoch, loss in enumerate(losses)] == [False] * 4 + [True] * 2
    any_gain = EarlyStopping(patience=3, min_delta=0.0)
    assert not any(any_gain.reached(epoch, loss) for epoch, loss in enumerate(losses))


def test_the_summary_names_each_ending():
    converged = TrainingHistory(val_loss=[3.0, 2.0, 2.5, 2.4], best_epoch=1, stop_reason=CONVERGED)
    assert converged.summary() == 'converged after 4 epochs: best validation loss 2 at epoch 2'
    cut = TrainingHistory(val_loss=[3.0, 2.0, 2.5], best_epoch=1, stop_reason=MAX_EPOCHS)
    assert not cut.still_improving
    assert cut.summary().startswith('WARNING: stopped at the maximum of 3 epochs before converging')


def test_max_epochs_and_min_delta_are_checked():
    with pytest.raises(ValueError, match='must be positive'):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match='min_delta must be in'):
        TrainConfig(min_delta=-0.1)


@pytest.mark.slow  # a whole (one-epoch) training run with its evaluation and report
def test_a_training_run_reports_how_training_ended(tmp_path, capsys):
    data = write_hazards_layout(tmp_path / 'data', n_train=16, n_validation=8, n_test=8, n_outliers=0, image_size=64)
    overrides = {'model': {'base_channels': 4}, 'training': {'epochs': 1, 'batch_size': 8, 'device': 'cpu'}}
    config = load_config(None, {**overrides, 'outlier_exposure': {'enabled': False}})
    metrics = train_run(data, tmp_path / 'run', config, progress=False)
    warning = 'WARNING: still improving at the last epoch'
    assert warning in capsys.readouterr().out
    assert metrics['training'].startswith(warning)
    saved = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert saved['training'] == metrics['training'] and saved['provenance']['stop_reason'] == MAX_EPOCHS
    assert f'Training: {warning}' in (tmp_path / 'run' / 'report.md').read_text()
