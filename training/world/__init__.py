"""A synthetic corridor world seen by a patrolling ground robot, for training, tests and the demo.

:mod:`.scene` (frame ground truth, corridor looks, poses), :mod:`.background` (the empty corridor,
ray cast), :mod:`.painter` and :mod:`.anomalies` (objects drawn on top), :mod:`.corridor`
(:class:`CorridorWorld`: frames and patrols) and :mod:`.dataset` (frame sets, the dataset's layout).
"""

from training.world.corridor import CorridorWorld
from training.world.dataset import generate_frames, write_hazards_layout, write_split
from training.world.scene import Anomaly, FrameInfo

__all__ = ['Anomaly', 'CorridorWorld', 'FrameInfo', 'generate_frames', 'write_hazards_layout', 'write_split']
