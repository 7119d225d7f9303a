"""The README's main job: the whole product on a synthetic patrol (``visual-anomaly-demo``).

It generates a patrol of a ground robot through corridors with anomalies in them, records it as
a rosbag2, scores the bag offline with the detector core (report, plots, overlay video), then
starts the real node as a process, replays the bag into it through DDS and reports what the
node said: ROC-AUC, F1 at the threshold, frames processed, latency and dropped frames. It uses
the default model shipped with the package, or trains a small one first.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.autoencoder import TrainConfig, fit_autoencoder
from training.world import CorridorWorld, FrameInfo, generate_frames, write_split
from visual_anomaly.bags.convert import dataset_to_bag
from visual_anomaly.bags.evaluate import evaluate_bag
from visual_anomaly.core import (
    AutoencoderConfig,
    ConvAutoencoder,
    Detector,
    PreprocessingConfig,
    Preprocessor,
    default_model_path,
    load_bundle,
    resize_frames,
    save_bundle,
)
from visual_anomaly.core.change import fit_memory
from visual_anomaly.data.hazards import HazardsDataset
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES, class_name
from visual_anomaly.evaluation.pixel import pixel_metrics
from visual_anomaly.ros.live_replay import replay_bag

CORRIDORS = 4  # environments of the default model's world, patrolled in turn
SPEED_M_PER_FRAME = 0.15  # 1.5 m/s at the camera's 10 Hz
# Objects come into the patrol's scene this far ahead (out of a door, off a trolley): each stays in view for
# ~15 frames, so that 30% of 600 frames show a dozen classes or more.
APPEAR_AHEAD_M = 2.5


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs; the defaults are those of ``visual-anomaly-demo``."""

    out: Path = Path('runs/demo')
    model: Path | None = None  # None: the model shipped with the package
    train: bool = False  # train a small model on generated corridors first
    frames: int = 600
    camera_rate: float = 10.0
    replay_speed: float = 2.0
    anomaly_rate: float = 0.3
    render_size: int = 256
    device: str = 'cpu'
    seed: int = 1
    progress: bool = True  # progress bars (the command shows them only on a terminal)


def train_small_model(out: Path, render_size: int, seed: int = 0, device: str = 'auto', progress: bool = True) -> Path:
    """Train an F=16 autoencoder on 1,500 generated corridor frames, with a patrol memory of them; calibrate it
    at 1% FPR on a normal patrol.

    The threshold is set on 300 frames of a separate, anomaly-free patrol at the camera's size, as
    a user calibrates on a normal recording of the robot that will run the model.
    """
    normal, _, _ = generate_frames(1500, seed=2 * seed + 1, image_size=128, world_seed=0)
    train = resize_frames(normal, 'rgb', 64)
    world = CorridorWorld(seed=0, image_size=render_size)
    rng = np.random.default_rng(1000 + seed)
    patrol = np.concatenate(
        [world.patrol(75, rng, 0.0, env=env, speed_m_per_frame=SPEED_M_PER_FRAME)[0] for env in range(CORRIDORS)]
    )
    validation = resize_frames(patrol, 'rgb', 64)
    model = ConvAutoencoder(AutoencoderConfig(base_channels=16))
    config = TrainConfig(epochs=15, seed=seed, device=device, lr_patience=3, early_stopping_patience=6)
    history = fit_autoencoder(model, train, validation, Preprocessor(PreprocessingConfig()), config, progress)
    detector = Detector(model, device=device, memory=fit_memory(train, PreprocessingConfig()))
    detector.calibrate(validation, fpr=0.01)
    provenance = {
        'trained_on': 'synthetic corridor world (demo --train), calibrated on a normal patrol',
        'seed': seed,
        'train_frames': len(train),
        'best_epoch': history.best_epoch,
    }
    return save_bundle(out / 'model.pt', detector, provenance)


