"""Detection quality through the README's own "detector for your building" workflow, in three worlds.

For each world (``corridor`` and ``photo-b``: tuning; ``photo-c``: held out, never used to choose
methods or settings) it records a normal patrol bag and a test bag with anomalies in episodes plus
an intervals CSV of them, then runs the command-line tools with their default settings:

    visual-anomaly-bag to-training-set PATROL_BAG DATA
    visual-anomaly-train train --data DATA --out RUN --no-outlier-exposure
    visual-anomaly-bag evaluate RUN/model.pt TEST_BAG --labels intervals.csv --out EVAL

and collects ROC-AUC, PR-AUC, recall at 1% FPR, the observed FPR at the calibrated threshold and
per-class ROC-AUC of our decision score and of each trivial baseline. Bags are cached under
``--keep`` by a key of what generated them, so a re-run only re-trains and re-evaluates.

``--epochs N`` caps the autoencoder's training (default: until it converges, tens of minutes per
world on 2 CPU cores). Without outlier exposure the decision score is the change against the
patrol memory, which reads no autoencoder weight, so its figures and the baselines' are the same
for any N; the results record N.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_results  # noqa: E402

from training.world import WORLDS, FrameInfo, make_world, world_class_names, world_classes, write_split  # noqa: E402
from visual_anomaly.bags.convert import dataset_to_bag  # noqa: E402

HELD_OUT = ('photo-c',)
RATE_HZ = 10.0
SPEED_M_PER_FRAME = 0.15  # 1.5 m/s at the camera's 10 Hz
APPEAR_AHEAD_M = 2.5  # objects come into view this far ahead (as the demo's patrol)
CORRIDORS = 4  # each world's corridors, patrolled in turn
DATA_VERSION = 2  # bump when the generation below changes, to invalidate cached bags


@dataclass(frozen=True)
class Sizes:
    """How much is generated and how long training may run."""

    patrol_frames: int = 3000
    patrol_passes: int = 6
    test_frames: int = 1200
    test_passes: int = 4
    anomaly_rate: float = 0.3
    image_size: int = 128
    epochs: int | None = None  # None: the default (train to convergence)


FULL = Sizes()
QUICK = Sizes(patrol_frames=1200, patrol_passes=2, test_frames=200, test_passes=2, image_size=64, epochs=2)


def _passes(
    world: str, sizes: Sizes, seed: int, frames: int, passes: int, anomaly_rate: float
) -> tuple[np.ndarray, list[FrameInfo], np.ndarray]:
    """``passes`` drives through the world's corridors in turn; frames, their ground truth, masks.

    The world's classes, shuffled, are dealt out to the passes, so that every class shows up.
    """
    renderer = make_world(world, seed=0, image_size=sizes.image_size, n_environments=CORRIDORS, jpeg_quality=None)
    rng = np.random.default_rng(seed)
    classes = rng.permutation(world_classes(world, None))
    parts = [
        renderer.patrol(
            frames // passes + (i < frames % passes),
            rng,
            anomaly_rate,
            classes=classes[i::passes].tolist(),
            env=i % CORRIDORS,
            speed_m_per_frame=SPEED_M_PER_FRAME,
            appear_ahead_m=APPEAR_AHEAD_M,
        )
        for i in range(passes)
    ]
    infos = [info for part in parts for info in part[1]]
    return np.concatenate([p[0] for p in parts]), infos, np.concatenate([p[2] for p in parts])


def write_intervals(path: Path, labels: np.ndarray, names: dict[int, str]) -> int:
    """Write the runs of anomalous frames as a ``start,end,label`` CSV (seconds after the first frame)."""
    rows = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            if labels[start]:
                rows.append((f'{start / RATE_HZ:.3f}', f'{(i - 1) / RATE_HZ:.3f}', names[int(labels[start])]))
            start = i
    with path.open('w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(('start', 'end', 'label'))
        writer.writerows(rows)
    return len(rows)


def _record(root: Path, name: str, passes: tuple, seed: int) -> Path:
    """Write frames as a dataset split, then as a bag at RATE_HZ (class codes as its ground truth); its path."""
    frames, infos, masks = passes
    write_split(root / f'{name}_dataset', 'test_set', frames, infos, seed, masks=masks)
    bag = dataset_to_bag(root / f'{name}_dataset', root / f'{name}_bag', split='test', rate_hz=RATE_HZ, progress=False)
    shutil.rmtree(root / f'{name}_dataset')
    return bag


def generate(world: str, sizes: Sizes, seed: int, keep: Path) -> tuple[Path, dict]:
    """The world's patrol bag, test bag and intervals CSV under ``keep`` (reused when the key matches)."""
    key = f'{world}-v{DATA_VERSION}-s{seed}-{sizes.patrol_frames}x{sizes.patrol_passes}-{sizes.test_frames}'
    key += f'x{sizes.test_passes}-r{sizes.anomaly_rate:g}-{sizes.image_size}px'
    root = keep / key
    facts_path = root / 'facts.json'
    if facts_path.is_file():
        return root, json.loads(facts_path.read_text())
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    started = time.perf_counter()
    _record(root, 'patrol', _passes(world, sizes, seed * 2 + 1, sizes.patrol_frames, sizes.patrol_passes, 0.0), seed)
    test = _passes(world, sizes, seed * 2 + 2, sizes.test_frames, sizes.test_passes, sizes.anomaly_rate)
    _record(root, 'test', test, seed + 1)
    labels = np.array([info.label for info in test[1]], np.int64)
    names = world_class_names(world)
    episodes = write_intervals(root / 'intervals.csv', labels, names)
    facts = {
        'key': key,
        'generation_seconds': round(time.perf_counter() - started, 1),
        'patrol_frames': sizes.patrol_frames,
        'test_frames': len(labels),
        'anomalous_frames': int((labels > 0).sum()),
        'episodes': episodes,
        'classes': {names[int(code)]: int((labels == code).sum()) for code in np.unique(labels) if code},
    }
    facts_path.write_text(json.dumps(facts, indent=2))
    return root, facts


