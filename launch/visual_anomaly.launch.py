"""Start the visual anomaly detector on a camera topic (and rviz2 with rviz:=true).

ros2 launch visual_anomaly visual_anomaly.launch.py image:=/camera/image_raw
ros2 launch visual_anomaly visual_anomaly.launch.py image:=/camera/image_raw/compressed compressed:=true
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

SHARE = Path(get_package_share_directory('visual_anomaly'))


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument('image', default_value='/camera/image_raw', description='camera image topic'),
        DeclareLaunchArgument(
            'model', default_value='', description='model bundle (.pt or .onnx); empty = the shipped default'
        ),
        DeclareLaunchArgument('device', default_value='auto', description='auto, cpu, cuda or cuda:N'),
        DeclareLaunchArgument(
            'params_file',
            default_value=str(SHARE / 'config' / 'visual_anomaly.yaml'),
            description='node parameters (YAML)',
        ),
        DeclareLaunchArgument('namespace', default_value='', description='namespace of the node and its outputs'),
        DeclareLaunchArgument(
            'compressed', default_value='false', description='the image topic carries sensor_msgs/CompressedImage'
        ),
        DeclareLaunchArgument('rviz', default_value='false', description='also start rviz2 with the overlay view'),
    ]
    detector = Node(
        package='visual_anomaly',
        executable='visual-anomaly-node',
        name='visual_anomaly',
        namespace=LaunchConfiguration('namespace'),
        parameters=[
            LaunchConfiguration('params_file'),
            {
                'model_path': LaunchConfiguration('model'),
                'device': LaunchConfiguration('device'),
                'compressed': ParameterValue(LaunchConfiguration('compressed'), value_type=bool),
            },
        ],
        remappings=[('image', LaunchConfiguration('image'))],
        output='screen',
        emulate_tty=True,
    )
    rviz = Node(
        package='rviz2',
        executable='rviz2',
        arguments=['-d', str(SHARE / 'config' / 'visual_anomaly.rviz')],
        condition=IfCondition(LaunchConfiguration('rviz')),
    )
    return LaunchDescription([*arguments, detector, rviz])
