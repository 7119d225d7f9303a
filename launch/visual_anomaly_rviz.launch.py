"""The detector and rviz2 showing the camera image, the anomaly overlay and the error heatmap.

ros2 launch visual_anomaly visual_anomaly_rviz.launch.py image:=/camera/image_raw
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def generate_launch_description() -> LaunchDescription:
    detector = Path(get_package_share_directory('visual_anomaly')) / 'launch' / 'visual_anomaly.launch.py'
    return LaunchDescription(
        [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(detector)), launch_arguments={'rviz': 'true'}.items()
            )
        ]
    )
