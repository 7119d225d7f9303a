"""The node's ROS parameters: one table of names, defaults, descriptions and ranges, and their checks.

``ros2 param describe /visual_anomaly <name>`` shows each description; ranges and ``read_only`` are
enforced by rclpy, the rules between parameters by :func:`validate` (at start-up and on every change).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.node import Node

from visual_anomaly.core import SCORE_KINDS, FrameScorer
from visual_anomaly.core.thresholds import MIN_FRAMES_ABOVE, calibration_shortfall
from visual_anomaly.core.visualization import COLORMAPS
from visual_anomaly.data.image_conversion import MAX_FRAME_PIXELS, MAX_SIDE
from visual_anomaly.ros.qos import RELIABILITY_CHOICES


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: its default, what ``ros2 param describe`` says, and its allowed range."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    integer: tuple[int, int] | None = None
    floating: tuple[float, float] | None = None

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.integer is not None:
            low, high = self.integer
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
        if self.floating is not None:
            low, high = self.floating
            descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
        return descriptor


PARAMETERS = (
    ParameterSpec(
        'model_path',
        '',
        'Model bundle: .pt, or .onnx (CPU, no PyTorch needed); empty = the model shipped with the package',
        read_only=True,
    ),
    ParameterSpec('device', 'auto', 'auto (CUDA when available), cpu, cuda or cuda:N', read_only=True),
    ParameterSpec(
        'backend',
        'auto',
        'auto (ONNX Runtime on the CPU when installed, else PyTorch), torch or onnxruntime',
        read_only=True,
    ),
    ParameterSpec(
        'decision_score',
        '',
        f'Score the decision uses: {", ".join(SCORE_KINDS)} '
        "(change needs a bundle with a patrol memory, oe and fused one with an OE head); empty = the bundle's",
    ),
    ParameterSpec(
        'threshold',
        float('nan'),
        "Decision threshold on the decision score; NaN = the bundle's calibrated threshold; ~/calibrate sets it",
    ),
    ParameterSpec(
        'calibration_frames',
        1000,
        'Frames the ~/calibrate service treats as normal: the next ones the node scores; '
        f'at least {MIN_FRAMES_ABOVE}/calibration_fpr',
        integer=(MIN_FRAMES_ABOVE, 20000),
    ),
    ParameterSpec(
        'calibration_fpr', 0.01, 'False-positive rate ~/calibrate sets the threshold at', floating=(0.0005, 0.5)
    ),
    ParameterSpec(
        'calibration_output',
        '',
        'File ~/calibrate writes the re-calibrated bundle to (same format as the model: .pt or .onnx); '
        'empty = keep the new threshold in memory only',
    ),
    ParameterSpec(
        'compressed', False, 'Subscribe to sensor_msgs/CompressedImage (remap image:=.../compressed)', read_only=True
    ),
    ParameterSpec(
        'reliability',
        'auto',
        'Input QoS reliability: auto (match the publishers: reliable when they all are, else best-effort), '
        'reliable or best_effort',
        read_only=True,
    ),
    ParameterSpec(
        'queue_depth',
        10,
        'Input QoS depth (frames DDS holds until the node takes them); the node scores only the '
        'newest frame it holds and counts the others as dropped',
        read_only=True,
        integer=(1, 100),
    ),
    ParameterSpec(
        'max_frame_pixels',
        MAX_FRAME_PIXELS,
        'Largest frame the node takes, in pixels (width x height; a compressed frame is refused from its '
        'header, before decoding); default 4096 x 4096',
        integer=(1, MAX_SIDE * MAX_SIDE),
    ),
    ParameterSpec('publish_every_n', 1, 'Score every N-th received frame (1 = all)', integer=(1, 1000)),
    ParameterSpec(
        'heatmap_size', 256, 'Side of the published heatmap in pixels; 0 = the input frame size', integer=(0, 4096)
    ),
    ParameterSpec('heatmap_colormap', 'jet', f'Heatmap colormap: {", ".join(COLORMAPS)}'),
    ParameterSpec('overlay_alpha', 0.5, 'Heatmap opacity in the overlay image', floating=(0.0, 1.0)),
    ParameterSpec(
        'smoothing_window',
        1,
        'Temporal smoothing: decide over the last N frames (1 = off)',
        read_only=True,
        integer=(1, 100),
    ),
    ParameterSpec(
        'smoothing_min_hits', 1, '... and raise the flag when at least K of them are anomalous', integer=(1, 100)
    ),
    ParameterSpec(
        'publish_marker', False, 'Also publish a visualization_msgs/Marker text with the state', read_only=True
    ),
    ParameterSpec(
        'diagnostics_period', 1.0, 'Seconds between /diagnostics messages', read_only=True, floating=(0.1, 60.0)
    ),
    ParameterSpec(
        'no_input_warning',
        5.0,
        'Seconds without frames before the node explains why',
        read_only=True,
        floating=(0.5, 600.0),
    ),
)


def declare_parameters(node: Node, check: bool = True) -> dict[str, Any]:
    """Declare every parameter on ``node``; return their values, or raise ValueError saying which is wrong
    (a value of the wrong type or out of range always; one that does not fit the others only with ``check``)."""
    try:
        values = {
            spec.name: node.declare_parameter(spec.name, spec.default, spec.descriptor()).value for spec in PARAMETERS
        }
    except ParameterException as error:  # a value of the wrong type or out of its range
        raise ValueError(error.args[0]) from error
    problem = validate(values) if check else ''
    if problem:
        raise ValueError(problem)
    return values


def validate(values: dict[str, Any]) -> str:
    """Why the parameter ``values`` do not go together, or '' when they do."""
    if values['decision_score'] and values['decision_score'] not in SCORE_KINDS:
        return f'decision_score must be one of {SCORE_KINDS} or empty, got {values["decision_score"]!r}'
    if values['reliability'] not in RELIABILITY_CHOICES:
        return f'reliability must be one of {RELIABILITY_CHOICES}, got {values["reliability"]!r}'
    if values['heatmap_colormap'] not in COLORMAPS:
        return f'heatmap_colormap must be one of {sorted(COLORMAPS)}, got {values["heatmap_colormap"]!r}'
    if values['smoothing_min_hits'] > values['smoothing_window']:
        return 'smoothing_min_hits must not exceed smoothing_window'
    if math.isinf(values['threshold']):
        return 'threshold must be finite (or NaN for the calibrated one)'
    shortfall = calibration_shortfall(values['calibration_frames'], values['calibration_fpr'])
    if shortfall:
        return f'calibration_frames: {shortfall}'
    return ''


def check_update(
    settings: dict[str, Any], parameters: Iterable[Any], available_scores: Sequence[str]
) -> tuple[dict[str, Any], str]:
    """The settings once ``parameters`` (rclpy Parameters) are set, and why they cannot be ('' when they can)."""
    changes = {parameter.name: parameter.value for parameter in parameters}
    values = {**settings, **changes}
    problem = validate(values)
    if not problem and values['decision_score'] and values['decision_score'] not in available_scores:
        problem = f'this model offers decision scores {available_scores}'
    if not problem and 'threshold' in changes and not math.isfinite(values['threshold']):
        problem = 'the calibrated threshold cannot be restored at run time; set a number or restart the node'
    return values, problem


def configure_detector(detector: FrameScorer, values: dict[str, Any]) -> None:
    """Apply the decision score and threshold of ``values`` (empty / NaN = keep the bundle's) to ``detector``.

    A threshold equal to the detector's keeps its record of how it was calibrated.
    """
    if values['decision_score']:
        detector.decision_score = values['decision_score']
    threshold = values['threshold']
    if math.isfinite(threshold) and not (detector.is_calibrated and detector.threshold_ == threshold):
        detector.set_threshold(threshold)
