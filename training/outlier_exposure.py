"""Outlier exposure: teach the detector from a few labelled anomalous frames.

The thesis' binary MLP (128-256-64-1) is trained on the frozen autoencoder's embeddings with
binary cross-entropy, each batch mixing many normal embeddings with a few anomalous ones (the
anomalous set is reused cyclically when small). Following the published method's margin idea,
a hinge term also pushes each exposed anomaly's logit at least ``margin`` above a random normal
frame's logit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from visual_anomaly.core import Detector, OutlierExposureHead

logger = logging.getLogger(__name__)


@dataclass
class OutlierExposureConfig:
    """Settings of :func:`fit_outlier_exposure`; batch sizes follow the thesis (2048 + 204)."""

    epochs: int = 100
    normal_batch: int = 2048
    anomalous_batch: int = 204
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    margin: float = 4.0  # logits of exposed anomalies should exceed normal ones by this much
    margin_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.normal_batch < 1 or self.anomalous_batch < 1:
            raise ValueError(f'epochs and batch sizes must be positive: {self}')


@dataclass
class OutlierExposureReport:
    """What the head was trained on, and how the loss went."""

    exposed_frames: int
    normal_frames: int
    exposed_classes: dict[str, int] = field(default_factory=dict)
    loss: list[float] = field(default_factory=list)


def fit_oe_head(
    normal: torch.Tensor, anomalous: torch.Tensor, config: OutlierExposureConfig | None = None, progress: bool = True
) -> tuple[OutlierExposureHead, list[float]]:
    """Train an OE head on (N, D) normal and (M, D) anomalous embeddings; returns it and the loss per epoch."""
    config = config or OutlierExposureConfig()
    if len(anomalous) == 0 or len(normal) == 0:
        raise ValueError('outlier exposure needs at least one normal and one anomalous frame')
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = normal.device
    head = OutlierExposureHead(normal.shape[1]).to(device)
    head.set_input_normalization(normal.mean(dim=0), normal.std(dim=0) + 1e-6)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    bce = nn.BCEWithLogitsLoss()
    losses = []
    anomalous_order = torch.randperm(len(anomalous), generator=generator)
    cursor = 0
    head.train()
    for _ in tqdm(range(config.epochs), desc='outlier exposure', unit='epoch', disable=not progress):
        total, batches = 0.0, 0
        for batch in torch.split(torch.randperm(len(normal), generator=generator), config.normal_batch):
            take = torch.arange(cursor, cursor + config.anomalous_batch) % len(anomalous)
            cursor = int(take[-1]) + 1
            if cursor >= len(anomalous):  # one pass over the anomalies done: reshuffle them
                anomalous_order = torch.randperm(len(anomalous), generator=generator)
                cursor = 0
            normal_logits = head(normal[batch.to(device)])
            anomalous_logits = head(anomalous[anomalous_order[take].to(device)])
            logits = torch.cat([normal_logits, anomalous_logits])
            targets = torch.cat([torch.zeros_like(normal_logits), torch.ones_like(anomalous_logits)])
            pairs = normal_logits[torch.randint(len(normal_logits), (len(anomalous_logits),), generator=generator)]
            hinge = torch.relu(config.margin + pairs - anomalous_logits).mean()
            loss = bce(logits, targets) + config.margin_weight * hinge
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        losses.append(total / batches)
    head.eval()
    return head, losses


def fit_outlier_exposure(
    detector: Detector,
    normal_resized: np.ndarray,
    anomalous_resized: np.ndarray,
    config: OutlierExposureConfig | None = None,
    exposed_classes: dict[str, int] | None = None,
    progress: bool = True,
) -> OutlierExposureReport:
    """Train an OE head on the detector's embeddings and attach it to ``detector``.

    ``normal_resized`` and ``anomalous_resized`` are (N, 64, 64, 3) uint8 RGB frames. The caller
    recalibrates the detector afterwards so that the new ``oe`` and ``fused`` scores get
    normalizers and thresholds.
    """
    if len(anomalous_resized) == 0 or len(normal_resized) == 0:
        raise ValueError('outlier exposure needs at least one normal and one anomalous frame')
    normal = torch.from_numpy(detector.detect_resized(normal_resized).embedding).to(detector.device)
    anomalous = torch.from_numpy(detector.detect_resized(anomalous_resized).embedding).to(detector.device)
    head, losses = fit_oe_head(normal, anomalous, config, progress)
    detector.set_oe_head(head)
    logger.info('outlier exposure trained on %d anomalous and %d normal frames', len(anomalous), len(normal))
    return OutlierExposureReport(len(anomalous), len(normal), dict(exposed_classes or {}), losses)
