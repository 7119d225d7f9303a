"""What a robot pays to run the default model: start-up, memory, disk, latency, and score agreement.

Each way of running the shipped model is measured in a fresh process:

* ``.pt`` with eager PyTorch, ``.pt`` with ONNX Runtime (PyTorch still loaded to read the
  weights), and the exported ``.onnx`` bundle, which never imports PyTorch;
* start-up (import, load, first frame), peak resident memory, scoring latency per 64x64 frame at
  batch 1, and the largest difference of every score from eager PyTorch on the same frames.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=500, help='64x64 corridor frames scored')
    args = parser.parse_args()
    if not (REPO / 'models' / 'default.onnx').is_file():
        raise SystemExit('models/default.onnx missing: visual-anomaly-train export models/default.pt')
    frames = corridor_frames(args.frames, 64, seed=3)
    results: dict = {'frames': args.frames, 'variants': {}}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / 'frames.npy', frames)
        scores = {}
        for name, (bundle, backend) in VARIANTS.items():
            out = Path(tmp) / f'{len(scores)}.npz'
            child = CHILD.format(latency_frames=min(args.frames, 300))
            command = [sys.executable, '-c', child, str(REPO / 'models' / bundle), backend, f'{tmp}/frames.npy', out]
            report = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
            results['variants'][name] = json.loads(report.stdout.strip().splitlines()[-1])
            scores[name] = dict(np.load(out))
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
