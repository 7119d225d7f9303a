"""``visual-anomaly-bag``: rosbag2 recordings in and out of the detector; no ROS install needed.

    visual-anomaly-bag from-dataset data/corridors runs/test_bag --compressed     # dataset split -> bag
    visual-anomaly-bag evaluate models/default.pt runs/test_bag --out runs/bag-eval --video runs/bag-eval/overlay.mp4
    visual-anomaly-bag replay runs/test_bag --out runs/live --rate 2                 # through the node over DDS
    visual-anomaly-bag to-training-set patrol_bag data/my_building                # one normal patrol -> training set
    visual-anomaly-bag calibrate models/default.pt patrol_bag --fpr 0.01          # new building's threshold
    visual-anomaly-bag evaluate models/default.pt fleet/ --out runs/fleet --compare runs/new/model.pt  # many bags, Ray
    visual-anomaly-train train --data data/my_building --no-outlier-exposure --out runs/my_building

Topics, stamps and label files follow the conventions of the ``visual_anomaly.bags`` package.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from visual_anomaly.bags.calibrate import calibrate_bag
from visual_anomaly.bags.convert import dataset_to_bag
from visual_anomaly.bags.evaluate import evaluate_bag
from visual_anomaly.bags.fleet import find_bags, single_bag
from visual_anomaly.bags.io import (
    ANOMALY_TOPIC,
    CAMERA_TOPIC,
    COMPRESSED_TOPIC,
    GROUND_TRUTH_TOPIC,
    OVERLAY_TOPIC,
    STORAGES,
)
from visual_anomaly.bags.training_set import bag_to_training_set
from visual_anomaly.cli import bag_fleet
from visual_anomaly.cli.common import Parser, run, show_progress, subcommand

CONVENTIONS_HINT = 'topics, stamps and label files: python -m pydoc visual_anomaly.bags'
TOPIC_HELP = "camera topic (default: the bag's only Image/CompressedImage topic)"
BAG_HELP = 'rosbag2 folder (sqlite3 or mcap) or ROS 1 .bag'
BAGS_HELP = f'{BAG_HELP}; or several, or folders of them (run on Ray, see "many bags")'
ALLOW_PARTIAL_HELP = (
    "go on with a damaged bag's readable messages (default: fail when fewer can be read than its index lists)"
)
BASELINES_HELP = (
    'trivial baselines (PCA, per-pixel Gaussian, thumbnail kNN) to report beside the model '
    '(default: baselines.npz beside the bundle, written by visual-anomaly-train train)'
)


# -- handlers --------------------------------------------------------------------------------------


def from_dataset(args: argparse.Namespace) -> None:
    bag = dataset_to_bag(
        args.data,
        args.bag,
        split=args.split,
        rate_hz=args.rate,
        compressed=args.compressed,
        topic=args.topic,
        storage=args.storage,
        image_size=args.image_size,
        progress=show_progress(args),
    )
    print(f'wrote {bag}')


def evaluate(args: argparse.Namespace) -> int | None:
    from visual_anomaly.evaluation.frames import format_summary  # matplotlib and sklearn: only when needed

    if (bag := single_bag(args.bags)) is None or args.compare is not None:
        return bag_fleet.evaluate(args)
    metrics = evaluate_bag(
        args.bundle,
        bag,
        args.out,
        topic=args.topic,
        labels_csv=args.labels,
        device=args.device,
        batch_size=args.batch_size,
        overlay_bag=args.overlay_bag,
        video=args.video,
        baselines=args.baselines,
        progress=show_progress(args),
        allow_partial=args.allow_partial,
    )
    print(format_summary(metrics))
    print(
        f'{metrics["frames"]} frames scored ({metrics["rejected"]} rejected{_missing(metrics["missing"])}) on '
        f'{metrics["topic"]}, '
        f'{metrics["frames_per_second"]:.0f} frames/s; metrics, plots and report.md in {args.out}'
    )


def to_training_set(args: argparse.Namespace) -> int | None:
    if (bag := single_bag(args.bags)) is None:
        return bag_fleet.to_training_set(args)
    root = bag_to_training_set(bag, args.out, progress=show_progress(args), **bag_fleet.training_set_options(args))
    s = json.loads((root / 'metadata' / 'source.json').read_text())
    change = 'change rule off' if s['change_threshold'] is None else f'change >= {s["change_threshold"]:.2f}'
    print(
        f'kept {s["kept"]} of {s["frames"]} frames: {s["kept_by_change"]} by image change ({change}), '
        f'{s["kept_by_time"]} by time (every {s["every_s"]:g} s); dropped {s["dropped_as_similar"]} too similar, '
        f'{s["dropped_as_duplicates"]} near-duplicates, {s["rejected"]} unreadable{_missing(s["missing"])}\n'
        f'{s["train"]} train, {s["validation"]} validation in {root}\n'
        f'next: visual-anomaly-train train --data {root} --no-outlier-exposure --out runs/{root.name}'
    )


def _missing(count: int) -> str:
    return f', {count} missing from the damaged bag' if count else ''


def calibrate(args: argparse.Namespace) -> int | None:
    if args.pool:
        bags = find_bags(args.bags)
    elif (bags := single_bag(args.bags)) is None:
        return bag_fleet.calibrate(args)
    options = bag_fleet.calibration_options(args)
    done = calibrate_bag(args.model, bags, args.out, progress=show_progress(args), **options)
    before = f'{done.previous.value:.4f}' if done.previous is not None else 'none'
    learnt = f'patrol memory of {done.memory_frames} frames learnt; ' if done.memory_frames else ''
    print(
        f'{learnt}{done.frames} normal frames of {done.topic} ({done.rejected} rejected); {done.decision_score} '
        f'score {done.threshold.describe()} (was {before})\nwrote {done.bundle}'
    )


def replay(args: argparse.Namespace) -> int:
    from visual_anomaly.ros.dds import use_large_frame_transports
    from visual_anomaly.ros.live_replay import format_live_summary, replay_bag  # rclpy: only when needed

    use_large_frame_transports()  # we publish the frames: room for them, else those over 512 KB come 10-15 ms late
    metrics = replay_bag(
        args.bag,
        args.out,
        model=args.model,
        topic=args.topic,
        rate=args.rate,
        device=args.device,
        labels_csv=args.labels,
        progress=show_progress(args),
        allow_partial=args.allow_partial,
    )
    print(format_live_summary(metrics))
    print(f'report in {args.out}')
    return 1 if 'node_log_tail' in metrics else 0


def record(args: argparse.Namespace) -> None:
    from visual_anomaly.ros.live_replay import format_live_summary, record_live  # rclpy: only when needed

    print('recording; play the bag now (ros2 bag play ...)', flush=True)
    metrics = record_live(
        args.bag, args.out, topic=args.topic, labels_csv=args.labels, idle_s=args.idle, allow_partial=args.allow_partial
    )
    print(format_live_summary(metrics))
    print(f'report in {args.out}')


# -- arguments -------------------------------------------------------------------------------------


def _from_dataset_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = subcommand(
        commands,
        'from-dataset',
        from_dataset,
        help='write a dataset split (Hazards&Robots layout) as a camera bag with ground truth',
        description='Write the frames of a Hazards&Robots-layout split, in sorted file order, as a camera '
        f'stream ({CAMERA_TOPIC} Image bgr8, or {COMPRESSED_TOPIC} CompressedImage with --compressed) plus '
        f'{GROUND_TRUTH_TOPIC} (Vector3Stamped: x class code, y difficulty, z environment) under the same stamps. '
        'Play it with "ros2 bag play" or score it offline with "visual-anomaly-bag evaluate".',
    )
    sub.add_argument('data', type=Path, help='dataset root (train_set/, test_set/, metadata/, ...)')
    sub.add_argument('bag', type=Path, help='output bag folder (must not exist)')
    sub.add_argument('--split', default='test', choices=('test', 'outliers', 'validation', 'train'))
    sub.add_argument('--rate', type=float, default=10.0, help='frame rate in Hz for the stamps (default 10)')
    sub.add_argument('--compressed', action='store_true', help='CompressedImage with the JPEG files as they are')
    sub.add_argument('--topic', help=f'camera topic (default {CAMERA_TOPIC}, or {COMPRESSED_TOPIC})')
    sub.add_argument('--storage', default='sqlite3', choices=tuple(STORAGES), help='rosbag2 storage (default sqlite3)')
    sub.add_argument('--image-size', type=int, help='resize frames to this longer side in pixels (default: as stored)')
    return sub


def _evaluate_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = subcommand(
        commands,
        'evaluate',
        evaluate,
        help='score every frame of a bag with a model bundle: metrics, plots, report',
        description='Score every camera frame of a bag offline with the detector (no ROS graph, no dropped '
        'frames) and compare with the ground truth: metrics.json, report.md, ROC curves, score histogram, '
        f'score over time and scores.csv in --out. Labels come from {GROUND_TRUTH_TOPIC} or from --labels.',
    )
    sub.add_argument('bundle', type=Path, help='model bundle (.pt), e.g. models/default.pt')
    sub.add_argument('bags', nargs='+', type=Path, metavar='BAG', help=BAGS_HELP)
    sub.add_argument('--out', type=Path, required=True, help='folder for metrics, plots and report.md')
    sub.add_argument('--topic', help=TOPIC_HELP)
    sub.add_argument(
        '--labels',
        type=Path,
        help='CSV of anomalous intervals "start,end,label" in seconds (relative to the first frame, '
        'or absolute bag time when >= 1e8); replaces the ground-truth topic',
    )
    sub.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:N')
    sub.add_argument('--batch-size', type=int, default=256, help='frames per detector batch')
    sub.add_argument('--overlay-bag', type=Path, help=f'also write {OVERLAY_TOPIC} and {ANOMALY_TOPIC} to this new bag')
    sub.add_argument('--video', type=Path, help='also write the overlays as an MP4 video (mp4v)')
    sub.add_argument('--baselines', type=Path, help=BASELINES_HELP)
    sub.add_argument(
        '--compare', type=Path, help='also evaluate this model; the fleet report lists the bags that changed most'
    )
    bag_fleet.fleet_arguments(sub)
    return sub


def _calibrate_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = subcommand(
        commands,
        'calibrate',
        calibrate,
        help="set a model's threshold on a recorded normal patrol of a new building, without retraining",
        description='Score every camera frame of a bag of normal driving (all of them are treated as normal) and '
        'fit the score normalization and the threshold at --fpr false positives again; the network is unchanged. '
        'Writes a new bundle in the format of MODEL (.pt or .onnx; never MODEL itself) and prints the threshold, '
        'the number of frames and the 95% interval of the false-positive rate to expect on new normal frames. '
        'A target of fpr needs at least 10/fpr frames (1,000 for 1%), so that 10 frames lie above the threshold.',
    )
    sub.add_argument('model', type=Path, help='model bundle (.pt or .onnx), e.g. models/default.pt')
    sub.add_argument('bags', nargs='+', type=Path, metavar='BAG', help=f'{BAGS_HELP}: normal driving, a building each')
    sub.add_argument(
        '--out',
        type=Path,
        help='new bundle (default: MODEL_STEM.calibrated.pt, or .onnx, beside the bag); several bags: a folder, '
        'one bundle per bag in it; several bags with --pool: the one bundle',
    )
    sub.add_argument(
        '--pool',
        action='store_true',
        help='several bags of one building (patrols on other days, in other light): one bundle calibrated on all '
        'their frames together, in the order given (folders: their bags sorted by path); no Ray needed',
    )
    sub.add_argument('--fpr', type=float, default=0.01, help='target false-positive rate (default 0.01)')
    sub.add_argument('--topic', help=TOPIC_HELP)
    sub.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:N')
    sub.add_argument('--batch-size', type=int, default=256, help='frames per detector batch')
    sub.add_argument(
        '--memory',
        action='store_true',
        help='also learn the building itself (.pt bundles): every other of 20 stretches of the patrol becomes the '
        "model's patrol memory, which its change score compares frames with; the threshold is set on the other "
        "stretches and the memory's own frames, each scored without it, so the bag needs the frames fpr needs",
    )
    bag_fleet.fleet_arguments(sub)
    return sub


def _live_arguments(sub: argparse.ArgumentParser, bag_help: str) -> None:
    """The arguments ``replay`` and ``record`` share."""
    sub.add_argument('bag', type=Path, help=bag_help)
    sub.add_argument('--out', type=Path, required=True, help='folder for live_metrics.json and live_timeline.png')
    sub.add_argument('--topic', help=TOPIC_HELP)
    sub.add_argument('--labels', type=Path, help='CSV of anomalous intervals instead of the ground-truth topic')


def _replay_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = subcommand(
        commands,
        'replay',
        replay,
        help='play a bag through DDS into the node (started here) and report what it said',
        description="Start the detector node as its own process, publish the bag's camera frames over DDS at "
        "their recorded pace (times --rate), record the node's anomaly outputs and diagnostics, and report "
        'detection metrics, end-to-end latency, processing time and dropped frames (live_metrics.json, '
        'live_timeline.png in --out). This is what the robot would have said, frame drops included.',
    )
    _live_arguments(sub, 'rosbag2 folder (sqlite3 or mcap) with a camera topic and ground truth')
    sub.add_argument('--model', help='model bundle for the node (default: the shipped default model)')
    sub.add_argument('--rate', type=float, default=1.0, help='playback speed, a multiple of the recorded pace')
    sub.add_argument('--device', default='cpu', help="the node's device: auto, cpu, cuda, cuda:N")
    return sub


def _record_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = subcommand(
        commands,
        'record',
        record,
        help="record a running node's outputs while the bag is played elsewhere (ros2 bag play)",
        description="For a robot's ROS install: with the node running (ros2 launch visual_anomaly "
        'visual_anomaly.launch.py image:=/camera/image_raw) start this, then "ros2 bag play BAG" '
        "in another shell. It records the node's anomaly outputs and diagnostics until the node goes quiet "
        'and writes the same report as "replay" (without end-to-end latency, which needs the publish times). '
        'Frames lost in transport before the node (best-effort QoS) are counted as unaccounted.',
    )
    _live_arguments(sub, 'the bag being played (for its frame stamps and ground truth)')
    sub.add_argument('--idle', type=float, default=5.0, help='stop after this many seconds without an answer')
    return sub


def _to_training_set_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = subcommand(
        commands,
        'to-training-set',
        to_training_set,
        help='turn a recording of a normal patrol into a training set',
        description='Turn a bag of normal driving in your own building into a Hazards&Robots-layout '
        'training set (train_set/, validation_set/, metadata/), then train with '
        '"visual-anomaly-train train --data OUT --no-outlier-exposure --out RUN". Each frame is compared with '
        'the last kept one (the distance: mean absolute difference of 32x32 grey thumbnails, each scaled to '
        'zero mean and unit contrast, so a brightness change alone does not count): a near-duplicate '
        '(below --dedup-threshold: the robot standing still) is dropped; a frame is kept when the view changed '
        'enough (the lowest change threshold that keeps about --target frames) or when --every seconds '
        'passed. So a patrol that keeps moving gives many frames and standing still gives few. Validation is '
        'taken as whole stretches of the patrol. The counts go to metadata/source.json. Record anything '
        'unusual separately: every frame here is treated as normal.',
    )
    sub.add_argument('bags', nargs='+', type=Path, metavar='BAG', help=f'{BAGS_HELP}: a training set each')
    sub.add_argument('out', type=Path, help='dataset root to create (several bags: a folder of them)')
    sub.add_argument('--topic', help=TOPIC_HELP)
    sub.add_argument(
        '--target',
        type=int,
        default=2000,
        help='keep up to about this many frames, the ones where the view changed most (default 2000; fewer when '
        'the view changes less, more when --every alone keeps more; 0: by time only)',
    )
    sub.add_argument(
        '--every', type=float, default=0.5, help='also keep a frame this many seconds after the last kept one (0.5)'
    )
    sub.add_argument('--validation-fraction', type=float, default=0.1, help='share of kept frames for validation')
    sub.add_argument(
        '--dedup-threshold',
        type=float,
        default=0.05,
        help='drop frames closer than this to the last kept one (default 0.05: 5%% of the contrast)',
    )
    sub.add_argument('--block-seconds', type=float, default=30.0, help='length of each validation stretch')
    sub.add_argument('--seed', type=int, default=0, help='seed for placing the validation stretches')
    bag_fleet.fleet_arguments(sub)
    return sub


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog='visual-anomaly-bag',
        description='rosbag2 tools for the visual anomaly detector: make camera bags from datasets, score\n'
        'recorded bags offline against ground truth, replay them live through the node, turn a\n'
        'patrol recording into a training set, or re-calibrate a model on one. Bags are read and written\n'
        'with the rosbags library.\n'
        '"visual-anomaly-bag COMMAND --help" for details.',
        epilog=f'examples:\n{__doc__.split(chr(10) * 2)[1]}\n\n{CONVENTIONS_HINT}',
    )
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    subcommands = (
        _from_dataset_parser,
        _evaluate_parser,
        _replay_parser,
        _record_parser,
        _to_training_set_parser,
        _calibrate_parser,
    )
    for add in subcommands:
        sub = add(commands)
        sub.add_argument('--quiet', action='store_true', help='no progress bars (they are shown only on a terminal)')
        if add is not _from_dataset_parser:
            sub.add_argument('--allow-partial', action='store_true', help=ALLOW_PARTIAL_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; errors print one line and return 2."""
    return run(_parser(), argv)
