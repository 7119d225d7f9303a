"""Many bags evaluated at once: bags per minute serial (one process, bag after bag) vs on Ray, per worker count.

A fleet of synthetic corridor bags (CompressedImage JPEG, sqlite3 and MCAP, with ground truth) is
evaluated with the shipped default model, each bag with its full single-bag report:

* serial: ``evaluate_bag`` for one bag after the other in this process (what a loop over the
  single-bag tool does, without its interpreter start per bag), loading the model per bag as that
  tool does, and again with the model loaded once (as each Ray worker does);
* Ray: ``evaluate_fleet`` on an embedded local instance of 1..N workers (one bag per task, one CPU
  each), from ``ray.init`` to shutdown, so worker start-up (importing PyTorch) is counted;
* Ray start-up alone: a local instance up, one trivial task per worker, down.

Every run's scores.csv must equal the serial one byte for byte. Run it nice'd on a shared machine:

    nice -n 10 python bench/bench_fleet.py            # writes bench/results/fleet.json   ~4 min
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_results  # noqa: E402

from training.world import write_hazards_layout  # noqa: E402
from visual_anomaly.bags.convert import dataset_to_bag  # noqa: E402
from visual_anomaly.bags.evaluate import evaluate_bag  # noqa: E402
from visual_anomaly.bags.fleet import Fleet, bag_names, find_bags  # noqa: E402
from visual_anomaly.bags.fleet_evaluate import evaluate_fleet  # noqa: E402
from visual_anomaly.core import load_bundle  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / 'models' / 'default.pt'


def make_fleet(root: Path, robots: int, bags_per_robot: int, frames: int) -> list[Path]:
    """``robots`` x ``bags_per_robot`` bags of ``frames`` 256 px frames each (30% anomalous), a world seed per bag."""
    for robot in range(robots):
        for number in range(bags_per_robot):
            seed = robot * bags_per_robot + number
            data = write_hazards_layout(
                root / 'data' / str(seed), 2, 2, frames, 0, seed=seed, image_size=256, test_anomaly_fraction=0.3
            )
            storage = ('sqlite3', 'mcap')[seed % 2]
            bag = root / 'fleet' / f'robot{robot}' / f'patrol_{number}'
            dataset_to_bag(data, bag, compressed=True, storage=storage, progress=False)
    return find_bags([root / 'fleet'])


def serial(bags: list[Path], out: Path, load_once: bool) -> float:
    """Seconds to evaluate the bags one after the other, loading the model per bag or once."""
    started = time.perf_counter()
    scorer = load_bundle(MODEL, 'cpu') if load_once else None
    for bag, name in bag_names(bags).items():
        evaluate_bag(MODEL, bag, out / 'bags' / name, device='cpu', progress=False, scorer=scorer)
    return time.perf_counter() - started


def on_ray(bags: list[Path], out: Path, workers: int) -> tuple[float, float]:
    """(wall seconds from ray.init to shutdown, mean seconds per bag inside a worker)."""
    started = time.perf_counter()
    fleet = evaluate_fleet(MODEL, bags, out, device='cpu', workers=workers, progress=False)
    wall = time.perf_counter() - started
    if fleet.failures:
        raise RuntimeError(f'{fleet.failures[0].name}: {fleet.failures[0].error}')
    return wall, sum(o.seconds for o in fleet.outcomes) / len(bags)


def startup(workers: int) -> float:
    """Seconds to bring a local instance up, run one trivial task per worker, and take it down."""
    started = time.perf_counter()
    with Fleet(workers, progress=False) as fleet:
        fleet.map(time.sleep, [(str(i), (0.5,)) for i in range(workers)])
    return time.perf_counter() - started - 0.5


def same_scores(bags: list[Path], first: Path, second: Path) -> bool:
    names = bag_names(bags).values()
    return all(
        (first / 'bags' / n / 'scores.csv').read_bytes() == (second / 'bags' / n / 'scores.csv').read_bytes()
        for n in names
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='4 bags of 60 frames (smoke test)')
    parser.add_argument('--max-workers', type=int, default=2, help='Ray workers up to this many (default 2)')
    args = parser.parse_args()
    robots, per_robot, frames = (2, 2, 60) if args.quick else (4, 2, 200)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bags = make_fleet(root, robots, per_robot, frames)
        runs = {'serial': {'seconds': serial(bags, root / 'serial', load_once=False)}}
        runs['serial, model loaded once'] = {'seconds': serial(bags, root / 'serial_once', load_once=True)}
        runs['serial, model loaded once']['identical_to_serial'] = same_scores(
            bags, root / 'serial', root / 'serial_once'
        )
        for workers in range(1, args.max_workers + 1):
            wall, per_bag = on_ray(bags, root / f'ray{workers}', workers)
            runs[f'ray, {workers} workers'] = {
                'workers': workers,
                'seconds': wall,
                'seconds_per_bag_in_worker': per_bag,
                'startup_seconds': startup(workers),
                'identical_to_serial': same_scores(bags, root / 'serial', root / f'ray{workers}'),
            }
    for run in runs.values():
        run['bags_per_minute'] = len(bags) * 60 / run['seconds']
        run['frames_per_second'] = len(bags) * frames / run['seconds']
    base = runs['serial']['seconds']
    rows = [
        [name, f'{r["seconds"]:.1f}', f'{r["bags_per_minute"]:.1f}', f'{base / r["seconds"]:.2f}x',
         f'{r.get("startup_seconds", 0):.1f}', r.get('identical_to_serial', '-')]
        for name, r in runs.items()
    ]  # fmt: skip
    print(f'{len(bags)} bags of {frames} frames (256 px JPEG), default model, full per-bag report')
    print(table(rows, ['run', 'seconds', 'bags/min', 'vs serial', 'Ray start-up s', 'same scores']))
    fleet = {'bags': len(bags), 'frames_per_bag': frames, 'image_size': 256, 'model': MODEL.name}
    fleet['load_average_before_after'] = [load_before, os.getloadavg()[0]]  # other work on the shared cores
    path = write_results('fleet', {'fleet': fleet, 'runs': runs})
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
