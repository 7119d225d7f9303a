"""The detector node as a separate process, driven over real DDS by a test node; and its start-up, in process."""

from __future__ import annotations

import math
import signal
import threading

import cv2
import numpy as np
import pytest
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Vector3Stamped
from hostile_bundles import onnx_allocating_at_run_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters, SetParametersAtomically
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import DOMAIN_ID, RELIABLE, REPO, image_message, stop_node
from sensor_msgs.msg import CompressedImage, Image

from training.world import Anomaly, CorridorWorld
from visual_anomaly.core import (
    AutoencoderConfig,
    ConvAutoencoder,
    Detector,
    load_bundle,
    read_bundle_metadata,
    save_bundle,
)
from visual_anomaly.data.image_conversion import FrameError, image_to_bgr
from visual_anomaly.ros.node import AnomalyDetectorNode
from visual_anomaly.ros.process import start_node_process

pytestmark = pytest.mark.slow  # a node process over DDS

MODEL = REPO / 'models' / 'default.pt'
BASE_ARGS = ('-p', 'reliability:=reliable', '-p', 'queue_depth:=100', '-p', 'device:=cpu')


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """A 640x480 corridor frame and the same view with a person 2 m ahead (the default model's world)."""
    world = CorridorWorld(seed=0, image_size=256)
    pose = world.random_pose(np.random.default_rng(3), env=0, camera_z=20.0)
    person = Anomaly(label=7, x=0.0, z=22.0, scale=1.0, seed=5)
    normal, _ = world.render_pose(np.random.default_rng(0), 0, pose)
    anomalous, _ = world.render_pose(np.random.default_rng(0), 0, pose, [person])
    return tuple(cv2.resize(f, (640, 480), interpolation=cv2.INTER_LINEAR) for f in (normal, anomalous))


@pytest.fixture(scope='module')
def node(tester):
    process = start_node_process(*BASE_ARGS, '-p', 'heatmap_size:=128', '-r', 'image:=/test/image', cwd=REPO)
    publisher = tester.node.create_publisher(Image, '/test/image', RELIABLE)
    assert tester.spin_until(lambda: publisher.get_subscription_count() > 0, 30), process.stderr
    yield process, publisher
    code, err = stop_node(process)
    assert code == 0 and 'Traceback' not in err, err


def _send_and_wait(tester, publisher, msg, inbox, timeout=15.0):
    before = len(inbox)
    publisher.publish(msg)
    assert tester.spin_until(lambda: len(inbox) > before, timeout), 'no answer from the node'
    return inbox[-1]


def test_outputs_carry_the_input_header_and_flag_the_anomaly(tester, node):
    _, publisher = node
    anomaly = tester.collect(Vector3Stamped, '/visual_anomaly/anomaly', RELIABLE)
    heatmaps = tester.collect(Image, '/visual_anomaly/heatmap', RELIABLE)
    overlays = tester.collect(Image, '/visual_anomaly/overlay', RELIABLE)
    tester.spin_for(1.0)  # let the output subscriptions match
    normal, anomalous = _scene()
    detector = load_bundle(MODEL, device='cpu')
    for sec, frame, expected_flag in ((11, normal, 0.0), (12, anomalous, 1.0)):
        answer = _send_and_wait(tester, publisher, image_message(frame, sec, 500, 'front_camera'), anomaly)
        assert (answer.header.stamp.sec, answer.header.stamp.nanosec) == (sec, 500)
        assert answer.header.frame_id == 'front_camera'
        expected = detector.detect_one(frame, 'rgb')
        assert answer.vector.x == pytest.approx(float(expected.score[0]), abs=1e-4)
        assert answer.vector.y == pytest.approx(detector.threshold_, abs=1e-6)
        assert answer.vector.z == expected_flag
    assert tester.spin_until(lambda: len(heatmaps) >= 2 and len(overlays) >= 2)
    assert [h.header.stamp.sec for h in heatmaps[-2:]] == [11, 12]
    assert (heatmaps[-1].width, heatmaps[-1].height, heatmaps[-1].encoding) == (128, 128, 'bgr8')
    assert (overlays[-1].width, overlays[-1].height, overlays[-1].header.frame_id) == (640, 480, 'front_camera')


