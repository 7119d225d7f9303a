"""What a robot pays to run the default model: start-up, memory, disk, latency, and score agreement.

Each way of running the shipped model is measured in a fresh process:

* ``.pt`` with eager PyTorch, ``.pt`` with ONNX Runtime (PyTorch still loaded to read the
  weights), and the exported ``.onnx`` bundle, which never imports PyTorch;
* start-up (import, load, first frame), peak resident memory, scoring latency per 64x64 frame at
  batch 1, and the largest difference of every score from eager PyTorch on the same frames.

The variants run in turn, ``--rounds`` times: a 2-core machine whose speed changes within
minutes then slows all of them alike, and the medians over the rounds are reported (each round's
latency is kept in the JSON).

    python bench/bench_footprint.py            # writes bench/results/footprint.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import corridor_frames, table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {  # name: (bundle, backend)
    'pt, torch': ('default.pt', 'torch'),
    'pt, onnxruntime': ('default.pt', 'onnxruntime'),
    'onnx (no PyTorch)': ('default.onnx', 'onnxruntime'),
}
CHILD = """
import json, resource, sys, time
start = time.perf_counter()
import numpy as np
from visual_anomaly.core import load_bundle
model = load_bundle(sys.argv[1], 'cpu', sys.argv[2])
frames = np.load(sys.argv[3])
model.detect_resized(frames[:1])
startup = time.perf_counter() - start
latencies = []
for frame in frames[:{latency_frames}]:
    tick = time.perf_counter()
    model.detect_resized(frame[None])
    latencies.append(time.perf_counter() - tick)
result = model.detect_resized(frames)
np.savez(sys.argv[4], **result.scores)
print(json.dumps({{
    'startup_s': startup,
    'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    'latency_ms_p50': float(np.percentile(latencies, 50)) * 1e3,
    'torch_imported': 'torch' in sys.modules,
}}))
"""


def installed_mb(package: str) -> float | None:
    """Disk size of an installed package's folder."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return sum(f.stat().st_size for f in folder.rglob('*') if f.is_file()) / 1e6


def run_variant(bundle: str, backend: str, frames_file: Path, latency_frames: int) -> tuple[dict, dict]:
    """One fresh process scoring with ``bundle`` on ``backend``: its figures and its scores of every frame."""
    out = frames_file.with_name(f'{bundle}.{backend}.npz')
    child = CHILD.format(latency_frames=latency_frames)
    command = [sys.executable, '-c', child, str(REPO / 'models' / bundle), backend, str(frames_file), str(out)]
    report = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(report.stdout.strip().splitlines()[-1]), dict(np.load(out))


def median_of(runs: list[dict]) -> dict:
    """The rounds of one variant as one entry: median start-up and latency, largest peak memory."""
    return {
        'startup_s': float(np.median([run['startup_s'] for run in runs])),
        'peak_rss_mb': max(run['peak_rss_mb'] for run in runs),
        'latency_ms_p50': float(np.median([run['latency_ms_p50'] for run in runs])),
        'latency_ms_p50_rounds': [run['latency_ms_p50'] for run in runs],
        'torch_imported': runs[0]['torch_imported'],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=500, help='64x64 corridor frames scored')
    parser.add_argument('--rounds', type=int, default=3, help='runs of every variant, in turn; medians reported')
    args = parser.parse_args()
    if not (REPO / 'models' / 'default.onnx').is_file():
        raise SystemExit('models/default.onnx missing: visual-anomaly-train export models/default.pt')
    if args.rounds < 1:
        raise SystemExit(f'--rounds must be at least 1, got {args.rounds}')
    frames = corridor_frames(args.frames, 64, seed=3)
    results: dict = {'frames': args.frames, 'rounds': args.rounds, 'variants': {}}
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        frames_file = Path(tmp) / 'frames.npy'
        np.save(frames_file, frames)
        for _ in range(args.rounds):
            for name, (bundle, backend) in VARIANTS.items():
                figures, scores[name] = run_variant(bundle, backend, frames_file, min(args.frames, 300))
                runs[name].append(figures)
    results['variants'] = {name: median_of(variant_runs) for name, variant_runs in runs.items()}
    reference = scores['pt, torch']
    for name, entry in results['variants'].items():
        entry['max_abs_score_difference'] = {
            kind: float(np.abs(values - reference[kind]).max()) for kind, values in scores[name].items()
        }
    results['installed_mb'] = {package: installed_mb(package) for package in ('torch', 'onnxruntime', 'onnx')}
    path = write_results('footprint', results)
    rows = [
        [
            name,
            f'{e["startup_s"]:.2f}',
            f'{e["peak_rss_mb"]:.0f}',
            f'{e["latency_ms_p50"]:.2f}',
            'yes' if e['torch_imported'] else 'no',
            f'{max(e["max_abs_score_difference"].values()):.1e}',
        ]
        for name, e in results['variants'].items()
    ]
    print(table(rows, ['model', 'start-up s', 'peak RSS MB', 'p50 ms/frame', 'PyTorch', 'max |score - torch|']))
    sizes = ', '.join(f'{k} {v:.0f} MB' for k, v in results['installed_mb'].items() if v is not None)
    print(f'installed: {sizes}\nresults in {path}')


if __name__ == '__main__':
    main()