def generate_patrol(root: Path, frames: int, anomaly_rate: float, size: int, seed: int) -> list[FrameInfo]:
    """A patrol through the four corridors of the default model's world, written as a test split with its masks.

    Each corridor shows its own share of the anomaly classes (all of them, shuffled, dealt out in turn);
    frames are labelled by what is in view.
    """
    world = CorridorWorld(seed=0, image_size=size)
    rng = np.random.default_rng(seed)
    classes = rng.permutation(sorted(set(ANOMALY_CLASSES) - {0}))
    parts = [
        world.patrol(
            frames // CORRIDORS + (i < frames % CORRIDORS),
            rng,
            anomaly_rate,
            classes=classes[i::CORRIDORS],
            env=i,
            speed_m_per_frame=SPEED_M_PER_FRAME,
            appear_ahead_m=APPEAR_AHEAD_M,
        )
        for i in range(CORRIDORS)
    ]
    images = np.concatenate([p[0] for p in parts])
    infos = [info for p in parts for info in p[1]]
    write_split(root, 'test_set', images, infos, seed, masks=np.concatenate([p[2] for p in parts]))
    return infos


def patrol_pixel_metrics(model: Path, patrol: Path, device: str) -> dict[str, float]:
    """Pixel ROC-AUC and PRO of the model's error maps on the patrol's frames, against the masks beside them."""
    split = HazardsDataset(patrol).load('test', progress=False)
    if split.masks is None:
        raise FileNotFoundError(f'{patrol}: the patrol has no test_set_masks folder')
    result = load_bundle(model, device).detect_resized(np.asarray(split.frames))
    return pixel_metrics(result.anomaly_map, split.masks)


def _model(config: DemoConfig, say: Callable[[str], None]) -> Path:
    if config.train:
        say('[0/4] training a small model on generated corridors (--train)')
        model = train_small_model(config.out, config.render_size, device=config.device, progress=config.progress)
    else:
        model = config.model or Path(default_model_path())
    if not model.is_file():
        raise FileNotFoundError(f'{model}: model bundle not found (train one with --train)')
    return model


def run_demo(config: DemoConfig, say: Callable[[str], None] = print) -> dict:
    """Run the demo's four steps (announced through ``say``); returns the summary also written to summary.json.

    The summary holds the model, the patrol's frame counts and anomaly classes, the offline ROC-AUC
    and pixel-level metrics (``offline_pixel``), the live replay's metrics (``live``) and the wall time in seconds.
    """
    started = time.perf_counter()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    # A private DDS domain unless the user chose one: the demo must not talk to a robot nearby.
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(0, 101)))
    model = _model(config, say)
    say(f'[1/4] generating a {config.frames}-frame patrol with anomalies ({config.anomaly_rate:.0%} of frames)')
    infos = generate_patrol(out / 'patrol', config.frames, config.anomaly_rate, config.render_size, config.seed)
    say(f'[2/4] recording it as a rosbag2 at {config.camera_rate:g} Hz')
    bag = dataset_to_bag(out / 'patrol', out / 'patrol_bag', split='test', rate_hz=config.camera_rate, progress=False)
    say('[3/4] scoring the bag offline with the detector core')
    offline = evaluate_bag(model, bag, out / 'offline', device=config.device, video=out / 'overlay.mp4', progress=False)
    say(f'[4/4] replaying the bag at {config.replay_speed:g}x through DDS into the node (a separate process)')
    live = replay_bag(
        bag, out / 'live', model=str(model), rate=config.replay_speed, device=config.device, progress=config.progress
    )
    summary = {
        'model': str(model),
        'frames': len(infos),
        'anomalous_frames': sum(info.label > 0 for info in infos),
        'anomaly_classes': sorted({class_name(info.label) for info in infos if info.label > 0}),
        'offline_roc_auc': offline['evaluation'][offline['decision_score']]['overall']['roc_auc'],
        'offline_pixel': patrol_pixel_metrics(model, out / 'patrol', config.device),
        'live': live,
        'seconds': round(time.perf_counter() - started, 1),
    }
    (out / 'summary.json').write_text(json.dumps(summary, indent=2))
    return summary
