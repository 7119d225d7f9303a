"""Shared pieces of the benchmarks: timing, frames, machine facts and JSON results."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / 'results'


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        'cpu': platform.processor() or platform.machine(),
        'cores': os.cpu_count(),
        'torch': torch.__version__,
        'torch_threads': torch.get_num_threads(),
        'cuda': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        'date': time.strftime('%Y-%m-%d %H:%M:%S'),
    }


def percentiles_ms(seconds: list[float] | np.ndarray) -> dict:
    """p50 / p99 / max (and count) of durations given in seconds, in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {'count': int(ms.size), 'p50': float(np.percentile(ms, 50)), 'p99': float(np.percentile(ms, 99)),
            'max': float(ms.max())}  # fmt: skip


def rate(call: Callable[[], object], items_per_call: int, min_seconds: float = 1.0, warmup: int = 2) -> float:
    """Items per second of ``call``, repeated for at least ``min_seconds`` after ``warmup`` calls."""
    for _ in range(warmup):
        call()
    calls, start = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return calls * items_per_call / elapsed


def corridor_frames(count: int, size: int, seed: int = 0) -> np.ndarray:
    """``count`` RGB frames of the synthetic corridor world (about 30% anomalous), ``size`` pixels square."""
    from training.world import CorridorWorld

    world = CorridorWorld(seed=0, image_size=size)
    frames, _, _ = world.patrol(count, np.random.default_rng(seed), anomaly_rate=0.3, speed_m_per_frame=0.1)
    return frames


def write_results(name: str, results: dict) -> Path:
    """Write ``results`` (with the machine facts) to bench/results/NAME.json and return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f'{name}.json'
    path.write_text(json.dumps({'machine': machine(), **results}, indent=2))
    return path


def table(rows: list[list], header: list[str]) -> str:
    """A plain-text table."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ['  '.join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)
