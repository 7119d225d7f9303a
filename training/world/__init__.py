"""Synthetic worlds seen by a patrolling ground robot, for training, tests, the demo and benchmarks.

:mod:`.scene` (frame ground truth, corridor looks, poses), :mod:`.background` (the empty corridor,
ray cast), :mod:`.painter` and :mod:`.anomalies` (objects drawn on top), :mod:`.corridor`
(:class:`CorridorWorld`: frames and patrols) and :mod:`.dataset` (frame sets, the dataset's layout).
:mod:`.photo` (:class:`PhotoWorld`) is an independent renderer with photographic textures and two
buildings, ``photo-b`` (tuning) and ``photo-c`` (held out); it needs scikit-image, off the robot only.
"""

from training.world.corridor import CorridorWorld
from training.world.dataset import (
    WORLDS,
    generate_frames,
    make_world,
    world_class_names,
    world_classes,
    write_hazards_layout,
    write_split,
)
from training.world.photo import PhotoWorld
from training.world.scene import Anomaly, FrameInfo

__all__ = [
    'WORLDS',
    'Anomaly',
    'CorridorWorld',
    'FrameInfo',
    'PhotoWorld',
    'generate_frames',
    'make_world',
    'world_class_names',
    'world_classes',
    'write_hazards_layout',
    'write_split',
]
