"""Start the visual anomaly detector on a camera topic (and rviz2 with rviz:=true).

ros2 launch visual_anomaly visual_anomaly.launch.py image:=/camera/image_raw
ros2 launch visual_anomaly visual_anomaly.launch.py image:=/camera/image_raw/compressed compressed:=true

Arguments left empty keep the params file's values. Every argument is checked before anything
starts; when the detector exits, the launch ends, with an error when the detector failed.
"""

from pathlib import Path

from ament_index_python.packages import get_package_prefix, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from visual_anomaly.ros import launch_setup

SHARE = Path(get_package_share_directory('visual_anomaly'))
ARGUMENTS = {
    'image': ('/camera/image_raw', 'camera image topic'),
    'model': ('', 'model bundle (.pt or .onnx); empty = the params file (the shipped default model)'),
    'device': ('', 'auto, cpu, cuda or cuda:N; empty = the params file (auto)'),
    'compressed': ('', 'true: the image topic carries sensor_msgs/CompressedImage; empty = the params file'),
    'reliability': ('', 'input QoS: auto (match the camera), reliable or best_effort; empty = the params file'),
    'params_file': (str(SHARE / 'config' / 'visual_anomaly.yaml'), 'node parameters (YAML)'),
    'namespace': ('', 'namespace of the node and its outputs'),
    'lifecycle': ('false', 'true: a managed (lifecycle) node, configured and activated by this launch'),
    'rviz': ('false', 'true: also start rviz2 showing the camera, the overlay and the heatmap'),
}


def _detector_exited(event, context):
    """End the launch with the detector; as an error (non-zero exit) when it failed."""
    if context.is_shutdown or event.returncode == 0:
        return [EmitEvent(event=Shutdown(reason='the detector exited'))]
    raise RuntimeError(f'the detector exited with code {event.returncode} (its reason is printed above)')


def _launch(context):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    parameters = launch_setup.detector_parameters(values['params_file'], values)
    lifecycle = launch_setup.parse_flag('lifecycle', values['lifecycle'])
    with_rviz = launch_setup.parse_flag('rviz', values['rviz'])
    if with_rviz:
        launch_setup.require_rviz(get_package_prefix)
    detector = Node(
        package='visual_anomaly',
        executable='visual-anomaly-node',
        name=launch_setup.NODE_NAME,
        namespace=values['namespace'],
        parameters=parameters,
        arguments=['--lifecycle', '--autostart'] if lifecycle else [],
        remappings=[('image', values['image'])],
        output='screen',
        emulate_tty=True,
    )
    actions = []
    if with_rviz:  # first: should it fail to start, the detector has not started either
        template = (SHARE / 'config' / 'visual_anomaly.rviz').read_text()
        view = launch_setup.rviz_view_path(values['namespace'])
        view.write_text(launch_setup.rviz_config(template, values['image'], values['namespace']))
        rviz = Node(package='rviz2', executable='rviz2', arguments=['-d', str(view)], output='screen')
        closed = OnProcessExit(target_action=rviz, on_exit=[EmitEvent(event=Shutdown(reason='rviz2 was closed'))])
        actions += [rviz, RegisterEventHandler(closed)]
    return [*actions, detector, RegisterEventHandler(OnProcessExit(target_action=detector, on_exit=_detector_exited))]


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, (default, text) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_launch)])
