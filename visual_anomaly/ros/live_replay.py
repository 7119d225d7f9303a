"""Live replay: play a rosbag2 camera stream through DDS into the running node, record what it says.

``replay_bag`` starts the node as its own process, publishes the bag's frames at their recorded
pace (times ``rate``), records the node's ``~/anomaly`` outputs and ``/diagnostics``, and reports
detection metrics against the bag's ground truth together with end-to-end latency (frame
published -> anomaly received), the node's processing time, and dropped or rejected frames.

``OutputRecorder`` is the recording half on its own, for a robot's ROS install:
``ros2 launch visual_anomaly visual_anomaly.launch.py image:=/camera/image_raw`` in one shell,
``visual-anomaly-bag record BAG --out DIR`` in another and ``ros2 bag play BAG`` in a third
give the same report (without the end-to-end latency, which needs the publish times).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Vector3Stamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from tqdm.auto import tqdm

from visual_anomaly.bags.io import ReadTally, camera_connections, deserialized, open_bag, raw_messages, stamp_ns
from visual_anomaly.bags.labels import interval_class_names, labels_from_intervals, read_labels
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES
from visual_anomaly.ros.messages import DIAGNOSTICS_NAME, FRAME_COUNTERS
from visual_anomaly.ros.process import replay_args, start_node_process

MESSAGE_CLASSES = {'sensor_msgs/msg/Image': Image, 'sensor_msgs/msg/CompressedImage': CompressedImage}
RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class Recording:
    """What the node said: per answered frame stamp -> (score, threshold, flag, wall time received)."""

    answers: dict[int, tuple[float, float, bool, float]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    processing_ms: dict[str, float] = field(default_factory=dict)


class OutputRecorder:
    """Records the node's ``anomaly`` outputs and diagnostics in a node of its own (own context)."""

    def __init__(self, anomaly_topic: str = '/visual_anomaly/anomaly', domain_id: int | None = None) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('visual_anomaly_recorder', context=self.context)
        self.recording = Recording()
        self._lock = threading.Lock()
        self.node.create_subscription(Vector3Stamped, anomaly_topic, self._on_anomaly, RELIABLE)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_anomaly(self, msg: Vector3Stamped) -> None:
        with self._lock:
            self.recording.answers[stamp_ns(msg.header)] = (
                msg.vector.x,
                msg.vector.y,
                msg.vector.z > 0.5,
                time.monotonic(),
            )

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name != DIAGNOSTICS_NAME:
                continue
            values = {kv.key: kv.value for kv in status.values}
            with self._lock:
                for key in FRAME_COUNTERS:
                    self.recording.counters[key] = int(values.get(f'frames {key}', 0))
                for key in ('p50', 'max'):
                    text = values.get(f'processing {key} (ms)', '')
                    if text:
                        self.recording.processing_ms[key] = float(text)

    def snapshot(self) -> Recording:
        with self._lock:
            return Recording(
                dict(self.recording.answers), dict(self.recording.counters), dict(self.recording.processing_ms)
            )

    def wait_until_idle(self, expected: int, idle_s: float = 3.0, timeout_s: float = 120.0) -> Recording:
        """Wait until the node accounted for ``expected`` frames, or nothing new arrived for ``idle_s``."""
        deadline, last_count, last_change = time.monotonic() + timeout_s, -1, time.monotonic()
        while time.monotonic() < deadline:
            snap = self.snapshot()
            counted = sum(snap.counters.get(k, 0) for k in ('processed', 'dropped', 'rejected'))
            if counted >= expected and len(snap.answers) >= snap.counters.get('processed', 0):
                return snap
            if len(snap.answers) != last_count:
                last_count, last_change = len(snap.answers), time.monotonic()
            elif time.monotonic() - last_change > max(idle_s, 2.5):  # diagnostics come once a second
                return snap
            time.sleep(0.1)
        return self.snapshot()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def play_bag(
    bag_path: Path,
    topic: str | None,
    rate: float,
    publisher_node,
    progress: bool = True,
    wait_for_subscriber_s: float = 60.0,
    subscriber_gone: Callable[[], bool] = lambda: False,
) -> tuple[dict[int, float], str]:
    """Publish the bag's frames at their recorded pace times ``rate``; return publish wall times by stamp.

    Waits up to ``wait_for_subscriber_s`` for a subscriber, or until ``subscriber_gone()`` says it
    will never come (e.g. the node process exited).
    """
    if not rate > 0:
        raise ValueError(f'rate must be positive, got {rate}')
    published: dict[int, float] = {}
    with open_bag(bag_path) as reader:
        topic, msgtype, connections = camera_connections(reader, Path(bag_path), topic)
        publisher = publisher_node.create_publisher(MESSAGE_CLASSES[msgtype], topic, RELIABLE)
        deadline = time.monotonic() + wait_for_subscriber_s
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline or subscriber_gone():
                raise TimeoutError(f'no subscriber appeared on {topic} within {wait_for_subscriber_s} s')
            time.sleep(0.1)
        time.sleep(0.5)  # let the node's matching complete on both sides
        start_wall, start_bag = time.monotonic(), None
        tally = ReadTally.of(Path(bag_path), connections, allow_partial=True)  # the caller checked the bag
        messages = raw_messages(reader, connections, tally)
        for conn, bag_time, rawdata in tqdm(
            messages, total=tally.expected, desc='replaying', unit='frame', disable=not progress
        ):
            msg = deserialized(reader, rawdata, conn.msgtype)
            if msg is None:
                continue  # damaged bytes: counted by bag_frame_stamps, not published
            start_bag = bag_time if start_bag is None else start_bag
            delay = start_wall + (bag_time - start_bag) / 1e9 / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            publisher.publish(bytes(rawdata))
            published[stamp_ns(msg.header)] = time.monotonic()
        return published, topic


