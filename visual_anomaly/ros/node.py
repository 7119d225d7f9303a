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
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker

from visual_anomaly.core import DetectionResult, FrameScorer, default_model_path, load_bundle, resize_frames
from visual_anomaly.core.bundle import save_recalibrated
from visual_anomaly.core.visualization import decision_label, error_heatmap, overlay
from visual_anomaly.data.image_conversion import FrameError, compressed_to_bgr, converter_name, image_to_array, to_bgr
from visual_anomaly.ros.calibration import CalibrationRun, next_wake
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

WARN_THROTTLE_S = 5.0


class AnomalyDetectorNode(Node):
    """Scores camera frames with a visual anomaly detector bundle."""

    def __init__(self, **kwargs) -> None:
        super().__init__('visual_anomaly', **kwargs)
        self._lock = threading.Condition()  # guards the pending frame and the statistics
        self._model_lock = threading.Lock()  # guards the detector and settings against parameter changes
        self._worker: threading.Thread | None = None
        self._calibration: CalibrationRun | None = None  # while ~/calibrate gathers frames
        self._stopping = False
        p = self._settings = declare_parameters(self)
        self._model_path = p['model_path'] or str(default_model_path())
        self.detector: FrameScorer = load_bundle(self._model_path, p['device'], p['backend'])
        configure_detector(self.detector, p)
        if not self.detector.is_calibrated:
            raise ValueError(
                f'{self._model_path}: the model has no threshold for its {self.detector.decision_score!r} score '
                '(calibrate it on normal frames, or set the threshold parameter)'
            )
        size = self.detector.image_size
        self.detector.detect_resized(np.zeros((1, size, size, 3), np.uint8))  # build the backend now, not at frame 1
        self._history: deque[bool] = deque(maxlen=p['smoothing_window'])
        self._pending = None
        self._stats = {**dict.fromkeys(FRAME_COUNTERS, 0), 'last_error': ''}
        self._latencies: deque[float] = deque(maxlen=300)
        self._arrivals: deque[float] = deque(maxlen=300)
        self._started = time.monotonic()
        self._silence_reason = ''
        self._frame_counter = 0
        self._calibration_status = 'not run'
        self._create_interfaces(p)
        self._worker = threading.Thread(target=self._work, name='visual_anomaly_worker', daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'scoring {self._subscription.msg_type.__name__} frames from {self._subscription.topic_name} with '
            f'{self._model_path} on {self.detector.device} '
            f'(decision: {self.detector.decision_score} > {self.detector.threshold_:.3f}; '
            f'conversion: {converter_name()})'
        )

    def _create_interfaces(self, p: dict) -> None:
        """The input subscription, the output publishers, the parameter callback and the timers."""
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
        # its own (reentrant) group: the other callbacks run while it waits, and a second call is answered
        self.create_service(Trigger, '~/calibrate', self._on_calibrate, callback_group=ReentrantCallbackGroup())
        self._calibrated = self.create_guard_condition(lambda: None)  # wakes the executor: a calibration ended
        self.create_timer(p['diagnostics_period'], self._publish_diagnostics)
        self.create_timer(1.0, self._check_input)

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
            pixels, order = compressed_to_bgr(msg), 'bgr'
        else:
            pixels, order = image_to_array(msg)  # a view of the message: no full-size copy to score it
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

    # -- calibration -----------------------------------------------------------------------------
    async def _on_calibrate(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = await self._calibrate()
        self._calibration_status = response.message
        if response.success:
            self.get_logger().info(f'~/calibrate: {response.message}')
        else:  # rclpy wants one severity per logging call site
            self.get_logger().warning(f'~/calibrate failed: {response.message}')
        return response

    async def _calibrate(self) -> tuple[bool, str]:
        """Wait for the worker to gather ``calibration_frames`` frames and re-calibrate; (success, what happened)."""
        with self._lock:
            if self._calibration is not None:
                busy = self._calibration
                return False, f'a calibration is already running ({busy.collected} of {busy.count} frames collected)'
            run = self._calibration = CalibrationRun(self._settings['calibration_frames'], dict(self._settings))
        self.get_logger().info(f'~/calibrate: treating the next {run.count} frames as normal')
        try:
            while not run.done:
                if run.collected < run.count and run.quiet_for() > run.settings['no_input_warning']:
                    run.cancel()
                    if run.collected < run.count:  # else the last frame came meanwhile: wait for its calibration
                        return False, (
                            f'no frame scored for {run.quiet_for():.0f} s after {run.collected} of {run.count} '
                            f'frames: {self._explain_silence()}'
                        )
                await next_wake()  # frames, timers and the end of the calibration wake the executor
        finally:
            with self._lock:
                self._calibration = None
        success, message, threshold = run.outcome
        if threshold is not None:
            self.set_parameters([Parameter('threshold', Parameter.Type.DOUBLE, threshold)])
        return success, message

    def _finish_calibration(self, run: CalibrationRun) -> None:
        """Re-calibrate on the frames of ``run`` and wake the waiting service."""
        try:
            run.finish(*self._recalibrate(run.frames(), run.settings))
        except Exception as error:  # noqa: BLE001  (a failed calibration must never kill the node)
            run.finish(False, f'calibration failed: {error}')
        self._calibrated.trigger()

    def _recalibrate(self, frames: np.ndarray, settings: dict) -> tuple[bool, str, float]:
        """Calibrate the detector on ``frames`` and write the bundle if asked; (success, message, threshold)."""
        previous = self.detector.calibration
        # calibrate() scores the frames while the worker goes on with the old calibration, then replaces it in
        # one step (or not at all when it fails)
        self.detector.calibrate(frames, fpr=settings['calibration_fpr'], strict=True)
        kind = self.detector.decision_score
        threshold = self.detector.calibration.thresholds[kind]
        message = f'{kind} score {threshold.describe()}'
        if kind in previous.thresholds:
            message += f' (was {previous.thresholds[kind].value:.4f})'
        with self._model_lock:  # no parameter change edits the calibration while it is written
            success, written = self._write_calibrated(settings, len(frames))
        return success, f'{message}; {written}', threshold.value

    def _write_calibrated(self, settings: dict, frames: int) -> tuple[bool, str]:
        """Write the re-calibrated bundle to ``calibration_output`` (when set); (success, what was done)."""
        output = settings['calibration_output']
        if not output:
            return True, 'not written (calibration_output is empty)'
        note = {'frames': frames, 'fpr': settings['calibration_fpr'], 'node': self.get_fully_qualified_name()}
        try:
            return True, f'wrote {save_recalibrated(self._model_path, output, self.detector, note)}'
        except (ValueError, OSError) as error:
            return False, f'in use but NOT written: {error}'

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
        reason = self._explain_silence()
        if reason != self._silence_reason:  # say it once, and again only when the situation changes
            self._silence_reason = reason
            self.get_logger().warning(f'no frame received for {quiet_for:.0f} s: {reason}')

    def _explain_silence(self) -> str:
        """Why no frame arrives: no publisher, a publisher of the wrong type, or one with incompatible QoS."""
        topic = self._subscription.topic_name
        wanted = 'sensor_msgs/msg/' + ('CompressedImage' if self._settings['compressed'] else 'Image')
        publishers = self.get_publishers_info_by_topic(topic)
        if not publishers:
            return f'no publisher on {topic}; remap the input, e.g. image:=/camera/image_raw'
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
        return reason

    def _publish_diagnostics(self) -> None:
        with self._lock:
            stats = dict(self._stats)
            latencies = np.array(self._latencies) * 1000.0
            arrivals = list(self._arrivals)
        now = time.monotonic()
        level, message = health(stats, arrivals, now, self._settings['no_input_warning'])
        values = {
            'model': self._model_path,
            'device': str(self.detector.device),
            'backend': self.detector.backend,
            'decision score': self.detector.decision_score,
            'threshold': f'{self.detector.threshold_:.4f}',
            'calibration': self._calibration_progress(),
            'input rate (Hz)': f'{input_rate(arrivals, now):.1f}',
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
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        super().destroy_node()
