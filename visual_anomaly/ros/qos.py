"""The input's QoS: matching the camera's reliability, and noticing frames lost before the node.

Camera drivers publish either reliably or best-effort. A best-effort subscription to a reliable
publisher of large frames loses most of them in transport; a reliable subscription cannot hear a
best-effort publisher at all. With ``reliability: auto`` the node does what image_pipeline does: it
takes the reliability the topic's publishers offer (best-effort, as sensor data, while there is none
or when any of them is best-effort), and follows them when they change.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data

RELIABILITY_CHOICES = ('auto', 'reliable', 'best_effort')
_FIXED = {'reliable': QoSReliabilityPolicy.RELIABLE, 'best_effort': QoSReliabilityPolicy.BEST_EFFORT}


def input_reliability(choice: str, publishers: Sequence) -> QoSReliabilityPolicy:
    """The subscription's reliability for the ``reliability`` parameter ``choice`` and the topic's
    ``publishers`` (rclpy TopicEndpointInfo): reliable only when every publisher is."""
    if choice in _FIXED:
        return _FIXED[choice]
    offered = {info.qos_profile.reliability for info in publishers}
    return (
        QoSReliabilityPolicy.RELIABLE
        if offered == {QoSReliabilityPolicy.RELIABLE}
        else QoSReliabilityPolicy.BEST_EFFORT
    )


def input_qos(reliability: QoSReliabilityPolicy, depth: int) -> QoSProfile:
    """Sensor-data QoS (volatile, keep last) with ``reliability`` and ``depth``."""
    return QoSProfile(
        depth=depth,
        reliability=reliability,
        durability=qos_profile_sensor_data.durability,
        history=qos_profile_sensor_data.history,
    )


def policy_name(reliability: QoSReliabilityPolicy) -> str:
    return 'reliable' if reliability == QoSReliabilityPolicy.RELIABLE else 'best_effort'


class StampGaps:
    """Frames lost before the node, estimated from the gaps in a steady stream of header stamps.

    The period is the median of the last ``history`` intervals; an interval of n periods (rounded,
    n >= 2) means n - 1 frames that never arrived. Stamps going backwards (a replay restarted, a
    clock reset) restart the estimate instead of counting.
    """

    def __init__(self, history: int = 50, min_intervals: int = 10) -> None:
        self._intervals: deque[int] = deque(maxlen=history)
        self._min_intervals = min_intervals
        self._last: int | None = None
        self.lost = 0

    def add(self, stamp_ns: int) -> int:
        """Record the stamp of an arrived frame; return the frames estimated lost just before it."""
        last, self._last = self._last, stamp_ns
        if last is None or stamp_ns <= last:
            if last is not None and stamp_ns < last:
                self._intervals.clear()
            return 0
        interval = stamp_ns - last
        lost = 0
        if len(self._intervals) >= self._min_intervals:
            period = sorted(self._intervals)[len(self._intervals) // 2]
            lost = max(0, round(interval / period) - 1) if period > 0 else 0
        if lost == 0:
            self._intervals.append(interval)
        self.lost += lost
        return lost


def explain_silence(topic: str, publishers: Sequence, wanted_type: str, reliability, lost: int) -> str:
    """Why a subscription to ``topic`` of ``wanted_type`` with ``reliability`` hears nothing, given the
    topic's ``publishers`` (rclpy TopicEndpointInfo) and the frames ``lost`` in transport so far."""
    if not publishers:
        return f'no publisher on {topic}; remap the input, e.g. image:=/camera/image_raw'
    details = [
        f'{info.node_namespace.rstrip("/")}/{info.node_name} '
        f'({info.topic_type}, {policy_name(info.qos_profile.reliability)})'
        for info in publishers
    ]
    reason = f'{len(publishers)} publisher(s) on {topic}: {", ".join(details)}'
    if any(info.topic_type != wanted_type for info in publishers):
        return reason + f'; this node expects {wanted_type} (parameter compressed)'
    best_effort = [p for p in publishers if p.qos_profile.reliability == QoSReliabilityPolicy.BEST_EFFORT]
    if reliability == QoSReliabilityPolicy.RELIABLE and best_effort:
        return reason + '; a best-effort publisher cannot feed a reliable subscription (set reliability:=auto)'
    if lost:
        reason += f'; {lost} frame(s) were lost in transport'
        if reliability == QoSReliabilityPolicy.BEST_EFFORT and not best_effort:
            reason += ' (large frames over best-effort QoS: set reliability:=auto or reliable)'
    return reason
