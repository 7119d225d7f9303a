"""The suite's figures (matplotlib, Agg), one per protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import nn

from training.mnist.fit import reconstruct


def _figure(rows: int, cols: int, size: tuple[float, float]):
    """``(pyplot, figure, axes)`` with a 2-D array of axes, on the Agg backend."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    return plt, *plt.subplots(rows, cols, figsize=size, squeeze=False)


def _save(plt, fig, path: Path, tight: bool = False) -> None:
    """Write ``fig`` to ``path`` (120 dpi) and close it."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_000(per_digit: dict, path: Path) -> None:
    """Protocol 000: ROC-AUC of every model per normal digit, as grouped bars."""
    plt, fig, axes = _figure(1, 1, (9, 4))
    names = list(next(iter(per_digit.values())))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [per_digit[d][name]['roc_auc'] for d in per_digit]
        axes[0, 0].bar(np.arange(len(per_digit)) + i * width, values, width, label=name)
    axes[0, 0].set_xticks(np.arange(len(per_digit)) + 0.4 - width / 2, list(per_digit))
    axes[0, 0].set(xlabel='normal digit', ylabel='ROC-AUC', ylim=(0.5, 1.0), title='One-class MNIST (seed 000)')
    axes[0, 0].legend(loc='lower right')
    _save(plt, fig, path, tight=True)


def plot_001(scores: dict, is_normal_test: np.ndarray, results: dict, path: Path) -> None:
    """Protocol 001: test score histograms of each model, normal and anomalous digits, with the threshold."""
    plt, fig, axes = _figure(1, len(scores), (5 * len(scores), 4))
    for ax, (name, (_, test_scores)) in zip(axes[0], scores.items(), strict=True):
        bins = np.linspace(test_scores.min(), test_scores.max(), 50)
        ax.hist(test_scores[is_normal_test], bins, alpha=0.6, label='digits 0-4')
        ax.hist(test_scores[~is_normal_test], bins, alpha=0.6, label='digits 5-9 (anomalous)')
        ax.axvline(results[name]['threshold'], color='red', linestyle='--', label='mean + 2 std')
        ax.set(title=f'{name}: ROC-AUC {results[name]["roc_auc"]:.3f}', xlabel='score', ylabel='digits')
        ax.legend()
    _save(plt, fig, path, tight=True)


def plot_002(latents: dict[str, np.ndarray], labels: np.ndarray, path: Path) -> None:
    """Protocol 002: each model's test latent codes projected on two PCA axes, coloured by digit."""
    plt, fig, axes = _figure(1, len(latents), (5 * len(latents), 4.5))
    for ax, (name, code) in zip(axes[0], latents.items(), strict=True):
        points = PCA(n_components=2, random_state=0).fit_transform(code)
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap='tab10', s=6)
        ax.set(title=f'{name} latent ({code.shape[1]}-d), PCA', xticks=[], yticks=[])
    fig.colorbar(scatter, ax=axes[0].tolist(), label='digit')
    _save(plt, fig, path)


def plot_003(models: dict[str, nn.Module], anomalies: torch.Tensor, results: dict, path: Path) -> None:
    """Protocol 003: anomalies, each model's reconstructions and squared errors, and its confusion matrix."""
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
    _save(plt, fig, path)
