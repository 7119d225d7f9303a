"""Outlier exposure on the change evidence: the OE MLP on an embedding that carries the anomaly.

The autoencoder's embedding describes the place, so an MLP on it cannot tell a tape strip from
the floor it lies on (its score was inverted in one building). With a patrol memory, the place
can be subtracted out: :class:`~visual_anomaly.core.torch_model.ChangeClassifier` encodes the
change evidence (change z-map and best-match residual, ``PatrolMemory.evidence``) into a 128-d
embedding and the thesis' MLP scores it. It is trained on

* normal training frames, each compared with the memory without its own patrol neighbours (as a
  frame of a later patrol would be),
* the few labelled anomalous frames (the exposure), with a hinge pushing their logits ``margin``
  above normal ones,
* as many synthetic anomalies: the same training frames with one small pasted patch (a cut from
  another frame, an ellipse or a line, half transparent), weighted down, which teach the encoder
  what any local change looks like so that one labelled type does not become the only one.

With ``head: realnvp`` the encoder is trained so, then frozen, and the published paper's Real-NVP
density with its margin loss is fitted on its embeddings of the normal and exposed frames in
place of the MLP (:func:`with_density_head`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from training.outlier_exposure import OutlierExposureConfig, OutlierExposureReport, fit_density_head
from visual_anomaly.core import Detector
from visual_anomaly.core.change import PatrolMemory, evenly_spaced, leave_out_masks
from visual_anomaly.core.torch_model import OE_HEADS, ChangeClassifier

logger = logging.getLogger(__name__)


@dataclass
class ChangeExposureConfig:
    """Settings of :func:`fit_change_exposure`."""

    epochs: int = 40
    normal_batch: int = 128
    anomalous_batch: int = 32
    synthetic_batch: int = 32
    synthetic_weight: float = 0.5  # weight of a synthetic anomaly in the cross-entropy (a real one: 1)
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    margin: float = 4.0  # logits of exposed anomalies should exceed normal ones by this much
    head: str = 'mlp'  # realnvp: a Real-NVP density on the trained encoder's embedding replaces the MLP
    density_margin: float = OutlierExposureConfig.density_margin
    density_epochs: int = 300
    frames: int = 1200  # normal training frames, and as many synthetic anomalies
    exclude_steps: int = 2  # as the memory's statistics: neighbours left out, in memory steps
    batch_size: int = 32  # frames per evidence computation
    seed: int = 0

    def __post_init__(self) -> None:
        sizes = (self.epochs, self.normal_batch, self.anomalous_batch, self.synthetic_batch, self.frames)
        if min(sizes) < 1 or self.batch_size < 1 or self.exclude_steps < 0 or self.synthetic_weight < 0:
            raise ValueError(f'change exposure needs positive epochs, batches and frames: {self}')
        if self.head not in OE_HEADS or self.density_epochs < 1:
            raise ValueError(f'change exposure needs a head of {", ".join(OE_HEADS)} and density_epochs >= 1: {self}')


def with_synthetic_patches(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copies of (N, S, S, 3) uint8 frames, each with one small half-transparent patch: a cut from another
    of the frames, a filled ellipse or a line of a random colour."""
    out = frames.copy()
    side = frames.shape[1]
    for image in out:
        h, w = int(rng.integers(2, 10)), int(rng.integers(2, 20))
        y, x = int(rng.integers(0, side - h)), int(rng.integers(0, side - w))
        kind = rng.integers(3)
        if kind == 0:
            source = frames[rng.integers(len(frames))]
            sy, sx = int(rng.integers(0, side - h)), int(rng.integers(0, side - w))
            alpha = rng.uniform(0.2, 0.8)
            patch = alpha * source[sy : sy + h, sx : sx + w] + (1 - alpha) * image[y : y + h, x : x + w]
            image[y : y + h, x : x + w] = patch.astype(np.uint8)
            continue
        painted, colour = image.copy(), tuple(int(c) for c in rng.integers(0, 256, 3))
        if kind == 1:
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(painted, (x + w // 2, y + h // 2), (w // 2, h // 2), angle, 0, 360, colour, -1)
        else:
            cv2.line(painted, (x, y), (x + w, y + h), colour, int(rng.integers(1, 3)))
        alpha = rng.uniform(0.1, 0.6)
        image[:] = (alpha * painted + (1 - alpha) * image).astype(np.uint8)
    return out


def change_evidence(
    memory: PatrolMemory, frames: np.ndarray, excluded: np.ndarray | None = None, batch_size: int = 32
) -> torch.Tensor:
    """(N, 4, S, S) change evidence of (N, S, S, 3) uint8 frames; ``excluded`` (N, M) leaves memory frames out."""
    device = memory.frames.device
    parts = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            images = memory.normalize(torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size])))
            left_out = None if excluded is None else torch.from_numpy(excluded[start : start + batch_size])
            parts.append(memory.evidence(images.to(device), None if left_out is None else left_out.to(device))[1])
    return torch.cat(parts)


