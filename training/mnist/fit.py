"""Training and scoring of the suite's models: Adam on a shuffled set, reconstructions, embeddings, scores."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from training.mnist.config import OursConfig, Recipe


def _reconstruction(outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return outputs[0] if isinstance(outputs, tuple) else outputs


def mse_loss(outputs: torch.Tensor | tuple[torch.Tensor, ...], images: torch.Tensor) -> torch.Tensor:
    """Mean squared reconstruction error."""
    return F.mse_loss(_reconstruction(outputs), images)


def vae_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """Negative ELBO per image: Bernoulli BCE summed over pixels plus the Gaussian KL term."""
    reconstruction, mu, logvar = outputs
    bce = F.binary_cross_entropy(reconstruction, images, reduction='sum')
    kl = -0.5 * torch.sum(1 + logvar - mu.square() - logvar.exp())
    return (bce + kl) / len(images)


def fit(
    model: nn.Module,
    images: torch.Tensor,
    recipe: Recipe,
    epochs: int,
    seed: int = 0,
    loss_fn: Callable[..., torch.Tensor] = mse_loss,
) -> list[float]:
    """Train ``model`` to reconstruct (N, 1, H, W) images in [0, 1]; returns the loss per epoch."""
    images = images[: max(1, int(round(len(images) * (1.0 - recipe.validation_split))))]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.learning_rate)
    steps = epochs * math.ceil(len(images) / recipe.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if recipe.cosine else None
    history = []
    model.train()
    for _ in range(epochs):
        total = 0.0
        for index in torch.split(torch.randperm(len(images), generator=generator), recipe.batch_size):
            batch = images[index]
            loss = loss_fn(model(batch), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip_norm)
            optimizer.step()
            if schedule is not None:
                schedule.step()
            total += loss.item() * len(index)
        history.append(total / len(images))
    model.eval()
    return history


@torch.no_grad()
def reconstruct(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Evaluation-mode reconstructions of ``images``."""
    model.eval()
    return torch.cat([_reconstruction(model(batch)) for batch in torch.split(images, batch_size)])


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """(N, D) latent codes from ``model.encode`` (the VAE's mean)."""
    model.eval()
    return torch.cat([model.encode(batch) for batch in torch.split(images, batch_size)]).numpy()


def anomaly_scores(model: nn.Module, images: torch.Tensor, ours: OursConfig | None = None) -> np.ndarray:
    """Per-image score: the mean squared error (the seeds' score), or ours' configured score.

    Our ``local`` score is the peak of the squared-error map averaged over ``ours.window``-pixel
    windows, as in the detector.
    """
    error = (reconstruct(model, images) - images).square()
    if ours is None or ours.score == 'mse':
        return error.mean(dim=(1, 2, 3)).numpy()
    return F.avg_pool2d(error, ours.window, stride=1).amax(dim=(1, 2, 3)).numpy()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, 1, H, W) in [0, 1]; float images are taken as already scaled."""
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    return torch.from_numpy(images.astype(np.float32) / scale)[:, None]