def bag_frame_stamps(bag_path: Path, topic: str | None = None, allow_partial: bool = False) -> tuple[np.ndarray, str]:
    """Header stamps (ns) of the bag's camera frames, in bag order, and the topic they are on. A damaged
    bag (fewer messages readable than its index lists) is a ``BagError`` unless ``allow_partial``."""
    bag_path = Path(bag_path)
    with open_bag(bag_path) as reader:
        topic, msgtype, connections = camera_connections(reader, bag_path, topic)
        tally = ReadTally.of(bag_path, connections, allow_partial)
        stamps = []
        for _, _, raw in raw_messages(reader, connections, tally):
            if (msg := deserialized(reader, raw, msgtype)) is not None:
                stamps.append(stamp_ns(msg.header))
        tally.read = len(stamps)
        tally.finish()
    return np.array(stamps, dtype=np.int64), topic


def live_report(
    bag_path: Path,
    out: Path,
    recording: Recording,
    stamps: np.ndarray,
    topic: str,
    published: dict[int, float] | None = None,
    labels_csv: Path | None = None,
    rate: float = 1.0,
) -> dict:
    """Metrics of what the node said about the bag's frames; writes ``live_metrics.json`` and a timeline."""
    from visual_anomaly.evaluation.metrics import detection_metrics
    from visual_anomaly.evaluation.report import plot_score_timeline

    out.mkdir(parents=True, exist_ok=True)
    stamps = np.sort(stamps)
    if labels_csv:  # the user's own classes
        labels, names = labels_from_intervals(labels_csv, stamps), interval_class_names(labels_csv)
    else:  # ground truth written from a Hazards&Robots-layout dataset
        labels, names = read_labels(bag_path, stamps), dict(ANOMALY_CLASSES)
    answered = np.array([s in recording.answers for s in stamps])
    scores = np.array([recording.answers[s][0] if ok else np.nan for s, ok in zip(stamps, answered, strict=True)])
    threshold = float(np.median([a[1] for a in recording.answers.values()])) if recording.answers else float('nan')
    metrics = {
        'bag': str(bag_path),
        'topic': topic,
        'rate': rate,
        'frames_published': len(stamps),
        'frames_answered': int(answered.sum()),
        'node_counters': recording.counters,
        'frames_unaccounted': len(stamps)
        - sum(recording.counters.get(k, 0) for k in ('processed', 'dropped', 'rejected')),
        'processing_ms': recording.processing_ms,
        'end_to_end_ms': {},
        'detection': detection_metrics(scores[answered], labels[answered] > 0, threshold) if answered.any() else {},
    }
    if published:
        latency = np.array([(recording.answers[s][3] - published[s]) * 1000 for s in stamps[answered]])
        if latency.size:
            metrics['end_to_end_ms'] = {f'p{q}': float(np.percentile(latency, q)) for q in (50, 90, 99)}
            metrics['end_to_end_ms']['max'] = float(latency.max())
    times = (stamps - stamps[0]) / 1e9
    timeline = out / 'live_timeline.png'
    plot_score_timeline(times[answered], scores[answered], threshold, labels[answered], timeline, names)
    (out / 'live_metrics.json').write_text(json.dumps(metrics, indent=2))
    return metrics


