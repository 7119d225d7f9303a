"""Calibration and training sets for many bags on Ray: the single-bag tool per bag, a summary for all.

Each bag is one building's patrol: ``calibrate`` writes ``OUT/<name>/<model>.calibrated.pt`` (or
``.onnx``) per bag and ``to-training-set`` a training set in ``OUT/<name>/`` per bag, where ``<name>``
is the bag's path below the folder the bags share (:func:`~visual_anomaly.bags.fleet.bag_names`).
``OUT/calibration.json`` (``.csv``) or ``OUT/training_sets.json`` (``.csv``) list every bag with its
result or the reason it failed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from visual_anomaly.bags.calibrate import calibrate_bag
from visual_anomaly.bags.fleet import Fleet, ModelFiles, Outcome, bag_names
from visual_anomaly.bags.fleet_report import write_csv
from visual_anomaly.bags.training_set import bag_to_training_set


def calibrate_one(model: ModelFiles, bag: Path, out: Path, options: dict[str, Any]) -> dict:
    """:func:`calibrate_bag` of ``bag`` into ``out`` with the shipped ``model``, as a summary row."""
    bundle, _ = model.local()
    done = calibrate_bag(bundle, bag, out, progress=False, **options)
    return {
        'bundle': str(done.bundle),
        'topic': done.topic,
        'frames': done.frames,
        'rejected': done.rejected,
        'memory_frames': done.memory_frames,
        'decision_score': done.decision_score,
        'threshold': done.threshold.value,
        'previous_threshold': done.previous.value if done.previous is not None else None,
        'threshold_description': done.threshold.describe(),
    }


def training_set_one(bag: Path, out: Path, options: dict[str, Any]) -> dict:
    """:func:`bag_to_training_set` of ``bag`` into ``out``, as the counts of its ``metadata/source.json``."""
    root = bag_to_training_set(bag, out, progress=False, **options)
    source = json.loads((root / 'metadata' / 'source.json').read_text())
    source.pop('validation_segments_ns')
    return {'dataset': str(root), **source}


def _summary(outcomes: list[Outcome], out: Path, name: str) -> list[dict]:
    """``OUT/NAME.json`` and ``.csv``: one row per bag, its result or ``error``, in bag order."""
    rows = [
        {'bag': o.name, 'error': o.error or '', 'seconds': round(o.seconds, 3), **(o.value or {})} for o in outcomes
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / f'{name}.json').write_text(json.dumps(rows, indent=1))
    columns = list(dict.fromkeys(key for row in rows for key in row))
    write_csv(out / f'{name}.csv', [{key: row.get(key, '') for key in columns} for row in rows])
    return rows


def calibrate_fleet(
    model: str | os.PathLike,
    bags: list[Path],
    out: str | os.PathLike,
    *,
    workers: int = 2,
    address: str | None = None,
    progress: bool = True,
    **options: Any,
) -> list[dict]:
    """Re-calibrate ``model`` on every bag (``options``: those of :func:`calibrate_bag`); the summary rows."""
    model, out = Path(model), Path(out)
    names = bag_names(bags)
    files = ModelFiles.read(model)
    with Fleet(workers, address, progress) as fleet:
        shared = fleet.share(files)
        target = f'{model.stem}.calibrated{model.suffix}'
        calls = [(names[bag], (shared, bag, out / names[bag] / target, options)) for bag in bags]
        outcomes = fleet.map(calibrate_one, calls, desc='calibrating on bags')
    return _summary(outcomes, out, 'calibration')


def training_sets_fleet(
    bags: list[Path],
    out: str | os.PathLike,
    *,
    workers: int = 2,
    address: str | None = None,
    progress: bool = True,
    **options: Any,
) -> list[dict]:
    """A training set per bag (``options``: those of :func:`bag_to_training_set`); the summary rows."""
    out = Path(out)
    names = bag_names(bags)
    with Fleet(workers, address, progress) as fleet:
        calls = [(names[bag], (bag, out / names[bag], options)) for bag in bags]
        outcomes = fleet.map(training_set_one, calls, desc='training sets from bags')
    return _summary(outcomes, out, 'training_sets')
