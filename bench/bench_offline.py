"""Offline scoring throughput, model efficiency, training speed, and the thesis' pipelines side by side.

    python bench/bench_offline.py            # writes bench/results/offline.json and prints tables
    python bench/bench_offline.py --quick    # fewer frames and batch sizes, for a smoke run

Measured in one run on the same frames (synthetic 512x512 corridor JPEGs, written once to a
scratch folder):

* ours from the 64x64 cache: ``Detector.detect_resized`` (normalization, forward, every score),
  frames/s per batch size, for the default model and the published F=128 architecture;
* ours from JPEG files: reduced-scale decode + resize on a thread pool feeding batched scoring;
* the thesis' pipelines (seed 004, sections 5.13-5.15) re-implemented in PyTorch: PIL open +
  resize to 64x64 + ``encoder.predict`` + ``decoder.predict`` + MSE, one frame at a time, and
  its batched variant (32 frames per predict call), with the F=128 network it translated;
* efficiency: the model's achieved GFLOP/s (FLOPs counted by torch) over a 2048x2048 fp32
  matmul's GFLOP/s measured in the same run;
* training: seconds per epoch over 50,000 frames, extrapolated from an epoch over fewer frames.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import corridor_frames, rate, table, write_results  # noqa: E402

from training.autoencoder import TrainConfig, fit_autoencoder  # noqa: E402
from visual_anomaly.core import (  # noqa: E402
    AutoencoderConfig,
    ConvAutoencoder,
    Detector,
    Preprocessor,
    default_model_path,  # noqa: E402
    load_bundle,
)
from visual_anomaly.data.hazards import decode_frame, reduced_decode_flag  # noqa: E402

BATCH_SIZES = (1, 8, 32, 64, 128, 256, 512)
THESIS_BATCH = 32
EPOCH_FRAMES = 50_000


def matmul_gflops(size: int = 2048, seconds: float = 2.0, repeats: int = 5) -> float:
    """fp32 GFLOP/s of a square matmul, best of ``repeats``: the machine's practical limit for dense math."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return max(rate(lambda: a @ b, 1, seconds / repeats) for _ in range(repeats)) * 2 * size**3 / 1e9


