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
* efficiency: the model's achieved GFLOP/s (the FLOPs its kernels execute, see ``executed_flops``)
  over the machine's theoretical fp32 peak (cores x max clock x FLOPs/cycle, ``peak.py``: a bound
  nothing can exceed) and, for reference, over a 2048x2048 fp32 matmul's GFLOP/s measured in the
  same run (a noisy measurement on a shared machine, run by another library than the model's, so
  a model can beat it);
* training: seconds per epoch over 50,000 frames, extrapolated from an epoch over fewer frames.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import corridor_frames, rate, table, write_results  # noqa: E402
from peak import Peak, theoretical_peak  # noqa: E402

from training.autoencoder import TrainConfig, fit_autoencoder  # noqa: E402
from visual_anomaly.core import (  # noqa: E402
    AutoencoderConfig,
    ConvAutoencoder,
    Detector,
    Preprocessor,
    default_model_path,  # noqa: E402
    load_bundle,
)
from visual_anomaly.core.change import PatrolMemory  # noqa: E402
from visual_anomaly.core.detector import ScoringGraph  # noqa: E402
from visual_anomaly.data.hazards import decode_frame, reduced_decode_flag  # noqa: E402

BATCH_SIZES = (1, 8, 32, 64, 128, 256, 512)
THESIS_BATCH = 32
EPOCH_FRAMES = 50_000


