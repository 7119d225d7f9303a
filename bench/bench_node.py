"""Node latency: processing time per frame in the node, and end to end over DDS.

    python bench/bench_node.py            # writes bench/results/node.json and prints tables
    python bench/bench_node.py --quick    # 300 frames per case, fewer rates

* processing: the node's frame path (message conversion, scoring, every publish) timed from its
  entry to the last publish, >= 2,000 frames of 640x480 rgb8 and of 1280x720 bgr8, without and
  with heatmap and overlay subscribers (those outputs are only computed when someone listens);
* end to end: the node as its own process, frames published over DDS (reliable QoS) at rising
  rates; latency from publishing a frame to receiving its flag, and the highest rate at which
  the node answered every frame without dropping any. This process publishes the frames, so it
  gives its Fast DDS participant a shared-memory segment that holds them, as a camera driver needs
  (``visual_anomaly.ros.dds``): with the default 512 KB one, a 640x480 frame comes 10-15 ms late
  (``--fastdds-defaults`` measures that).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from sensor_msgs.msg import Image
from std_msgs.msg import Header

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import corridor_frames, percentiles_ms, table, write_results  # noqa: E402

from visual_anomaly.ros.dds import use_large_frame_transports  # noqa: E402
from visual_anomaly.ros.live_replay import RELIABLE, OutputRecorder  # noqa: E402
from visual_anomaly.ros.node import AnomalyDetectorNode  # noqa: E402
from visual_anomaly.ros.process import replay_args, start_node_process  # noqa: E402

CASES = (('640x480 rgb8', 640, 480, 'rgb8'), ('1280x720 bgr8', 1280, 720, 'bgr8'))
RATES_HZ = (15, 30, 60, 100, 150, 200, 300)
FLOOR_RATES_HZ = (15, 30, 60)


def image_messages(width: int, height: int, encoding: str, count: int = 32) -> list[Image]:
    """Camera messages of corridor frames (some with anomalies) at the given size and encoding."""
    messages = []
    for frame in corridor_frames(count, 512):
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
        if encoding == 'bgr8':
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        msg = Image(height=height, width=width, encoding=encoding, step=width * 3)
        msg.data = frame.tobytes()
        msg.header.frame_id = 'camera'
        messages.append(msg)
    return messages


def processing_latency(frames: int, backend: str, model: str = '') -> dict:
    """Time the node's frame path in this process, per input case, without and with output subscribers."""
    overrides = [Parameter('device', value='cpu'), Parameter('backend', value=backend)]
    overrides += [Parameter('model_path', value=model)] if model else []
    node = AnomalyDetectorNode(parameter_overrides=overrides)
    listener = rclpy.create_node('bench_listener')
    results, rows = {}, []
    try:
        for listening in (False, True):
            if listening:
                for topic in ('/visual_anomaly/heatmap', '/visual_anomaly/overlay'):
                    listener.create_subscription(Image, topic, lambda msg: None, 2)
                deadline = time.monotonic() + 10
                while node.count_subscribers(node.output_topics['overlay']) == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
            for name, width, height, encoding in CASES:
                messages = image_messages(width, height, encoding)
                durations = []
                for i in range(frames + 20):
                    start = time.perf_counter()
                    node.process_frame(messages[i % len(messages)])
                    if i >= 20:  # warm-up
                        durations.append(time.perf_counter() - start)
                key = f'{name}{" + heatmap, overlay" if listening else ""}'
                results[key] = percentiles_ms(durations)
                rows.append([key, *(f'{results[key][q]:.2f}' for q in ('p50', 'p99', 'max')), len(durations)])
    finally:
        listener.destroy_node()
        node.destroy_node()
    print(table(rows, ['input', 'p50 ms', 'p99 ms', 'max ms', 'frames']))
    return results


def stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def publish_at_rate(
    publisher: Publisher, messages: list[Image], hz: float, count: int, after: int
) -> tuple[dict[int, float], float]:
    """Publish ``count`` of ``messages`` in turn at ``hz``, stamped ``after + 1``, ... (nanoseconds); returns
    each stamp's publish time (monotonic seconds) and the rate achieved."""
    published: dict[int, float] = {}
    start = time.monotonic()
    for i in range(count):
        delay = start + i / hz - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamp = after + i + 1
        msg = messages[stamp % len(messages)]
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        published[stamp] = time.monotonic()
        publisher.publish(msg)
    return published, count / (time.monotonic() - start)


