"""The node's input QoS against real publishers over DDS: matching, following, and frames lost on the way."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import REPO, image_message, stop_node
from sensor_msgs.msg import Image

from visual_anomaly.ros.process import start_node_process
from visual_anomaly.ros.qos import StampGaps, explain_silence

RELIABLE, BEST_EFFORT = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT

pytestmark = pytest.mark.slow  # node processes over DDS

VGA = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)


class Watched:
    """A detector process (reliability auto, the default) on ``/<name>/image`` and its diagnostics."""

    def __init__(self, tester, name: str) -> None:
        self.tester, self.topic = tester, f'/{name}/image'
        args = ('-p', 'device:=cpu', '-p', 'diagnostics_period:=0.2', '-r', f'__ns:=/{name}')
        self.process = start_node_process(*args, cwd=REPO)
        self.diagnostics = tester.collect(DiagnosticArray, '/diagnostics', 50)
        self.hardware = f'/{name}/visual_anomaly'

    def values(self) -> dict[str, str]:
        for array in reversed(self.diagnostics):
            status = array.status[0]
            values = {kv.key: kv.value for kv in status.values}
            if values.get('node') == self.hardware:
                return {**values, 'message': status.message}
        return {}

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        return self.tester.spin_until(lambda: predicate(self.values()), timeout)

    def stop(self) -> str:
        code, err = stop_node(self.process)
        assert code == 0 and 'Traceback' not in err, err
        return err


def _publisher(tester, topic: str, reliability: ReliabilityPolicy):
    return tester.node.create_publisher(Image, topic, QoSProfile(depth=10, reliability=reliability))


def test_a_reliable_camera_that_comes_later_is_matched_and_loses_no_frame(tester):
    watched = Watched(tester, 'late_camera')
    try:
        assert watched.wait_for(lambda v: v.get('input QoS', '').startswith('best_effort'), 30)  # no publisher yet
        publisher = _publisher(tester, watched.topic, ReliabilityPolicy.RELIABLE)
        assert watched.wait_for(lambda v: v.get('input QoS', '').startswith('reliable'), 10)
        tester.spin_for(0.5)
        for sec in range(100, 108):  # a burst of eight 640x480 frames
            publisher.publish(image_message(VGA, sec))
        assert watched.wait_for(lambda v: v.get('frames received') == '8', 10), str(watched.values())
        assert watched.values()['frames lost in transport'] == '0'
    finally:
        err = watched.stop()
    assert 'input QoS now reliable, matching the publishers' in err, err


def test_a_best_effort_camera_is_heard(tester):
    publisher = _publisher(tester, '/effort/image', ReliabilityPolicy.BEST_EFFORT)
    watched = Watched(tester, 'effort')
    small = VGA[::4, ::4].copy()  # 160x120: fits a datagram, so best effort delivers it here
    try:
        assert watched.wait_for(lambda v: v.get('input QoS', '').startswith('best_effort'), 30)
        for sec in range(5):
            publisher.publish(image_message(small, sec))
            tester.spin_for(0.1)
        assert watched.wait_for(lambda v: int(v.get('frames received', 0)) > 0, 10), watched.values()
    finally:
        watched.stop()


def test_gaps_in_the_stamps_are_reported_as_frames_lost_in_transport(tester):
    watched = Watched(tester, 'gappy')
    publisher = _publisher(tester, watched.topic, ReliabilityPolicy.RELIABLE)
    small = VGA[::4, ::4].copy()
    try:
        assert watched.wait_for(lambda v: v.get('input QoS', '').startswith('reliable'), 30)
        tester.spin_for(0.5)
        stamps = [i for i in range(30) if i not in (20, 21, 22)]  # 10 Hz, three frames never sent
        for i in stamps:
            publisher.publish(image_message(small, i // 10, (i % 10) * 100_000_000))
            tester.spin_for(0.02)
        assert watched.wait_for(lambda v: v.get('frames received') == str(len(stamps)), 10)
        assert watched.wait_for(lambda v: v.get('frames lost in transport') == '3', 5), watched.values()
    finally:
        watched.stop()


def test_stamp_gaps_count_missing_frames_and_restart_on_a_jump_back():
    gaps = StampGaps(min_intervals=5)
    period = 33_333_333
    assert sum(gaps.add(i * period) for i in range(10)) == 0
    assert gaps.add(13 * period) == 3  # frames 10, 11, 12 missing
    assert gaps.add(14 * period) == 0
    assert gaps.add(2 * period) == 0  # a replay restarted: not a loss, and the period is learnt again
    assert gaps.add(20 * period) == 0 and gaps.lost == 3


def test_silence_is_explained_with_the_publishers_qos_and_the_frames_lost(tester):
    reliable = _publisher(tester, '/explain/reliable', ReliabilityPolicy.RELIABLE)
    effort = _publisher(tester, '/explain/effort', ReliabilityPolicy.BEST_EFFORT)
    try:
        infos = tester.node.get_publishers_info_by_topic
        assert tester.spin_until(lambda: infos('/explain/reliable') and infos('/explain/effort'), 10)
        wanted = 'sensor_msgs/msg/Image'
        lossy = explain_silence('/explain/reliable', infos('/explain/reliable'), wanted, BEST_EFFORT, 3)
        assert '3 frame(s) were lost in transport' in lossy and 'set reliability:=auto or reliable' in lossy
        deaf = explain_silence('/explain/effort', infos('/explain/effort'), wanted, RELIABLE, 0)
        assert 'best-effort publisher cannot feed a reliable subscription' in deaf
        typed = explain_silence(
            '/explain/effort', infos('/explain/effort'), 'sensor_msgs/msg/CompressedImage', RELIABLE, 0
        )
        assert 'this node expects sensor_msgs/msg/CompressedImage' in typed
        assert 'no publisher on /nowhere' in explain_silence('/nowhere', [], wanted, RELIABLE, 0)
    finally:
        tester.node.destroy_publisher(reliable)
        tester.node.destroy_publisher(effort)
