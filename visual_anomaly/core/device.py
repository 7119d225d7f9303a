"""Choosing the torch device from a user string: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)
_DEVICE_PATTERN = re.compile(r'^(auto|cpu|cuda(:\d+)?)$')


def check_device_spec(spec: object) -> str:
    """``spec`` lower-cased if it names a device this package understands, else a ValueError."""
    text = str(spec).strip().lower()
    if not _DEVICE_PATTERN.match(text):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {text!r}")
    return text


def resolve_device(spec: str | torch.device = 'auto') -> torch.device:
    """Return the device to run on; CUDA requested without CUDA falls back to CPU with a warning."""
    import torch

    spec = check_device_spec(spec)
    if spec == 'cpu':
        return torch.device('cpu')
    if not torch.cuda.is_available():
        if spec != 'auto':
            logger.warning('device %r requested but CUDA is not available; using the CPU', spec)
        return torch.device('cpu')
    if spec == 'auto':
        return torch.device('cuda')
    device = torch.device(spec)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f'{spec} requested but only {torch.cuda.device_count()} CUDA device(s) exist')
    return device


def release_device_memory(device: torch.device | str) -> None:
    """Hand the memory PyTorch keeps cached on a CUDA ``device`` back to the driver (no-op elsewhere)."""
    if str(device).startswith('cuda'):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()