_ENCODINGS = st.sampled_from(['rgb8', 'bgr8', 'mono8', 'mono16', 'yuv422', 'bgra8', '32FC1', 'jpeg', ''])


@st.composite
def _malformed_images(draw):
    width, height = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    msg = Image(width=width, height=height, encoding=draw(_ENCODINGS), step=draw(st.integers(0, 200)))
    msg.data = draw(st.binary(max_size=3000))
    return msg


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=_malformed_images())
def test_malformed_images_are_rejected_and_the_node_keeps_answering(tester, node, bad):
    process, publisher = node
    anomaly = tester.received.get('/visual_anomaly/anomaly') or tester.collect(
        Vector3Stamped, '/visual_anomaly/anomaly', RELIABLE
    )
    try:
        image_to_bgr(bad)
        valid = True
    except FrameError:
        valid = False
    bad.header.stamp.sec = 900
    earlier = len(anomaly)  # answers to earlier examples (also stamped 900) may still be arriving
    publisher.publish(bad)
    tester.spin_for(0.2)  # let the node take it before the next frame replaces it
    good = image_message(np.full((48, 64, 3), 120, np.uint8), 901)
    answer = _send_and_wait(tester, publisher, good, anomaly)
    assert process.poll() is None
    assert answer.header.stamp.sec == 901
    answered_bad = any(a.header.stamp.sec == 900 for a in anomaly[earlier:])
    assert answered_bad == valid


def _set_parameter(tester, name, value, kind):
    client = tester.node.create_client(SetParameters, '/visual_anomaly/set_parameters')
    assert client.wait_for_service(timeout_sec=10)
    field = {
        ParameterType.PARAMETER_DOUBLE: 'double_value',
        ParameterType.PARAMETER_STRING: 'string_value',
        ParameterType.PARAMETER_INTEGER: 'integer_value',
    }[kind]
    value_msg = ParameterValue(type=kind, **{field: value})
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=value_msg)]))
    assert tester.spin_until(future.done, 10)
    tester.node.destroy_client(client)
    return future.result().results[0]


def test_a_refused_atomic_request_changes_nothing(tester, node):
    _, publisher = node
    anomaly = tester.received.get('/visual_anomaly/anomaly') or tester.collect(
        Vector3Stamped, '/visual_anomaly/anomaly', RELIABLE
    )
    normal, _ = _scene()
    before = _send_and_wait(tester, publisher, image_message(normal, 31), anomaly)
    client = tester.node.create_client(SetParametersAtomically, '/visual_anomaly/set_parameters_atomically')
    assert client.wait_for_service(timeout_sec=10)
    request = SetParametersAtomically.Request(
        parameters=[
            Parameter(
                name='decision_score',
                value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value='reconstruction'),
            ),
            Parameter(
                name='threshold', value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=math.nan)
            ),
        ]
    )
    future = client.call_async(request)
    assert tester.spin_until(future.done, 10)
    tester.node.destroy_client(client)
    assert not future.result().result.successful
    after = _send_and_wait(tester, publisher, image_message(normal, 32), anomaly)
    assert (after.vector.x, after.vector.y) == pytest.approx((before.vector.x, before.vector.y))


def test_runtime_parameters_are_validated(tester, node):
    _, publisher = node
    anomaly = tester.received.get('/visual_anomaly/anomaly') or tester.collect(
        Vector3Stamped, '/visual_anomaly/anomaly', RELIABLE
    )
    normal, _ = _scene()
    bogus = _set_parameter(tester, 'decision_score', 'magic', ParameterType.PARAMETER_STRING)
    assert not bogus.successful and 'decision_score' in bogus.reason
    colormap = _set_parameter(tester, 'heatmap_colormap', 'rainbow-unicorn', ParameterType.PARAMETER_STRING)
    assert not colormap.successful and 'colormap' in colormap.reason
    read_only = _set_parameter(tester, 'smoothing_window', 5, ParameterType.PARAMETER_INTEGER)
    assert not read_only.successful
    out_of_range = _set_parameter(tester, 'overlay_alpha', 3.0, ParameterType.PARAMETER_DOUBLE)
    assert not out_of_range.successful
    lowered = _set_parameter(tester, 'threshold', -100.0, ParameterType.PARAMETER_DOUBLE)
    assert lowered.successful, lowered.reason
    answer = _send_and_wait(tester, publisher, image_message(normal, 21), anomaly)
    assert (answer.vector.y, answer.vector.z) == (-100.0, 1.0)
    kind = _set_parameter(tester, 'decision_score', 'reconstruction', ParameterType.PARAMETER_STRING)
    assert kind.successful, kind.reason
    restored = _set_parameter(tester, 'threshold', 1e6, ParameterType.PARAMETER_DOUBLE)
    assert restored.successful
    answer = _send_and_wait(tester, publisher, image_message(normal, 22), anomaly)
    assert answer.vector.z == 0.0


