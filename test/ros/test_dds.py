"""Fast DDS settings for processes that publish camera frames."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from visual_anomaly.ros.dds import FASTDDS_SETTINGS, LARGE_FRAME_TRANSPORTS, use_large_frame_transports

FRAME_BYTES = 640 * 480 * 3


def test_sets_the_transports_when_fast_dds_is_not_configured():
    environ = {'ROS_DOMAIN_ID': '7', 'FASTDDS_BUILTIN_TRANSPORTS': ''}
    assert use_large_frame_transports(environ) == LARGE_FRAME_TRANSPORTS
    assert environ == {'ROS_DOMAIN_ID': '7', 'FASTDDS_BUILTIN_TRANSPORTS': LARGE_FRAME_TRANSPORTS}


@pytest.mark.parametrize('name', FASTDDS_SETTINGS)
def test_leaves_a_users_configuration_alone(name):
    environ = {name: 'theirs'}
    assert use_large_frame_transports(environ) is None
    assert environ == {name: 'theirs'}


SEGMENT_SIZES = """
import glob, os, rclpy
before = set(glob.glob('/dev/shm/fastdds_*'))
context = rclpy.Context()
rclpy.init(context=context)
node = rclpy.create_node('segment_size', context=context)  # the participant exists from here
new = [p for p in glob.glob('/dev/shm/fastdds_*') if p not in before and os.path.getsize(p) > 0]
print(max(map(os.path.getsize, new), default=0))
node.destroy_node()
rclpy.shutdown(context=context)
"""


FAST_DDS = os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp').startswith('rmw_fastrtps')


@pytest.mark.skipif(not (FAST_DDS and Path('/dev/shm').is_dir()), reason='Fast DDS shared memory only')
def test_the_shared_memory_segment_then_holds_frames():
    """Fast DDS accepts the value: the participant's segment holds two 640x480 rgb8 frames (default: none)."""
    env = {k: v for k, v in os.environ.items() if k not in FASTDDS_SETTINGS}

    def segment_size(environ: dict[str, str]) -> int:
        run = subprocess.run([sys.executable, '-c', SEGMENT_SIZES], env=environ, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return int(run.stdout.split()[-1])

    default = segment_size(env)
    use_large_frame_transports(env)
    if default == 0:
        pytest.skip('no shared-memory segment seen (Fast DDS built without SHM?)')
    assert default < FRAME_BYTES < 2 * FRAME_BYTES <= segment_size(env)
