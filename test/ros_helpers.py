"""Helpers for tests that talk to a real node over DDS: a private domain, a test node, stopping a node process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

# A random domain keeps parallel test runs apart; ids above 101 fail with Fast DDS here.
DOMAIN_ID = str(random.Random(os.getpid() ^ time.time_ns()).randint(0, 101))
os.environ['ROS_DOMAIN_ID'] = DOMAIN_ID
# Node processes dump every thread's Python stack on SIGABRT: stop_node sends it to a node that hangs.
os.environ['PYTHONFAULTHANDLER'] = '1'
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
REPO = Path(__file__).resolve().parents[1]


class RosTester:
    """A node in its own context with an executor, to publish frames and collect outputs."""

    def __init__(self, name: str = 'tester') -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(DOMAIN_ID))
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}

    def collect(self, msg_type, topic: str, qos: QoSProfile | int = 50) -> list:
        inbox = self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, inbox.append, qos)
        return inbox

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return predicate()

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def stop_node(process: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 15.0) -> tuple[int, str]:
    """Send ``sig`` to the node process (unless it ended); its exit code and its log (stderr).

    A node still running after ``timeout`` seconds gets SIGABRT, so that its log ends with where each
    of its threads hung (the exit code is then -6), and is killed if even that does not end it.
    """
    if process.poll() is None:
        process.send_signal(sig)
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        try:
            _, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        err = f'{err}\n[the node did not stop within {timeout:.0f} s of signal {sig}]'
    return process.returncode, err


def image_message(frame_rgb: np.ndarray, sec: int, nanosec: int = 0, frame_id: str = 'camera') -> Image:
    msg = Image(height=frame_rgb.shape[0], width=frame_rgb.shape[1], encoding='rgb8', step=frame_rgb.shape[1] * 3)
    msg.data = np.ascontiguousarray(frame_rgb).tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, nanosec, frame_id
    return msg
