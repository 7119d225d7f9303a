"""The node's parameter table and its rules, without a node."""

import math
from types import SimpleNamespace

import pytest

from visual_anomaly.ros.parameters import PARAMETERS, check_update, configure_detector, validate

DEFAULTS = {spec.name: spec.default for spec in PARAMETERS}
SCORES = ('reconstruction', 'local')


def _set(**changes):
    return [SimpleNamespace(name=name, value=value) for name, value in changes.items()]


def test_the_defaults_are_valid_and_every_parameter_is_described():
    assert validate(DEFAULTS) == ''
    assert len(DEFAULTS) == len(PARAMETERS)
    assert all(spec.descriptor().description == spec.description for spec in PARAMETERS)
    alpha = next(spec for spec in PARAMETERS if spec.name == 'overlay_alpha').descriptor()
    assert (alpha.floating_point_range[0].from_value, alpha.floating_point_range[0].to_value) == (0.0, 1.0)


@pytest.mark.parametrize(
    ('changes', 'reason'),
    [
        ({'decision_score': 'magic'}, 'decision_score must be one of'),
        ({'heatmap_colormap': 'rainbow-unicorn'}, 'heatmap_colormap must be one of'),
        ({'smoothing_min_hits': 3}, 'smoothing_min_hits must not exceed smoothing_window'),
        ({'threshold': math.inf}, 'threshold must be finite'),
        ({'decision_score': 'oe'}, 'this model offers decision scores'),
        ({'threshold': math.nan}, 'the calibrated threshold cannot be restored'),
        ({'calibration_frames': 999}, 'calibration_frames: 999 normal frames are too few'),
        ({'calibration_fpr': 0.001}, 'at least 10000'),
    ],
)
def test_updates_that_do_not_fit_are_refused_with_the_reason(changes, reason):
    _, problem = check_update(DEFAULTS, _set(**changes), SCORES)
    assert reason in problem


def test_an_accepted_update_keeps_the_other_settings():
    values, problem = check_update(DEFAULTS, _set(threshold=-100.0, decision_score='local'), SCORES)
    assert problem == ''
    assert values == {**DEFAULTS, 'threshold': -100.0, 'decision_score': 'local'}


def test_configure_detector_keeps_the_bundles_choices_for_empty_and_nan():
    calls = []
    detector = SimpleNamespace(decision_score='fused', set_threshold=calls.append, is_calibrated=False)
    configure_detector(detector, DEFAULTS)
    assert (detector.decision_score, calls) == ('fused', [])
    configure_detector(detector, {**DEFAULTS, 'decision_score': 'local', 'threshold': 2.5})
    assert (detector.decision_score, calls) == ('local', [2.5])


def test_setting_the_threshold_it_already_has_keeps_the_detectors_record_of_it():
    calls = []
    detector = SimpleNamespace(decision_score='fused', set_threshold=calls.append, is_calibrated=True, threshold_=2.5)
    configure_detector(detector, {**DEFAULTS, 'threshold': 2.5})  # what ~/calibrate does after calibrating
    assert calls == []
    configure_detector(detector, {**DEFAULTS, 'threshold': 3.0})
    assert calls == [3.0]
