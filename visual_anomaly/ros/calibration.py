"""One run of the node's ``~/calibrate`` service: the next N frames it scores, treated as normal.

The node's worker thread adds each frame it scores (resized to the model input) and, with the
last one, re-calibrates and :meth:`CalibrationRun.finish`-es the run; the service's coroutine
polls the run whenever the executor wakes, so waiting blocks no thread and no executor.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Generator
from typing import Any

import numpy as np


@types.coroutine
def next_wake() -> Generator[None, None, None]:
    """Await this in an rclpy coroutine callback to hand control back to the executor until it wakes again."""
    yield


class CalibrationRun:
    """Collects the next ``count`` scored frames for a calibration with ``settings``, and its outcome."""

    def __init__(self, count: int, settings: dict[str, Any]) -> None:
        if count < 1:
            raise ValueError(f'count must be >= 1, got {count}')
        self.count = count
        self.settings = settings
        self.outcome: tuple[bool, str, float | None] | None = None  # success, message, new threshold
        self._frames: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._last_frame = time.monotonic()
        self._cancelled = False

    @property
    def collected(self) -> int:
        return len(self._frames)

    def add(self, frame: np.ndarray) -> bool:
        """Keep ``frame`` (an (S, S, 3) uint8 model input); True for the frame that completes the set."""
        with self._lock:
            if self._cancelled or len(self._frames) >= self.count:
                return False
            self._frames.append(frame)
            self._last_frame = time.monotonic()
            return len(self._frames) == self.count

    def frames(self) -> np.ndarray:
        """The collected frames as one (N, S, S, 3) array."""
        with self._lock:
            return np.stack(self._frames)

    def quiet_for(self) -> float:
        """Seconds since the last frame came (or since the run started)."""
        return time.monotonic() - self._last_frame

    def cancel(self) -> None:
        """Take no more frames (the caller gave up waiting)."""
        with self._lock:
            self._cancelled = True

    def finish(self, success: bool, message: str, threshold: float | None = None) -> None:
        """Record the outcome, which ends :meth:`done`'s wait."""
        self.outcome = (success, message, threshold)

    @property
    def done(self) -> bool:
        return self.outcome is not None
