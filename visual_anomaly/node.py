"""The ROS 2 node: camera frames in; anomaly score and flag, heatmap, overlay and diagnostics out.

A thin rclpy adapter over :mod:`visual_anomaly.core`. The subscription callback only keeps the
newest frame; a worker thread scores it, so a slow model never builds a backlog and every frame
that arrives is either processed or counted as dropped.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Vector3Stamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from visualization_msgs.msg import Marker

from .core import SCORE_KINDS, BundleError, FrameScorer, load_bundle
from .core.visualization import COLORMAPS, error_heatmap, overlay
from .image_conversion import FrameError, compressed_to_bgr, converter_name, image_to_array, to_bgr

HEATMAP_GAIN = 8.0  # heatmaps saturate at this multiple of the typical normal reconstruction error
WARN_THROTTLE_S = 5.0


def default_model_path() -> str:
    """The model shipped with the package (share/visual_anomaly/models/): ``default.pt``, or its
    ONNX export ``default.onnx`` where PyTorch is not installed."""
    try:
        import torch  # noqa: F401 - the .pt bundle needs it, so it is loaded either way

        name = 'default.pt'
    except ImportError:
        name = 'default.onnx'
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        return str(Path(get_package_share_directory('visual_anomaly')) / 'models' / name)
    except (ImportError, PackageNotFoundError, ValueError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        return str(Path(__file__).resolve().parents[1] / 'models' / name)


def _describe(text: str, read_only: bool = False, **ranges) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=text, read_only=read_only)
    if 'integer' in ranges:
        low, high = ranges['integer']
        descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
    if 'floating' in ranges:
        low, high = ranges['floating']
        descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    return descriptor


class AnomalyDetectorNode(Node):
    """Scores camera frames with a visual anomaly detector bundle."""

    def __init__(self, **kwargs) -> None:
        super().__init__('visual_anomaly', **kwargs)
        self._lock = threading.Condition()  # guards the pending frame and the statistics
        self._model_lock = threading.Lock()  # guards the detector and settings against parameter changes
        self._worker: threading.Thread | None = None
        self._stopping = False
        p = self._declare_parameters()
        self._model_path = p['model_path'] or default_model_path()
        self.detector: FrameScorer = load_bundle(self._model_path, p['device'], p['backend'])
        if p['decision_score']:
            self.detector.decision_score = p['decision_score']
        if math.isfinite(p['threshold']):
            self.detector.set_threshold(p['threshold'])
        size = self.detector.image_size
        self.detector.detect_resized(np.zeros((1, size, size, 3), np.uint8))  # build the backend now, not at frame 1
        self._settings = p
        self._history: deque[bool] = deque(maxlen=p['smoothing_window'])
        self._pending = None
        self._stats = {'received': 0, 'processed': 0, 'dropped': 0, 'rejected': 0, 'last_error': ''}
        self._latencies: deque[float] = deque(maxlen=300)
        self._arrivals: deque[float] = deque(maxlen=300)
        self._started = time.monotonic()
        self._silence_reason = ''
        self._frame_counter = 0

        reliability = QoSReliabilityPolicy.RELIABLE if p['reliable'] else QoSReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(
            depth=p['queue_depth'],
            reliability=reliability,
            durability=qos_profile_sensor_data.durability,
            history=qos_profile_sensor_data.history,
        )
        message_type = CompressedImage if p['compressed'] else Image
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        self._subscription = self.create_subscription(
            message_type, 'image', self._on_frame, qos, event_callbacks=events
        )
        self._anomaly_pub = self.create_publisher(Vector3Stamped, '~/anomaly', 10)
        self._heatmap_pub = self.create_publisher(Image, '~/heatmap', 2)
        self._overlay_pub = self.create_publisher(Image, '~/overlay', 2)
        self._marker_pub = self.create_publisher(Marker, '~/marker', 2) if p['publish_marker'] else None
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(p['diagnostics_period'], self._publish_diagnostics)
        self.create_timer(1.0, self._check_input)
        self._worker = threading.Thread(target=self._work, name='visual_anomaly_worker', daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'scoring {message_type.__name__} frames from {self._subscription.topic_name} with '
            f'{self._model_path} on {self.detector.device} '
            f'(decision: {self.detector.decision_score} > {self.detector.threshold_:.3f}; '
            f'conversion: {converter_name()})'
        )

    # -- parameters ------------------------------------------------------------------------------
    def _declare_parameters(self) -> dict:
        specs = {
            'model_path': (
                '',
                _describe(
                    'Model bundle: .pt, or .onnx (CPU, no PyTorch needed); empty = the model shipped with the package',
                    read_only=True,
                ),
            ),
            'device': ('auto', _describe('auto (CUDA when available), cpu, cuda or cuda:N', read_only=True)),
            'backend': (
                'auto',
                _describe('auto (ONNX Runtime on the CPU when installed, else PyTorch), torch or onnxruntime', True),
            ),
            'decision_score': (
                '',
                _describe(
                    f'Score the decision uses: {", ".join(SCORE_KINDS)} '
                    "(the OE scores need a bundle with an OE head); empty = the bundle's"
                ),
            ),
            'threshold': (
                float('nan'),
                _describe("Decision threshold on the decision score; NaN = the bundle's calibrated threshold"),
            ),
            'compressed': (
                False,
                _describe('Subscribe to sensor_msgs/CompressedImage (remap image:=.../compressed)', read_only=True),
            ),
            'reliable': (False, _describe('Reliable input QoS instead of best-effort sensor-data QoS', read_only=True)),
            'queue_depth': (
                5,
                _describe(
                    'Input QoS depth (frames DDS holds until the node takes them); the node scores only the '
                    'newest frame it holds and counts the others as dropped',
                    read_only=True,
                    integer=(1, 100),
                ),
            ),
            'publish_every_n': (1, _describe('Score every N-th received frame (1 = all)', integer=(1, 1000))),
            'heatmap_size': (
                256,
                _describe('Side of the published heatmap in pixels; 0 = the input frame size', integer=(0, 4096)),
            ),
            'heatmap_colormap': ('jet', _describe(f'Heatmap colormap: {", ".join(COLORMAPS)}')),
            'overlay_alpha': (0.5, _describe('Heatmap opacity in the overlay image', floating=(0.0, 1.0))),
            'smoothing_window': (
                1,
                _describe(
                    'Temporal smoothing: decide over the last N frames (1 = off)', read_only=True, integer=(1, 100)
                ),
            ),
            'smoothing_min_hits': (
                1,
                _describe('... and raise the flag when at least K of them are anomalous', integer=(1, 100)),
            ),
            'publish_marker': (
                False,
                _describe('Also publish a visualization_msgs/Marker text with the state', read_only=True),
            ),
            'diagnostics_period': (
                1.0,
                _describe('Seconds between /diagnostics messages', read_only=True, floating=(0.1, 60.0)),
            ),
            'no_input_warning': (
                5.0,
                _describe('Seconds without frames before the node explains why', read_only=True, floating=(0.5, 600.0)),
            ),
        }
        values = {}
        for name, (default, descriptor) in specs.items():
            values[name] = self.declare_parameter(name, default, descriptor).value
        problem = self._validate(values)
        if problem:
            raise ValueError(problem)
        return values

    def _validate(self, values: dict) -> str:
        if values['decision_score'] and values['decision_score'] not in SCORE_KINDS:
            return f'decision_score must be one of {SCORE_KINDS} or empty, got {values["decision_score"]!r}'
        if values['heatmap_colormap'] not in COLORMAPS:
            return f'heatmap_colormap must be one of {sorted(COLORMAPS)}, got {values["heatmap_colormap"]!r}'
        if values['smoothing_min_hits'] > values['smoothing_window']:
            return 'smoothing_min_hits must not exceed smoothing_window'
        if math.isinf(values['threshold']):
            return 'threshold must be finite (or NaN for the calibrated one)'
        return ''

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        values = dict(self._settings)
        values.update({parameter.name: parameter.value for parameter in parameters})
        problem = self._validate(values)
        if not problem and values['decision_score'] and values['decision_score'] not in self.detector.available_scores:
            problem = f'this model offers decision scores {self.detector.available_scores}'
        if problem:
            return SetParametersResult(successful=False, reason=problem)
        with self._model_lock:
            if values['decision_score']:
                self.detector.decision_score = values['decision_score']
            if math.isfinite(values['threshold']):
                self.detector.set_threshold(values['threshold'])
            elif 'threshold' in {parameter.name for parameter in parameters}:
                return SetParametersResult(
                    successful=False,
                    reason='the calibrated threshold cannot be restored at run time; set a number or restart the node',
                )
            self._settings = values
        return SetParametersResult(successful=True)

    # -- input -----------------------------------------------------------------------------------
    def _on_frame(self, msg) -> None:
        now = time.monotonic()
        with self._lock:
            self._stats['received'] += 1
            self._arrivals.append(now)
            self._frame_counter += 1
            if (self._frame_counter - 1) % self._settings['publish_every_n']:
                return
            if self._pending is not None:
                self._stats['dropped'] += 1
            self._pending = (msg, now)
            self._lock.notify()

    def _work(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                msg, arrived = self._pending
                self._pending = None
            try:
                self._process(msg, arrived)
            except FrameError as error:
                self._reject(str(error))
            except Exception as error:  # noqa: BLE001  (a frame must never kill the node)
                self._reject(f'{type(error).__name__}: {error}')

    def _reject(self, reason: str) -> None:
        with self._lock:
            self._stats['rejected'] += 1
            self._stats['last_error'] = reason
        self.get_logger().warning(f'frame rejected: {reason}', throttle_duration_sec=WARN_THROTTLE_S)

    def _process(self, msg, arrived: float) -> None:
        if isinstance(msg, CompressedImage):
            pixels, order = compressed_to_bgr(msg), 'bgr'
        else:
            pixels, order = image_to_array(msg)  # a view of the message: no full-size copy to score it
        with self._model_lock:
            result = self.detector.detect_one(pixels, color_order=order)
            settings = self._settings
        raw_flag = bool(result.is_anomaly[0])
        self._history.append(raw_flag)
        flag = sum(self._history) >= settings['smoothing_min_hits'] if settings['smoothing_window'] > 1 else raw_flag
        score, threshold = float(result.score[0]), float(result.threshold)
        anomaly = Vector3Stamped()
        anomaly.header = msg.header
        anomaly.vector.x, anomaly.vector.y, anomaly.vector.z = score, threshold, 1.0 if flag else 0.0
        self._anomaly_pub.publish(anomaly)
        want_heatmap = self._heatmap_pub.get_subscription_count() > 0
        want_overlay = self._overlay_pub.get_subscription_count() > 0
        if want_heatmap or want_overlay:
            size = settings['heatmap_size']
            heat = error_heatmap(
                result.error_map[0],
                HEATMAP_GAIN * self.detector.typical_normal_mse,
                (size, size) if size else pixels.shape[1::-1],
                settings['heatmap_colormap'],
            )
            if want_heatmap:
                self._heatmap_pub.publish(_bgr_message(heat, msg.header))
            if want_overlay:
                label = f'{"ANOMALY" if flag else "normal"} {score:.2f} / {threshold:.2f}'
                blended = overlay(to_bgr(pixels, order), heat, settings['overlay_alpha'], label, flag)
                self._overlay_pub.publish(_bgr_message(blended, msg.header))
        if self._marker_pub is not None:
            self._marker_pub.publish(_state_marker(msg.header, flag, score))
        with self._lock:
            self._stats['processed'] += 1
            self._latencies.append(time.monotonic() - arrived)

    # -- health ----------------------------------------------------------------------------------
    def _on_incompatible_qos(self, event) -> None:
        self.get_logger().warning(
            f'a publisher on {self._subscription.topic_name} offers QoS incompatible with ours '
            f'(policy {event.last_policy_kind.name}); '
            + ('set reliable:=false' if self._settings['reliable'] else 'check the publisher')
        )

    def _check_input(self) -> None:
        quiet_for = time.monotonic() - (self._arrivals[-1] if self._arrivals else self._started)
        if quiet_for < self._settings['no_input_warning']:
            self._silence_reason = ''
            return
        topic = self._subscription.topic_name
        wanted = 'sensor_msgs/msg/' + ('CompressedImage' if self._settings['compressed'] else 'Image')
        publishers = self.get_publishers_info_by_topic(topic)
        if not publishers:
            reason = f'no publisher on {topic}; remap the input, e.g. image:=/camera/image_raw'
        else:
            details = []
            for info in publishers:
                reliability = info.qos_profile.reliability.name.lower()
                details.append(f'{info.node_namespace.rstrip("/")}/{info.node_name} ({info.topic_type}, {reliability})')
            reason = f'{len(publishers)} publisher(s) on {topic}: {", ".join(details)}'
            if any(info.topic_type != wanted for info in publishers):
                reason += f'; this node expects {wanted} (parameter compressed)'
            elif self._settings['reliable'] and any(
                info.qos_profile.reliability == QoSReliabilityPolicy.BEST_EFFORT for info in publishers
            ):
                reason += '; a best-effort publisher cannot feed our reliable subscription (set reliable:=false)'
        if reason != self._silence_reason:  # say it once, and again only when the situation changes
            self._silence_reason = reason
            self.get_logger().warning(f'no frame received for {quiet_for:.0f} s: {reason}')

    def _publish_diagnostics(self) -> None:
        with self._lock:
            stats = dict(self._stats)
            latencies = np.array(self._latencies) * 1000.0
            arrivals = list(self._arrivals)
        now = time.monotonic()
        recent = [t for t in arrivals if now - t < 5.0]
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        status = DiagnosticStatus(name='visual_anomaly: detector', hardware_id=str(self.detector.device))
        if not arrivals or now - arrivals[-1] > self._settings['no_input_warning']:
            status.level, status.message = DiagnosticStatus.WARN, 'no input frames'
        elif stats['rejected'] and stats['last_error']:
            status.level, status.message = DiagnosticStatus.WARN, f'rejecting frames: {stats["last_error"]}'
        else:
            status.level, status.message = DiagnosticStatus.OK, 'scoring frames'
        values = {
            'model': self._model_path,
            'device': str(self.detector.device),
            'backend': self.detector.backend,
            'decision score': self.detector.decision_score,
            'threshold': f'{self.detector.threshold_:.4f}',
            'input rate (Hz)': f'{rate:.1f}',
            'processing p50 (ms)': f'{np.percentile(latencies, 50):.1f}' if latencies.size else '',
            'processing max (ms)': f'{latencies.max():.1f}' if latencies.size else '',
            'frames received': str(stats['received']),
            'frames processed': str(stats['processed']),
            'frames dropped': str(stats['dropped']),
            'frames rejected': str(stats['rejected']),
            'last error': stats['last_error'],
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)

    def destroy_node(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        super().destroy_node()


def _bgr_message(image: np.ndarray, header) -> Image:
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


def _state_marker(header, flag: bool, score: float) -> Marker:
    marker = Marker(header=header, ns='visual_anomaly', id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
    marker.text = f'{"ANOMALY" if flag else "normal"} {score:.2f}'
    marker.pose.position.z = 0.5
    marker.pose.orientation.w = 1.0
    marker.scale.z = 0.2
    marker.color.r, marker.color.g, marker.color.b, marker.color.a = (
        (1.0, 0.1, 0.1, 1.0) if flag else (0.1, 0.9, 0.1, 1.0)
    )
    return marker


def main(args: list[str] | None = None) -> int:
    """Console entry point ``visual-anomaly-node``; accepts the usual ``--ros-args``."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.ALL)  # SIGINT and SIGTERM
    try:
        node = AnomalyDetectorNode()
    except (BundleError, ValueError) as error:
        print(f'visual_anomaly: cannot start: {error}', file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except Exception:
        if rclpy.ok():
            raise
        return 0  # SIGINT or SIGTERM arrived while the node was starting
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
