"""The report of a fleet evaluation: overall, per bag, per robot and per class; worst bags and stretches; two models.

Written into one folder: ``metrics.json`` (everything below), ``report.md`` (tables and plots, as
the single-bag report), ``bags.csv``, ``robots.csv``, ``classes.csv``, ``stretches.csv`` and, with
a second model, ``compare.csv``. Times of a stretch are seconds since the bag's first frame and
header stamps in nanoseconds. Bags are ranked by their share of wrong frames (false alarms and
missed anomalous frames at the decision threshold), which every bag has, also one without anomalies.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from visual_anomaly.bags.fleet import Outcome, robot_of
from visual_anomaly.bags.fleet_evaluate import BAGS_FOLDER, BagEvaluation, FleetEvaluation
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES
from visual_anomaly.evaluation.metrics import detection_metrics, evaluation_metrics
from visual_anomaly.evaluation.report import plot_roc_curves, plot_score_histogram, positive_runs, write_report

SHOWN = 10  # rows of each ranking in report.md (the CSV files hold them all)
BAG_FIELDS = ('roc_auc', 'f1', 'recall', 'false_positive_rate', 'false_positives', 'false_negatives')


def _decision(evaluation: BagEvaluation) -> dict:
    metrics = evaluation.metrics
    return metrics['evaluation'][metrics['decision_score']]['overall']


def bag_row(name: str, evaluation: BagEvaluation) -> dict:
    """One bag's line: its robot, frames, decision-score metrics and share of wrong frames."""
    metrics, overall = evaluation.metrics, _decision(evaluation)
    errors = overall['false_positives'] + overall['false_negatives']
    return {
        'bag': name,
        'robot': robot_of(name, metrics['topic']),
        'topic': metrics['topic'],
        'frames': metrics['frames'],
        'anomalous_frames': metrics['anomalous_frames'],
        'rejected': metrics['rejected'],
        'duration_s': round(metrics['duration_s'], 3),
        **{field: overall[field] for field in BAG_FIELDS},
        'wrong_frames': errors,
        'wrong_rate': errors / metrics['frames'],
        'seconds': metrics['seconds'],
        'path': metrics['bag'],
    }


def _succeeded(outcomes: Sequence[Outcome]) -> dict[str, BagEvaluation]:
    return {o.name: o.value for o in outcomes if o.error is None}


def _joined(evaluations: Mapping[str, BagEvaluation], column: str) -> np.ndarray:
    return np.concatenate([evaluation.columns[column] for evaluation in evaluations.values()])


def overall_metrics(evaluations: Mapping[str, BagEvaluation]) -> dict:
    """Every score kind over all frames of all bags: overall, per class, seen/unseen (as a single bag's)."""
    first = next(iter(evaluations.values()))
    kinds = first.kinds
    thresholds = {kind: first.metrics['evaluation'][kind]['overall']['threshold'] for kind in kinds}
    exposed = tuple(code for code, name in ANOMALY_CLASSES.items() if name in first.metrics['exposed_classes'])
    scores = {kind: _joined(evaluations, kind) for kind in kinds}
    return evaluation_metrics(scores, thresholds, _joined(evaluations, 'label'), ANOMALY_CLASSES, exposed)


def robot_rows(rows: Sequence[dict], evaluations: Mapping[str, BagEvaluation]) -> list[dict]:
    """Per robot: its bags and frames, and the decision score's metrics over all its frames."""
    first = next(iter(evaluations.values()))
    threshold = _decision(first)['threshold']
    result = []
    for robot in sorted({row['robot'] for row in rows}):
        members = {row['bag']: evaluations[row['bag']] for row in rows if row['robot'] == robot}
        labels = _joined(members, 'label') > 0
        overall = detection_metrics(_joined(members, 'score'), labels, threshold)
        errors = overall['false_positives'] + overall['false_negatives']
        result.append(
            {'robot': robot, 'bags': len(members), 'frames': len(labels), 'anomalous_frames': int(labels.sum())}
            | {field: overall[field] for field in BAG_FIELDS}
            | {'wrong_frames': errors, 'wrong_rate': errors / len(labels)}
        )
    return result


