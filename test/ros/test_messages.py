"""The messages the node publishes, built without a node."""

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from std_msgs.msg import Header

from visual_anomaly.ros.messages import (
    DIAGNOSTICS_NAME,
    anomaly_vector,
    bgr_image,
    diagnostics,
    health,
    input_rate,
    state_marker,
)

HEADER = Header(frame_id='camera')


def test_anomaly_vector_carries_score_threshold_and_flag():
    msg = anomaly_vector(HEADER, 3.5, 2.0, True)
    assert (msg.vector.x, msg.vector.y, msg.vector.z, msg.header.frame_id) == (3.5, 2.0, 1.0, 'camera')
    assert anomaly_vector(HEADER, 1.0, 2.0, False).vector.z == 0.0


def test_bgr_image_round_trips_the_pixels():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    msg = bgr_image(image[:, ::-1], HEADER)  # not contiguous
    assert (msg.height, msg.width, msg.step, msg.encoding) == (5, 7, 21, 'bgr8')
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(5, 7, 3), image[:, ::-1])


def test_state_marker_is_red_for_an_anomaly():
    marker = state_marker(HEADER, True, 4.2)
    assert 'ANOMALY' in marker.text and marker.color.r > marker.color.g
    assert state_marker(HEADER, False, 0.1).color.g > 0.5


def test_health_and_rate():
    stats = {'rejected': 0, 'last_error': ''}
    assert health(stats, [], 10.0, 5.0) == (DiagnosticStatus.WARN, 'no input frames')
    assert health(stats, [9.0], 10.0, 5.0) == (DiagnosticStatus.OK, 'scoring frames')
    level, message = health({'rejected': 1, 'last_error': 'bad'}, [9.0], 10.0, 5.0)
    assert (level, message) == (DiagnosticStatus.WARN, 'rejecting frames: bad')
    level, message = health(stats, [9.0], 10.0, 5.0, lost_recently=4)
    assert level == DiagnosticStatus.WARN and message.startswith('scoring frames; 4 frame(s) lost in transport')
    assert input_rate([1.0, 8.0, 8.5, 9.0], 10.0) == pytest.approx(2.0)
    assert input_rate([9.0], 10.0) == 0.0


def test_diagnostics_holds_one_named_status():
    array = diagnostics(HEADER.stamp, 'cpu', DiagnosticStatus.OK, 'scoring frames', {'frames received': '3'})
    (status,) = array.status
    assert (status.name, status.hardware_id, status.message) == (DIAGNOSTICS_NAME, 'cpu', 'scoring frames')
    assert [(kv.key, kv.value) for kv in status.values] == [('frames received', '3')]
