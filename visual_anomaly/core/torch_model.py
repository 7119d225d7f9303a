"""Pure PyTorch models: the convolutional autoencoder and the outlier-exposure heads.

The autoencoder follows the published corridor architecture (Mantegazza et al., RA-L 2022):
four stride-2 3x3 convolutions with channels F, 2F, 4F, 8F and LeakyReLU, a linear bottleneck
whose first layer's output is the embedding, and a bilinear-upsampling decoder. ``base_channels``
is F: 128 reproduces the published model (~16.6M parameters), the default 16 is light enough
for a small robot CPU.

The outlier-exposure (OE) heads read a 128-d embedding: the autoencoder's (as published) or,
with a patrol memory, that of the change evidence (:class:`ChangeClassifier`), which carries the
anomaly rather than the place. Two heads: the thesis' MLP (:class:`OutlierExposureHead`, a
logit) and the published paper's main model, a Real-NVP density (:class:`RealNVPHead`, a
negative log-likelihood). Both return a score that grows with anomaly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

LEAKY_SLOPE = 0.01


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of :class:`ConvAutoencoder`."""

    base_channels: int = 16
    embedding_dim: int = 128
    image_size: int = 64
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.base_channels < 1 or self.embedding_dim < 1 or self.in_channels < 1:
            raise ValueError(f'autoencoder sizes must be positive: {self}')
        if self.image_size < 16 or self.image_size % 16:
            raise ValueError(f'image_size must be a multiple of 16 and >= 16, got {self.image_size}')

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


def _upsample_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


