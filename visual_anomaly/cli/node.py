"""``visual-anomaly-node``: the detector node; takes the usual ``--ros-args`` (parameters, remaps).

``--lifecycle`` starts the managed (lifecycle) node instead, unconfigured, for a lifecycle manager
to drive; ``--autostart`` configures and activates it at once. A model or parameter that cannot be
used stops the node with one line, ``visual_anomaly: cannot start: ...``, exit 2 (the lifecycle node
without ``--autostart`` instead fails the transition and stays up); SIGINT or SIGTERM, once ROS is
initialised (while the model loads or later), end it cleanly with exit 0.
"""

from __future__ import annotations

import argparse
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

from visual_anomaly.cli.common import EXIT_USER_ERROR, USER_ERRORS
from visual_anomaly.ros.lifecycle import LifecycleAnomalyDetectorNode
from visual_anomaly.ros.node import AnomalyDetectorNode

# the executor wakes at least this often: rarely (about once in ten CI runs of the lifecycle tests),
# SIGINT left the main thread waiting in rcl for good although the handler had run; a wake re-checks
WAKE_S = 0.5


def _arguments(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='visual-anomaly-node', description=__doc__.split('\n')[0])
    parser.add_argument('--lifecycle', action='store_true', help='start the managed (lifecycle) node')
    parser.add_argument('--autostart', action='store_true', help='with --lifecycle: configure and activate it now')
    return parser.parse_args(args)


def _create(options: argparse.Namespace):
    if not options.lifecycle:
        return AnomalyDetectorNode()
    node = LifecycleAnomalyDetectorNode()
    if options.autostart:
        for transition in (node.trigger_configure, node.trigger_activate):
            if transition() != TransitionCallbackReturn.SUCCESS:
                node.destroy_node()
                raise ValueError(node.failure)
    return node


def _spin(node) -> None:
    """``rclpy.spin(node)``, but the wait for work never lasts longer than :data:`WAKE_S`: a pending SIGINT is
    then raised, or the shut-down context seen, even when the signal's wake-up of the wait was lost."""
    executor = rclpy.get_global_executor()
    executor.add_node(node)
    try:
        while executor.context.ok():
            executor.spin_once(timeout_sec=WAKE_S)
    finally:
        executor.remove_node(node)


def main(args: list[str] | None = None) -> int:
    """Console entry point ``visual-anomaly-node``; accepts the usual ``--ros-args``."""
    argv = sys.argv if args is None else args
    options = _arguments(rclpy.utilities.remove_ros_args(argv)[1:])
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.ALL)  # SIGINT and SIGTERM
    try:
        node = _create(options)
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
        _spin(node)
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
