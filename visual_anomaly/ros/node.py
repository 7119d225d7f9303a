"""The ROS 2 node: camera frames in; anomaly score and flag, heatmap, overlay and diagnostics out.

A thin rclpy adapter over :mod:`visual_anomaly.core`. The subscription callback only keeps the
newest frame; a worker thread scores it, so a slow model never builds a backlog and every frame
that arrives is either processed or counted as dropped. Its parameters are in
:mod:`visual_anomaly.ros.parameters`, the messages it builds in :mod:`visual_anomaly.ros.messages`;
the console entry point is :mod:`visual_anomaly.cli.node`.

The ``~/calibrate`` service (``std_srvs/Trigger``) re-calibrates the detector on the next
``calibration_frames`` frames it scores, all treated as normal, and answers when done: the
threshold, the frame count and the false-positive interval, or why it failed (no frames for
``no_input_warning`` seconds, say). The worker thread collects the frames, a thread of its own
re-calibrates on them while the worker goes on scoring, and the service callback is a coroutine
that the executor resumes whenever it wakes: waiting blocks nothing, and any executor serves it.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Vector3Stamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker

from visual_anomaly.core import DetectionResult, FrameScorer, default_model_path, load_bundle, resize_frames
from visual_anomaly.core.device import release_device_memory
from visual_anomaly.core.visualization import decision_label, error_heatmap, overlay
from visual_anomaly.data.image_conversion import FrameError, compressed_to_bgr, converter_name, image_to_array, to_bgr
from visual_anomaly.ros.calibration import CalibrationRun, CalibrationService
from visual_anomaly.ros.messages import (
    FRAME_COUNTERS,
    anomaly_vector,
    bgr_image,
    diagnostics,
    health,
    input_rate,
    state_marker,
)
from visual_anomaly.ros.parameters import check_update, configure_detector, declare_parameters
from visual_anomaly.ros.qos import StampGaps, explain_silence, input_qos, input_reliability, policy_name

WARN_THROTTLE_S = 5.0


class DetectorNodeBase(CalibrationService):
    """The detector's work on a node, shared by the plain and the lifecycle node: start and stop scoring.

    Mixed in before an rclpy ``Node`` (or lifecycle ``Node``); :meth:`start_detector` loads the model
    and creates every subscription, publisher, service and timer, :meth:`stop_detector` destroys them
    and releases the model and its device memory.
    """

    def _init_detector(self) -> None:
        self._lock = threading.Condition()  # guards the pending frame and the statistics
        self._model_lock = threading.Lock()  # guards the detector and settings against parameter changes
        self._worker: threading.Thread | None = None
        self._calibration: CalibrationRun | None = None  # while ~/calibrate gathers frames
        self._entities: list = []  # (destroy function, entity) of everything start_detector created
        self._parameter_callback = None
        self._stopping = False
        self.detector: FrameScorer | None = None

    def start_detector(self, p: dict) -> None:
        """Load the model of the settings ``p`` and start scoring; ValueError/OSError say why it cannot."""
        self._settings = p
        self._model_path = p['model_path'] or str(default_model_path())
        detector = load_bundle(self._model_path, p['device'], p['backend'])
        configure_detector(detector, p)
        if not detector.is_calibrated:
            raise ValueError(
                f'{self._model_path}: the model has no threshold for its {detector.decision_score!r} score '
                '(calibrate it on normal frames, or set the threshold parameter)'
            )
        self.detector = detector
        self._history: deque[bool] = deque(maxlen=p['smoothing_window'])
        self._pending = None
        self._stopping = False
        self._stats = {**dict.fromkeys(FRAME_COUNTERS, 0), 'last_error': ''}
        self._gaps = StampGaps()
        self._lost_reported = 0  # frames lost in transport at the last diagnostics
        self._latencies: deque[float] = deque(maxlen=300)
        self._arrivals: deque[float] = deque(maxlen=300)
        self._started = time.monotonic()
        self._silence_reason = ''
        self._frame_counter = 0
        self._calibration_status = 'not run'
        self._create_interfaces(p)
        worker = threading.Thread(target=self._work, name='visual_anomaly_worker', daemon=True)
        worker.start()
        self._worker = worker  # only once started: a signal inside start() leaves nothing to join
        self.get_logger().info(
            f'scoring {self._subscription.msg_type.__name__} frames from {self._subscription.topic_name} with '
            f'{self._model_path} on {detector.device} '
            f'(decision: {detector.decision_score} > {detector.threshold_:.3f}; '
            f'input QoS: {self._input_qos_text()}; conversion: {converter_name()})'
        )

    def stop_detector(self) -> None:
        """Stop scoring: the worker ends, every interface is destroyed, the model and its memory released."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None
        for destroy, entity in reversed(self._entities):
            destroy(entity)
        self._entities.clear()
        if self._parameter_callback is not None:
            self.remove_on_set_parameters_callback(self._parameter_callback)
            self._parameter_callback = None
        if self.detector is not None:
            device, self.detector = self.detector.device, None
            release_device_memory(device)

    def _keep(self, destroy, entity):
        self._entities.append((destroy, entity))
        return entity

    def _create_interfaces(self, p: dict) -> None:
        """The input subscription, the output publishers, the parameter callback and the timers."""
        self._subscribe(input_reliability(p['reliability'], self.get_publishers_info_by_topic(self._input_topic())))
        publisher = self.create_publisher
        self._anomaly_pub = self._keep(self.destroy_publisher, publisher(Vector3Stamped, '~/anomaly', 10))
        self._heatmap_pub = self._keep(self.destroy_publisher, publisher(Image, '~/heatmap', 2))
        self._overlay_pub = self._keep(self.destroy_publisher, publisher(Image, '~/overlay', 2))
        self._marker_pub = (
            self._keep(self.destroy_publisher, publisher(Marker, '~/marker', 2)) if p['publish_marker'] else None
        )
        self._diagnostics_pub = self._keep(self.destroy_publisher, publisher(DiagnosticArray, '/diagnostics', 10))
        self._parameter_callback = self.add_on_set_parameters_callback(self._on_set_parameters)
        # its own (reentrant) group: the other callbacks run while it waits, and a second call is answered
        group = ReentrantCallbackGroup()
        self._keep(
            self.destroy_service, self.create_service(Trigger, '~/calibrate', self._on_calibrate, callback_group=group)
        )
        # wakes the executor: a calibration ended
        self._calibrated = self._keep(self.destroy_guard_condition, self.create_guard_condition(lambda: None))
        self._keep(self.destroy_timer, self.create_timer(p['diagnostics_period'], self._publish_diagnostics))
        self._keep(self.destroy_timer, self.create_timer(1.0, self._check_input))

    def _input_topic(self) -> str:
        return self.resolve_topic_name('image')

    def _subscribe(self, reliability) -> None:
        """(Re)create the input subscription with ``reliability``."""
        current = getattr(self, '_subscription', None)
        if current is not None and (self.destroy_subscription, current) in self._entities:
            self._entities.remove((self.destroy_subscription, current))
            self.destroy_subscription(current)
        message_type = CompressedImage if self._settings['compressed'] else Image
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos, message_lost=self._on_lost)
        qos = input_qos(reliability, self._settings['queue_depth'])
        subscription = self.create_subscription(message_type, 'image', self._on_frame, qos, event_callbacks=events)
        self._subscription = self._keep(self.destroy_subscription, subscription)

    def _input_qos_text(self) -> str:
        name = policy_name(self._subscription.qos_profile.reliability)
        return f'{name} (matching the publishers)' if self._settings['reliability'] == 'auto' else name

    @property
    def output_topics(self) -> dict[str, str]:
        """The resolved topics of the node's outputs: anomaly, heatmap, overlay (and marker when published)."""
        publishers = {'anomaly': self._anomaly_pub, 'heatmap': self._heatmap_pub, 'overlay': self._overlay_pub}
        if self._marker_pub is not None:
            publishers['marker'] = self._marker_pub
        return {name: publisher.topic_name for name, publisher in publishers.items()}

    # -- parameters ------------------------------------------------------------------------------
    def _on_set_parameters(self, parameters) -> SetParametersResult:
        values, problem = check_update(self._settings, parameters, self.detector.available_scores)
        if problem:
            return SetParametersResult(successful=False, reason=problem)
        with self._model_lock:
            configure_detector(self.detector, values)
            self._settings = values
        return SetParametersResult(successful=True)

    # -- input -----------------------------------------------------------------------------------
    def _on_frame(self, msg) -> None:
        now = time.monotonic()
        stamp = msg.header.stamp
        with self._lock:
            self._stats['received'] += 1
            self._gaps.add(stamp.sec * 1_000_000_000 + stamp.nanosec)
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
                self.process_frame(msg, arrived)
            except FrameError as error:
                self._reject(str(error))
            except Exception as error:  # noqa: BLE001  (a frame must never kill the node)
                self._reject(f'{type(error).__name__}: {error}')

    def _reject(self, reason: str) -> None:
        with self._lock:
            self._stats['rejected'] += 1
            self._stats['last_error'] = reason
        self.get_logger().warning(f'frame rejected: {reason}', throttle_duration_sec=WARN_THROTTLE_S)

    def process_frame(self, msg: Image | CompressedImage, arrived: float | None = None) -> None:
        """Score ``msg`` and publish its outputs now, in the caller's thread (the worker's frame path).

        ``arrived`` (``time.monotonic()`` of its arrival; default now) is where its processing time
        starts. Raises :class:`FrameError` for a frame that cannot be used.
        """
        arrived = time.monotonic() if arrived is None else arrived
        if isinstance(msg, CompressedImage):
            pixels, order = compressed_to_bgr(msg, self._settings['max_frame_pixels']), 'bgr'
        else:
            pixels, order = image_to_array(
                msg, self._settings['max_frame_pixels']
            )  # a view of the message: no full-size copy to score it
        resized = resize_frames([pixels], order, self.detector.image_size)
        with self._model_lock:
            result = self.detector.detect_resized(resized)
            settings = self._settings
        raw_flag = bool(result.is_anomaly[0])
        self._history.append(raw_flag)
        flag = sum(self._history) >= settings['smoothing_min_hits'] if settings['smoothing_window'] > 1 else raw_flag
        score, threshold = float(result.score[0]), float(result.threshold)
        self._anomaly_pub.publish(anomaly_vector(msg.header, score, threshold, flag))
        self._publish_images(msg.header, pixels, order, result, flag, settings)
        if self._marker_pub is not None:
            self._marker_pub.publish(state_marker(msg.header, flag, score))
        with self._lock:
            self._stats['processed'] += 1
            self._latencies.append(time.monotonic() - arrived)
        run = self._calibration
        if run is not None and run.add(resized[0]):  # the last frame: calibrate beside the worker
            threading.Thread(target=self._finish_calibration, args=(run,), name='visual_anomaly_calibration').start()

    def _publish_images(
        self, header, pixels: np.ndarray, order: str, result: DetectionResult, flag: bool, settings: dict
    ) -> None:
        """Heatmap and overlay of the frame's one ``result``, computed only when someone listens to them."""
        want_heatmap = self._heatmap_pub.get_subscription_count() > 0
        want_overlay = self._overlay_pub.get_subscription_count() > 0
        if not (want_heatmap or want_overlay):
            return
        size = settings['heatmap_size']
        heat = error_heatmap(
            result.anomaly_map[0],
            self.detector.heatmap_scale,
            (size, size) if size else pixels.shape[1::-1],
            settings['heatmap_colormap'],
        )
        if want_heatmap:
            self._heatmap_pub.publish(bgr_image(heat, header))
        if want_overlay:
            label = decision_label(flag, float(result.score[0]), float(result.threshold))
            blended = overlay(to_bgr(pixels, order), heat, settings['overlay_alpha'], label, flag)
            self._overlay_pub.publish(bgr_image(blended, header))

    # -- health ----------------------------------------------------------------------------------
    def _on_incompatible_qos(self, event) -> None:
        self.get_logger().warning(
            f'a publisher on {self._subscription.topic_name} offers QoS incompatible with ours '
            f'(policy {event.last_policy_kind.name}); '
            + ('check the publisher' if self._settings['reliability'] == 'auto' else 'try reliability:=auto')
        )

    def _on_lost(self, event) -> None:
        with self._lock:
            self._stats['lost_reported'] = event.total_count

    def _check_input(self) -> None:
        self._match_publishers()
        quiet_for = time.monotonic() - (self._arrivals[-1] if self._arrivals else self._started)
        if quiet_for < self._settings['no_input_warning']:
            self._silence_reason = ''
            return
        reason = self._explain_silence()
        if reason != self._silence_reason:  # say it once, and again only when the situation changes
            self._silence_reason = reason
            self.get_logger().warning(f'no frame received for {quiet_for:.0f} s: {reason}')

    def _match_publishers(self) -> None:
        """With reliability auto, follow the publishers' reliability when it changes."""
        if self._settings['reliability'] != 'auto':
            return
        wanted = input_reliability('auto', self.get_publishers_info_by_topic(self._subscription.topic_name))
        if wanted != self._subscription.qos_profile.reliability:
            self._subscribe(wanted)
            self.get_logger().info(f'input QoS now {policy_name(wanted)}, matching the publishers')

    def _explain_silence(self) -> str:
        """Why no frame arrives: no publisher, a publisher of the wrong type or QoS, or frames lost on the way."""
        wanted = 'sensor_msgs/msg/' + ('CompressedImage' if self._settings['compressed'] else 'Image')
        with self._lock:
            lost = self._lost_in_transport()
        return explain_silence(
            self._subscription.topic_name,
            self.get_publishers_info_by_topic(self._subscription.topic_name),
            wanted,
            self._subscription.qos_profile.reliability,
            lost,
        )

    def _lost_in_transport(self) -> int:
        """Frames lost before the node: what DDS reported, or what the stamps show, whichever is more."""
        return max(self._stats.get('lost_reported', 0), self._gaps.lost)

    def _publish_diagnostics(self) -> None:
        with self._lock:
            stats = dict(self._stats)
            latencies = np.array(self._latencies) * 1000.0
            arrivals = list(self._arrivals)
            lost = self._lost_in_transport()
        lost_recently, self._lost_reported = lost - self._lost_reported, lost
        now = time.monotonic()
        level, message = health(stats, arrivals, now, self._settings['no_input_warning'], lost_recently)
        values = {
            'node': self.get_fully_qualified_name(),
            'model': self._model_path,
            'device': str(self.detector.device),
            'backend': self.detector.backend,
            'decision score': self.detector.decision_score,
            'threshold': f'{self.detector.threshold_:.4f}',
            'calibration': self._calibration_progress(),
            'input rate (Hz)': f'{input_rate(arrivals, now):.1f}',
            'input QoS': self._input_qos_text(),
            'frames lost in transport': str(lost),
            'processing p50 (ms)': f'{np.percentile(latencies, 50):.1f}' if latencies.size else '',
            'processing max (ms)': f'{latencies.max():.1f}' if latencies.size else '',
            **{f'frames {counter}': str(stats[counter]) for counter in FRAME_COUNTERS},
            'last error': stats['last_error'],
        }
        stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(diagnostics(stamp, str(self.detector.device), level, message, values))

    def _calibration_progress(self) -> str:
        run = self._calibration
        if run is not None:
            return f'collecting frames for ~/calibrate: {run.collected} of {run.count}'
        return self._calibration_status

    def destroy_node(self) -> None:
        self.stop_detector()
        super().destroy_node()


class AnomalyDetectorNode(DetectorNodeBase, Node):
    """The detector node: reads its parameters, loads the model and scores frames from the start."""

    def __init__(self, **kwargs) -> None:
        super().__init__('visual_anomaly', **kwargs)
        self._init_detector()
        self.start_detector(declare_parameters(self))