class ConvAutoencoder(nn.Module):
    """64x64xC image -> ``embedding_dim`` embedding -> 64x64xC reconstruction (linear output)."""

    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or AutoencoderConfig()
        f = self.config.base_channels
        channels = [self.config.in_channels, f, 2 * f, 4 * f, 8 * f]
        self._bottleneck_side = self.config.image_size // 16
        flat = 8 * f * self._bottleneck_side**2
        self.encoder = nn.Sequential(
            *(_conv_block(channels[i], channels[i + 1], stride=2) for i in range(4)),
            nn.Flatten(),
            nn.Linear(flat, self.config.embedding_dim),
        )
        self.expand = nn.Sequential(nn.Linear(self.config.embedding_dim, flat), nn.LeakyReLU(LEAKY_SLOPE))
        self.decoder = nn.Sequential(
            _upsample_block(8 * f, 4 * f),
            _upsample_block(4 * f, 2 * f),
            _upsample_block(2 * f, f),
            nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
            nn.Conv2d(f, self.config.in_channels, kernel_size=3, padding=1),
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalized images -> (N, embedding_dim) embeddings."""
        return self.encoder(images)

    def decode(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N, embedding_dim) embeddings -> (N, C, H, W) reconstructions."""
        side = self._bottleneck_side
        hidden = self.expand(embeddings).view(-1, 8 * self.config.base_channels, side, side)
        return self.decoder(hidden)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(reconstruction, embedding)``."""
        embedding = self.encode(images)
        return self.decode(embedding), embedding


class _StandardizedHead(nn.Module):
    """A head that standardizes embeddings with the normal training set's statistics, stored with its weights."""

    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.register_buffer('input_mean', torch.zeros(embedding_dim))
        self.register_buffer('input_std', torch.ones(embedding_dim))

    def set_input_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardize embeddings with these per-dimension statistics before the head."""
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def standardize(self, embeddings: torch.Tensor) -> torch.Tensor:
        return (embeddings - self.input_mean) / self.input_std


class OutlierExposureHead(_StandardizedHead):
    """The thesis' MLP on the embedding (128-256-64-1); returns logits, sigmoid gives P(anomaly)."""

    def __init__(self, embedding_dim: int = 128) -> None:
        super().__init__(embedding_dim)
        self.layers = nn.Sequential(
            nn.Linear(embedding_dim, 256),
            nn.ReLU(),
            nn.Linear(256, 64),
            nn.ReLU(),
            nn.Linear(64, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(self.standardize(embeddings)).squeeze(-1)


class RealNVPHead(_StandardizedHead):
    """A Real-NVP density on the embedding (the published method): ``couplings`` affine coupling layers
    with alternating halves, scale and shift nets of two ``hidden``-wide layers (tanh on the scale),
    onto a standard normal. Returns the negative log-likelihood of each embedding (nats).

    Like any flow it may call embeddings of a kind never seen more likely than normal ones (its
    shift nets extrapolate linearly): the MLP, which does not, stays the default head.
    """

    def __init__(self, embedding_dim: int = 128, couplings: int = 4, hidden: int = 128) -> None:
        super().__init__(embedding_dim)
        self.couplings = couplings
        self.hidden = hidden

        def net(last: nn.Module) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                nn.Linear(hidden, embedding_dim), last,
            )  # fmt: skip

        self.scale_nets = nn.ModuleList(net(nn.Tanh()) for _ in range(couplings))
        self.shift_nets = nn.ModuleList(net(nn.Identity()) for _ in range(couplings))
        masks = torch.stack([(torch.arange(embedding_dim) + i) % 2 for i in range(couplings)]).float()
        self.register_buffer('masks', masks)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = self.standardize(embeddings)
        log_det = 0.0  # a Python number, not a tensor of the traced batch size (ONNX export)
        for mask, scale_net, shift_net in zip(self.masks, self.scale_nets, self.shift_nets, strict=True):
            kept = x * mask
            scale = scale_net(kept) * (1 - mask)
            x = kept + (1 - mask) * (x * torch.exp(scale) + shift_net(kept))
            log_det = log_det + scale.sum(dim=1)
        return 0.5 * x.square().sum(dim=1) + 0.5 * self.embedding_dim * math.log(2 * math.pi) - log_det


OE_HEADS = {'mlp': OutlierExposureHead, 'realnvp': RealNVPHead}


def make_oe_head(kind: str, embedding_dim: int = 128) -> nn.Module:
    """An outlier-exposure head of ``kind`` (``mlp`` or ``realnvp``) on ``embedding_dim``-d embeddings."""
    if kind not in OE_HEADS:
        raise ValueError(f'unknown outlier-exposure head {kind!r}; known: {", ".join(OE_HEADS)}')
    return OE_HEADS[kind](embedding_dim)


def head_kind(head: nn.Module) -> str:
    """``mlp`` or ``realnvp``: the kind of an outlier-exposure head (or of a change classifier's head)."""
    inner = head.head if isinstance(head, ChangeClassifier) else head
    return 'realnvp' if isinstance(inner, RealNVPHead) else 'mlp'


class ChangeEncoder(nn.Module):
    """(N, 4, S, S) change evidence (see ``PatrolMemory.evidence``) -> (N, embedding_dim) embedding.

    Four stride-2 3x3 convolutions (16, 32, 64, embedding_dim channels, LeakyReLU) and a global
    average: an embedding that describes what changed, wherever in the frame it is.
    """

    def __init__(self, embedding_dim: int = 128, in_channels: int = 4, base_channels: int = 16) -> None:
        super().__init__()
        channels = [in_channels, base_channels, 2 * base_channels, 4 * base_channels, embedding_dim]
        self.layers = nn.Sequential(*(_conv_block(channels[i], channels[i + 1], stride=2) for i in range(4)))

    def forward(self, evidence: torch.Tensor) -> torch.Tensor:
        return self.layers(evidence).mean(dim=(2, 3))


class ChangeClassifier(nn.Module):
    """An outlier-exposure head (``mlp`` or ``realnvp``) on the 128-d embedding of the change evidence:
    (N, 4, S, S) -> scores that grow with anomaly."""

    def __init__(self, embedding_dim: int = 128, head: str = 'mlp') -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.encoder = ChangeEncoder(embedding_dim)
        self.head = make_oe_head(head, embedding_dim)

    def forward(self, evidence: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(evidence))
