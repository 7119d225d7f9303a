"""Plots and a Markdown report of a training or evaluation run.

Everything is drawn with matplotlib's Agg backend (no display needed) or OpenCV, into the run
folder, and ``write_report`` collects the metrics and the pictures into ``report.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from sklearn.metrics import auc, roc_curve

from visual_anomaly.core import DetectionResult
from visual_anomaly.core.visualization import decision_label, error_heatmap, overlay
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES
from visual_anomaly.evaluation.metrics import false_positive_line
from visual_anomaly.evaluation.pixel import pixel_summary

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

TILE = 192  # pixels per frame in image sheets


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_roc_curves(scores: Mapping[str, np.ndarray], is_anomaly: np.ndarray, path: Path) -> Path:
    """ROC curve of every score kind on one chart."""
    figure, axes = plt.subplots(figsize=(5, 5))
    for kind, values in scores.items():
        fpr, tpr, _ = roc_curve(is_anomaly, values)
        axes.plot(fpr, tpr, label=f'{kind} (AUC {auc(fpr, tpr):.3f})')
    axes.plot([0, 1], [0, 1], color='grey', linestyle=':')
    axes.set(xlabel='false-positive rate', ylabel='true-positive rate', title='ROC')
    axes.legend(loc='lower right')
    return _save(figure, path)


def plot_score_histogram(score: np.ndarray, is_anomaly: np.ndarray, threshold: float, kind: str, path: Path) -> Path:
    """Score distributions of normal and anomalous frames with the decision threshold."""
    figure, axes = plt.subplots(figsize=(7, 4))
    bins = np.histogram_bin_edges(score, bins=50)
    axes.hist(score[~is_anomaly], bins=bins, alpha=0.6, label='normal', color='tab:blue')
    axes.hist(score[is_anomaly], bins=bins, alpha=0.6, label='anomalous', color='tab:red')
    if np.isfinite(threshold):
        axes.axvline(threshold, color='black', linestyle='--', label=f'threshold {threshold:.2f}')
    axes.set(xlabel=f'{kind} score (robust standard units of normal frames)', ylabel='frames')
    axes.legend()
    return _save(figure, path)


def plot_training_curves(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Training and validation loss per epoch, with the learning rate."""
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(history['train_loss'], label='train')
    axes.plot(history['val_loss'], label='validation')
    axes.set(xlabel='epoch', ylabel='reconstruction MSE (standardized pixels)', yscale='log')
    if history.get('best_epoch', -1) >= 0:
        axes.axvline(history['best_epoch'], color='grey', linestyle=':', label='kept')
    axes.legend(loc='upper right')
    rates = axes.twinx()
    rates.plot(history['learning_rate'], color='tab:green', alpha=0.5)
    rates.set(ylabel='learning rate', yscale='log')
    return _save(figure, path)


