"""What can be checked of the launch files and configs without a ROS install's launch tools.

`ros2 launch` itself cannot run here (launch/launch_ros are not installable from PyPI); these
tests check that the files parse, declare the documented arguments, and name only executables,
parameters, files and topics that exist, and they run what the launch file decides
(:mod:`visual_anomaly.ros.launch_setup`): the order of parameter sources, the rviz view, refusals.
"""

import ast
import math
import re

import pytest
import rclpy
import yaml
from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from ros_helpers import DOMAIN_ID, REPO

from visual_anomaly.ros import launch_setup
from visual_anomaly.ros.node import AnomalyDetectorNode
from visual_anomaly.ros.parameters import PARAMETERS, declare_parameters

LAUNCH_ARGUMENTS = {
    'image',
    'model',
    'device',
    'params_file',
    'namespace',
    'compressed',
    'reliability',
    'lifecycle',
    'rviz',
}


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


def _launch_arguments(tree: ast.AST) -> dict:
    assignment = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == 'ARGUMENTS')
    return {key.value: value for key, value in zip(assignment.value.keys, assignment.value.values, strict=True)}


def test_launch_files_declare_the_documented_arguments_and_existing_things(node):
    console_scripts = re.findall(r"'([\w-]+) = visual_anomaly", (REPO / 'setup.py').read_text())
    tree = ast.parse((REPO / 'launch' / 'visual_anomaly.launch.py').read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description' for n in tree.body)
    assert set(_launch_arguments(tree)) == LAUNCH_ARGUMENTS
    detector = next(c for c in _calls(tree, 'Node') if _keyword(c, 'package').value == 'visual_anomaly')
    assert _keyword(detector, 'executable').value in console_scripts
    assert set(launch_setup.OVERRIDES.values()) <= set(node.get_parameters_by_prefix(''))
    assert node.get_name() == launch_setup.NODE_NAME
    for literal in re.findall(r"'(visual_anomaly\.(?:yaml|rviz))'", ast.unparse(tree)):
        assert (REPO / 'config' / literal).is_file(), literal
    include = ast.parse((REPO / 'launch' / 'visual_anomaly_rviz.launch.py').read_text())
    assert "'visual_anomaly.launch.py'" in ast.unparse(include)
    assert "launch_arguments={'rviz': 'true'}" in ast.unparse(include)


def _effective(context, sources: list, tmp_path) -> dict:
    """The parameters a node gets from launch_ros-style sources: each dict becomes a params file, in order."""
    args = ['--ros-args']
    for index, source in enumerate(sources):
        if isinstance(source, dict):
            path = tmp_path / f'overrides_{index}.yaml'
            path.write_text(yaml.safe_dump({'/**': {'ros__parameters': source}}))
            source = str(path)
        args += ['--params-file', source]
    probe = rclpy.create_node('visual_anomaly', context=context, cli_args=args)
    try:
        return declare_parameters(probe)
    finally:
        probe.destroy_node()


def test_launch_arguments_override_the_params_file_only_when_given(node, tmp_path):
    params = yaml.safe_load((REPO / 'config' / 'visual_anomaly.yaml').read_text())
    params['/**']['ros__parameters'].update(model_path='/robot/model.onnx', device='cpu', reliability='reliable')
    params_file = tmp_path / 'robot.yaml'
    params_file.write_text(yaml.safe_dump(params))
    untouched = {'model': '', 'device': '', 'compressed': '', 'reliability': ''}
    sources = launch_setup.detector_parameters(str(params_file), untouched)
    assert sources == [str(params_file)]
    values = _effective(node.context, sources, tmp_path)
    assert (values['model_path'], values['device'], values['reliability']) == ('/robot/model.onnx', 'cpu', 'reliable')
    given = {**untouched, 'device': 'cuda', 'compressed': 'yes'}
    values = _effective(node.context, launch_setup.detector_parameters(str(params_file), given), tmp_path)
    assert (values['model_path'], values['device'], values['compressed']) == ('/robot/model.onnx', 'cuda', True)
    with pytest.raises(ValueError, match="compressed:='maybe' must be true or false"):
        launch_setup.detector_parameters(str(params_file), {**untouched, 'compressed': 'maybe'})
    with pytest.raises(ValueError, match='params_file'):
        launch_setup.detector_parameters(str(tmp_path / 'missing.yaml'), untouched)


def test_rviz_view_follows_the_image_topic_and_namespace(tmp_path):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(DOMAIN_ID))
    placed = AnomalyDetectorNode(
        context=context, namespace='robot7', cli_args=['--ros-args', '-p', 'publish_marker:=true']
    )
    try:
        template = (REPO / 'config' / 'visual_anomaly.rviz').read_text()
        assert launch_setup.rviz_config(template, '/camera/image_raw', '') == template  # the shipped view
        for image, expected in (('front/image', '/robot7/front/image'), ('/cam/raw', '/cam/raw')):
            view = yaml.safe_load(launch_setup.rviz_config(template, image, '/robot7'))
            topics = [d['Topic']['Value'] for d in view['Visualization Manager']['Displays']]
            assert topics[0] == expected
            assert set(topics[1:]) == set(placed.output_topics.values()) - {placed.output_topics['anomaly']}
    finally:
        placed.destroy_node()
        rclpy.shutdown(context=context)


def test_rviz_on_a_headless_machine_is_refused_before_anything_starts():
    try:
        get_package_prefix('rviz2')
        installed = True
    except (PackageNotFoundError, OSError):  # not in the ament index, or no index at all
        installed = False
    if installed:
        launch_setup.require_rviz(get_package_prefix)
    else:
        with pytest.raises(ValueError, match='rviz:=true needs rviz2, which is not installed'):
            launch_setup.require_rviz(get_package_prefix)
    assert launch_setup.parse_flag('rviz', ' Yes ') and not launch_setup.parse_flag('rviz', '0')
    with pytest.raises(ValueError, match="rviz:='maybe'"):
        launch_setup.parse_flag('rviz', 'maybe')
