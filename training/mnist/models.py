"""The seeds' architectures, re-implemented in PyTorch, and ours.

The seeds' models keep their layer sizes (Keras ones with Glorot initialisation). Seed 000
normalised to [-1, 1] and its models map back to [0, 1] internally, so they see [0, 1] pixels
here. Seed 002 shows its architectures only in a figure: :class:`SeedConvAE` / :class:`SeedConvVAE`
are our reading (two stride-2 convolutions, a 16-d latent, transposed-convolution decoder).

Ours is :class:`ConvAutoencoder` (1 channel, 128-d embedding) wrapped in :class:`PaddedAutoencoder`,
which zero-pads MNIST from 28 to 32 pixels and crops the reconstruction back.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from training.mnist.config import OursConfig
from visual_anomaly.core import AutoencoderConfig, ConvAutoencoder


def _keras_init(model: nn.Module) -> nn.Module:
    """Keras defaults: Glorot-uniform weights, zero biases."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


class SeedLinearAE(nn.Module):
    """Seed 000's ``LinearAutoencoder``: 784-512-256-128-64 and back, LeakyReLU(0.2), sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        sizes = [784, 512, 256, 128, 64]
        encoder: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes, sizes[1:], strict=False):
            encoder += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        decoder: list[nn.Module] = []
        back = sizes[::-1]
        for a, b in zip(back, back[1:], strict=False):
            decoder += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        decoder[-1] = nn.Sigmoid()
        self.encoder, self.decoder = nn.Sequential(*encoder), nn.Sequential(*decoder)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images)).view_as(images)


def _bn_conv(a: int, b: int) -> list[nn.Module]:
    return [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()]


class SeedConvAE000(nn.Module):
    """Seed 000's ``ConvAutoencoder``: BN-ReLU convs, max-pool to a 4x4x4 code, dropout, sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            *_bn_conv(1, 16), nn.MaxPool2d(2), nn.Dropout2d(0.4),
            *_bn_conv(16, 32), nn.MaxPool2d(2), nn.Dropout2d(0.3),
            *_bn_conv(32, 16), nn.MaxPool2d(2, padding=1), nn.Dropout2d(0.3),
            *_bn_conv(16, 4),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            *_bn_conv(4, 16),
            nn.Upsample(scale_factor=2), *_bn_conv(16, 32),
            nn.Upsample(scale_factor=2), *_bn_conv(32, 32),
            nn.Upsample(size=28), *_bn_conv(32, 16),
            nn.Conv2d(16, 1, 3, padding=1), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images))


class SeedDenseAE(nn.Module):
    """Seed 001's Keras model: Dense 784-128-64-128-784, ReLU, sigmoid output."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid(),
        )  # fmt: skip
        _keras_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images).view_as(images)


class SeedConvAE(nn.Module):
    """Seed 002's AE (our reading): conv 32-64 stride 2, linear latent, transposed-conv decoder."""

    def __init__(self, latent_dim: int = 16, heads: int = 1) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        )  # fmt: skip
        self.heads = nn.ModuleList(nn.Linear(64 * 7 * 7, latent_dim) for _ in range(heads))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 64 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
        )  # fmt: skip

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.heads[0](self.encoder(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(images))


class SeedConvVAE(SeedConvAE):
    """Seed 002's VAE (our reading): :class:`SeedConvAE` with mean and log-variance heads."""

    def __init__(self, latent_dim: int = 16) -> None:
        super().__init__(latent_dim, heads=2)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(reconstruction, mu, logvar)``; samples z in training mode, decodes the mean otherwise."""
        hidden = self.encoder(images)
        mu, logvar = self.heads[0](hidden), self.heads[1](hidden)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar


class SeedShapesAE(nn.Module):
    """Seed 003's Keras conv AE: 32-16 convs with max-pool, 16-32 with upsampling, linear output."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(32, 1, 3, padding=1),
        )  # fmt: skip
        _keras_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class PaddedAutoencoder(nn.Module):
    """Our :class:`ConvAutoencoder` on images whose side is not a multiple of 16: zero-pad, crop back."""

    def __init__(self, autoencoder: ConvAutoencoder, side: int) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.side = side
        self.pad = autoencoder.config.image_size - side
        if self.pad < 0:
            raise ValueError(f'image side {side} exceeds the model input {autoencoder.config.image_size}')

    def _padded(self, images: torch.Tensor) -> torch.Tensor:
        before = self.pad // 2
        return F.pad(images, (before, self.pad - before, before, self.pad - before))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode(self._padded(images))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reconstruction, embedding = self.autoencoder(self._padded(images))
        before = self.pad // 2
        return reconstruction[:, :, before : before + self.side, before : before + self.side], embedding


def ours_model(side: int, config: OursConfig, seed: int = 0) -> PaddedAutoencoder:
    """Our 1-channel autoencoder for ``side`` x ``side`` images (input padded to a multiple of 16)."""
    torch.manual_seed(seed)
    image_size = 16 * math.ceil(side / 16)
    autoencoder = ConvAutoencoder(
        AutoencoderConfig(base_channels=config.base_channels, image_size=image_size, in_channels=1)
    )
    return PaddedAutoencoder(autoencoder, side)