def positive_runs(classes: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) indices of the maximal runs of consecutive positive values (anomalous classes, flags)."""
    positive = np.r_[False, np.asarray(classes) > 0, False]
    edges = np.flatnonzero(np.diff(positive.astype(np.int8)))
    return [(int(start), int(stop) - 1) for start, stop in zip(edges[::2], edges[1::2], strict=True)]


def plot_score_timeline(
    times_s: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    classes: np.ndarray,
    path: Path,
    class_names: Mapping[int, str] = ANOMALY_CLASSES,
) -> Path:
    """Decision score over time with the threshold; ground-truth anomalous intervals shaded and named.

    ``times_s`` are seconds (e.g. since the first frame), ``classes`` integer class codes per frame
    (0 = normal). Each run of consecutive anomalous frames is shaded from half a frame interval before
    its first frame to half an interval after its last one; frames above the threshold are marked.
    """
    times_s = np.asarray(times_s, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    classes = np.asarray(classes)
    figure, axes = plt.subplots(figsize=(11, 4))
    gaps = np.diff(times_s)
    half = 0.5 * float(np.median(gaps)) if gaps.size else 0.5
    runs = positive_runs(classes)
    for number, (first, last) in enumerate(runs):
        axes.axvspan(
            times_s[first] - half,
            times_s[last] + half,
            color='tab:red',
            alpha=0.15,
            linewidth=0,
            label='ground-truth anomaly' if number == 0 else None,
        )
        if len(runs) <= 40:  # name the classes while the names stay readable
            codes = np.unique(classes[first : last + 1])
            axes.annotate(
                ', '.join(class_names.get(int(code), str(code)) for code in codes),
                (0.5 * (times_s[first] + times_s[last]), 1.0),
                xycoords=('data', 'axes fraction'),
                ha='center',
                va='bottom',
                fontsize=7,
                color='tab:red',
                rotation=30,
            )
    axes.plot(times_s, scores, color='tab:blue', linewidth=1, label='score')
    if np.isfinite(threshold):
        axes.axhline(threshold, color='black', linestyle='--', linewidth=1, label=f'threshold {threshold:.2f}')
        above = scores > threshold
        axes.scatter(times_s[above], scores[above], s=8, color='tab:red', zorder=3, label='flagged')
    axes.set(xlabel='time (s)', ylabel='decision score')
    axes.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _save(figure, path)


def _tile(image_rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), (TILE, TILE), interpolation=cv2.INTER_NEAREST)


def reconstruction_sheet(frames: np.ndarray, reconstructions: np.ndarray, path: Path) -> Path:
    """Rows of [64x64 input | reconstruction]."""
    rows = [np.hstack([_tile(f), _tile(r)]) for f, r in zip(frames, reconstructions, strict=True)]
    cv2.imwrite(str(path), np.vstack(rows))
    return path


def heatmap_sheet(
    frames: np.ndarray,
    result: DetectionResult,
    order: Sequence[int],
    captions: Sequence[str],
    error_scale: float,
    path: Path,
    columns: int = 2,
) -> Path:
    """Frames in ``order`` next to their error-heatmap overlays, with the verdict and ``captions``."""
    tiles = []
    for index, caption in zip(order, captions, strict=True):
        frame = cv2.resize(cv2.cvtColor(frames[index], cv2.COLOR_RGB2BGR), (TILE * 4 // 3, TILE * 4 // 3))
        heatmap = error_heatmap(result.anomaly_map[index], error_scale, frame.shape[1::-1])
        alarm = bool(result.is_anomaly[index])
        label = f'{decision_label(alarm, result.score[index])} {caption}'
        tiles.append(np.hstack([frame, overlay(frame, heatmap, 0.5, label, alarm)]))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    cv2.imwrite(str(path), np.vstack([np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]))
    return path


def _fmt(value: float) -> str:
    return '-' if value is None or not np.isfinite(value) else f'{value:.3f}'


def _scores_table(evaluation: Mapping[str, dict]) -> list[str]:
    lines = [
        '## Scores',
        '',
        '| score | ROC-AUC | PR-AUC | recall at 1% FPR | F1 | precision | recall | FPR | seen ROC-AUC '
        '| unseen ROC-AUC |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for kind, entry in evaluation.items():
        o = entry['overall']
        seen, unseen = entry.get('seen', {}), entry.get('unseen', {})
        lines.append(
            f'| {kind} | {_fmt(o["roc_auc"])} | {_fmt(o["pr_auc"])} | {_fmt(o.get("recall_at_1pct_fpr"))} | '
            f'{_fmt(o["f1"])} | {_fmt(o["precision"])} | {_fmt(o["recall"])} | {_fmt(o["false_positive_rate"])} | '
            f'{_fmt(seen.get("roc_auc"))} | {_fmt(unseen.get("roc_auc"))} |'
        )
    return lines


def _per_class_table(evaluation: Mapping[str, dict], decision: str) -> list[str]:
    o = evaluation[decision]['overall']
    lines = [
        '',
        f'Decision on `{decision}` at threshold {o["threshold"]:.3f}: '
        f'{o["true_positives"]} TP, {o["false_positives"]} FP, {o["true_negatives"]} TN, '
        f'{o["false_negatives"]} FN. {false_positive_line(o)}.',
        '',
        '## Per anomaly class (normal vs that class)',
        '',
        '| class | frames | ' + ' | '.join(f'{k} ROC-AUC' for k in evaluation) + ' | recall |',
        '|---|---|' + '---|' * len(evaluation) + '---|',
    ]
    for name, entry in evaluation[decision]['per_class'].items():
        aucs = ' | '.join(_fmt(evaluation[k]['per_class'][name]['roc_auc']) for k in evaluation)
        lines.append(f'| {name} | {entry["frames"]} | {aucs} | {_fmt(entry["recall"])} |')
    return lines


def _baselines_section(comparison: Mapping) -> list[str]:
    if not comparison:
        return []
    verdict = 'beats' if comparison['margin'] > 0 else 'does NOT beat'
    lines = [
        '',
        '## Against the trivial baselines',
        '',
        f'The decision score {verdict} the best baseline (`{comparison["best_baseline"]}`): ROC-AUC '
        f'{_fmt(comparison["ours_roc_auc"])} vs {_fmt(comparison["best_baseline_roc_auc"])} '
        f'({comparison["margin"]:+.3f}).',
    ]
    for name, lost in comparison['classes_lost'].items():
        lines.append(
            f'- `{name}`: a baseline ranks it better ({lost["baseline"]} {_fmt(lost["baseline_roc_auc"])} '
            f'vs ours {_fmt(lost["ours"])})'
        )
    return lines


def write_report(
    out: Path, title: str, metrics: Mapping, images: Mapping[str, Path], notes: Sequence[str] = ()
) -> Path:
    """Write ``metrics.json`` and a Markdown ``report.md`` linking the images, into ``out``."""
    (out / 'metrics.json').write_text(json.dumps(metrics, indent=2, default=float))
    lines = [f'# {title}', '', *notes, '']
    if 'training' in metrics:  # how training ended (training.run)
        lines += [f'Training: {metrics["training"]}', '']
    if 'calibration' in metrics:  # the threshold and the false-positive rate it promises (training.run)
        lines += [f'Calibration: {metrics["calibration"]}', '']
    evaluation = metrics.get('evaluation', {})
    if evaluation:
        lines += _scores_table(evaluation)
        decision = metrics.get('decision_score')
        if decision in evaluation:
            lines += _per_class_table(evaluation, decision)
        lines += _baselines_section(metrics.get('against_baselines', {}))
        lines += pixel_summary(metrics)
    for caption, image in images.items():
        lines += ['', f'## {caption}', '', f'![{caption}]({Path(image).name})']
    path = out / 'report.md'
    path.write_text('\n'.join(lines) + '\n')
    return path
