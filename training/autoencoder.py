"""Autoencoder training on normal frames (Adam, plateau LR schedule, clipping, early stopping)."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from training.augment import augment_batch
from visual_anomaly.core import ConvAutoencoder, Preprocessor, resolve_device

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings: the ``training`` section of ``visual-anomaly-train``'s configuration."""

    epochs: int = 300  # the maximum; training normally stops earlier, when the validation loss stops improving
    batch_size: int = 64
    learning_rate: float = 1e-3
    grad_clip_norm: float = 10.0
    lr_patience: int = 4  # epochs without validation improvement before the learning rate drops 10x
    early_stopping_patience: int = 8  # ... before training stops
    min_delta: float = 1e-3  # an improvement: the validation loss falls by at least this share of its best value
    seed: int = 0
    device: str = 'auto'
    augment: bool = True  # the published augmentations (training.augment)
    mixed_precision: bool = True  # bfloat16 autocast, on CUDA only

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ValueError(f'epochs, batch_size and learning_rate must be positive: {self}')
        if not 0 <= self.min_delta < 1:
            raise ValueError(f'min_delta must be in [0, 1), got {self.min_delta}')


CONVERGED = 'converged'  # the validation loss stopped improving: early stopping
MAX_EPOCHS = 'max_epochs'  # the maximum number of epochs was reached first


@dataclass
class TrainingHistory:
    """Per-epoch losses, the epoch whose weights were kept (0-based) and why training ended."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stop_reason: str = ''  # CONVERGED or MAX_EPOCHS

    @property
    def best_val_loss(self) -> float:
        return self.val_loss[self.best_epoch] if self.best_epoch >= 0 else math.nan

    @property
    def still_improving(self) -> bool:
        """Training hit the maximum number of epochs with its best validation loss in the last one."""
        return self.stop_reason == MAX_EPOCHS and self.best_epoch == len(self.val_loss) - 1

    def summary(self) -> str:
        """One sentence on how training ended; a warning when it ended before converging."""
        run, best = len(self.val_loss), f'best validation loss {self.best_val_loss:.5g} at epoch {self.best_epoch + 1}'
        if self.stop_reason == CONVERGED:
            return f'converged after {run} epochs: {best}'
        if self.still_improving:
            return f'WARNING: still improving at the last epoch ({best} of {run}): raise --epochs'
        return f'WARNING: stopped at the maximum of {run} epochs before converging ({best}): raise --epochs'


@dataclass
class EarlyStopping:
    """Tells when the validation loss has not fallen by ``min_delta`` of its best value for ``patience`` epochs."""

    patience: int
    min_delta: float
    reference: float = math.inf
    last_improvement: int = 0

    def reached(self, epoch: int, loss: float) -> bool:
        if loss < self.reference * (1 - self.min_delta):
            self.reference, self.last_improvement = loss, epoch
        return epoch - self.last_improvement >= self.patience


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(torch.split(order, batch_size))


@torch.no_grad()
def reconstruction_loss(
    model: ConvAutoencoder, frames: np.ndarray, preprocessor: Preprocessor, batch_size: int = 256
) -> float:
    """Mean reconstruction MSE of (N, S, S, 3) uint8 frames."""
    device = next(model.parameters()).device
    model.eval()
    total = 0.0
    for index in _batches(len(frames), batch_size, None):
        images = preprocessor.normalize(frames[index.numpy()], device)
        total += nn.functional.mse_loss(model(images)[0], images, reduction='sum').item()
    return total / (len(frames) * frames[0].size)


def fit_autoencoder(
    model: ConvAutoencoder,
    train_frames: np.ndarray,
    val_frames: np.ndarray,
    preprocessor: Preprocessor,
    config: TrainConfig | None = None,
    progress: bool = True,
) -> TrainingHistory:
    """Train ``model`` in place on normal (N, S, S, 3) uint8 RGB frames; keep the best epoch.

    An improvement is a validation loss at least ``min_delta`` (relative) below the best so far. The
    learning rate drops 10x after ``lr_patience`` epochs without one, training stops (converged) after
    ``early_stopping_patience`` epochs without one or after ``epochs`` epochs, and the weights of the
    lowest validation loss are restored at the end. ``history.stop_reason`` says which end it was.
    """
    config = config or TrainConfig()
    if len(train_frames) == 0 or len(val_frames) == 0:
        raise ValueError('training needs at least one training and one validation frame')
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    augment_rng = np.random.default_rng(config.seed)
    device = resolve_device(config.device)
    autocast = torch.autocast('cuda', dtype=torch.bfloat16, enabled=config.mixed_precision and device.type == 'cuda')
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.1, patience=config.lr_patience, threshold=config.min_delta
    )
    history = TrainingHistory(stop_reason=MAX_EPOCHS)
    stopping = EarlyStopping(config.early_stopping_patience, config.min_delta)
    best_state = copy.deepcopy(model.state_dict())
    epochs = tqdm(range(config.epochs), desc='autoencoder', unit='epoch', disable=not progress)
    for epoch in epochs:
        model.train()
        running = 0.0
        for index in _batches(len(train_frames), config.batch_size, generator):
            batch = train_frames[index.numpy()]
            if config.augment:
                batch = augment_batch(batch, augment_rng)
            images = preprocessor.normalize(batch, device)
            with autocast:
                loss = nn.functional.mse_loss(model(images)[0].float(), images)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            optimizer.step()
            running += loss.item() * len(index)
        val_loss = reconstruction_loss(model, val_frames, preprocessor)
        history.train_loss.append(running / len(train_frames))
        history.val_loss.append(val_loss)
        history.learning_rate.append(optimizer.param_groups[0]['lr'])
        scheduler.step(val_loss)
        if history.best_epoch < 0 or val_loss < history.best_val_loss:
            history.best_epoch = epoch
            best_state = copy.deepcopy(model.state_dict())
        epochs.set_postfix(train=f'{history.train_loss[-1]:.4f}', val=f'{val_loss:.4f}')
        if stopping.reached(epoch, val_loss):
            history.stop_reason = CONVERGED
            break
    logger.info('autoencoder: %s', history.summary())
    model.load_state_dict(best_state)
    model.eval()
    return history