def test_a_burst_is_fully_accounted_for_and_the_newest_frame_scored(tester, node):
    _, publisher = node
    anomaly = tester.received.get('/visual_anomaly/anomaly') or tester.collect(
        Vector3Stamped, '/visual_anomaly/anomaly', RELIABLE
    )
    diagnostics = tester.collect(DiagnosticArray, '/diagnostics', 10)

    def counters():
        values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
        return {k: int(values[f'frames {k}']) for k in ('received', 'processed', 'dropped', 'rejected')}

    assert tester.spin_until(lambda: len(diagnostics) > 0)
    before = counters()
    frame = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    start = len(anomaly)
    for i in range(60):
        publisher.publish(image_message(frame, 1000 + i))
    assert tester.spin_until(lambda: any(a.header.stamp.sec == 1059 for a in anomaly[start:]), 30)
    tester.spin_for(2.5)
    after = counters()
    delta = {k: after[k] - before[k] for k in after}
    assert delta['received'] == 60
    assert delta['processed'] + delta['dropped'] + delta['rejected'] == 60
    assert len(anomaly) - start == delta['processed']
    stamps = [a.header.stamp.sec for a in anomaly[start:]]
    assert stamps == sorted(stamps)


def test_compressed_input(tester):
    process = start_node_process(*BASE_ARGS, '-p', 'compressed:=true', '-r', 'image:=/test/compressed', cwd=REPO)
    publisher = tester.node.create_publisher(CompressedImage, '/test/compressed', RELIABLE)
    anomaly = tester.received.get('/visual_anomaly/anomaly') or tester.collect(
        Vector3Stamped, '/visual_anomaly/anomaly', RELIABLE
    )
    try:
        assert tester.spin_until(lambda: publisher.get_subscription_count() > 0, 30)
        tester.spin_for(1.0)
        garbage = CompressedImage(format='jpeg')
        garbage.data = b'\xff\xd8 definitely not a jpeg'
        garbage.header.stamp.sec = 300
        publisher.publish(garbage)
        ok, jpeg = cv2.imencode('.jpg', _scene()[0])
        msg = CompressedImage(format='jpeg')
        msg.data = jpeg.tobytes()
        msg.header.stamp.sec = 301
        answer = _send_and_wait(tester, publisher, msg, anomaly)
        assert answer.header.stamp.sec == 301
        assert 300 not in [a.header.stamp.sec for a in anomaly]
    finally:
        code, err = stop_node(process, signal.SIGTERM)
        tester.node.destroy_publisher(publisher)
    assert code == 0 and 'Traceback' not in err, err
    assert 'frame rejected: cannot decode compressed frame' in err


def test_the_node_runs_without_pytorch(tester, without_pytorch):
    """Where PyTorch is not installed the node loads the shipped .onnx bundle and decides as the .pt one does."""
    process = start_node_process(
        *BASE_ARGS, '-r', '__ns:=/robot', '-r', 'image:=/test/no_torch', env=without_pytorch, cwd=REPO
    )
    publisher = tester.node.create_publisher(Image, '/test/no_torch', RELIABLE)
    anomaly = tester.collect(Vector3Stamped, '/robot/visual_anomaly/anomaly', RELIABLE)
    try:
        assert tester.spin_until(lambda: publisher.get_subscription_count() > 0, 30)
        tester.spin_for(1.0)
        detector = load_bundle(MODEL, device='cpu', backend='torch')
        for sec, frame, expected_flag in zip((21, 22), _scene(), (0.0, 1.0), strict=True):
            answer = _send_and_wait(tester, publisher, image_message(frame, sec), anomaly)
            assert (answer.header.stamp.sec, answer.vector.z) == (sec, expected_flag)
            expected = float(detector.detect_one(frame, 'rgb').score[0])
            assert answer.vector.x == pytest.approx(expected, rel=0.01, abs=1e-4)  # fused: OE within ~1%
    finally:
        code, err = stop_node(process, signal.SIGTERM)
        tester.node.destroy_publisher(publisher)
    assert code == 0 and 'Traceback' not in err, err
    assert 'default.onnx' in err, err


