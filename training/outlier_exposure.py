"""Outlier exposure: teach the detector from a few labelled anomalous frames.

Two heads on a frozen 128-d embedding, chosen by ``OutlierExposureConfig.head``:

* ``mlp``: the thesis' binary MLP (128-256-64-1), binary cross-entropy, each batch mixing many
  normal embeddings with a few anomalous ones (the anomalous set is reused cyclically when
  small); following the published method's margin idea, a hinge term also pushes each exposed
  anomaly's logit at least ``margin`` above a random normal frame's logit.
* ``realnvp``: the published paper's main model, a Real-NVP density of the normal embeddings
  trained with NLL(normal) + ``margin_weight`` * mean(max(0, ``density_margin`` + NLL(normal) -
  NLL(anomalous))): exposed anomalies must be ``density_margin`` nats less likely than normal ones.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from visual_anomaly.core import Detector, OutlierExposureHead, RealNVPHead
from visual_anomaly.core.torch_model import OE_HEADS

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
    head: str = 'mlp'  # or 'realnvp'
    density_margin: float = 100.0  # realnvp: exposed anomalies this many nats less likely than normal frames
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.normal_batch < 1 or self.anomalous_batch < 1:
            raise ValueError(f'epochs and batch sizes must be positive: {self}')
        if self.head not in OE_HEADS:
            raise ValueError(f'unknown outlier-exposure head {self.head!r}; known: {", ".join(OE_HEADS)}')


@dataclass
class OutlierExposureReport:
    """What the head was trained on, and how the loss went."""

    exposed_frames: int
    normal_frames: int
    exposed_classes: dict[str, int] = field(default_factory=dict)
    loss: list[float] = field(default_factory=list)


def fit_oe_head(
    normal: torch.Tensor, anomalous: torch.Tensor, config: OutlierExposureConfig | None = None, progress: bool = True
) -> tuple[OutlierExposureHead | RealNVPHead, list[float]]:
    """Train an OE head (``config.head``) on (N, D) normal and (M, D) anomalous embeddings; it, loss per epoch."""
    config = config or OutlierExposureConfig()
    if len(anomalous) == 0 or len(normal) == 0:
        raise ValueError('outlier exposure needs at least one normal and one anomalous frame')
    if config.head == 'realnvp':
        return fit_density_head(normal, anomalous, config, progress)
    return _fit_mlp_head(normal, anomalous, config, progress)


def _batches(normal: torch.Tensor, anomalous: torch.Tensor, config: OutlierExposureConfig, generator: torch.Generator):
    """Per batch of one epoch: indices of ``normal_batch`` normal and ``anomalous_batch`` anomalous embeddings."""
    for batch in torch.split(torch.randperm(len(normal), generator=generator), config.normal_batch):
        yield batch, torch.randint(len(anomalous), (config.anomalous_batch,), generator=generator)


def fit_density_head(
    normal: torch.Tensor, anomalous: torch.Tensor, config: OutlierExposureConfig, progress: bool = True
) -> tuple[RealNVPHead, list[float]]:
    """Train a Real-NVP head with the margin loss on (N, D) normal and (M, D) anomalous embeddings.

    A flow on 128 dimensions learns a few hundred normal embeddings by heart within tens of epochs
    (their NLL drops while that of new normal frames rises): a tenth of the normal embeddings is
    held out and the epoch with the lowest loss on them is kept.
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(normal), generator=generator).to(normal.device)
    held = order[: max(1, len(normal) // 10)]
    fit = normal[order[len(held) :]] if len(normal) > 1 else normal
    head = RealNVPHead(normal.shape[1]).to(normal.device)
    head.set_input_normalization(fit.mean(dim=0), fit.std(dim=0) + 1e-6)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    losses, best = [], (float('inf'), None)
    for _ in tqdm(range(config.epochs), desc='outlier exposure (Real-NVP)', unit='epoch', disable=not progress):
        head.train()
        total, batches = 0.0, 0
        for picked_normal, picked_anomalous in _batches(fit, anomalous, config, generator):
            loss = _density_loss(
                head, fit[picked_normal.to(fit.device)], anomalous[picked_anomalous.to(fit.device)], config
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 10.0)
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        losses.append(total / batches)
        head.eval()
        with torch.no_grad():
            held_loss = float(_density_loss(head, normal[held], anomalous, config))
        if held_loss < best[0]:
            best = (held_loss, copy.deepcopy(head.state_dict()))
    head.load_state_dict(best[1])
    return head.eval(), losses


def _density_loss(head: RealNVPHead, normal: torch.Tensor, anomalous: torch.Tensor, config: OutlierExposureConfig):
    """NLL of the normal embeddings + the margin hinge: every anomaly ``density_margin`` nats below each normal."""
    nll_normal, nll_anomalous = head(normal), head(anomalous)
    hinge = torch.relu(config.density_margin + nll_normal[:, None] - nll_anomalous[None, :]).mean()
    return nll_normal.mean() + config.margin_weight * hinge


def _fit_mlp_head(
    normal: torch.Tensor, anomalous: torch.Tensor, config: OutlierExposureConfig, progress: bool = True
) -> tuple[OutlierExposureHead, list[float]]:
    """The thesis' MLP with binary cross-entropy and the margin hinge."""
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
