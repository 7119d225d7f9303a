"""A fleet's recordings scored with a model: every bag evaluated alone on a Ray worker, then one fleet report.

Each bag gets the full single-bag evaluation of :func:`~visual_anomaly.bags.evaluate.evaluate_bag` in
``OUT/bags/<name>/`` (with ``--compare``, the other model's in ``OUT/compare/<name>/``), so a bag's
frames, scores and metrics are those of evaluating it alone. The fleet report
(:mod:`~visual_anomaly.bags.fleet_report`) is built from what the workers send back, not from their files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visual_anomaly.bags.evaluate import evaluate_bag, read_scores_csv
from visual_anomaly.bags.fleet import Fleet, ModelFiles, Outcome, bag_names
from visual_anomaly.core import FrameScorer, load_bundle

BAGS_FOLDER, COMPARE_FOLDER = 'bags', 'compare'
_SCORERS: dict[tuple[Path, str], FrameScorer] = {}  # loaded bundles of this process, by (file, device)


@dataclass
class BagEvaluation:
    """What a worker sends back for one bag: its metrics and its frames' labels and scores (from scores.csv)."""

    metrics: dict
    columns: dict[str, np.ndarray]  # the columns of scores.csv

    @property
    def kinds(self) -> list[str]:
        """The detector's score kinds (the columns after is_anomaly)."""
        names = list(self.columns)
        return names[names.index('is_anomaly') + 1 :]


def evaluate_one(
    model: ModelFiles, bag: Path, out: Path, topic: str | None, device: str, batch_size: int, allow_partial: bool
) -> BagEvaluation:
    """The single-bag evaluation of ``bag`` into ``out``, on this worker, with the shipped ``model`` (loaded once
    per worker process: loading, with its ONNX export, costs seconds)."""
    bundle, baselines = model.local()
    if (bundle, device) not in _SCORERS:
        _SCORERS[bundle, device] = load_bundle(bundle, device)
    metrics = evaluate_bag(
        bundle,
        bag,
        out,
        topic=topic,
        device=device,
        batch_size=batch_size,
        baselines=baselines,
        progress=False,
        scorer=_SCORERS[bundle, device],
        allow_partial=allow_partial,
    )
    return BagEvaluation(metrics, read_scores_csv(out / 'scores.csv'))


@dataclass
class FleetEvaluation:
    """The outcomes of a fleet evaluation, by bag name: the model's and (with ``compare``) the other model's."""

    model: str
    names: dict[Path, str]
    outcomes: list[Outcome]
    compare: str | None = None
    compared: list[Outcome] | None = None

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes + (self.compared or []) if o.error is not None]


def evaluate_fleet(
    model: str | os.PathLike,
    bags: list[Path],
    out: str | os.PathLike,
    *,
    compare: str | os.PathLike | None = None,
    topic: str | None = None,
    device: str = 'cpu',
    batch_size: int = 256,
    baselines: str | os.PathLike | None = None,
    workers: int = 2,
    address: str | None = None,
    progress: bool = True,
    allow_partial: bool = False,
) -> FleetEvaluation:
    """Evaluate every bag of ``bags`` with ``model`` (and ``compare``) on Ray, one task per bag and model.

    A bag that fails (a damaged one too, unless ``allow_partial``) is an :class:`Outcome` with its reason;
    the others finish.
    """
    out = Path(out)
    names = bag_names(bags)
    models = {BAGS_FOLDER: ModelFiles.read(model, baselines)}
    if compare is not None:
        models[COMPARE_FOLDER] = ModelFiles.read(compare)
    with Fleet(workers, address, progress) as fleet:
        calls = []
        for folder, files in models.items():
            shared = fleet.share(files)
            calls += [
                (names[bag], (shared, bag, out / folder / names[bag], topic, device, batch_size, allow_partial))
                for bag in bags
            ]
        outcomes = fleet.map(evaluate_one, calls, desc='evaluating bags')
    return FleetEvaluation(
        str(model),
        names,
        outcomes[: len(bags)],
        str(compare) if compare is not None else None,
        outcomes[len(bags) :] if compare is not None else None,
    )