def worst_stretches(rows: Sequence[dict], evaluations: Mapping[str, BagEvaluation]) -> list[dict]:
    """Every run of consecutive false alarms, or of missed anomalous frames, longest first."""
    stretches = []
    for row in rows:
        columns = evaluations[row['bag']].columns
        flagged, anomalous = columns['is_anomaly'] > 0, columns['label'] > 0
        for kind, wrong in (('false alarms', flagged & ~anomalous), ('missed anomalies', anomalous & ~flagged)):
            for first, last in positive_runs(wrong):
                codes = np.unique(columns['label'][first : last + 1])
                stretches.append(
                    {
                        'bag': row['bag'],
                        'robot': row['robot'],
                        'kind': kind,
                        'frames': last - first + 1,
                        'start_s': float(columns['time_s'][first]),
                        'end_s': float(columns['time_s'][last]),
                        'start_stamp_ns': int(columns['stamp_ns'][first]),
                        'end_stamp_ns': int(columns['stamp_ns'][last]),
                        'classes': ' '.join(ANOMALY_CLASSES.get(int(c), str(c)) for c in codes if c > 0),
                        'peak_score': float(columns['score'][first : last + 1].max()),
                    }
                )
    return sorted(stretches, key=lambda s: (-s['frames'], s['bag'], s['start_s']))


def compare_rows(rows: Sequence[dict], other: Sequence[dict]) -> list[dict]:
    """Per bag scored by both models: wrong frames and ROC-AUC of each, largest change of wrong frames first."""
    theirs = {row['bag']: row for row in other}
    result = []
    for row in rows:
        if row['bag'] not in theirs:
            continue
        them = theirs[row['bag']]
        auc_change = them['roc_auc'] - row['roc_auc']
        result.append(
            {'bag': row['bag'], 'robot': row['robot'], 'frames': row['frames']}
            | {'wrong_frames': row['wrong_frames'], 'other_wrong_frames': them['wrong_frames']}
            | {'wrong_frames_change': them['wrong_frames'] - row['wrong_frames']}
            | {'roc_auc': row['roc_auc'], 'other_roc_auc': them['roc_auc'], 'roc_auc_change': auc_change}
        )
    return sorted(
        result,
        key=lambda r: (-abs(r['wrong_frames_change']), -abs(np.nan_to_num(r['roc_auc_change'])), r['bag']),
    )


def fleet_metrics(fleet: FleetEvaluation) -> tuple[dict, dict[str, BagEvaluation]]:
    """The fleet's metrics (everything ``metrics.json`` holds) and the bags' evaluations, by name."""
    evaluations = _succeeded(fleet.outcomes)
    failures = [{'bag': o.name, 'model': fleet.model, 'reason': o.error} for o in fleet.outcomes if o.error]
    failures += [{'bag': o.name, 'model': fleet.compare, 'reason': o.error} for o in fleet.compared or () if o.error]
    metrics: dict = {'model': fleet.model, 'bags': len(fleet.outcomes), 'failed': failures}
    if not evaluations:
        return metrics, evaluations
    rows = [bag_row(name, evaluation) for name, evaluation in evaluations.items()]
    first = next(iter(evaluations.values())).metrics
    metrics |= {
        'frames': sum(row['frames'] for row in rows),
        'anomalous_frames': sum(row['anomalous_frames'] for row in rows),
        'rejected': sum(row['rejected'] for row in rows),
        'decision_score': first['decision_score'],
        'exposed_classes': first['exposed_classes'],
        'evaluation': overall_metrics(evaluations),
        'per_bag': rows,
        'per_robot': robot_rows(rows, evaluations),
        'worst_bags': [row['bag'] for row in sorted(rows, key=lambda r: (-r['wrong_rate'], r['bag']))],
        'worst_stretches': worst_stretches(rows, evaluations),
        'bag_seconds': sum(o.seconds for o in fleet.outcomes),
    }
    if fleet.compared is not None:
        other = _succeeded(fleet.compared)
        other_rows = [bag_row(name, evaluation) for name, evaluation in other.items()]
        metrics['compare'] = {
            'model': fleet.compare,
            'evaluation': overall_metrics(other) if other else {},
            'per_bag': compare_rows(rows, other_rows),
        }
    return metrics, evaluations


