"""The managed (lifecycle) node over real DDS: transitions driven through its lifecycle_msgs services."""

from __future__ import annotations

import numpy as np
import pytest
from geometry_msgs.msg import Vector3Stamped
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from ros_helpers import RELIABLE, REPO, image_message, stop_node
from sensor_msgs.msg import Image

from visual_anomaly.ros.process import start_node_process

pytestmark = pytest.mark.slow  # node processes over DDS

FRAME = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def _call(tester, client, request, timeout=30.0):
    assert tester.spin_until(lambda: client.service_is_ready(), timeout), client.srv_name
    future = client.call_async(request)
    assert tester.spin_until(future.done, timeout), client.srv_name
    return future.result()


class Managed:
    """A lifecycle detector process in namespace ``name``, and clients for its lifecycle services."""

    def __init__(self, tester, name: str, *ros_args: str) -> None:
        self.tester, self.topic = tester, f'/{name}/image'
        self.process = start_node_process(
            '-p', 'device:=cpu', '-r', f'__ns:=/{name}', *ros_args, cwd=REPO, options=['--lifecycle']
        )
        node = tester.node
        self.change = node.create_client(ChangeState, f'/{name}/visual_anomaly/change_state')
        self.get = node.create_client(GetState, f'/{name}/visual_anomaly/get_state')
        self.publisher = node.create_publisher(Image, self.topic, RELIABLE)
        self.anomaly = tester.collect(Vector3Stamped, f'/{name}/visual_anomaly/anomaly', RELIABLE)

    def transition(self, transition_id: int) -> bool:
        return _call(self.tester, self.change, ChangeState.Request(transition=Transition(id=transition_id))).success

    def state(self) -> int:
        return _call(self.tester, self.get, GetState.Request()).current_state.id

    def listening(self) -> bool:
        return self.tester.node.count_subscribers(self.topic) > 0

    def answers(self, sec: int) -> bool:
        assert self.tester.spin_until(self.listening, 20)
        self.tester.spin_for(0.5)
        self.publisher.publish(image_message(FRAME, sec))
        return self.tester.spin_until(lambda: any(a.header.stamp.sec == sec for a in self.anomaly), 20)

    def stop(self) -> str:
        code, err = stop_node(self.process)
        assert code == 0 and 'Traceback' not in err, err
        return err


def test_transitions_start_and_release_the_detector(tester):
    managed = Managed(tester, 'managed')
    try:
        assert managed.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert managed.transition(Transition.TRANSITION_CONFIGURE)
        tester.spin_for(1.0)
        assert managed.state() == State.PRIMARY_STATE_INACTIVE and not managed.listening()
        assert managed.transition(Transition.TRANSITION_ACTIVATE)
        assert managed.answers(10)
        assert managed.transition(Transition.TRANSITION_DEACTIVATE)
        assert tester.spin_until(lambda: not managed.listening(), 10)  # the subscription is destroyed
        assert tester.node.count_publishers('/managed/visual_anomaly/anomaly') == 0
        assert managed.transition(Transition.TRANSITION_ACTIVATE)
        assert managed.answers(11)
        assert managed.transition(Transition.TRANSITION_DEACTIVATE)
        assert managed.transition(Transition.TRANSITION_CLEANUP)
        assert managed.state() == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        err = managed.stop()
    assert err.count('scoring Image frames') == 2, err


def test_a_missing_model_fails_the_activation_not_the_process(tester):
    managed = Managed(tester, 'unlucky', '-p', 'model_path:=/nonexistent/model.pt')
    try:
        assert managed.transition(Transition.TRANSITION_CONFIGURE)
        assert not managed.transition(Transition.TRANSITION_ACTIVATE)
        assert managed.state() == State.PRIMARY_STATE_INACTIVE
        assert managed.process.poll() is None and not managed.listening()
    finally:
        err = managed.stop()
    assert 'cannot activate: /nonexistent/model.pt' in err, err


def test_parameters_that_do_not_fit_fail_the_configuration(tester):
    managed = Managed(tester, 'misfit', '-p', 'smoothing_window:=2', '-p', 'smoothing_min_hits:=3')
    try:
        assert not managed.transition(Transition.TRANSITION_CONFIGURE)
        assert managed.state() == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        err = managed.stop()
    assert 'cannot configure: smoothing_min_hits must not exceed smoothing_window' in err, err