def record_live(
    bag_path: Path,
    out: Path,
    topic: str | None = None,
    labels_csv: Path | None = None,
    idle_s: float = 5.0,
    timeout_s: float = 3600.0,
    allow_partial: bool = False,
) -> dict:
    """Record a running node while someone else plays ``bag_path`` (e.g. ``ros2 bag play``); report it.
    A damaged bag is refused before recording unless ``allow_partial``."""
    stamps, topic = bag_frame_stamps(bag_path, topic, allow_partial)
    recorder = OutputRecorder()
    try:
        deadline = time.monotonic() + timeout_s
        while not recorder.snapshot().answers and time.monotonic() < deadline:
            time.sleep(0.2)
        recording = recorder.wait_until_idle(len(stamps), idle_s=idle_s, timeout_s=timeout_s)
    finally:
        recorder.close()
    return live_report(bag_path, out, recording, stamps, topic, labels_csv=labels_csv)


def replay_bag(
    bag_path: Path,
    out: Path,
    model: str | None = None,
    topic: str | None = None,
    rate: float = 1.0,
    device: str = 'cpu',
    labels_csv: Path | None = None,
    progress: bool = True,
    allow_partial: bool = False,
) -> dict:
    """Replay ``bag_path`` through a node process; write and return live metrics (see module doc). A damaged
    bag is refused before the node starts unless ``allow_partial`` (then its readable frames are played)."""
    bag_frame_stamps(bag_path, topic, allow_partial)  # a damaged bag fails here, naming it and the counts
    out.mkdir(parents=True, exist_ok=True)
    with open_bag(bag_path) as reader:
        topic, msgtype, _ = camera_connections(reader, Path(bag_path), topic)
    recorder = OutputRecorder()
    node = start_node_process(*replay_args(topic, msgtype.endswith('CompressedImage'), model, device))
    try:
        published, _ = play_bag(
            bag_path, topic, rate, recorder.node, progress, subscriber_gone=lambda: node.poll() is not None
        )
        recording = recorder.wait_until_idle(len(published))
    except TimeoutError as error:
        failure = error
    else:
        failure = None
    finally:
        node.terminate()
        try:
            _, node_log = node.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
            _, node_log = node.communicate()
        recorder.close()
    if failure is not None:
        raise RuntimeError(f'{failure}; the node said: {node_log.strip()[-1000:] or "nothing"}') from failure
    metrics = live_report(
        bag_path, out, recording, np.array(list(published), dtype=np.int64), topic, published, labels_csv, rate
    )
    if node.returncode not in (0, None):
        metrics['node_log_tail'] = node_log[-2000:]
    return metrics


def format_live_summary(metrics: dict) -> str:
    """The text summary of a live report: frames accounted for, detection, processing time and latency."""
    detection = metrics['detection']
    counters = metrics['node_counters']
    latency = metrics['end_to_end_ms']
    lines = [
        f'frames: {metrics["frames_published"]} in the bag, {counters.get("processed", 0)} processed, '
        f'{counters.get("dropped", 0)} dropped, {counters.get("rejected", 0)} rejected, '
        f'{metrics["frames_unaccounted"]} unaccounted',
    ]
    if detection:
        lines.append(
            f"detection at the node's threshold: ROC-AUC {detection['roc_auc']:.3f}, F1 {detection['f1']:.3f}, "
            f'precision {detection["precision"]:.3f}, recall {detection["recall"]:.3f}'
        )
    if metrics['processing_ms']:
        lines.append('node processing (ms): ' + ', '.join(f'{k} {v:.1f}' for k, v in metrics['processing_ms'].items()))
    if latency:
        lines.append('end-to-end latency (ms): ' + ', '.join(f'{k} {v:.1f}' for k, v in latency.items()))
    return '\n'.join(lines)
