"""``visual-anomaly-bag evaluate|calibrate|to-training-set`` over many bags: the fleet side of :mod:`.bag`.

Each handler returns 1 when some bag failed (every failure is printed with its reason), else 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visual_anomaly.bags.fleet import find_bags, require_ray
from visual_anomaly.cli.common import show_progress

FLEET_HELP = (
    'several bags, or folders of bags, run in parallel on Ray (pip install ray): an embedded local instance of '
    '--workers CPUs, or the cluster at --address'
)


def fleet_arguments(sub: argparse.ArgumentParser) -> None:
    """The options every fleet command shares."""
    group = sub.add_argument_group('many bags', FLEET_HELP)
    group.add_argument('--workers', type=int, default=2, help='CPUs of the local Ray instance (default 2)')
    group.add_argument(
        '--address', help='join this Ray cluster instead ("auto", or ray://HOST:10001); its nodes read the bags '
        'and write OUT at the same paths'
    )  # fmt: skip


def training_set_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``bag_to_training_set`` that the command line sets, for one bag or many."""
    return {
        'topic': args.topic,
        'every_s': args.every,
        'dedup_threshold': args.dedup_threshold,
        'target_frames': args.target,
        'validation_fraction': args.validation_fraction,
        'seed': args.seed,
        'block_s': args.block_seconds,
        'allow_partial': args.allow_partial,
    }


def calibration_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``calibrate_bag`` that the command line sets, for one bag or many."""
    return {
        'fpr': args.fpr,
        'topic': args.topic,
        'device': args.device,
        'batch_size': args.batch_size,
        'memory': args.memory,
        'allow_partial': args.allow_partial,
    }


def _refuse(args: argparse.Namespace, options: tuple[str, ...]) -> None:
    given = [f'--{name.replace("_", "-")}' for name in options if getattr(args, name, None) is not None]
    if given:
        raise ValueError(f'{", ".join(given)}: for one bag only; give one bag, or several without these options')


def _report_rows(rows: list[dict], summary: Path, line: str) -> int:
    """Print each bag that succeeded (``line`` formatted with its row), where the summary is, and the failures."""
    for row in rows:
        if not row['error']:
            print(f'{row["bag"]}: ' + line.format(**row))
    print(f'summary in {summary}')
    return _failures([(row['bag'], row['error']) for row in rows])


def _failures(rows: list[tuple[str, str | None]]) -> int:
    failed = [(name, error) for name, error in rows if error]
    for name, error in failed:
        print(f'FAILED {name}: {error}', file=sys.stderr)
    return 1 if failed else 0


def evaluate(args: argparse.Namespace) -> int:
    require_ray()  # before anything is read
    from visual_anomaly.bags.fleet_evaluate import evaluate_fleet  # matplotlib, sklearn: only when needed
    from visual_anomaly.bags.fleet_report import write_fleet_report

    _refuse(args, ('labels', 'overlay_bag', 'video'))
    bags = find_bags(args.bags)
    fleet = evaluate_fleet(
        args.bundle,
        bags,
        args.out,
        compare=args.compare,
        topic=args.topic,
        device=args.device,
        batch_size=args.batch_size,
        baselines=args.baselines,
        workers=args.workers,
        address=args.address,
        progress=show_progress(args),
        allow_partial=args.allow_partial,
    )
    metrics = write_fleet_report(fleet, args.out)
    if 'evaluation' in metrics:
        overall = metrics['evaluation'][metrics['decision_score']]['overall']
        print(
            f'{metrics["bags"] - len(fleet.failures)} of {metrics["bags"]} bags, {metrics["frames"]} frames: '
            f'ROC-AUC {overall["roc_auc"]:.3f}, F1 {overall["f1"]:.3f}, FPR {overall["false_positive_rate"]:.3f}; '
            f'worst bag {metrics["worst_bags"][0]}'
        )
    print(f'fleet report in {Path(args.out) / "report.md"}, each bag in {Path(args.out) / "bags"}')
    runs = [(fleet.model, o) for o in fleet.outcomes] + [(fleet.compare, o) for o in fleet.compared or ()]
    return _failures([(f'{o.name} ({model})', o.error) for model, o in runs])


def calibrate(args: argparse.Namespace) -> int:
    require_ray()  # before anything is read
    from visual_anomaly.bags.fleet_batch import calibrate_fleet

    if args.out is None:
        raise ValueError('several bags need --out FOLDER (a calibrated bundle per bag goes into it)')
    rows = calibrate_fleet(
        args.model,
        find_bags(args.bags),
        args.out,
        workers=args.workers,
        address=args.address,
        progress=show_progress(args),
        **calibration_options(args),
    )
    return _report_rows(
        rows, Path(args.out) / 'calibration.csv', '{frames} frames, {threshold_description} -> {bundle}'
    )


def to_training_set(args: argparse.Namespace) -> int:
    require_ray()  # before anything is read
    from visual_anomaly.bags.fleet_batch import training_sets_fleet

    rows = training_sets_fleet(
        find_bags(args.bags),
        args.out,
        workers=args.workers,
        address=args.address,
        progress=show_progress(args),
        **training_set_options(args),
    )
    return _report_rows(rows, Path(args.out) / 'training_sets.csv', 'kept {kept} of {frames} frames -> {dataset}')
