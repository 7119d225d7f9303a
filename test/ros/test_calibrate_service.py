"""The node's ~/calibrate service over real DDS: re-calibration on the next N frames of a building it never saw."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Vector3Stamped
from rcl_interfaces.srv import GetParameters
from ros_helpers import RELIABLE, REPO, image_message, stop_node
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from training.world import CorridorWorld
from visual_anomaly.core import load_bundle, read_bundle_metadata, resize_frames
from visual_anomaly.ros.process import start_node_process

pytestmark = pytest.mark.slow  # a node process over DDS, hundreds of rendered frames

MODEL = REPO / 'models' / 'default.pt'
NAMESPACE = '/calibration_test'
TOPIC = '/calibration_test/camera'
FRAMES, FPR = 200, 0.05  # the fewest frames a 5% target may use (10 / fpr)
HELD_OUT = 400


def _building(count: int, seed: int) -> list[np.ndarray]:
    """Normal frames of a corridor world the default model was not trained on (its world seed is 0)."""
    world, rng = CorridorWorld(seed=3, image_size=128), np.random.default_rng(seed)
    return [world.render(rng)[0] for _ in range(count)]


@pytest.fixture(scope='module')
def node(tester, tmp_path_factory):
    output = tmp_path_factory.mktemp('calibrate') / 'building.pt'
    parameters = {
        'device': 'cpu',
        'reliability': 'reliable',
        'queue_depth': '100',
        'diagnostics_period': '0.2',
        'no_input_warning': '2.0',
        'calibration_frames': str(FRAMES),
        'calibration_fpr': str(FPR),
        'calibration_output': str(output),
    }
    args = [arg for name, value in parameters.items() for arg in ('-p', f'{name}:={value}')]
    process = start_node_process(*args, '-r', f'__ns:={NAMESPACE}', '-r', f'image:={TOPIC}', cwd=REPO)
    publisher = tester.node.create_publisher(Image, TOPIC, RELIABLE)
    answers = tester.collect(Vector3Stamped, f'{NAMESPACE}/visual_anomaly/anomaly', RELIABLE)
    diagnostics = tester.collect(DiagnosticArray, '/diagnostics', 10)
    assert tester.spin_until(lambda: publisher.get_subscription_count() > 0, 60), process.stderr
    tester.spin_for(1.0)  # let the output subscription match
    yield {'process': process, 'publisher': publisher, 'answers': answers, 'diagnostics': diagnostics, 'out': output}
    code, err = stop_node(process)
    assert code == 0 and 'Traceback' not in err, err


def _call(tester, service: str, wait_s: float = 10.0):
    client = tester.node.create_client(Trigger, service)
    assert client.wait_for_service(timeout_sec=wait_s)
    return client.call_async(Trigger.Request())


def _collecting(tester, diagnostics) -> bool:
    """Whether the node's diagnostics say a calibration is gathering frames."""

    def said() -> bool:
        for message in diagnostics[-3:]:
            for status in message.status:
                values = {kv.key: kv.value for kv in status.values}
                if values.get('calibration', '').startswith('collecting frames for ~/calibrate: 0 of'):
                    return True
        return False

    return tester.spin_until(said, 10)


def _send(tester, node, frames, first_stamp: int) -> list:
    """Publish ``frames`` one at a time, each once the node answered the one before; the answers."""
    answers = node['answers']
    for i, frame in enumerate(frames):
        before = len(answers)
        node['publisher'].publish(image_message(frame, first_stamp + i))
        assert tester.spin_until(lambda n=before: len(answers) > n, 15), f'no answer to frame {i}'
    return answers[-len(frames) :]


def _threshold_parameter(tester) -> float:
    client = tester.node.create_client(GetParameters, f'{NAMESPACE}/visual_anomaly/get_parameters')
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(GetParameters.Request(names=['threshold']))
    assert tester.spin_until(future.done, 10)
    tester.node.destroy_client(client)
    return future.result().values[0].double_value


def test_calibration_on_the_next_frames_sets_a_threshold_that_holds_on_new_ones(tester, node):
    calibration, held_out = _building(FRAMES, seed=1), _building(HELD_OUT, seed=2)
    future = _call(tester, f'{NAMESPACE}/visual_anomaly/calibrate')
    assert _collecting(tester, node['diagnostics']), 'the node did not start collecting'
    _send(tester, node, calibration, 1000)
    assert tester.spin_until(future.done, 30), 'no answer from ~/calibrate'
    response = future.result()
    assert response.success, response.message
    assert f'on {FRAMES} normal frames' in response.message and 'wrote' in response.message

    offline = load_bundle(MODEL, 'cpu')
    default_threshold = offline.threshold_
    offline.calibrate(resize_frames(calibration, 'rgb', offline.image_size), fpr=FPR)
    threshold = _threshold_parameter(tester)
    assert threshold == pytest.approx(offline.threshold_, abs=1e-4)  # exactly the frames that came after the call
    assert abs(threshold - default_threshold) > 0.1

    answers = _send(tester, node, held_out, 5000)
    assert [a.vector.y for a in answers] == pytest.approx([threshold] * HELD_OUT, abs=1e-6)
    flagged = np.mean([a.vector.z for a in answers])
    assert 0.3 * FPR <= flagged <= 3 * FPR, f'{flagged:.3f} of {HELD_OUT} held-out normal frames flagged'

    assert response.message.endswith(f'wrote {node["out"]}')
    bundle = load_bundle(node['out'], 'cpu')
    recorded = bundle.calibration.thresholds[bundle.decision_score]
    assert recorded.value == pytest.approx(threshold) and (recorded.method, recorded.frames) == ('fpr', FRAMES)
    assert read_bundle_metadata(node['out'])['provenance']['recalibration']['frames'] == FRAMES


def test_a_second_call_is_refused_and_silence_fails_the_calibration(tester, node):
    first = _call(tester, f'{NAMESPACE}/visual_anomaly/calibrate')
    assert _collecting(tester, node['diagnostics'])
    second = _call(tester, f'{NAMESPACE}/visual_anomaly/calibrate')
    assert tester.spin_until(second.done, 10)
    assert not second.result().success and 'already running' in second.result().message
    assert not first.done()
    assert tester.spin_until(first.done, 15)  # no frame for no_input_warning (2 s): the call fails
    assert not first.result().success
    assert 'no frame scored' in first.result().message and TOPIC in first.result().message
    assert node['process'].poll() is None


def test_stopping_the_node_during_a_calibration_ends_it_cleanly(tester):
    process = start_node_process(
        '-p', 'device:=cpu', '-p', 'no_input_warning:=600.0', '-r', '__ns:=/calibration_stop', cwd=REPO
    )
    future = _call(tester, '/calibration_stop/visual_anomaly/calibrate', wait_s=60)
    tester.spin_for(1.0)  # the node is now waiting for frames that never come
    assert not future.done()
    code, err = stop_node(process, timeout=10)
    assert code == 0 and 'Traceback' not in err, err
