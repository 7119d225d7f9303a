"""Frame preprocessing: any uint8 camera frame -> the model's normalized 64x64 RGB input.

Two steps, kept apart so that datasets can cache the first one:
:func:`resize_frame` (colour order to RGB, INTER_AREA resize, uint8) and
:meth:`Preprocessor.normalize` (uint8 NHWC batch -> float NCHW tensor). Only the second needs
PyTorch, and imports it when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

COLOR_ORDERS = ('rgb', 'bgr', 'rgba', 'bgra', 'mono')
NORMALIZATIONS = ('standardize', 'scale')
STANDARDIZE_EPS = 1e-7
MAX_IMAGE_SIZE = 4096  # model input side; larger is a corrupt bundle, not a model

_TO_RGB = {
    'bgr': cv2.COLOR_BGR2RGB,
    'rgba': cv2.COLOR_RGBA2RGB,
    'bgra': cv2.COLOR_BGRA2RGB,
    'mono': cv2.COLOR_GRAY2RGB,
}
_CHANNELS = {'rgb': 3, 'bgr': 3, 'rgba': 4, 'bgra': 4, 'mono': 1}


@dataclass(frozen=True)
class PreprocessingConfig:
    """How frames become model input; stored in the model bundle.

    ``standardize`` is the published per-image, per-channel standardization
    ``(x - mean_c) / (std_c + 1e-7)``; ``scale`` maps pixels to [0, 1].
    """

    image_size: int = 64
    normalization: str = 'standardize'

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f'normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}')
        if not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ValueError(f'image_size must be between 1 and {MAX_IMAGE_SIZE}, got {self.image_size}')

    def to_dict(self) -> dict:
        return asdict(self)


def resize_frame(frame: np.ndarray, color_order: str = 'rgb', size: int = 64) -> np.ndarray:
    """Resize a uint8 frame (HxW, HxWx1, HxWx3 or HxWx4) to ``size`` x ``size`` x 3 RGB uint8."""
    if color_order not in COLOR_ORDERS:
        raise ValueError(f'color_order must be one of {COLOR_ORDERS}, got {color_order!r}')
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f'frames must be uint8, got {frame.dtype}')
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    channels = 1 if frame.ndim == 2 else (frame.shape[2] if frame.ndim == 3 else -1)
    if channels != _CHANNELS[color_order] or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f'a {color_order} frame needs {_CHANNELS[color_order]} channel(s), got shape {frame.shape}')
    if frame.shape[:2] != (size, size):
        frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    if color_order != 'rgb':
        frame = cv2.cvtColor(frame, _TO_RGB[color_order])
    return np.ascontiguousarray(frame)


def resize_frames(frames: Sequence[np.ndarray] | np.ndarray, color_order: str = 'rgb', size: int = 64) -> np.ndarray:
    """Stack :func:`resize_frame` over frames into an (N, size, size, 3) uint8 array."""
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = resize_frame(frame, color_order, size)
    return out


def image_mean(images: torch.Tensor) -> torch.Tensor:
    """Mean over the last two axes (kept), row by row: ONNX Runtime sums a reduction in one float32
    sequence, which over a whole 64x64 image errs 30x more than PyTorch; rows first keeps both exact
    to ~1e-7."""
    return images.mean(dim=-1, keepdim=True).mean(dim=-2, keepdim=True)


class Preprocessor:
    """Turns frames into normalized model input according to a :class:`PreprocessingConfig`."""

    def __init__(self, config: PreprocessingConfig | None = None) -> None:
        self.config = config or PreprocessingConfig()

    def normalize(self, batch: np.ndarray | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32 on ``device``."""
        return self.normalize_tensor(self.checked_tensor(batch, device))

    @staticmethod
    def checked_tensor(batch: np.ndarray | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """An (N, H, W, 3) uint8 batch as a tensor on ``device``; anything else is a ValueError."""
        import torch

        if isinstance(batch, np.ndarray) and not batch.flags.writeable:  # e.g. a read-only frame cache
            batch = batch.copy()
        tensor = torch.as_tensor(batch, device=device)
        if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[-1] != 3:
            raise ValueError(f'expected an (N, H, W, 3) uint8 batch, got {tuple(tensor.shape)} {tensor.dtype}')
        return tensor

    def normalize_tensor(self, frames: torch.Tensor) -> torch.Tensor:
        """The normalization alone, on a checked (N, H, W, 3) uint8 tensor (also exported to ONNX)."""
        images = frames.permute(0, 3, 1, 2).float() / 255.0
        if self.config.normalization == 'standardize':
            mean = image_mean(images)
            std = image_mean((images - mean).square()).sqrt()
            images = (images - mean) / (std + STANDARDIZE_EPS)
        return images.contiguous()

    def denormalize(self, images: torch.Tensor, reference: np.ndarray) -> np.ndarray:
        """Model-space (N, 3, H, W) images back to (N, H, W, 3) uint8, using the statistics of ``reference``."""
        import torch

        if self.config.normalization == 'standardize':
            source = torch.as_tensor(reference, device=images.device).permute(0, 3, 1, 2).float().div_(255.0)
            mean = source.mean(dim=(2, 3), keepdim=True)
            std = source.std(dim=(2, 3), keepdim=True, correction=0)
            images = images * (std + STANDARDIZE_EPS) + mean
        pixels = images.mul(255.0).clamp_(0, 255).round_().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()
