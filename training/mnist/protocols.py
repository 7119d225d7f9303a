"""The suite's experiments: each seed's architecture against ours, on the same data in one run.

Digits come from :func:`training.mnist.data.load_mnist` (by default the 5,000 shipped MNIST
digits, fixed stratified split of 4,000 training / 1,000 test digits), ``(images, labels)`` pairs:

* ``000`` one digit normal at a time: the seed's linear AE, its conv AE and ours; ROC-AUC per
  digit and mean, accuracy at the 95th percentile of the normal training scores.
* ``001`` digits 0-4 normal, 0-9 tested: the seed's dense 784-128-64-128-784 AE against ours,
  threshold mean + 2 std of the normal training scores, classification report, confusion matrix,
  ROC-AUC; then ours with outlier exposure (our :class:`OutlierExposureHead` on the 128-d
  embedding, the training package's BCE + margin recipe, the few exposed digits reused
  cyclically) for each exposure set, scored by fusing the normalized reconstruction score with
  the OE logit and reported on the exposed and the unexposed anomalous digits separately.
* ``002`` AE against VAE (the seed's pair) and ours, trained on all digits: reconstruction MSE,
  denoising MSE under Gaussian noise, decision-tree accuracy on the latent codes, 2-D PCA plot.
* ``003`` seed 003's ellipses (normal) against rectangles (anomalous), 16x16: the seed's Keras
  conv AE and ours; threshold at the 95th percentile of training scores, confusion matrix and
  squared-error heatmaps.

The seeds' models score by their mean squared error; ours by the ``local`` score of the detector
(the peak of the squared-error map averaged over a small window). Errors are measured on the
28x28 digit for all models. With ``out``, each protocol writes its figure there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score
from sklearn.tree import DecisionTreeClassifier
from torch import nn

from training.mnist.config import (
    EXPOSED_PER_CLASS,
    EXPOSURE,
    EXPOSURES,
    NOISE_STD,
    NORMAL_DIGITS_001,
    PROTOCOL_EPOCHS,
    SEED_RECIPES,
    OursConfig,
    Recipe,
)
from training.mnist.data import make_shapes
from training.mnist.fit import anomaly_scores, embed, fit, reconstruct, to_tensor, vae_loss
from training.mnist.models import (
    SeedConvAE,
    SeedConvAE000,
    SeedConvVAE,
    SeedDenseAE,
    SeedLinearAE,
    SeedShapesAE,
    ours_model,
)
from training.mnist.plots import plot_000, plot_001, plot_002, plot_003
from training.outlier_exposure import OutlierExposureConfig, fit_oe_head
from visual_anomaly.core import ScoreNormalizer

Split = tuple[np.ndarray, np.ndarray]  # (uint8 images (N, 28, 28), labels (N,))
Contender = tuple[Callable[[], nn.Module], Recipe, OursConfig | None]  # (build, recipe, ours' score or None)


def _roc_auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return float(roc_auc_score(labels, np.r_[normal, anomalous]))


def _accuracy(normal: np.ndarray, anomalous: np.ndarray, threshold: float) -> float:
    return float(((normal <= threshold).sum() + (anomalous > threshold).sum()) / (len(normal) + len(anomalous)))


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


def protocol_000(
    train: Split,
    test: Split,
    *,
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
    contenders: dict[str, Contender] = {
        'linear_ae': (SeedLinearAE, SEED_RECIPES['000 linear_ae'], None),
        'conv_ae': (SeedConvAE000, SEED_RECIPES['000 conv_ae'], None),
        'ours': (lambda: ours_model(28, ours, seed), ours.recipe, ours),
    }
    per_digit = {
        str(digit): {
            name: _one_class(contender, train_x[train[1] == digit], test_x, test[1] == digit, epochs, seed)
            for name, contender in contenders.items()
        }
        for digit in digits
    }
    mean = {
        name: {
            metric: float(np.mean([r[name][metric] for r in per_digit.values()])) for metric in ('roc_auc', 'accuracy')
        }
        for name in contenders
    }
    if out is not None:
        plot_000(per_digit, out / 'p000_roc_auc_per_digit.png')
    return {'per_digit': per_digit, 'mean': mean}


def _one_class(
    contender: Contender,
    normal_train: torch.Tensor,
    test_x: torch.Tensor,
    is_normal: np.ndarray,
    epochs: int,
    seed: int,
) -> dict[str, float]:
    """Train one contender on ``normal_train``; ROC-AUC and accuracy at the 95th percentile on the test digits."""
    build, recipe, config = contender
    torch.manual_seed(seed)
    model = build()
    fit(model, normal_train, recipe, epochs, seed)
    threshold = float(np.percentile(anomaly_scores(model, normal_train, config), 95))
    scores = anomaly_scores(model, test_x, config)
    normal, anomalous = scores[is_normal], scores[~is_normal]
    return {'roc_auc': _roc_auc(normal, anomalous), 'accuracy': _accuracy(normal, anomalous, threshold)}


@dataclass(frozen=True)
class _Ours001:
    """Our protocol-001 model, scored once and shared by every exposure set."""

    normal_embedding: torch.Tensor  # of the normal training digits
    test_embedding: torch.Tensor
    train_scores: np.ndarray  # reconstruction scores of the normal training digits
    test_scores: np.ndarray
    test_labels: np.ndarray


def protocol_001(
    train: Split,
    test: Split,
    *,
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
        scores[name] = (anomaly_scores(scored, normal_train, config), anomaly_scores(scored, test_x, config))
        threshold = scores[name][0].mean() + 2 * scores[name][0].std()
        results[name] = _report(scores[name][1][is_normal], scores[name][1][~is_normal], threshold)

    scored = _Ours001(
        torch.from_numpy(embed(model, normal_train)), torch.from_numpy(embed(model, test_x)), *scores['ours'], test[1]
    )
    rng = np.random.default_rng(seed)
    results['exposure'] = {}
    for exposed in exposures:
        picks = np.concatenate([rng.choice(np.flatnonzero(train[1] == d), per_class, replace=False) for d in exposed])
        anomalous_embedding = torch.from_numpy(embed(model, train_x[picks]))
        entry = _with_exposure(scored, anomalous_embedding, exposed, replace(exposure, seed=seed))
        results['exposure'][','.join(map(str, exposed))] = entry
    if out is not None:
        plot_001(scores, is_normal, results, out / 'p001_score_histograms.png')
    return results


def _with_exposure(
    ours: _Ours001, anomalous_embedding: torch.Tensor, exposed: Sequence[int], exposure: OutlierExposureConfig
) -> dict:
    """Fit the OE head on the ``exposed`` digits' embeddings; report the fused score on the test digits."""
    head, _ = fit_oe_head(ours.normal_embedding, anomalous_embedding, exposure, progress=False)
    with torch.no_grad():
        oe_train, oe_test = head(ours.normal_embedding).numpy(), head(ours.test_embedding).numpy()
    reconstruction, logit = ScoreNormalizer.fit(np.log(ours.train_scores)), ScoreNormalizer.fit(oe_train)
    fused_train = (reconstruction(np.log(ours.train_scores)) + logit(oe_train)) / 2.0
    fused = (reconstruction(np.log(ours.test_scores)) + logit(oe_test)) / 2.0
    threshold = fused_train.mean() + 2 * fused_train.std()
    is_normal = np.isin(ours.test_labels, NORMAL_DIGITS_001)
    entry = {'exposed_digits': list(exposed), **_report(fused[is_normal], fused[~is_normal], threshold)}
    unexposed = sorted(set(range(10)) - set(NORMAL_DIGITS_001) - set(exposed))
    for subset, digits in (('exposed', list(exposed)), ('unexposed', unexposed)):
        if digits:
            mask = np.isin(ours.test_labels, digits)
            entry[f'roc_auc_{subset}'] = _roc_auc(fused[is_normal], fused[mask])
            entry[f'without_oe_roc_auc_{subset}'] = _roc_auc(ours.test_scores[is_normal], ours.test_scores[mask])
    return entry


def protocol_002(
    train: Split,
    test: Split,
    *,
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
        plot_002(latents, test[1], out / 'p002_latent_pca.png')
    return results


def protocol_003(
    *,
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
        plot_003(models, test_anomalous[:4], results, out / 'p003_heatmaps.png')
    return results
