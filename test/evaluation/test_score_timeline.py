"""The score timeline: ground-truth anomalous runs shaded, the first and last frames included."""

import cv2
import numpy as np
from matplotlib.axes import Axes

from visual_anomaly.evaluation.report import plot_score_timeline


def test_score_timeline_shades_runs_at_the_ends(tmp_path, monkeypatch):
    shaded = []
    original = Axes.axvspan

    def record(self, xmin, xmax, *args, **kwargs):
        shaded.append((round(xmin, 6), round(xmax, 6)))
        return original(self, xmin, xmax, *args, **kwargs)

    monkeypatch.setattr(Axes, 'axvspan', record)
    classes = np.array([3, 3, 0, 0, 7, 0, 0, 1])
    path = plot_score_timeline(np.arange(8) * 0.1, np.linspace(-1, 2, 8), 0.5, classes, tmp_path / 'timeline.png')
    assert cv2.imread(str(path)) is not None
    # runs (0, 1), (4, 4) and (7, 7), each from half a frame interval before to half after
    assert shaded == [(-0.05, 0.15), (0.35, 0.45), (0.65, 0.75)]
