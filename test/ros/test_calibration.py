"""One run of the node's ~/calibrate service, without a node."""

import time

import numpy as np
import pytest

from visual_anomaly.ros.calibration import CalibrationRun


def test_a_run_takes_exactly_the_next_count_frames():
    run = CalibrationRun(3, {'calibration_fpr': 0.01})
    added = [run.add(np.full((4, 4, 3), i, np.uint8)) for i in range(5)]
    assert added == [False, False, True, False, False]  # True once: the frame that completes the set
    frames = run.frames()
    assert frames.shape == (3, 4, 4, 3) and [int(f[0, 0, 0]) for f in frames] == [0, 1, 2]
    assert not run.done
    run.finish(True, 'calibrated', 2.5)
    assert run.done and run.outcome == (True, 'calibrated', 2.5)


def test_a_cancelled_run_takes_no_more_frames_and_counts_its_silence():
    run = CalibrationRun(3, {})
    run.add(np.zeros((4, 4, 3), np.uint8))
    time.sleep(0.05)
    assert run.quiet_for() >= 0.05
    run.cancel()
    assert not run.add(np.zeros((4, 4, 3), np.uint8)) and run.collected == 1
    with pytest.raises(ValueError):
        CalibrationRun(0, {})