def _cli(tool: str, *args: str) -> None:
    """Run a console command of the package (installed beside this Python), failing loudly with its output."""
    command = [str(Path(sys.executable).parent / tool), *args, '--quiet']
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        output = (done.stdout + done.stderr)[-4000:]
        raise RuntimeError(f'{" ".join(command)} failed ({done.returncode}):\n{output}')


def workflow(root: Path, sizes: Sizes) -> tuple[dict, dict]:
    """The README's workflow on the world's bags; the evaluation's metrics and the seconds of each step."""
    data, run, evaluation = root / 'data', root / 'run', root / 'eval'
    for folder in (data, run, evaluation):
        shutil.rmtree(folder, ignore_errors=True)
    seconds = {}
    started = time.perf_counter()
    _cli('visual-anomaly-bag', 'to-training-set', str(root / 'patrol_bag'), str(data))
    seconds['to_training_set'] = round(time.perf_counter() - started, 1)
    epochs = () if sizes.epochs is None else ('--epochs', str(sizes.epochs))
    started = time.perf_counter()
    _cli('visual-anomaly-train', 'train', '--data', str(data), '--out', str(run), '--no-outlier-exposure', *epochs)
    seconds['train'] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    labels = str(root / 'intervals.csv')
    _cli('visual-anomaly-bag', 'evaluate', str(run / 'model.pt'), str(root / 'test_bag'), '--labels', labels,
         '--out', str(evaluation))  # fmt: skip
    seconds['evaluate'] = round(time.perf_counter() - started, 1)
    training = json.loads((run / 'metrics.json').read_text()).get('training', {})
    source = json.loads((data / 'metadata' / 'source.json').read_text())
    return json.loads((evaluation / 'metrics.json').read_text()), {**seconds, 'training': training, 'source': source}