def test_silence_is_explained(tester):
    process = start_node_process(*BASE_ARGS, '-p', 'no_input_warning:=1.0', '-r', 'image:=/test/quiet', cwd=REPO)
    publisher = tester.node.create_publisher(
        Image, '/test/quiet', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    )
    try:
        assert tester.spin_until(lambda: tester.node.count_subscribers('/test/quiet') > 0, 30)
        tester.spin_for(3.0)
    finally:
        code, err = stop_node(process, signal.SIGTERM)
        tester.node.destroy_publisher(publisher)
    assert code == 0, err
    assert 'no frame received' in err and 'best-effort publisher' in err and '/test/quiet' in err, err


@pytest.mark.parametrize('content', [None, b'', b'PK\x03\x04 truncated zip'])
def test_a_bad_model_stops_the_node_with_a_message(tmp_path, content):
    path = tmp_path / 'model.pt'
    if content is not None:
        path.write_bytes(content)
    process = start_node_process('-p', f'model_path:={path}', cwd=REPO)
    code, err = process.wait(timeout=60), process.stderr.read()
    assert code == 2
    assert str(path) in err and 'Traceback' not in err


def test_a_model_that_fails_its_warm_up_stops_the_node_with_one_line(tmp_path):
    hungry = onnx_allocating_at_run_time(
        tmp_path / 'hungry.onnx', read_bundle_metadata(REPO / 'models' / 'default.onnx')
    )
    process = start_node_process('-p', f'model_path:={hungry}', cwd=REPO)
    code, err = process.wait(timeout=60), process.stderr.read()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f'visual_anomaly: cannot start: {hungry}: the model fails on a blank frame'), err


def test_an_uncalibrated_model_stops_the_node_unless_a_threshold_is_given(tester, tmp_path):
    torch.manual_seed(0)
    path = save_bundle(tmp_path / 'raw.pt', Detector(ConvAutoencoder(AutoencoderConfig(base_channels=4)), device='cpu'))
    process = start_node_process('-p', f'model_path:={path}', '-p', 'device:=cpu', cwd=REPO)
    code, err = process.wait(timeout=60), process.stderr.read()
    assert code == 2 and str(path) in err and 'no threshold' in err and len(err.strip().splitlines()) == 1, err
    args = ('-p', f'model_path:={path}', '-p', 'device:=cpu', '-p', 'threshold:=2.5', '-r', '__ns:=/manual')
    process = start_node_process(*args, cwd=REPO)  # its own namespace: the module's other node is running
    running = tester.spin_until(lambda: tester.node.count_publishers('/manual/visual_anomaly/anomaly') > 0, 60)
    code, err = stop_node(process)
    assert running and code == 0, err  # a threshold given by hand is enough to run


@pytest.mark.parametrize(
    ('parameter', 'named'), [('overlay_alpha:=3.0', 'overlay_alpha'), ('heatmap_colormap:=rainbow', 'rainbow')]
)
def test_a_bad_parameter_stops_the_node_with_one_line(parameter, named):
    process = start_node_process('-p', 'device:=cpu', '-p', parameter, cwd=REPO)
    code, err = process.wait(timeout=60), process.stderr.read()
    assert code == 2
    assert err.startswith('visual_anomaly: cannot start: ') and named in err and len(err.strip().splitlines()) == 1


def test_a_signal_while_the_node_starts_leaves_it_to_shut_down_cleanly(monkeypatch):
    """CI saw SIGINT land while the node started its worker thread: rclpy's shutdown then destroyed the
    half-made node, whose never-started worker could not be joined, and Ctrl-C ended in a traceback."""

    def interrupted(thread):
        raise KeyboardInterrupt

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(DOMAIN_ID))
    try:
        with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
            patch.setattr(threading.Thread, 'start', interrupted)
            AnomalyDetectorNode(context=context, cli_args=['--ros-args', '-p', 'device:=cpu'])
    finally:
        rclpy.try_shutdown(context=context)  # destroys the half-made node, as the node process does on SIGINT
