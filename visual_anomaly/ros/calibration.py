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
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from visual_anomaly.core.bundle import save_recalibrated


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


class CalibrationService:
    """The node's ``~/calibrate`` service (``std_srvs/Trigger``), mixed into the detector node.

    The worker thread collects the frames, a thread of its own re-calibrates on them while the worker
    goes on scoring, and the service callback is a coroutine that the executor resumes whenever it
    wakes: waiting blocks nothing, and any executor serves it.
    """

    async def _on_calibrate(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = await self._calibrate()
        self._calibration_status = response.message
        if response.success:
            self.get_logger().info(f'~/calibrate: {response.message}')
        else:  # rclpy wants one severity per logging call site
            self.get_logger().warning(f'~/calibrate failed: {response.message}')
        return response

    async def _calibrate(self) -> tuple[bool, str]:
        """Wait for the worker to gather ``calibration_frames`` frames and re-calibrate; (success, what happened)."""
        with self._lock:
            if self._calibration is not None:
                busy = self._calibration
                return False, f'a calibration is already running ({busy.collected} of {busy.count} frames collected)'
            run = self._calibration = CalibrationRun(self._settings['calibration_frames'], dict(self._settings))
        self.get_logger().info(f'~/calibrate: treating the next {run.count} frames as normal')
        try:
            while not run.done:
                if run.collected < run.count and run.quiet_for() > run.settings['no_input_warning']:
                    run.cancel()
                    if run.collected < run.count:  # else the last frame came meanwhile: wait for its calibration
                        return False, (
                            f'no frame scored for {run.quiet_for():.0f} s after {run.collected} of {run.count} '
                            f'frames: {self._explain_silence()}'
                        )
                await next_wake()  # frames, timers and the end of the calibration wake the executor
        finally:
            with self._lock:
                self._calibration = None
        success, message, threshold = run.outcome
        if threshold is not None:
            self.set_parameters([Parameter('threshold', Parameter.Type.DOUBLE, threshold)])
        return success, message

    def _finish_calibration(self, run: CalibrationRun) -> None:
        """Re-calibrate on the frames of ``run`` and wake the waiting service."""
        try:
            run.finish(*self._recalibrate(run.frames(), run.settings))
        except Exception as error:  # noqa: BLE001  (a failed calibration must never kill the node)
            run.finish(False, f'calibration failed: {error}')
        self._calibrated.trigger()

    def _recalibrate(self, frames: np.ndarray, settings: dict) -> tuple[bool, str, float]:
        """Calibrate the detector on ``frames`` and write the bundle if asked; (success, message, threshold)."""
        previous = self.detector.calibration
        # calibrate() scores the frames while the worker goes on with the old calibration, then replaces it in
        # one step (or not at all when it fails)
        self.detector.calibrate(frames, fpr=settings['calibration_fpr'], strict=True)
        kind = self.detector.decision_score
        threshold = self.detector.calibration.thresholds[kind]
        message = f'{kind} score {threshold.describe()}'
        if kind in previous.thresholds:
            message += f' (was {previous.thresholds[kind].value:.4f})'
        with self._model_lock:  # no parameter change edits the calibration while it is written
            success, written = self._write_calibrated(settings, len(frames))
        return success, f'{message}; {written}', threshold.value

    def _write_calibrated(self, settings: dict, frames: int) -> tuple[bool, str]:
        """Write the re-calibrated bundle to ``calibration_output`` (when set); (success, what was done)."""
        output = settings['calibration_output']
        if not output:
            return True, 'not written (calibration_output is empty)'
        note = {'frames': frames, 'fpr': settings['calibration_fpr'], 'node': self.get_fully_qualified_name()}
        try:
            return True, f'wrote {save_recalibrated(self._model_path, output, self.detector, note)}'
        except (ValueError, OSError) as error:
            return False, f'in use but NOT written: {error}'
