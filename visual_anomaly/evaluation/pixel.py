"""Pixel-level detection metrics against per-pixel ground truth masks, as MVTec AD and anomalib report them.

- pixel ROC-AUC: every pixel of every frame is one sample, scored by the error map (the value of
  scikit-learn's ``roc_auc_score``, from the same single sort of the pixels as PRO).
- PRO (per-region overlap): the masks' 8-connected regions (scipy), each frame's separately. At a
  threshold, PRO is the mean over all regions of the share of the region's pixels scored above it,
  and the false-positive rate the share of all normal pixels above it; PRO is integrated over that
  rate from 0 to :data:`PRO_MAX_FPR` (trapezoids, the last point interpolated) and divided by it, so
  a perfect map scores 1 and a random one about ``PRO_MAX_FPR / 2`` (0.15).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage
from sklearn.metrics import auc

PRO_MAX_FPR = 0.3
_EIGHT_CONNECTED = np.ones((3, 3), bool)


def _region_labels(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Every pixel's region over all frames (0 = normal, 1..count), and the number of regions."""
    regions = np.zeros(masks.shape, np.int64)
    count = 0
    for i, mask in enumerate(masks):
        labelled, found = ndimage.label(mask, _EIGHT_CONNECTED)
        regions[i] = np.where(labelled > 0, labelled + count, 0)
        count += found
    return regions.ravel(), count


def _curves(error_maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """False-positive rate, true-positive rate and PRO at every distinct threshold, from 0; None without both kinds."""
    error_maps, masks = np.asarray(error_maps), np.asarray(masks, bool)
    if error_maps.ndim != 3 or error_maps.shape != masks.shape:
        raise ValueError(f'error maps {error_maps.shape} and masks {masks.shape} must both be (N, H, W)')
    anomalous = masks.ravel()
    if anomalous.all() or not anomalous.any():
        return None
    regions, count = _region_labels(masks)
    sizes = np.bincount(regions, minlength=count + 1).astype(np.float64)
    sizes[0] = np.inf  # normal pixels belong to no region
    scores = error_maps.ravel()
    order = np.argsort(-scores)
    last_of_ties = np.r_[scores[order][1:] != scores[order][:-1], True]  # one point per distinct threshold

    def curve(steps: np.ndarray) -> np.ndarray:
        return np.r_[0.0, np.cumsum(steps[order])[last_of_ties]]

    fpr = curve(~anomalous / float((~anomalous).sum()))
    tpr = curve(anomalous / float(anomalous.sum()))
    return fpr, tpr, curve(1.0 / (count * sizes[regions]))


def _area(fpr: np.ndarray, values: np.ndarray, max_fpr: float) -> float:
    """Area under ``values`` over ``fpr`` from 0 to ``max_fpr``, divided by ``max_fpr``."""
    end = int(np.searchsorted(fpr, max_fpr, side='right'))  # fpr[end - 1] <= max_fpr < fpr[end]
    if end < len(fpr):
        share = (max_fpr - fpr[end - 1]) / (fpr[end] - fpr[end - 1])
        fpr = np.r_[fpr[:end], max_fpr]
        values = np.r_[values[:end], values[end - 1] + share * (values[end] - values[end - 1])]
    return float(auc(fpr, values) / max_fpr)  # scikit-learn's trapezoids: NumPy 1.x has no np.trapezoid


def pixel_roc_auc(error_maps: np.ndarray, masks: np.ndarray) -> float:
    """ROC-AUC of the (N, H, W) ``error_maps`` over all pixels against the bool ``masks``; NaN without both kinds."""
    curves = _curves(error_maps, masks)
    return float('nan') if curves is None else _area(curves[0], curves[1], 1.0)


def pro_score(error_maps: np.ndarray, masks: np.ndarray, max_fpr: float = PRO_MAX_FPR) -> float:
    """Normalised area under the per-region-overlap curve up to ``max_fpr`` (module docstring); NaN without both."""
    if not 0 < max_fpr <= 1:
        raise ValueError(f'max_fpr must be in (0, 1], got {max_fpr}')
    curves = _curves(error_maps, masks)
    return float('nan') if curves is None else _area(curves[0], curves[2], max_fpr)


def pixel_metrics(error_maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Pixel ROC-AUC and PRO (up to :data:`PRO_MAX_FPR`) of (N, H, W) error maps against bool masks, one sort."""
    curves = _curves(error_maps, masks)
    if curves is None:
        return {'roc_auc': float('nan'), 'pro': float('nan')}
    fpr, tpr, pro = curves
    return {'roc_auc': _area(fpr, tpr, 1.0), 'pro': _area(fpr, pro, PRO_MAX_FPR)}


def pixel_summary(metrics: Mapping) -> list[str]:
    """The report's line on pixel-level metrics, when ``metrics`` has them."""
    pixel = metrics.get('pixel')
    if not pixel:
        return []
    return [
        '',
        f'Pixel level (error map against the ground-truth masks): ROC-AUC {pixel["roc_auc"]:.3f}, '
        f'PRO up to {PRO_MAX_FPR:.0%} FPR {pixel["pro"]:.3f}.',
    ]
