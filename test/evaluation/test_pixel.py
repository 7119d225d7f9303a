"""Pixel-level metrics: pixel ROC-AUC and PRO against hand-computed, perfect, random and scikit-learn values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from visual_anomaly.core import AutoencoderConfig, ConvAutoencoder, Detector
from visual_anomaly.evaluation.frames import evaluate_frames
from visual_anomaly.evaluation.pixel import PRO_MAX_FPR, pixel_metrics, pixel_roc_auc, pro_score


def blob_masks(n: int, seed: int = 0) -> np.ndarray:
    """(n, 64, 64) masks: every third frame has one or two rectangles, the others none."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, 64, 64), bool)
    for i in range(0, n, 3):
        for _ in range(rng.integers(1, 3)):
            y, x = rng.integers(0, 56, 2)
            masks[i, y : y + rng.integers(2, 9), x : x + rng.integers(2, 9)] = True
    return masks


def test_a_small_case_matches_the_hand_computation():
    # two regions: pixels 0-1 (A) and pixel 5 (B); normal pixels 2, 3, 4.
    # Thresholds from the top: 0.9 (A half) -> (fpr 0, pro 1/4); 0.8 -> (1/3, 1/4); 0.7 (B) -> (1/3, 3/4);
    # 0.3 -> (2/3, 3/4); 0.2 (A whole) -> (2/3, 1); 0.1 -> (1, 1).
    errors = np.array([[[0.9, 0.2, 0.8, 0.1, 0.3, 0.7]]])
    masks = np.array([[[1, 1, 0, 0, 0, 1]]], bool)
    assert pro_score(errors, masks, max_fpr=1.0) == pytest.approx(1 / 12 + 3 / 12 + 4 / 12)
    assert pro_score(errors, masks, max_fpr=0.5) == pytest.approx((1 / 12 + (0.5 - 1 / 3) * 0.75) / 0.5)
    assert pro_score(errors, masks) == pytest.approx(0.25)  # 0.3 lies within the first step
    assert pixel_roc_auc(errors, masks) == pytest.approx(6 / 9)  # 6 of 9 (anomalous, normal) pairs ranked right


def test_a_perfect_map_scores_one_and_a_random_one_chance():
    masks = blob_masks(300)
    perfect = pixel_metrics(masks.astype(np.float32), masks)
    assert perfect['roc_auc'] == pytest.approx(1.0) and perfect['pro'] == pytest.approx(1.0)
    random = pixel_metrics(np.random.default_rng(1).random(masks.shape, dtype=np.float32), masks)
    assert random['roc_auc'] == pytest.approx(0.5, abs=0.02)
    assert random['pro'] == pytest.approx(PRO_MAX_FPR / 2, abs=0.02)  # PRO follows the FPR: area of y = x


def test_pixel_roc_auc_is_scikit_learns_with_ties():
    masks = blob_masks(60, seed=2)
    rng = np.random.default_rng(3)
    errors = np.round(rng.random(masks.shape) * 0.6 + masks * rng.random(masks.shape) * 0.5, 2)  # many ties
    assert pixel_roc_auc(errors, masks) == pytest.approx(roc_auc_score(masks.ravel(), errors.ravel()), abs=1e-9)


def test_pro_weighs_every_region_alike_whatever_its_size():
    masks = np.zeros((2, 64, 64), bool)
    masks[0, 10:40, 10:40] = True  # 900 pixels, found
    masks[1, 5:7, 5:7] = True  # 4 pixels, missed
    errors = np.where(masks, 1.0, np.random.default_rng(0).uniform(0.1, 0.5, masks.shape))
    errors[1, 5:7, 5:7] = 0.0  # below every normal pixel
    assert pixel_roc_auc(errors, masks) > 0.99  # almost every anomalous pixel ranks first
    assert pro_score(errors, masks) == pytest.approx(0.5, abs=0.01)  # but only one of the two regions


def test_degenerate_inputs():
    errors = np.random.default_rng(0).random((2, 8, 8))
    assert np.isnan(pixel_roc_auc(errors, np.zeros((2, 8, 8), bool)))
    assert all(np.isnan(v) for v in pixel_metrics(errors, np.ones((2, 8, 8), bool)).values())
    with pytest.raises(ValueError, match=r'error maps \(2, 8, 8\) and masks \(2, 4, 4\)'):
        pro_score(errors, np.zeros((2, 4, 4), bool))
    with pytest.raises(ValueError, match='max_fpr'):
        pro_score(errors, np.zeros((2, 8, 8), bool), max_fpr=0.0)


@pytest.mark.slow  # two evaluations with their plots (~3 s)
def test_evaluate_frames_reports_pixel_metrics_when_given_masks(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    frames = rng.integers(90, 110, (12, 64, 64, 3), dtype=np.uint8)
    classes = np.array([0, 9] * 6)
    masks = np.zeros((12, 64, 64), bool)
    masks[1::2, 20:40, 20:40] = True
    frames[masks] = 250  # a bright square: a large reconstruction error
    detector = Detector(ConvAutoencoder(AutoencoderConfig(base_channels=8)), device='cpu')
    detector.calibrate(frames[::2])
    metrics = evaluate_frames(detector, frames, classes, tmp_path / 'with', 'test', masks=masks)
    assert metrics['pixel']['roc_auc'] > 0.9 and metrics['pixel']['pro'] > 0.5, metrics['pixel']
    assert 'Pixel level' in (tmp_path / 'with' / 'report.md').read_text()
    without = evaluate_frames(detector, frames, classes, tmp_path / 'without', 'test')
    assert 'pixel' not in without and 'Pixel level' not in (tmp_path / 'without' / 'report.md').read_text()