def write_csv(path: Path, rows: Sequence[Mapping]) -> None:
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ['bag'])
        writer.writeheader()
        writer.writerows(rows)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return '-' if math.isnan(value) else f'{value:.3f}'
    return str(value)


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str], title: str) -> list[str]:
    """A Markdown section: ``title`` and a table of ``columns`` of the first SHOWN ``rows``."""
    lines = ['', f'## {title}', '', '| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(_cell(row[c]) for c in columns) + ' |' for row in rows[:SHOWN]]
    return lines + ([f'\n({len(rows) - SHOWN} more in the CSV file)'] if len(rows) > SHOWN else [])


def _notes(metrics: Mapping) -> list[str]:
    by_name = {row['bag']: row for row in metrics['per_bag']}
    worst = [by_name[name] for name in metrics['worst_bags']]
    lines = [
        f'{metrics["bags"]} bags, {metrics["frames"]} frames ({metrics["anomalous_frames"]} anomalous, '
        f'{metrics["rejected"]} rejected), model `{metrics["model"]}`; failed runs: {len(metrics["failed"])}.',
    ]
    lines += [f'- FAILED `{f["bag"]}` ({f["model"]}): {f["reason"]}' for f in metrics['failed']]
    columns = ('bag', 'robot', 'frames', 'wrong_frames', 'wrong_rate', 'roc_auc', 'f1', 'false_positive_rate')
    lines += markdown_table(worst, columns, 'Worst bags (share of wrong frames)')
    lines += markdown_table(metrics['per_robot'], ('robot', 'bags', 'frames', *columns[3:]), 'Per robot')
    stretch_columns = ('bag', 'kind', 'frames', 'start_s', 'end_s', 'start_stamp_ns', 'classes', 'peak_score')
    lines += markdown_table(
        metrics['worst_stretches'], stretch_columns, 'Worst stretches (longest runs of wrong frames)'
    )
    if 'compare' in metrics:
        compare_columns = ('bag', 'wrong_frames', 'other_wrong_frames', 'wrong_frames_change', 'roc_auc')
        title = f'Bags that changed most with `{metrics["compare"]["model"]}`'
        lines += markdown_table(metrics['compare']['per_bag'], (*compare_columns, 'other_roc_auc'), title)
    lines += ['', '## Score over time of the worst bags', '']
    lines += [f'![{row["bag"]}]({BAGS_FOLDER}/{row["bag"]}/timeline.png)' for row in worst[:3]]
    return lines


def write_fleet_report(fleet: FleetEvaluation, out: str | Path) -> dict:
    """Write the fleet's metrics, tables and plots into ``out`` (see the module) and return the metrics."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics, evaluations = fleet_metrics(fleet)
    title = f'Fleet evaluation of {Path(fleet.model).name} on {metrics["bags"]} bags'
    if not evaluations:
        write_report(out, title, metrics, {}, [f'- FAILED `{f["bag"]}`: {f["reason"]}' for f in metrics['failed']])
        return metrics
    labels = _joined(evaluations, 'label') > 0
    score, threshold = _joined(evaluations, 'score'), metrics['evaluation'][metrics['decision_score']]['overall']
    images = {}
    if labels.any() and (~labels).any():
        kinds = next(iter(evaluations.values())).kinds
        images['ROC curves'] = plot_roc_curves({k: _joined(evaluations, k) for k in kinds}, labels, out / 'roc.png')
    images['Score histogram'] = plot_score_histogram(
        score, labels, threshold['threshold'], metrics['decision_score'], out / 'scores.png'
    )
    write_report(out, title, metrics, images, _notes(metrics))
    write_csv(out / 'bags.csv', metrics['per_bag'])
    write_csv(out / 'robots.csv', metrics['per_robot'])
    classes = metrics['evaluation'][metrics['decision_score']]['per_class']
    write_csv(out / 'classes.csv', [{'class': name} | entry for name, entry in classes.items()])
    write_csv(out / 'stretches.csv', metrics['worst_stretches'])
    if 'compare' in metrics:
        write_csv(out / 'compare.csv', metrics['compare']['per_bag'])
    return metrics
