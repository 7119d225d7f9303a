"""``visual-anomaly-demo``: the README's main job, the whole product on a synthetic robot patrol.

visual-anomaly-demo                           # the shipped model, a 600-frame patrol, runs/demo
visual-anomaly-demo --train --out runs/mine   # train a small model on generated corridors first
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from training.demo import DemoConfig, run_demo
from visual_anomaly.cli.common import Parser, run, show_progress

DEFAULTS = DemoConfig()


def demo(args: argparse.Namespace) -> None:
    config = DemoConfig(
        out=args.out,
        model=args.model,
        train=args.train,
        frames=args.frames,
        camera_rate=args.camera_rate,
        replay_speed=args.replay_speed,
        anomaly_rate=args.anomaly_rate,
        render_size=args.render_size,
        device=args.device,
        seed=args.seed,
        progress=show_progress(args),
    )
    print_summary(run_demo(config), config.out)


def print_summary(summary: dict, out: Path) -> None:
    """The demo's figures: live and offline detection quality, frame accounting, latency, where the outputs are."""
    live = summary['live']
    detection, counters = live['detection'], live['node_counters']
    latency, processing = live['end_to_end_ms'], live['processing_ms']
    print()
    print(f'model: {summary["model"]}')
    print(
        f'live replay: ROC-AUC {detection["roc_auc"]:.3f}, F1 {detection["f1"]:.3f} at threshold '
        f'{detection["threshold"]:.2f} (precision {detection["precision"]:.3f}, recall {detection["recall"]:.3f}); '
        f'offline ROC-AUC {summary["offline_roc_auc"]:.3f}'
    )
    pixel, classes = summary['offline_pixel'], summary['anomaly_classes']
    print(
        f'patrol: {summary["anomalous_frames"]} of {summary["frames"]} frames show an anomaly '
        f'({summary["anomalous_frames"] / summary["frames"]:.0%}, {len(classes)} classes); offline pixel level: '
        f'ROC-AUC {pixel["roc_auc"]:.3f}, PRO {pixel["pro"]:.3f}'
    )
    print(
        f'frames: {live["frames_published"]} published, {counters.get("processed", 0)} processed, '
        f'{counters.get("dropped", 0)} dropped, {counters.get("rejected", 0)} rejected, '
        f'{live["frames_unaccounted"]} unaccounted'
    )
    if latency:
        print(
            f'latency: end to end p50 {latency["p50"]:.1f} ms, p99 {latency["p99"]:.1f} ms, max '
            f'{latency["max"]:.1f} ms; node processing p50 {processing.get("p50", float("nan")):.1f} ms'
        )
    print(f'report:  {out / "offline" / "report.md"}')
    print(f'plots:   {out / "offline"}/*.png, {out / "live" / "live_timeline.png"}')
    print(f'video:   {out / "overlay.mp4"}')
    print(f'summary: {out / "summary.json"} ({summary["seconds"]} s)')


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog='visual-anomaly-demo',
        description='Show the visual anomaly detector end to end on a synthetic robot patrol: generate the patrol, '
        'record it as a rosbag2, evaluate the bag offline, then replay it through DDS into the running node and '
        'report detection quality, latency and dropped frames.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument('--out', type=Path, default=DEFAULTS.out, help='output folder')
    parser.add_argument('--model', type=Path, help='model bundle (default: the model shipped with the package)')
    parser.add_argument('--train', action='store_true', help='train a small model on generated corridors first')
    parser.add_argument('--frames', type=int, default=DEFAULTS.frames, help='patrol length in frames')
    parser.add_argument(
        '--camera-rate', type=float, default=DEFAULTS.camera_rate, help='camera frame rate of the patrol, Hz'
    )
    parser.add_argument(
        '--replay-speed', type=float, default=DEFAULTS.replay_speed, help='replay at this multiple of real time'
    )
    parser.add_argument(
        '--anomaly-rate', type=float, default=DEFAULTS.anomaly_rate, help='share of frames showing an anomaly'
    )
    parser.add_argument(
        '--render-size', type=int, default=DEFAULTS.render_size, help='side of the camera frames, pixels'
    )
    parser.add_argument(
        '--device', default=DEFAULTS.device, help='device of the node and evaluation: auto, cpu, cuda:N'
    )
    parser.add_argument('--seed', type=int, default=DEFAULTS.seed, help='seed of the patrol')
    parser.add_argument('--quiet', action='store_true', help='no progress bars (they are shown only on a terminal)')
    parser.set_defaults(handler=demo, command=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; errors print one line and return 2."""
    # The demo prints its own figures: warnings only from the libraries (run's INFO set-up then keeps this).
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    return run(_parser(), argv)
