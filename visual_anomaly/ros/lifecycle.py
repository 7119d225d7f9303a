"""The detector as a managed (lifecycle) node, as Nav2-style stacks and lifecycle managers drive them.

- configure: read and check the parameters (a bad value fails the transition with the reason);
- activate: load the model and start scoring (a missing or broken model fails the transition, with
  the reason in the log, and the node stays inactive);
- deactivate: stop scoring, destroy the subscription, publishers, service and timers, release the
  model and its device memory;
- cleanup: forget the parameters' values (configure reads them again); shutdown: stop if active.
"""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from visual_anomaly.ros.node import DetectorNodeBase
from visual_anomaly.ros.parameters import PARAMETERS, declare_parameters, validate


class LifecycleAnomalyDetectorNode(DetectorNodeBase, LifecycleNode):
    """The detector node with a managed lifecycle; parameters are declared at construction."""

    def __init__(self, **kwargs) -> None:
        super().__init__('visual_anomaly', **kwargs)
        self._init_detector()
        declare_parameters(self, check=False)
        self._configured: dict | None = None
        self.failure = ''  # why the last transition failed

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        problem = validate(values)
        if problem:
            return self._fail('configure', problem)
        self._configured = values
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.start_detector(dict(self._configured))
        except Exception as error:  # noqa: BLE001  (a model that cannot load fails the transition, not the node)
            self.stop_detector()
            return self._fail('activate', str(error) if isinstance(error, ValueError | OSError) else repr(error))
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_detector()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._configured = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_detector()
        return TransitionCallbackReturn.SUCCESS

    def _fail(self, transition: str, reason: str) -> TransitionCallbackReturn:
        self.failure = reason
        self.get_logger().error(f'cannot {transition}: {reason}')
        return TransitionCallbackReturn.FAILURE
