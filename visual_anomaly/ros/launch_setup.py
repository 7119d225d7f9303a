"""What the launch files decide, kept apart from the launch packages so that it can be tested anywhere.

``launch/visual_anomaly.launch.py`` calls these from an ``OpaqueFunction``: every argument is checked
and every file written before any process starts, so a launch that fails leaves nothing running.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

NODE_NAME = 'visual_anomaly'
RVIZ_PACKAGE = 'rviz2'
#: launch argument -> node parameter, for the arguments that override the params file when given
OVERRIDES = {'model': 'model_path', 'device': 'device', 'compressed': 'compressed', 'reliability': 'reliability'}
FLAG_WORDS = {'true': True, 'yes': True, 'on': True, '1': True, 'false': False, 'no': False, 'off': False, '0': False}
#: topics of the shipped rviz view, replaced by those of the launched detector
RVIZ_TOPICS = ('/camera/image_raw', '/visual_anomaly/overlay', '/visual_anomaly/heatmap', '/visual_anomaly/marker')


def parse_flag(name: str, text: str) -> bool:
    """A launch argument's true/false value (true, false, yes, no, on, off, 1, 0), or ValueError naming it."""
    value = FLAG_WORDS.get(text.strip().lower())
    if value is None:
        raise ValueError(f'launch argument {name}:={text!r} must be true or false')
    return value


def detector_parameters(params_file: str, arguments: Mapping[str, str]) -> list:
    """The detector's parameter sources in launch order (later ones win): the params file, then only the
    launch arguments the user gave (an empty argument leaves the params file's value alone)."""
    overrides = {}
    for argument, parameter in OVERRIDES.items():
        text = arguments.get(argument, '').strip()
        if text:
            overrides[parameter] = parse_flag(argument, text) if argument == 'compressed' else text
    if params_file and not Path(params_file).is_file():
        raise ValueError(f'launch argument params_file:={params_file!r}: no such file')
    return [source for source in (params_file, overrides) if source]


def absolute_topic(topic: str, namespace: str) -> str:
    """``topic`` as the node in ``namespace`` resolves it (a relative name is taken inside the namespace)."""
    if topic.startswith('/'):
        return topic
    namespace = namespace.strip('/')
    return f'/{namespace}/{topic}' if namespace else f'/{topic}'


def node_topic(namespace: str, output: str) -> str:
    """The resolved topic of the detector's private output ``~/<output>`` in ``namespace``."""
    return '/' + '/'.join(part for part in (namespace.strip('/'), NODE_NAME, output) if part)


def rviz_config(template: str, image_topic: str, namespace: str) -> str:
    """The shipped rviz view (``template``) showing the topics of a detector launched with ``image_topic``
    and ``namespace``."""
    image, overlay, heatmap, marker = RVIZ_TOPICS
    replacements = {
        image: absolute_topic(image_topic, namespace),
        overlay: node_topic(namespace, 'overlay'),
        heatmap: node_topic(namespace, 'heatmap'),
        marker: node_topic(namespace, 'marker'),
    }
    lines = []
    for line in template.splitlines(keepends=True):
        key, _, value = line.partition('Value: ')
        topic = value.strip()
        lines.append(f'{key}Value: {replacements[topic]}\n' if key.strip() == '' and topic in replacements else line)
    return ''.join(lines)


def require_rviz(package_prefix) -> None:
    """Raise a readable error unless rviz2's executable is installed where launch_ros runs it from
    (``<prefix>/lib/rviz2/rviz2``); ``package_prefix`` is ament_index_python's lookup."""
    try:
        executable = Path(package_prefix(RVIZ_PACKAGE)) / 'lib' / RVIZ_PACKAGE / RVIZ_PACKAGE
    except (LookupError, OSError):  # not in the index (a KeyError), or no index at all
        executable = None
    if executable is None or not os.access(executable, os.X_OK):
        raise ValueError(
            'rviz:=true needs rviz2, which is not installed here (on a desktop: apt install ros-$ROS_DISTRO-rviz2); '
            'nothing was started'
        )


def rviz_view_path(namespace: str) -> Path:
    """Where the launch writes the rviz view of the detector in ``namespace`` (one file, rewritten each time)."""
    suffix = namespace.strip('/').replace('/', '_')
    return Path(tempfile.gettempdir()) / f'visual_anomaly{"_" + suffix if suffix else ""}.rviz'
