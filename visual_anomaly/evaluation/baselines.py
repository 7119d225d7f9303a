"""Trivial baselines fitted on the same normal frames as the detector, reported beside its scores.

A detector that does not beat these is not done. Each follows the scikit-learn / PyOD shape:
``fit(frames)`` on (N, S, S, 3) uint8 normal frames, then ``decision_function(frames)`` with
"higher = more anomalous"; before ``fit`` it raises ``NotFittedError``. ``calibrate`` sets
``threshold_`` at a false-positive rate on normal validation frames, as the detector's is set.
Fitted baselines are saved as plain arrays (``.npz``, read without pickle) beside a model bundle.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from visual_anomaly.core import NotFittedError, threshold_at_fpr

BASELINES_FILE = 'baselines.npz'  # written beside model.pt by training, found there by evaluation


def _pixels(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f'expected a non-empty (N, S, S, 3) batch of frames, got shape {frames.shape}')
    return frames.reshape(len(frames), -1).astype(np.float32) / 255.0


class Baseline:
    """Common shape: fitted arrays named in ``arrays``, a calibrated ``threshold_``."""

    name = ''
    arrays: tuple[str, ...] = ()

    def check_fitted(self) -> None:
        """Raise ``NotFittedError`` unless ``fit`` has run."""
        if not all(hasattr(self, attribute) for attribute in self.arrays):
            raise NotFittedError(f'the {self.name} baseline is not fitted: call fit(normal_frames) first')

    def fit(self, frames: np.ndarray) -> Baseline:
        raise NotImplementedError

    def decision_function(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def calibrate(self, normal_frames: np.ndarray, fpr: float = 0.01) -> Baseline:
        """Set ``threshold_`` so that at most ``fpr`` of ``normal_frames`` score above it."""
        self.threshold_ = threshold_at_fpr(self.decision_function(normal_frames), fpr).value
        return self


class PCAReconstruction(Baseline):
    """Mean squared error of the frame rebuilt from the top principal components of normal frames."""

    name = 'pca'
    arrays = ('mean_', 'components_')

    def __init__(self, n_components: int = 50, seed: int = 0) -> None:
        self.n_components, self.seed = n_components, seed

    def fit(self, frames: np.ndarray) -> PCAReconstruction:
        from sklearn.decomposition import PCA

        pixels = _pixels(frames)
        components = min(self.n_components, len(pixels) - 1, pixels.shape[1])
        pca = PCA(components, svd_solver='randomized', random_state=self.seed).fit(pixels)
        self.mean_, self.components_ = pca.mean_.astype(np.float32), pca.components_.astype(np.float32)
        return self

    def decision_function(self, frames: np.ndarray) -> np.ndarray:
        self.check_fitted()
        centred = _pixels(frames) - self.mean_
        residual = centred - (centred @ self.components_.T) @ self.components_
        return (residual**2).mean(axis=1).astype(np.float64)


class PixelGaussian(Baseline):
    """The largest absolute z-score of any pixel under a per-pixel Gaussian of normal frames."""

    name = 'pixel_gaussian'
    arrays = ('mean_', 'std_')

    def __init__(self, min_std: float = 1e-3) -> None:
        self.min_std = min_std

    def fit(self, frames: np.ndarray) -> PixelGaussian:
        pixels = _pixels(frames)
        self.mean_, self.std_ = pixels.mean(axis=0), np.maximum(pixels.std(axis=0), self.min_std)
        return self

    def decision_function(self, frames: np.ndarray) -> np.ndarray:
        self.check_fitted()
        return np.abs((_pixels(frames) - self.mean_) / self.std_).max(axis=1).astype(np.float64)


class ThumbnailKNN(Baseline):
    """Distance from a 16x16 thumbnail of the frame to the nearest thumbnail of a normal frame."""

    name = 'thumbnail_knn'
    arrays = ('thumbnails_',)  # (N, side, side, 3) uint8

    def __init__(self, side: int = 16) -> None:
        self.side = side

    @staticmethod
    def _thumbnails(frames: np.ndarray, side: int) -> np.ndarray:
        _pixels(frames)  # validates the batch
        return np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in frames])

    def fit(self, frames: np.ndarray) -> ThumbnailKNN:
        self.thumbnails_ = self._thumbnails(frames, self.side)
        return self

    def decision_function(self, frames: np.ndarray) -> np.ndarray:
        from sklearn.neighbors import NearestNeighbors

        self.check_fitted()
        queries = _pixels(self._thumbnails(frames, self.thumbnails_.shape[1]))
        distances, _ = NearestNeighbors(n_neighbors=1).fit(_pixels(self.thumbnails_)).kneighbors(queries)
        return distances[:, 0].astype(np.float64)


BASELINES: tuple[type[Baseline], ...] = (PCAReconstruction, PixelGaussian, ThumbnailKNN)


def fit_baselines(train_frames: np.ndarray, validation_frames: np.ndarray, fpr: float = 0.01) -> list[Baseline]:
    """Every baseline fitted on ``train_frames`` and calibrated at ``fpr`` on ``validation_frames``."""
    return [kind().fit(train_frames).calibrate(validation_frames, fpr) for kind in BASELINES]


def baseline_scores(baselines: Sequence[Baseline], frames: np.ndarray) -> dict[str, np.ndarray]:
    """``{'baseline:<name>': scores}`` of every fitted baseline on ``frames``."""
    return {f'baseline:{b.name}': b.decision_function(frames) for b in baselines}


def baseline_thresholds(baselines: Sequence[Baseline]) -> dict[str, float]:
    """``{'baseline:<name>': threshold}`` of every calibrated baseline."""
    return {f'baseline:{b.name}': float(b.threshold_) for b in baselines if hasattr(b, 'threshold_')}


def save_baselines(path: str | os.PathLike, baselines: Sequence[Baseline]) -> Path:
    """Write fitted, calibrated baselines as plain arrays (``name/attribute`` keys) to ``path``."""
    arrays = {}
    for baseline in baselines:
        baseline.check_fitted()
        for attribute in (*baseline.arrays, 'threshold_'):
            arrays[f'{baseline.name}/{attribute}'] = np.asarray(getattr(baseline, attribute))
    path = Path(path)
    with path.open('wb') as file:
        np.savez_compressed(file, **arrays)
    return path


def load_baselines(path: str | os.PathLike) -> list[Baseline]:
    """Baselines saved by :func:`save_baselines`; a missing or damaged file is a ``ValueError`` naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f'{path}: not a baselines file ({error})') from error
    baselines = []
    for kind in BASELINES:
        keys = [f'{kind.name}/{attribute}' for attribute in (*kind.arrays, 'threshold_')]
        if not all(key in arrays for key in keys):
            continue
        baseline = kind()
        for key in keys:
            value = arrays[key]
            setattr(baseline, key.split('/', 1)[1], float(value) if value.ndim == 0 else value)
        baselines.append(baseline)
    if not baselines:
        raise ValueError(f'{path}: holds no baseline (expected keys such as pca/mean_)')
    return baselines


def baselines_for(bundle: str | os.PathLike, path: str | os.PathLike | None = None) -> list[Baseline]:
    """The baselines at ``path``, else those saved beside ``bundle`` by its training run, else none."""
    if path is not None:
        return load_baselines(path)
    beside = Path(bundle).parent / BASELINES_FILE
    return load_baselines(beside) if beside.is_file() else []
