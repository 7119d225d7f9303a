"""``visual-anomaly-node``: the detector node; takes the usual ``--ros-args`` (parameters, remaps).

A model or parameter that cannot be used stops it with one line, ``visual_anomaly: cannot start:
...``, exit 2; SIGINT or SIGTERM, once ROS is initialised (while the model loads or later), end it
cleanly with exit 0.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.signals import SignalHandlerOptions

from visual_anomaly.cli.common import EXIT_USER_ERROR, USER_ERRORS
from visual_anomaly.ros.node import AnomalyDetectorNode


def main(args: list[str] | None = None) -> int:
    """Console entry point ``visual-anomaly-node``; accepts the usual ``--ros-args``."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.ALL)  # SIGINT and SIGTERM
    try:
        node = AnomalyDetectorNode()
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0  # SIGINT while the node was starting (loading the model, say)
    except Exception as error:
        if not rclpy.ok():
            return 0  # SIGINT or SIGTERM shut ROS down while the node was starting
        if not isinstance(error, USER_ERRORS):
            raise
        print(f'visual_anomaly: cannot start: {error}', file=sys.stderr)
        rclpy.try_shutdown()
        return EXIT_USER_ERROR
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # a real failure, not the context going away under a signal
            raise
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
