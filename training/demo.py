"""The README's main job: the whole product on a synthetic patrol.

It generates a patrol of a ground robot through corridors with anomalies in them, records it as
a rosbag2, scores the bag offline with the detector core (report, plots, overlay video), then
starts the real node as a process, replays the bag into it through DDS and reports what the
node said: ROC-AUC, F1 at the threshold, frames processed, latency and dropped frames. It uses
the default model shipped with the package, or trains a small one first with ``--train``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from visual_anomaly.bag_tools import dataset_to_bag, evaluate_bag
from visual_anomaly.core import (
    AutoencoderConfig,
    ConvAutoencoder,
    Detector,
    PreprocessingConfig,
    Preprocessor,
    resize_frames,
    save_bundle,
)
from visual_anomaly.live_replay import replay_bag
from visual_anomaly.node import default_model_path

from .autoencoder import TrainConfig, fit_autoencoder
from .corridor_world import CorridorWorld, FrameInfo, generate_frames, write_split


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='visual-anomaly-demo',
        description='Show the visual anomaly detector end to end on a synthetic robot patrol: generate the patrol, '
        'record it as a rosbag2, evaluate the bag offline, then replay it through DDS into the running node and '
        'report detection quality, latency and dropped frames.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument('--out', type=Path, default=Path('runs/demo'), help='output folder')
    parser.add_argument('--model', type=Path, help='model bundle (default: the model shipped with the package)')
    parser.add_argument('--train', action='store_true', help='train a small model on generated corridors first')
    parser.add_argument('--frames', type=int, default=600, help='patrol length in frames')
    parser.add_argument('--camera-rate', type=float, default=10.0, help='camera frame rate of the patrol, Hz')
    parser.add_argument('--replay-speed', type=float, default=2.0, help='replay at this multiple of real time')
    parser.add_argument('--anomaly-rate', type=float, default=0.3, help='share of frames showing an anomaly')
    parser.add_argument('--render-size', type=int, default=256, help='side of the camera frames, pixels')
    parser.add_argument('--device', default='cpu', help='device of the node and evaluation: auto, cpu, cuda:N')
    parser.add_argument('--seed', type=int, default=1, help='seed of the patrol')
    return parser


def train_small_model(out: Path, render_size: int, seed: int = 0, device: str = 'auto') -> Path:
    """Train an F=16 autoencoder on 1,500 generated corridor frames; calibrate it at 1% FPR on a normal patrol.

    The threshold is set on 300 frames of a separate, anomaly-free patrol at the camera's size, as
    a user calibrates on a normal recording of the robot that will run the model.
    """
    normal, _ = generate_frames(1500, seed=2 * seed + 1, image_size=128, world_seed=0)
    train = resize_frames(normal, 'rgb', 64)
    world = CorridorWorld(seed=0, image_size=render_size)
    rng = np.random.default_rng(1000 + seed)
    patrol = np.concatenate([world.patrol(75, rng, 0.0, env=env, speed_m_per_frame=0.08)[0] for env in range(4)])
    validation = resize_frames(patrol, 'rgb', 64)
    model = ConvAutoencoder(AutoencoderConfig(base_channels=16))
    config = TrainConfig(epochs=15, seed=seed, device=device, lr_patience=3, early_stopping_patience=6)
    history = fit_autoencoder(model, train, validation, Preprocessor(PreprocessingConfig()), config)
    detector = Detector(model, device=device)
    detector.calibrate(validation, fpr=0.01)
    provenance = {
        'trained_on': 'synthetic corridor world (demo --train), calibrated on a normal patrol',
        'seed': seed,
        'train_frames': len(train),
        'best_epoch': history.best_epoch,
    }
    return save_bundle(out / 'model.pt', detector, provenance)


def generate_patrol(root: Path, frames: int, anomaly_rate: float, size: int, seed: int) -> list[FrameInfo]:
    """A patrol through the four corridors of the default model's world, written as a test split."""
    world = CorridorWorld(seed=0, image_size=size)
    rng = np.random.default_rng(seed)
    parts = [
        world.patrol(frames // 4 + (i < frames % 4), rng, anomaly_rate, env=i, speed_m_per_frame=0.08) for i in range(4)
    ]
    images = np.concatenate([p[0] for p in parts])
    infos = [info for p in parts for info in p[1]]
    write_split(root, 'test_set', images, infos, seed)
    return infos


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    # A private DDS domain unless the user chose one: the demo must not talk to a robot nearby.
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(0, 101)))
    if args.train:
        print('[0/4] training a small model on generated corridors (--train)')
        model = train_small_model(out, args.render_size, device=args.device)
    else:
        model = args.model or Path(default_model_path())
    if not model.is_file():
        raise FileNotFoundError(f'{model}: model bundle not found (train one with --train)')

    print(f'[1/4] generating a {args.frames}-frame patrol with anomalies ({args.anomaly_rate:.0%} of frames)')
    infos = generate_patrol(out / 'patrol', args.frames, args.anomaly_rate, args.render_size, args.seed)
    print(f'[2/4] recording it as a rosbag2 at {args.camera_rate:g} Hz')
    bag = dataset_to_bag(out / 'patrol', out / 'patrol_bag', split='test', rate_hz=args.camera_rate, progress=False)
    print('[3/4] scoring the bag offline with the detector core')
    offline = evaluate_bag(model, bag, out / 'offline', device=args.device, video=out / 'overlay.mp4', progress=False)
    print(f'[4/4] replaying the bag at {args.replay_speed:g}x through DDS into the node (a separate process)')
    live = replay_bag(bag, out / 'live', model=str(model), rate=args.replay_speed, device=args.device)

    detection, counters = live['detection'], live['node_counters']
    latency, processing = live['end_to_end_ms'], live['processing_ms']
    summary = {
        'model': str(model),
        'frames': len(infos),
        'anomalous_frames': sum(info.label > 0 for info in infos),
        'offline_roc_auc': offline['evaluation'][offline['decision_score']]['overall']['roc_auc'],
        'live': live,
        'seconds': round(time.perf_counter() - started, 1),
    }
    (out / 'summary.json').write_text(json.dumps(summary, indent=2))
    print()
    print(f'model: {model}')
    print(
        f'live replay: ROC-AUC {detection["roc_auc"]:.3f}, F1 {detection["f1"]:.3f} at threshold '
        f'{detection["threshold"]:.2f} (precision {detection["precision"]:.3f}, recall {detection["recall"]:.3f}); '
        f'offline ROC-AUC {summary["offline_roc_auc"]:.3f}'
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
    return summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    try:
        run(_parser().parse_args(argv))
    except (FileNotFoundError, ValueError, TimeoutError) as error:
        print(f'visual-anomaly-demo: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
