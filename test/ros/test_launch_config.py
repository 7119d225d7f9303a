"""What can be checked of the launch files and configs without a ROS install's launch tools.

`ros2 launch` itself cannot run here (launch/launch_ros are not installable from PyPI); these
tests check that the files parse, declare the documented arguments, and name only executables,
parameters, files and topics that exist.
"""

import ast
import math
import re

import pytest
import rclpy
import yaml
from ros_helpers import DOMAIN_ID, REPO

from visual_anomaly.ros.node import AnomalyDetectorNode
from visual_anomaly.ros.parameters import PARAMETERS

LAUNCH_ARGUMENTS = {'image', 'model', 'device', 'params_file', 'namespace', 'compressed', 'rviz'}


@pytest.fixture(scope='module')
def node():
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(DOMAIN_ID))
    detector_node = AnomalyDetectorNode(context=context)
    yield detector_node
    detector_node.destroy_node()
    rclpy.shutdown(context=context)


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, 'id', None) == name]


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_params_file_matches_the_declared_parameters(node):
    params = yaml.safe_load((REPO / 'config' / 'visual_anomaly.yaml').read_text())['/**']['ros__parameters']
    plain = rclpy.create_node('plain', context=node.context)  # parameters every rclpy node declares
    declared = set(node.get_parameters_by_prefix('')) - set(plain.get_parameters_by_prefix(''))
    plain.destroy_node()
    assert set(params) == declared == {spec.name for spec in PARAMETERS}
    for name, value in params.items():
        default = node.get_parameter(name).value
        assert (isinstance(value, float) and math.isnan(value) and math.isnan(default)) or value == default, name


def test_launch_files_declare_the_documented_arguments_and_existing_things(node):
    console_scripts = re.findall(r"'([\w-]+) = visual_anomaly", (REPO / 'setup.py').read_text())
    tree = ast.parse((REPO / 'launch' / 'visual_anomaly.launch.py').read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description' for n in tree.body)
    arguments = {call.args[0].value for call in _calls(tree, 'DeclareLaunchArgument')}
    assert arguments == LAUNCH_ARGUMENTS
    used = {call.args[0].value for call in _calls(tree, 'LaunchConfiguration')}
    assert used == LAUNCH_ARGUMENTS
    detector = next(c for c in _calls(tree, 'Node') if _keyword(c, 'package').value == 'visual_anomaly')
    assert _keyword(detector, 'executable').value in console_scripts
    assert _keyword(detector, 'name').value == node.get_name()
    overrides = [d for d in ast.walk(_keyword(detector, 'parameters')) if isinstance(d, ast.Dict)]
    assert {key.value for key in overrides[0].keys} <= set(node.get_parameters_by_prefix(''))
    for literal in re.findall(r"'(visual_anomaly\.(?:yaml|rviz))'", ast.unparse(tree)):
        assert (REPO / 'config' / literal).is_file(), literal
    include = ast.parse((REPO / 'launch' / 'visual_anomaly_rviz.launch.py').read_text())
    assert "'visual_anomaly.launch.py'" in ast.unparse(include)
    assert "launch_arguments={'rviz': 'true'}" in ast.unparse(include)


def test_rviz_config_shows_the_node_outputs(node):
    rviz = yaml.safe_load((REPO / 'config' / 'visual_anomaly.rviz').read_text())
    topics = {d['Topic']['Value'] for d in rviz['Visualization Manager']['Displays']}
    outputs = {node.output_topics['overlay'], node.output_topics['heatmap'], '/visual_anomaly/marker'}
    assert outputs <= topics
    assert '/camera/image_raw' in topics
