"""A subscriber that does nothing but answer: the floor under the node's end-to-end latency.

    python bench/dds_echo.py IMAGE_TOPIC ECHO_TOPIC

Receives ``sensor_msgs/Image`` on IMAGE_TOPIC (reliable QoS, as the node in ``bench_node.py``) and
publishes each frame's header on ECHO_TOPIC as ``std_msgs/Header``. ``bench_node.py`` times frames
through it as it times them through the node: what DDS and rclpy cost on both sides, without scoring.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)


def main(image_topic: str, echo_topic: str) -> None:
    rclpy.init()
    node = rclpy.create_node('bench_dds_echo')
    echo = node.create_publisher(Header, echo_topic, RELIABLE)
    node.create_subscription(Image, image_topic, lambda msg: echo.publish(msg.header), RELIABLE)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):  # Ctrl-C, or SIGTERM from the bench
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == '__main__':
    main(*sys.argv[1:3])
