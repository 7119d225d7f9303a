"""Evaluation of a detector on frames with known classes: metrics, plots and ``report.md`` in one folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from visual_anomaly.core import read_bundle_metadata
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES
from visual_anomaly.evaluation.baselines import Baseline, baseline_scores, baseline_thresholds
from visual_anomaly.evaluation.metrics import compare_with_baselines, evaluation_metrics, false_positive_line
from visual_anomaly.evaluation.pixel import pixel_metrics
from visual_anomaly.evaluation.report import (
    heatmap_sheet,
    plot_roc_curves,
    plot_score_histogram,
    plot_training_curves,
    reconstruction_sheet,
    write_report,
)

if TYPE_CHECKING:
    from visual_anomaly.core import DetectionResult, FrameScorer

REPORT_IMAGES = {  # caption -> file name, in report order
    'ROC curves': 'roc.png',
    'Score histogram': 'scores.png',
    'Most and least anomalous frames': 'heatmaps.png',
    'Inputs and reconstructions': 'reconstructions.png',
    'Training curves': 'training.png',
    'Score over time': 'timeline.png',  # bag evaluations (visual-anomaly-bag evaluate)
}


def evaluate_frames(
    detector: FrameScorer,
    frames: np.ndarray,
    classes: np.ndarray,
    out: Path,
    title: str,
    exposed_classes: Sequence[str] = (),
    history: Mapping[str, list] | None = None,
    extra: Mapping | None = None,
    extra_images: Mapping[str, Path] | None = None,
    result: DetectionResult | None = None,
    baselines: Sequence[Baseline] = (),
    class_names: Mapping[int, str] = ANOMALY_CLASSES,
    masks: np.ndarray | None = None,
) -> dict:
    """Score 64x64 frames with known classes; write metrics, plots and ``report.md`` into ``out``.

    ``extra_images`` (caption -> image file in ``out``) are listed in the report after the standard
    plots; ``result``, when the caller already scored ``frames``, saves scoring them again;
    ``baselines`` (fitted and calibrated) are scored on the same frames and reported beside ours.
    ``classes`` are codes named by ``class_names`` (default: the Hazards&Robots classes);
    ``exposed_classes`` are the names of the classes outlier exposure saw, reported as "seen".
    ``masks``, (N, 64, 64) bool ground truth per pixel, add pixel ROC-AUC and PRO of the error maps.
    """
    out.mkdir(parents=True, exist_ok=True)
    result = detector.detect_resized(frames) if result is None else result
    thresholds = {kind: t.value for kind, t in detector.calibration.thresholds.items()}
    scores = {**result.scores, **baseline_scores(baselines, frames)}
    thresholds.update(baseline_thresholds(baselines))
    is_anomaly = classes > 0
    exposed_codes = tuple(code for code, name in class_names.items() if code > 0 and name in set(exposed_classes))
    metrics = {
        **(extra or {}),
        'frames': len(frames),
        'anomalous_frames': int(is_anomaly.sum()),
        'decision_score': detector.decision_score,
        'exposed_classes': list(exposed_classes),
        'evaluation': evaluation_metrics(scores, thresholds, classes, class_names, exposed_codes),
    }
    if baselines:
        metrics['against_baselines'] = compare_with_baselines(metrics['evaluation'], detector.decision_score)
    if masks is not None:
        metrics['pixel'] = pixel_metrics(result.anomaly_map, masks)
    images = {}
    if is_anomaly.any() and (~is_anomaly).any():
        images['ROC curves'] = plot_roc_curves(scores, is_anomaly, out / 'roc.png')
    images['Score histogram'] = plot_score_histogram(
        result.score, is_anomaly, detector.threshold_, detector.decision_score, out / 'scores.png'
    )
    ranked = np.argsort(-result.score)
    shown = np.r_[ranked[:6], ranked[-4:]]
    captions = [f'({class_names.get(int(classes[i]), classes[i])})' for i in shown]
    images['Most and least anomalous frames'] = heatmap_sheet(
        frames, result, shown, captions, detector.heatmap_scale, out / 'heatmaps.png'
    )
    if hasattr(detector, 'reconstruct'):  # an exported .onnx bundle outputs error maps, not reconstructions
        sample = np.r_[np.flatnonzero(~is_anomaly)[:4], np.flatnonzero(is_anomaly)[:4]]
        images['Inputs and reconstructions'] = reconstruction_sheet(
            frames[sample], detector.reconstruct(frames[sample]), out / 'reconstructions.png'
        )
    if history is not None:
        metrics['history'] = dict(history)
        images['Training curves'] = plot_training_curves(metrics['history'], out / 'training.png')
    images.update(extra_images or {})
    write_report(out, title, metrics, images)
    return metrics


def format_summary(metrics: Mapping) -> str:
    """One line per score kind of an evaluation's metrics: ROC-AUC (seen/unseen), PR-AUC, F1, FPR."""
    evaluation = metrics.get('evaluation')
    if not evaluation:
        return 'no test split: nothing evaluated'
    lines = []
    for kind, entry in evaluation.items():
        o = entry['overall']
        groups = ''.join(f', {g} {entry[g]["roc_auc"]:.3f}' for g in ('seen', 'unseen') if g in entry)
        marker = '*' if kind == metrics['decision_score'] else ' '
        lines.append(
            f'{marker} {kind:<15} ROC-AUC {o["roc_auc"]:.3f}{groups}  PR-AUC {o["pr_auc"]:.3f}  '
            f'F1 {o["f1"]:.3f}  FPR {o["false_positive_rate"]:.3f}'
        )
    decision = evaluation.get(metrics['decision_score'])
    fpr = f'\n{false_positive_line(decision["overall"])}' if decision else ''
    return '\n'.join(lines) + '\n(* = decision score)' + fpr


def exposed_classes_of(path: Path) -> tuple[str, ...]:
    """Names of the anomaly classes a bundle's OE head was exposed to, from its provenance."""
    per_class = read_bundle_metadata(path).get('provenance', {}).get('outlier_exposure', {}).get('per_class', {})
    return tuple(sorted(per_class))