def fit_change_classifier(
    normal: torch.Tensor,
    anomalous: torch.Tensor,
    synthetic: torch.Tensor,
    config: ChangeExposureConfig,
    progress: bool = True,
) -> tuple[ChangeClassifier, list[float]]:
    """Train the change encoder and the OE MLP together on (N, 4, S, S) evidence; the classifier and loss per epoch."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = normal.device
    model = ChangeClassifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    cross_entropy = nn.BCEWithLogitsLoss(reduction='none')
    n_a, n_s = config.anomalous_batch, config.synthetic_batch
    losses = []
    model.train()
    for _ in tqdm(range(config.epochs), desc='outlier exposure', unit='epoch', disable=not progress):
        total, batches = 0.0, 0
        for batch in torch.split(torch.randperm(len(normal), generator=generator), config.normal_batch):
            picked_a = torch.randint(len(anomalous), (n_a,), generator=generator)
            picked_s = torch.randint(len(synthetic), (n_s,), generator=generator)
            x = torch.cat([normal[batch], anomalous[picked_a], synthetic[picked_s]])
            flip = (torch.rand(len(x), generator=generator) < 0.5).to(device)
            logits = model(torch.where(flip[:, None, None, None], x.flip(3), x))
            n = len(batch)
            targets = torch.cat([torch.zeros(n), torch.ones(n_a + n_s)]).to(device)
            weights = torch.cat([torch.ones(n + n_a), torch.full((n_s,), config.synthetic_weight)]).to(device)
            pairs = logits[:n][torch.randint(n, (n_a,), generator=generator)]
            hinge = torch.relu(config.margin + pairs - logits[n : n + n_a]).mean()
            loss = (cross_entropy(logits, targets) * weights).sum() / weights.sum() + hinge
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        losses.append(total / batches)
    return model.eval(), losses


def with_density_head(
    classifier: ChangeClassifier,
    normal: torch.Tensor,
    anomalous: torch.Tensor,
    config: ChangeExposureConfig,
    progress: bool = True,
) -> tuple[ChangeClassifier, list[float]]:
    """The classifier's trained encoder with a Real-NVP head (margin loss) in place of the MLP, fitted on its
    frozen embeddings of the (N, 4, S, S) normal and exposed evidence; it and the head's loss per epoch."""
    with torch.inference_mode():
        normal_e, anomalous_e = (
            torch.cat([classifier.encoder(x) for x in torch.split(e, 256)]) for e in (normal, anomalous)
        )
    fit = OutlierExposureConfig(
        epochs=config.density_epochs, head='realnvp', density_margin=config.density_margin, seed=config.seed
    )
    head, losses = fit_density_head(normal_e.clone(), anomalous_e.clone(), fit, progress)
    density = ChangeClassifier(classifier.embedding_dim, head='realnvp').to(normal.device)
    density.encoder.load_state_dict(classifier.encoder.state_dict())
    density.head = head
    return density.eval(), losses


def fit_change_exposure(
    detector: Detector,
    train: np.ndarray,
    anomalous_resized: np.ndarray,
    config: ChangeExposureConfig | None = None,
    exposed_classes: dict[str, int] | None = None,
    progress: bool = True,
) -> OutlierExposureReport:
    """Train a :class:`ChangeClassifier` for ``detector`` (which has a patrol memory fitted on ``train``,
    the (N, S, S, 3) uint8 training frames in patrol order) and attach it; recalibrate afterwards."""
    config = config or ChangeExposureConfig()
    memory = detector.memory
    if memory is None:
        raise ValueError('outlier exposure on the change evidence needs a detector with a patrol memory')
    if len(anomalous_resized) == 0 or len(train) == 0:
        raise ValueError('outlier exposure needs at least one normal and one anomalous frame')
    queries = evenly_spaced(len(train), config.frames)
    excluded = leave_out_masks(len(train), memory.size, queries, config.exclude_steps)
    rng = np.random.default_rng(config.seed)
    normal = change_evidence(memory, train[queries], excluded, config.batch_size)
    synthetic = change_evidence(memory, with_synthetic_patches(train[queries], rng), excluded, config.batch_size)
    anomalous = change_evidence(memory, anomalous_resized, None, config.batch_size)
    classifier, losses = fit_change_classifier(normal, anomalous, synthetic, config, progress)
    if config.head == 'realnvp':
        classifier, losses = with_density_head(classifier, normal, anomalous, config, progress)
    detector.set_oe_head(classifier)
    logger.info('outlier exposure trained on %d anomalous and %d normal frames', len(anomalous), len(normal))
    return OutlierExposureReport(len(anomalous), len(normal), dict(exposed_classes or {}), losses)