def flops_per_frame(model: torch.nn.Module) -> float:
    """Forward FLOPs of one 64x64 frame, as counted by torch."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, 64, 64))
    return float(counter.get_total_flops())


def published_detector(backend: str) -> Detector:
    """The published F=128 architecture (untrained: its speed does not depend on the weights)."""
    torch.manual_seed(0)
    return Detector(ConvAutoencoder(AutoencoderConfig(base_channels=128)), device='cpu', backend=backend)


def write_jpegs(folder: Path, count: int) -> list[Path]:
    frames = corridor_frames(count, 512)
    paths = []
    for i, frame in enumerate(frames):
        path = folder / f'{i:05d}.jpg'
        cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def ours_from_jpeg(detector: Detector, paths: list[Path], batch_size: int = 256) -> float:
    """Frames/s from JPEG files: reduced-scale decode on a thread pool, batched scoring."""
    flag = reduced_decode_flag(512, 64)
    start = time.perf_counter()
    with ThreadPoolExecutor() as pool:
        for first in range(0, len(paths), batch_size):
            batch = np.stack(list(pool.map(lambda p: decode_frame(p, flag, 64), paths[first : first + batch_size])))
            detector.detect_resized(batch)
    return len(paths) / (time.perf_counter() - start)


@torch.no_grad()
def thesis_frame_by_frame(model: ConvAutoencoder, paths: list[Path]) -> float:
    """Seed 004, extract 5.13/5.14: per frame PIL open, resize, encoder.predict, decoder.predict, MSE."""
    start = time.perf_counter()
    for path in paths:
        image = np.array(Image.open(path).resize((64, 64)))
        batch = torch.from_numpy(np.expand_dims(image, 0)).permute(0, 3, 1, 2).float()
        decoded = model.decode(model.encode(batch))
        float(np.mean(np.square(image - decoded[0].permute(1, 2, 0).numpy())))
    return len(paths) / (time.perf_counter() - start)


@torch.no_grad()
def thesis_batched(model: ConvAutoencoder, paths: list[Path]) -> float:
    """Seed 004, extract 5.15: batches of 32 frames, PIL loop, one predict per half, MSE per image."""
    start = time.perf_counter()
    for first in range(0, len(paths), THESIS_BATCH):
        images = np.array([np.array(Image.open(p).resize((64, 64))) for p in paths[first : first + THESIS_BATCH]])
        batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        decoded = model.decode(model.encode(batch)).permute(0, 2, 3, 1).numpy()
        [float(np.mean(np.square(i.flatten() - d.flatten()))) for i, d in zip(images, decoded, strict=True)]
    return len(paths) / (time.perf_counter() - start)


def training_seconds_per_epoch(frames64: np.ndarray, base_channels: int, measured: int) -> float:
    """One epoch (augmentation on, batch 64) over ``measured`` frames, scaled to EPOCH_FRAMES."""
    model = ConvAutoencoder(AutoencoderConfig(base_channels=base_channels))
    reps = int(np.ceil(measured / len(frames64)))
    train = np.concatenate([frames64] * reps)[:measured]
    config = TrainConfig(epochs=1, device='auto', seed=0)
    start = time.perf_counter()
    fit_autoencoder(model, train, frames64[:64], Preprocessor(), config, progress=False)
    return (time.perf_counter() - start) * EPOCH_FRAMES / measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=1024, help='JPEG frames written and scored')
    parser.add_argument('--quick', action='store_true', help='256 frames, fewer batch sizes, short timings')
    parser.add_argument('--model', default=default_model_path(), help='model bundle (default: the shipped one)')
    parser.add_argument('--backend', default='auto', help='detector backend: auto, torch, onnxruntime')
    args = parser.parse_args(argv)
    count = 256 if args.quick else args.frames
    batch_sizes = (1, 64, 256) if args.quick else BATCH_SIZES
    seconds = 0.5 if args.quick else 2.0

    ours = load_bundle(args.model, 'cpu', args.backend)
    published = published_detector(args.backend)
    probe = matmul_gflops(seconds=seconds)
    results: dict = {'backend': ours.backend, 'matmul_gflops': probe, 'models': {}, 'frames': count}
    with tempfile.TemporaryDirectory() as scratch:
        paths = write_jpegs(Path(scratch), count)
        flag = reduced_decode_flag(512, 64)
        cache = np.stack([decode_frame(p, flag, 64) for p in paths])
        rows = []
        for name, detector in (('default', ours), ('published F=128', published)):
            flops = flops_per_frame(detector.autoencoder)
            entry = {'base_channels': detector.autoencoder.config.base_channels, 'gflops_per_frame': flops / 1e9}
            entry['cache_frames_per_s'] = {}
            for batch in batch_sizes:
                frames = cache[np.arange(batch) % len(cache)]
                fps = rate(lambda f=frames, d=detector: d.detect_resized(f), batch, seconds)
                entry['cache_frames_per_s'][batch] = fps
                rows.append([name, batch, f'{fps:.0f}', f'{fps * flops / 1e9:.1f}', f'{fps * flops / 1e9 / probe:.0%}'])
            best = max(entry['cache_frames_per_s'].values())
            entry['best_efficiency'] = best * flops / 1e9 / probe
            results['models'][name] = entry
        print(f'matmul probe: {probe:.1f} GFLOP/s (2048x2048 fp32)')
        print(table(rows, ['model', 'batch', 'frames/s', 'GFLOP/s', 'of matmul']))

        results['jpeg_frames_per_s'] = {'default': ours_from_jpeg(ours, paths)}
        thesis_model = published.autoencoder
        few = paths[: min(len(paths), 64 if args.quick else 256)]
        results['thesis_frame_by_frame_frames_per_s'] = thesis_frame_by_frame(thesis_model, few)
        results['thesis_batched_frames_per_s'] = thesis_batched(thesis_model, few)
        results['ours_vs_thesis_batched'] = (
            results['jpeg_frames_per_s']['default'] / results['thesis_batched_frames_per_s']
        )
        print(
            table(
                [
                    ['ours, default model, JPEG -> score', f'{results["jpeg_frames_per_s"]["default"]:.0f}'],
                    ['thesis frame by frame (F=128)', f'{results["thesis_frame_by_frame_frames_per_s"]:.1f}'],
                    ['thesis batched (F=128)', f'{results["thesis_batched_frames_per_s"]:.1f}'],
                ],
                ['512x512 JPEG pipeline', 'frames/s'],
            )
        )
        print(f'ours / thesis batched: {results["ours_vs_thesis_batched"]:.0f}x')
        measured = 512 if args.quick else 4096
        results['training_s_per_epoch_50k'] = {
            'default': training_seconds_per_epoch(cache, ours.autoencoder.config.base_channels, measured),
            'measured_frames': measured,
            'device': 'cuda' if torch.cuda.is_available() else 'cpu',
        }
        print(f'training (augmented, batch 64): {results["training_s_per_epoch_50k"]["default"]:.0f} s per epoch '
              f'of 50,000 frames (extrapolated from {measured})')  # fmt: skip
    print(f'results: {write_results("offline" if args.backend == "auto" else f"offline_{args.backend}", results)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