def end_to_end(rates: tuple[int, ...], frames_per_rate: int, model: str | None = None) -> dict:
    """Publish 640x480 rgb8 frames over DDS into a node process at each rate; latency and drops."""
    messages = image_messages(640, 480, 'rgb8')
    recorder = OutputRecorder()
    process = start_node_process(*replay_args('/bench/image', compressed=False, model=model, device='cpu'))
    publisher = recorder.node.create_publisher(Image, '/bench/image', RELIABLE)
    results, rows, stamp = {}, [], 0
    try:
        deadline = time.monotonic() + 60
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f'the node did not subscribe: {process.stderr.read() if process.poll() else ""}')
            time.sleep(0.1)
        time.sleep(1.0)
        accounted = 0
        for hz in rates:
            before = recorder.snapshot().counters.get('dropped', 0)
            published, achieved = publish_at_rate(publisher, messages, hz, frames_per_rate, stamp)
            stamp += frames_per_rate
            accounted += frames_per_rate
            snap = recorder.wait_until_idle(accounted, idle_s=3.0, timeout_s=60.0)
            answered = [s for s in published if s in snap.answers]
            latency = [snap.answers[s][3] - published[s] for s in answered]
            dropped = snap.counters.get('dropped', 0) - before
            entry = {'achieved_hz': achieved, 'answered': len(answered), 'dropped': dropped,
                     'end_to_end_ms': percentiles_ms(latency) if latency else {}}  # fmt: skip
            results[str(hz)] = entry
            latency_cells = [f'{entry["end_to_end_ms"].get(q, float("nan")):.2f}' for q in ('p50', 'p99', 'max')]
            rows.append([hz, f'{achieved:.0f}', len(answered), dropped, *latency_cells])
            if dropped or len(answered) < frames_per_rate:
                break
    finally:
        process.terminate()
        process.wait(timeout=20)
        recorder.close()
    sustained = [int(hz) for hz, e in results.items() if not e['dropped'] and e['answered'] == frames_per_rate]
    print(table(rows, ['rate Hz', 'achieved', 'answered', 'dropped', 'p50 ms', 'p99 ms', 'max ms']))
    return {'by_rate': results, 'max_rate_without_drops_hz': max(sustained) if sustained else 0}


def transport_floor(rates: tuple[int, ...], frames_per_rate: int) -> dict:
    """The same 640x480 frames, rates and QoS as :func:`end_to_end`, into ``dds_echo.py`` (a process that
    answers each frame with its header and does nothing else): latency with no scoring, by rate."""
    messages = image_messages(640, 480, 'rgb8')
    node = rclpy.create_node('bench_floor')
    answers: dict[int, float] = {}
    on_echo = lambda header: answers.setdefault(stamp_ns(header), time.monotonic())  # noqa: E731
    node.create_subscription(Header, '/bench/floor/echo', on_echo, RELIABLE)
    publisher = node.create_publisher(Image, '/bench/floor/image', RELIABLE)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    echo_script = str(Path(__file__).with_name('dds_echo.py'))
    echo = subprocess.Popen([sys.executable, echo_script, '/bench/floor/image', '/bench/floor/echo'])
    results, rows, stamp = {}, [], 0
    try:
        deadline = time.monotonic() + 60
        while publisher.get_subscription_count() == 0 or node.count_publishers('/bench/floor/echo') == 0:
            if time.monotonic() > deadline or echo.poll() is not None:
                raise RuntimeError('the echo process did not start')
            time.sleep(0.1)
        time.sleep(1.0)
        for hz in rates:
            published, _ = publish_at_rate(publisher, messages, hz, frames_per_rate, stamp)
            stamp += frames_per_rate
            time.sleep(1.0)
            latency = [answers[s] - t for s, t in published.items() if s in answers]
            results[str(hz)] = {'answered': len(latency), 'end_to_end_ms': percentiles_ms(latency) if latency else {}}
            cells = [f'{results[str(hz)]["end_to_end_ms"].get(q, float("nan")):.2f}' for q in ('p50', 'p99', 'max')]
            rows.append([hz, len(latency), *cells])
    finally:
        echo.terminate()
        echo.wait(timeout=20)
        executor.shutdown()
        node.destroy_node()
    print('transport floor: a process that answers each frame without scoring it')
    print(table(rows, ['rate Hz', 'answered', 'p50 ms', 'p99 ms', 'max ms']))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=2000, help='frames per processing-latency case')
    parser.add_argument('--quick', action='store_true', help='300 frames per case, fewer rates')
    parser.add_argument('--backend', default='auto', help='the node parameter backend: auto, torch, onnxruntime')
    parser.add_argument('--no-dds', action='store_true', help='processing latency only')
    parser.add_argument('--model', default='', help='model bundle for the node (default: the shipped one)')
    parser.add_argument(
        '--fastdds-defaults', action='store_true', help="publish with Fast DDS's default 512 KB shared-memory segment"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(0, 101)))
    if not args.fastdds_defaults:
        use_large_frame_transports()
    print(f'FASTDDS_BUILTIN_TRANSPORTS={os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "")!r}')
    frames = 300 if args.quick else args.frames
    rclpy.init()
    try:
        processing = processing_latency(frames, args.backend, args.model)
    finally:
        rclpy.try_shutdown()
    results = {'backend': args.backend, 'model': args.model or 'shipped', 'processing_ms': processing}
    results['fastdds_builtin_transports'] = os.environ.get('FASTDDS_BUILTIN_TRANSPORTS', '')
    if not args.no_dds:
        rates, count = (RATES_HZ[:3], 150) if args.quick else (RATES_HZ, 600)
        results['dds'] = end_to_end(rates, count, args.model or None)
        rclpy.init()
        try:
            results['dds']['transport_floor'] = transport_floor(FLOOR_RATES_HZ, count)
        finally:
            rclpy.try_shutdown()
    name = 'node' if args.backend == 'auto' and not args.no_dds else f'node_{args.backend}'
    name += (f'_{Path(args.model).stem}' if args.model else '') + ('_fastdds_defaults' if args.fastdds_defaults else '')
    print(f'results: {write_results(name, results)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