def matmul_gflops(size: int = 2048, seconds: float = 2.0, repeats: int = 5) -> float:
    """fp32 GFLOP/s of a square torch matmul, best of ``repeats``: what dense math reached at that moment
    (not a limit: other processes slow it, and the model runs on other kernels)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return max(rate(lambda: a @ b, 1, seconds / repeats) for _ in range(repeats)) * 2 * size**3 / 1e9


def in_bounds_taps(positions: int, bound: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """(position, kernel tap) pairs along one axis whose other end, position x stride - padding + tap x
    dilation, lies in [0, bound): the taps that touch data rather than the zero padding."""
    offsets = (i * stride - padding + k * dilation for i in range(positions) for k in range(kernel))
    return sum(0 <= offset < bound for offset in offsets)


def layer_flops(layer: torch.nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """FLOPs one frame costs in ``layer`` (the rule of ``executed_flops``); 0 for layers not counted."""
    if isinstance(layer, torch.nn.Linear):
        return 2 * layer.in_features * layer.out_features
    if not isinstance(layer, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
        return 0
    if isinstance(layer.padding, str):
        raise ValueError(f'padding={layer.padding!r} is not counted; give it in pixels')
    outer, inner = (inputs, output) if isinstance(layer, torch.nn.ConvTranspose2d) else (output, inputs)
    sizes = (outer.shape[2:], inner.shape[2:], layer.kernel_size, layer.stride, layer.padding, layer.dilation)
    axes = zip(*sizes, strict=True)
    taps = math.prod(in_bounds_taps(*axis) for axis in axes)
    return 2 * layer.in_channels * layer.out_channels // layer.groups * taps


def executed_flops(detector: Detector) -> dict[str, int]:
    """FLOPs per frame that the kernels of ``detector``'s whole scoring graph execute, by layer type:
    the autoencoder, the outlier-exposure head (and its change encoder) and the patrol memory.

    Counting rule: 2 FLOPs per multiply-add, and only those that touch data. A convolution's output
    pixel multiplies Cin/groups x Cout weights by each kernel tap that falls inside the input, not
    by taps on the zero padding (3x3 layers at 8x8 have 16% of those); a transposed convolution's
    input pixel, each tap that lands inside the output (the zeros its equivalent dilated convolution
    inserts are never multiplied); a linear layer in x out. ONNX Runtime (the default backend) runs
    these convolutions as NCHWc direct kernels, which skip padded taps and use no Winograd or FFT:
    they execute this count. Kernels that multiply the padding too (im2col + GEMM, and torch's
    FlopCounterMode counts that) execute more. Biases, activations, upsampling, normalization and
    scoring are not counted either, so the count, and the efficiency derived from it, are lower bounds.
    The patrol memory's comparison is counted as :func:`memory_flops` says.
    """
    graph = ScoringGraph(detector.autoencoder, detector.preprocessor, detector.oe_head, detector.memory)
    side = detector.image_size
    counts: dict[str, int] = {'PatrolMemory': memory_flops(detector.memory, side)}

    def hook(layer: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        name = type(layer).__name__
        counts[name] = counts.get(name, 0) + layer_flops(layer, inputs[0], output)

    handles = [layer.register_forward_hook(hook) for layer in graph.modules() if not list(layer.children())]
    try:
        with torch.inference_mode():
            graph(torch.zeros(1, side, side, 3, dtype=torch.uint8, device=detector.device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: flops for name, flops in counts.items() if flops}


def memory_flops(memory: PatrolMemory | None, side: int) -> int:
    """The patrol memory's comparison of one frame: its thumbnail lookup (2 x memory frames x thumbnail
    size) and, per pixel, neighbour and shift, 3 subtractions, 3 multiplications, 2 additions (the
    squared difference over the channels) and one minimum. Its 5x5 smoothing is not counted."""
    if memory is None:
        return 0
    shifts = (2 * memory.config.shift + 1) ** 2
    lookup = 2 * memory.size * memory.memory_thumbnails.shape[1]
    return lookup + shifts * memory.config.neighbours * side * side * 9


def fraction_of_peak(gflops: float, peak: Peak) -> float:
    """``gflops`` / the theoretical peak; a rate above the peak means a wrong FLOP count, so it raises."""
    if gflops > peak.gflops:
        raise RuntimeError(f'{gflops:.1f} GFLOP/s exceeds the theoretical peak {peak.gflops:.1f}: FLOPs miscounted')
    return gflops / peak.gflops


def cache_throughput(
    name: str, detector: Detector, cache: np.ndarray, batch_sizes: tuple[int, ...], seconds: float, limits: tuple
) -> tuple[dict, list[list]]:
    """Frames/s and efficiency of ``detector.detect_resized`` on cached 64x64 frames per batch size:
    its JSON entry and table rows. ``limits``: the theoretical peak and the matmul probe's GFLOP/s."""
    peak, probe = limits
    by_layer = executed_flops(detector)
    flops = sum(by_layer.values())
    entry: dict = {
        'base_channels': detector.autoencoder.config.base_channels,
        'executed_gflops_per_frame': flops / 1e9,
        'executed_gflops_per_frame_by_layer': {layer: f / 1e9 for layer, f in by_layer.items()},
        'cache_frames_per_s': {},
    }
    rows = []
    for batch in batch_sizes:
        frames = cache[np.arange(batch) % len(cache)]
        fps = rate(lambda f=frames: detector.detect_resized(f), batch, seconds)
        entry['cache_frames_per_s'][batch] = fps
        gflops = fps * flops / 1e9
        rows.append([name, batch, f'{fps:.0f}', f'{gflops:.1f}', f'{fraction_of_peak(gflops, peak):.0%}',
                     f'{gflops / probe:.0%}'])  # fmt: skip
    entry['best_gflops'] = max(entry['cache_frames_per_s'].values()) * flops / 1e9
    entry['best_of_peak'] = fraction_of_peak(entry['best_gflops'], peak)
    entry['best_of_matmul_probe'] = entry['best_gflops'] / probe
    return entry, rows


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
    parser.add_argument('--max-ghz', type=float, help="the CPU's highest clock, for the peak (default: see peak.py)")
    args = parser.parse_args(argv)
    count = 256 if args.quick else args.frames
    batch_sizes = (1, 64, 256) if args.quick else BATCH_SIZES
    seconds = 0.5 if args.quick else 2.0

    ours = load_bundle(args.model, 'cpu', args.backend)
    published = published_detector(args.backend)
    peak, probe = theoretical_peak(args.max_ghz), matmul_gflops(seconds=seconds)
    results: dict = {'backend': ours.backend, 'theoretical_peak': peak.to_dict(), 'models': {}, 'frames': count}
    results['matmul_probe'] = {'gflops': probe, 'size': 2048, 'torch_threads': torch.get_num_threads()}
    print(f'theoretical fp32 peak: {peak.gflops:.1f} GFLOP/s = {peak.assumption}')
    print(f'matmul probe: {probe:.1f} GFLOP/s (2048x2048 fp32, {torch.get_num_threads()} torch threads), '
          f'{fraction_of_peak(probe, peak):.0%} of peak')  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        paths = write_jpegs(Path(scratch), count)
        flag = reduced_decode_flag(512, 64)
        cache = np.stack([decode_frame(p, flag, 64) for p in paths])
        rows = []
        for name, detector in (('default', ours), ('published F=128', published)):
            results['models'][name], model_rows = cache_throughput(
                name, detector, cache, batch_sizes, seconds, (peak, probe)
            )
            rows += model_rows
        print(table(rows, ['model', 'batch', 'frames/s', 'GFLOP/s', 'of peak', 'of matmul']))

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
