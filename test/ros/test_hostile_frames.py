"""Hostile compressed frames against a real node process over DDS: each is refused or scored, the node
keeps answering, and its memory stays bounded."""

from __future__ import annotations

import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from bombs import declaring, hostile_compressed, png_declaring
from geometry_msgs.msg import Vector3Stamped
from hypothesis import HealthCheck, given, settings
from ros_helpers import RELIABLE, REPO, stop_node
from sensor_msgs.msg import CompressedImage

from visual_anomaly.data.image_conversion import FrameError, compressed_to_bgr
from visual_anomaly.ros.process import start_node_process

pytestmark = pytest.mark.slow  # a node process over DDS

PEAK_BOUND_MB = 1500  # the node's whole peak resident memory under hostile frames (540 MB measured)
BOMBS = [
    ('png', png_declaring(30000, 30000)),  # 107 kB that took the node to 5.7 GB
    ('png', png_declaring(20000, 20000)),
    ('png', png_declaring(8000, 8000)),
    ('jpeg', declaring('jpg', 65535, 65535)),
    ('bmp', declaring('bmp', 50000, 50000)),
    ('bmp', declaring('bmp', 5000, -5000)),  # top-down rows
]


def _peak_memory_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    status = Path(f'/proc/{pid}/status').read_text()
    return int(next(line for line in status.splitlines() if line.startswith('VmHWM:')).split()[1]) / 1024


def _compressed(image_format: str, data: bytes, sec: int) -> CompressedImage:
    msg = CompressedImage(format=image_format)
    msg.data = data
    msg.header.stamp.sec = sec
    return msg


@pytest.fixture(scope='module')
def node(tester):
    """A node on compressed frames, the publisher of its input and the answers it sends."""
    args = ('-p', 'reliability:=reliable', '-p', 'queue_depth:=100', '-p', 'device:=cpu', '-p', 'compressed:=true')
    process = start_node_process(*args, '-r', 'image:=/hostile/image', cwd=REPO)
    publisher = tester.node.create_publisher(CompressedImage, '/hostile/image', RELIABLE)
    answers = tester.collect(Vector3Stamped, '/visual_anomaly/anomaly', RELIABLE)
    assert tester.spin_until(lambda: publisher.get_subscription_count() > 0, 30), process.stderr
    tester.spin_for(1.0)
    yield process, publisher, answers
    code, err = stop_node(process, signal.SIGTERM)
    assert code == 0 and 'Traceback' not in err, err


def _answer_to_a_good_frame(tester, publisher, answers, sec: int) -> None:
    ok, jpeg = cv2.imencode('.jpg', np.full((48, 64, 3), 120, np.uint8))
    before = len(answers)
    publisher.publish(_compressed('jpeg', jpeg.tobytes(), sec))
    assert tester.spin_until(lambda: any(a.header.stamp.sec == sec for a in answers[before:]), 15), 'no answer'


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile=hostile_compressed())
def test_hostile_compressed_frames_are_refused_or_scored_and_the_node_keeps_answering(tester, node, hostile):
    process, publisher, answers = node
    msg = _compressed(*hostile, sec=900)
    try:
        compressed_to_bgr(msg)
        valid = True
    except FrameError:
        valid = False
    earlier = len(answers)  # answers to earlier examples (also stamped 900) may still be arriving
    publisher.publish(msg)
    tester.spin_for(0.2)  # let the node take it before the next frame replaces it
    _answer_to_a_good_frame(tester, publisher, answers, 901)
    assert process.poll() is None
    assert any(a.header.stamp.sec == 900 for a in answers[earlier:]) == valid


def test_bombs_cost_the_node_no_memory(tester, node):
    process, publisher, answers = node
    before = _peak_memory_mb(process.pid)
    for sec, (image_format, data) in enumerate(BOMBS, start=400):
        assert len(data) < 110_000
        publisher.publish(_compressed(image_format, data, sec))
        tester.spin_for(0.2)
    _answer_to_a_good_frame(tester, publisher, answers, 410)
    peak = _peak_memory_mb(process.pid)
    assert not any(400 <= a.header.stamp.sec < 410 for a in answers), 'a bomb was scored'
    assert peak - before < 200, f'peak memory grew by {peak - before:.0f} MB'
    assert peak < PEAK_BOUND_MB, f'peak memory {peak:.0f} MB'
