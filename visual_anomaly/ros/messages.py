"""The messages the node publishes: the anomaly vector, bgr8 images, the state marker and diagnostics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Vector3Stamped
from sensor_msgs.msg import Image
from visualization_msgs.msg import Marker

from visual_anomaly.core.visualization import decision_label

#: The name of the node's status in ``/diagnostics``.
DIAGNOSTICS_NAME = 'visual_anomaly: detector'
#: The frame counters the diagnostics report, each as the value ``frames <counter>``.
FRAME_COUNTERS = ('received', 'processed', 'dropped', 'rejected')


def anomaly_vector(header, score: float, threshold: float, flag: bool) -> Vector3Stamped:
    """``~/anomaly``: x = score, y = threshold, z = 1.0 for an anomaly (else 0.0), with the frame's header."""
    msg = Vector3Stamped()
    msg.header = header
    msg.vector.x, msg.vector.y, msg.vector.z = score, threshold, 1.0 if flag else 0.0
    return msg


def bgr_image(image: np.ndarray, header) -> Image:
    """An (H, W, 3) uint8 BGR array as a ``bgr8`` Image with ``header``."""
    msg = Image(
        header=header,
        height=image.shape[0],
        width=image.shape[1],
        encoding='bgr8',
        is_bigendian=0,
        step=image.shape[1] * 3,
    )
    msg.data = np.ascontiguousarray(image).tobytes()
    return msg


def state_marker(header, flag: bool, score: float) -> Marker:
    """A text marker with the decision banner, red for an anomaly and green for normal."""
    marker = Marker(header=header, ns='visual_anomaly', id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
    marker.text = decision_label(flag, score)
    marker.pose.position.z = 0.5
    marker.pose.orientation.w = 1.0
    marker.scale.z = 0.2
    marker.color.r, marker.color.g, marker.color.b, marker.color.a = (
        (1.0, 0.1, 0.1, 1.0) if flag else (0.1, 0.9, 0.1, 1.0)
    )
    return marker


def input_rate(arrivals: Sequence[float], now: float, window_s: float = 5.0) -> float:
    """Frames per second over the arrival times (monotonic seconds) of the last ``window_s``."""
    recent = [t for t in arrivals if now - t < window_s]
    return (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0


def health(
    stats: dict, arrivals: Sequence[float], now: float, no_input_warning: float, lost_recently: int = 0
) -> tuple[bytes, str]:
    """Diagnostic level and message: no input, frames rejected, frames lost in transport since the last
    report (``lost_recently``), or scoring."""
    if not arrivals or now - arrivals[-1] > no_input_warning:
        return DiagnosticStatus.WARN, 'no input frames'
    if stats['rejected'] and stats['last_error']:
        return DiagnosticStatus.WARN, f'rejecting frames: {stats["last_error"]}'
    if lost_recently:
        return (
            DiagnosticStatus.WARN,
            f'scoring frames; {lost_recently} frame(s) lost in transport since the last report',
        )
    return DiagnosticStatus.OK, 'scoring frames'


def diagnostics(stamp, hardware_id: str, level: bytes, message: str, values: dict[str, str]) -> DiagnosticArray:
    """A ``/diagnostics`` array with the detector's one status."""
    status = DiagnosticStatus(name=DIAGNOSTICS_NAME, hardware_id=hardware_id, level=level, message=message)
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
