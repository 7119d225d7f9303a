"""The README's main job: train a detector on generated corridor frames and evaluate it.

It generates a synthetic corridor world, trains the autoencoder on normal frames, calibrates
the threshold on held-out normal frames, scores a test stream with normal and anomalous
frames, writes error heatmaps and a model bundle, and prints ROC-AUC and F1.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from visual_anomaly.core import (
    AutoencoderConfig,
    ConvAutoencoder,
    Detector,
    PreprocessingConfig,
    Preprocessor,
    resize_frames,
    save_bundle,
)
from visual_anomaly.core.visualization import error_heatmap, overlay

from .autoencoder import TrainConfig, fit_autoencoder
from .corridor_world import ANOMALY_CLASSES, generate_frames
from .metrics import detection_metrics, per_class_roc_auc

HEATMAP_GAIN = 8.0  # error heatmaps saturate at this multiple of the typical normal MSE
SHEET_TILE = 256  # pixels per frame in the heatmap sheet


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='visual-anomaly-demo',
        description='Train a visual anomaly detector on a generated corridor world, calibrate its '
        'threshold and evaluate it on a stream with inserted anomalies (boxes, cables, people, '
        'water, ...). Writes a model bundle, metrics and error heatmaps to --out.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument('--out', type=Path, default=Path('runs/demo'), help='output folder')
    parser.add_argument('--train-frames', type=int, default=1500, help='normal training frames')
    parser.add_argument('--val-frames', type=int, default=300, help='normal calibration frames')
    parser.add_argument('--test-frames', type=int, default=600, help='test frames (normal and anomalous)')
    parser.add_argument('--anomaly-fraction', type=float, default=0.3, help='share of anomalous test frames')
    parser.add_argument('--render-size', type=int, default=128, help='side of the generated frames, pixels')
    parser.add_argument('--environments', type=int, default=4, help='number of distinct corridors')
    parser.add_argument('--epochs', type=int, default=15, help='maximum training epochs')
    parser.add_argument('--base-channels', type=int, default=16, help='autoencoder width F (128 = published)')
    parser.add_argument('--fpr', type=float, default=0.01, help='target false-positive rate of the threshold')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--seed', type=int, default=0, help='seed of data generation and training')
    parser.add_argument('--heatmaps', type=int, default=16, help='number of test frames drawn in the heatmap sheet')
    return parser


def _heatmap_sheet(frames: np.ndarray, result, order: np.ndarray, labels: np.ndarray, error_scale: float) -> np.ndarray:
    """Rows of [frame | heatmap overlay] for the frames in ``order`` (BGR)."""
    tiles = []
    for index in order:
        frame_bgr = cv2.resize(cv2.cvtColor(frames[index], cv2.COLOR_RGB2BGR), (SHEET_TILE, SHEET_TILE))
        heatmap = error_heatmap(result.error_map[index], error_scale, frame_bgr.shape[1::-1])
        name = ANOMALY_CLASSES[int(labels[index])]
        verdict = 'ANOMALY' if result.is_anomaly[index] else 'normal'
        label = f'{verdict} {result.score[index]:.1f} ({name})'
        tiles.append(np.hstack([frame_bgr, overlay(frame_bgr, heatmap, 0.5, label, bool(result.is_anomaly[index]))]))
    columns = 2
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def run(args: argparse.Namespace) -> dict:
    """Run the demo and return its metrics."""
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    preprocessing = PreprocessingConfig()
    size = preprocessing.image_size

    print(f'[1/4] generating {args.train_frames + args.val_frames} normal and {args.test_frames} test frames')
    world = {'world_seed': args.seed, 'image_size': args.render_size, 'n_environments': args.environments}
    normal, _ = generate_frames(args.train_frames + args.val_frames, seed=2 * args.seed + 1, **world)
    test_frames, test_info = generate_frames(
        args.test_frames, seed=2 * args.seed + 2, anomaly_fraction=args.anomaly_fraction, **world
    )
    normal_small = resize_frames(normal, 'rgb', size)
    train, val = normal_small[: args.train_frames], normal_small[args.train_frames :]
    test_labels = np.array([info.label for info in test_info])

    print(f'[2/4] training the autoencoder (F={args.base_channels}) on {len(train)} frames')
    model = ConvAutoencoder(AutoencoderConfig(base_channels=args.base_channels))
    config = TrainConfig(
        epochs=args.epochs, seed=args.seed, device=args.device, lr_patience=3, early_stopping_patience=6
    )
    history = fit_autoencoder(model, train, val, Preprocessor(preprocessing), config)

    print(f'[3/4] calibrating the threshold at {args.fpr:.1%} false positives on {len(val)} held-out frames')
    detector = Detector(model, preprocessing, device=args.device)
    detector.calibrate(val, fpr=args.fpr)
    bundle = save_bundle(
        out / 'model.pt',
        detector,
        {
            'trained_on': 'synthetic corridor world (demo)',
            'seed': args.seed,
            'train_frames': len(train),
            'epochs_run': len(history.val_loss),
            'best_epoch': history.best_epoch,
        },
    )

    print(f'[4/4] scoring {len(test_frames)} test frames')
    result = detector.detect(test_frames)
    metrics = detection_metrics(result.score, test_labels > 0, detector.threshold_)
    metrics['decision_score'] = detector.decision_score
    metrics['per_class_roc_auc'] = per_class_roc_auc(result.score, test_labels, ANOMALY_CLASSES)
    baseline = result.scores['reconstruction']  # the published frame-wide MSE, for comparison
    metrics['frame_mse_roc_auc'] = detection_metrics(baseline, test_labels > 0, float('inf'))['roc_auc']
    metrics['seconds'] = round(time.perf_counter() - started, 1)
    (out / 'metrics.json').write_text(json.dumps(metrics, indent=2))

    ranked = np.argsort(-result.score)
    half = max(1, args.heatmaps // 2)
    shown = np.r_[ranked[:half], ranked[-half:]]
    sheet = _heatmap_sheet(test_frames, result, shown, test_labels, HEATMAP_GAIN * detector.typical_normal_mse)
    cv2.imwrite(str(out / 'heatmaps.png'), sheet)

    print()
    print(
        f'{detector.decision_score} score: ROC-AUC {metrics["roc_auc"]:.3f}   PR-AUC {metrics["pr_auc"]:.3f}   '
        f'F1 {metrics["f1"]:.3f} (precision {metrics["precision"]:.3f}, recall {metrics["recall"]:.3f}) '
        f'at threshold {detector.threshold_:.2f}, false-positive rate {metrics["false_positive_rate"]:.3f}'
    )
    print(f'(the published frame-wide MSE score reaches ROC-AUC {metrics["frame_mse_roc_auc"]:.3f} on the same frames)')
    print('per-class ROC-AUC: ' + ', '.join(f'{k} {v:.2f}' for k, v in metrics['per_class_roc_auc'].items()))
    print(f'model bundle: {bundle}')
    print(f'metrics:      {out / "metrics.json"}')
    print(f'heatmaps:     {out / "heatmaps.png"} (most and least anomalous test frames)')
    print(f'done in {metrics["seconds"]} s')
    return metrics


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    run(_parser().parse_args(argv))


if __name__ == '__main__':
    main()