def summarize(metrics: dict) -> dict:
    """Per score kind (our decision score first, then the baselines): overall figures and per-class ROC-AUC."""
    decision = metrics['decision_score']
    kinds = [decision, *sorted(kind for kind in metrics['evaluation'] if kind.startswith('baseline:'))]
    summary = {}
    for kind in kinds:
        entry = metrics['evaluation'][kind]
        overall = entry['overall']
        summary[kind] = {
            'roc_auc': overall['roc_auc'],
            'pr_auc': overall['pr_auc'],
            'recall_at_1pct_fpr': overall['recall_at_1pct_fpr'],
            'fpr_at_threshold': overall['false_positive_rate'],
            'recall_at_threshold': overall['recall'],
            'per_class_roc_auc': {name: c['roc_auc'] for name, c in entry['per_class'].items()},
        }
    return {'decision_score': decision, 'scores': summary}


def markdown(results: dict) -> str:
    """Tables: overall figures per world and score, then per-class ROC-AUC of each score."""
    worlds = list(results['worlds'])
    heads = [f'{w} ({"held out" if w in HELD_OUT else "tuning"})' for w in worlds]
    kinds = sorted({k for w in worlds for k in results['worlds'][w]['scores']}, key=lambda k: (k.startswith('b'), k))
    lines = ['| score | ' + ' | '.join(heads) + ' |', '|---' * (len(worlds) + 1) + '|']
    fmt = '{roc_auc:.3f} / {pr_auc:.3f} / {recall_at_1pct_fpr:.3f} / {fpr_at_threshold:.1%}'
    for kind in kinds:
        cells = [fmt.format(**results['worlds'][w]['scores'][kind]) if kind in results['worlds'][w]['scores'] else ''
                 for w in worlds]  # fmt: skip
        lines.append(f'| {kind} | ' + ' | '.join(cells) + ' |')
    lines.append('\nROC-AUC / PR-AUC / recall at 1% FPR / observed FPR at the calibrated threshold\n')
    for world in worlds:
        scores = results['worlds'][world]['scores']
        classes = sorted({c for s in scores.values() for c in s['per_class_roc_auc']})
        rows = [[kind, *(f'{s["per_class_roc_auc"].get(c, float("nan")):.2f}' for c in classes)]
                for kind, s in scores.items()]  # fmt: skip
        lines.append(f'Per-class ROC-AUC, {world}:\n\n' + table(rows, ['score', *classes]) + '\n')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--worlds', default=','.join(WORLDS), help=f'comma-separated, of {", ".join(WORLDS)}')
    parser.add_argument('--quick', action='store_true', help='small bags and 2 epochs: a smoke test')
    parser.add_argument('--keep', type=Path, default=Path('runs/bench_detection'), help='folder for generated data')
    parser.add_argument('--seed', type=int, default=0, help='seed of the generated bags')
    parser.add_argument(
        '--epochs', type=int, help="cap on the autoencoder's epochs (default: to convergence; the decision reads none)"
    )
    args = parser.parse_args(argv)
    worlds = [w.strip() for w in args.worlds.split(',') if w.strip()]
    unknown = sorted(set(worlds) - set(WORLDS))
    if unknown:
        parser.error(f'unknown worlds {unknown}; known: {", ".join(WORLDS)}')
    sizes = QUICK if args.quick else FULL
    if args.epochs is not None:
        if args.epochs < 1:
            parser.error(f'--epochs must be >= 1, got {args.epochs}')
        sizes = replace(sizes, epochs=args.epochs)
    results = {'sizes': asdict(sizes), 'seed': args.seed, 'held_out': list(HELD_OUT), 'worlds': {}}
    for world in worlds:
        root, facts = generate(world, sizes, args.seed, args.keep)
        print(f'{world}: bags in {root} ({facts["generation_seconds"]} s to generate); running the workflow')
        metrics, steps = workflow(root, sizes)
        results['worlds'][world] = {'data': facts, 'steps': steps, **summarize(metrics)}
    path = write_results('detection_quick' if args.quick else 'detection', results)
    print(markdown(results))
    print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
