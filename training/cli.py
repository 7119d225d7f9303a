"""``visual-anomaly-train``: generate data, train a model bundle, evaluate it, rebuild reports.

    visual-anomaly-train generate data/corridors                 # synthetic Hazards&Robots-layout dataset
    visual-anomaly-train train --data data/corridors --out runs/corridors
    visual-anomaly-train evaluate runs/corridors/model.pt --data data/corridors --out runs/eval
    visual-anomaly-train report runs/corridors                   # re-render report.md from metrics.json
    visual-anomaly-train export runs/corridors/model.pt          # model.onnx: runs without PyTorch

A run folder holds the model bundle (``model.pt``), the configuration used (``config.yaml``),
``metrics.json``, plots and ``report.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml

from visual_anomaly.core import (
    AutoencoderConfig,
    BundleError,
    ConvAutoencoder,
    DetectionResult,
    Detector,
    FrameScorer,
    PreprocessingConfig,
    Preprocessor,
    export_onnx,
    load_bundle,
    read_bundle_metadata,
    save_bundle,
)

from .autoencoder import TrainConfig, TrainingHistory, fit_autoencoder
from .corridor_world import ANOMALY_CLASSES, write_hazards_layout
from .hazards import HazardsDataset
from .metrics import evaluation_metrics
from .outlier_exposure import OutlierExposureConfig, fit_outlier_exposure
from .report import (
    HEATMAP_GAIN,
    heatmap_sheet,
    plot_roc_curves,
    plot_score_histogram,
    plot_training_curves,
    reconstruction_sheet,
    write_report,
)

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / 'config' / 'train.yaml'
DEFAULTS: dict = {
    'model': {'base_channels': 16, 'embedding_dim': 128, 'normalization': 'standardize'},
    'training': {**asdict(TrainConfig(epochs=40, lr_patience=4, early_stopping_patience=8)), 'augment': True},
    'outlier_exposure': {'enabled': True, 'frames_per_class': 20, 'epochs': 100, 'margin': 4.0},
    'calibration': {'false_positive_rate': 0.01},
    'data': {'cache_dir': None, 'workers': None},
}
REPORT_IMAGES = {  # caption -> file name, in report order
    'ROC curves': 'roc.png',
    'Score histogram': 'scores.png',
    'Most and least anomalous frames': 'heatmaps.png',
    'Inputs and reconstructions': 'reconstructions.png',
    'Training curves': 'training.png',
    'Score over time': 'timeline.png',  # bag evaluations (visual-anomaly-bag evaluate)
}


def load_config(path: Path | None, overrides: Mapping[str, Mapping] | None = None) -> dict:
    """The defaults, updated by the YAML file at ``path`` and then by ``overrides``; unknown keys are errors."""
    config = copy.deepcopy(DEFAULTS)
    layers = []
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f'{path}: expected a mapping of sections, got {type(loaded).__name__}')
        layers.append((str(path), loaded))
    layers.append(('command line', overrides or {}))
    for source, layer in layers:
        for section, values in layer.items():
            if section not in config or not isinstance(values, dict):
                raise ValueError(f'{source}: unknown section {section!r}; known: {sorted(config)}')
            unknown = set(values) - set(config[section])
            if unknown:
                raise ValueError(
                    f'{source}: unknown keys {sorted(unknown)} in {section!r}; known: {sorted(config[section])}'
                )
            config[section].update({k: v for k, v in values.items() if v is not None or section == 'data'})
    return config


def _pick_exposed(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of up to ``per_class`` frames of each anomaly class (all when ``per_class`` is 0)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for code in np.unique(labels[labels > 0]):
        members = np.flatnonzero(labels == code)
        chosen.append(members if per_class <= 0 else rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, np.int64)


def evaluate_frames(
    detector: FrameScorer,
    frames: np.ndarray,
    classes: np.ndarray,
    out: Path,
    title: str,
    exposed_classes: tuple[int, ...] = (),
    history: TrainingHistory | None = None,
    extra: Mapping | None = None,
    extra_images: Mapping[str, Path] | None = None,
    result: DetectionResult | None = None,
) -> dict:
    """Score 64x64 frames with known classes; write metrics, plots and ``report.md`` into ``out``.

    ``extra_images`` (caption -> image file in ``out``) are listed in the report after the standard
    plots; ``result``, when the caller already scored ``frames``, saves scoring them again.
    """
    out.mkdir(parents=True, exist_ok=True)
    result = detector.detect_resized(frames) if result is None else result
    thresholds = {kind: t.value for kind, t in detector.calibration.thresholds.items()}
    is_anomaly = classes > 0
    metrics = {
        **(extra or {}),
        'frames': len(frames),
        'anomalous_frames': int(is_anomaly.sum()),
        'decision_score': detector.decision_score,
        'exposed_classes': [ANOMALY_CLASSES.get(c, str(c)) for c in exposed_classes],
        'evaluation': evaluation_metrics(result.scores, thresholds, classes, ANOMALY_CLASSES, exposed_classes),
    }
    images = {}
    if is_anomaly.any() and (~is_anomaly).any():
        images['ROC curves'] = plot_roc_curves(result.scores, is_anomaly, out / 'roc.png')
    images['Score histogram'] = plot_score_histogram(
        result.score, is_anomaly, detector.threshold_, detector.decision_score, out / 'scores.png'
    )
    ranked = np.argsort(-result.score)
    shown = np.r_[ranked[:6], ranked[-4:]]
    captions = [f'({ANOMALY_CLASSES.get(int(classes[i]), classes[i])})' for i in shown]
    images['Most and least anomalous frames'] = heatmap_sheet(
        frames, result, shown, captions, HEATMAP_GAIN * detector.typical_normal_mse, out / 'heatmaps.png'
    )
    if isinstance(detector, Detector):  # an exported .onnx bundle outputs error maps, not reconstructions
        sample = np.r_[np.flatnonzero(~is_anomaly)[:4], np.flatnonzero(is_anomaly)[:4]]
        images['Inputs and reconstructions'] = reconstruction_sheet(
            frames[sample], detector.reconstruct(frames[sample]), out / 'reconstructions.png'
        )
    if history is not None:
        metrics['history'] = asdict(history)
        images['Training curves'] = plot_training_curves(metrics['history'], out / 'training.png')
    images.update(extra_images or {})
    write_report(out, title, metrics, images)
    return metrics


def train_run(data: Path, out: Path, config: dict, progress: bool = True) -> dict:
    """Train a bundle on a Hazards&Robots-layout dataset and evaluate it on its test split."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / 'config.yaml').write_text(yaml.safe_dump(config, sort_keys=False))
    dataset = HazardsDataset(data)
    load = {'cache_dir': config['data']['cache_dir'], 'workers': config['data']['workers'], 'progress': progress}
    train, validation = dataset.load('train', **load), dataset.load('validation', **load)
    train_frames, validation_frames = np.asarray(train.frames), np.asarray(validation.frames)

    model_cfg = config['model']
    preprocessing = PreprocessingConfig(normalization=model_cfg['normalization'])
    model = ConvAutoencoder(AutoencoderConfig(model_cfg['base_channels'], model_cfg['embedding_dim']))
    training = dict(config['training'])
    training['augment'] = TrainConfig().augment if training['augment'] else None
    train_config = TrainConfig(**training)
    print(
        f'training F={model_cfg["base_channels"]} on {len(train_frames)} frames, validating on {len(validation_frames)}'
    )
    history = fit_autoencoder(
        model, train_frames, validation_frames, Preprocessor(preprocessing), train_config, progress
    )

    fpr = config['calibration']['false_positive_rate']
    detector = Detector(model, preprocessing, device=train_config.device)
    detector.calibrate(validation_frames, fpr=fpr)
    provenance = {
        'dataset': str(data),
        'train_frames': len(train_frames),
        'validation_frames': len(validation_frames),
        'best_epoch': history.best_epoch,
        'epochs_run': len(history.val_loss),
        'config': config,
    }
    exposed_classes: tuple[int, ...] = ()
    oe = config['outlier_exposure']
    if oe['enabled'] and 'outliers' in dataset.splits:
        outliers = dataset.load('outliers', **load)
        picked = _pick_exposed(outliers.labels, oe['frames_per_class'], train_config.seed)
        counts = {
            ANOMALY_CLASSES.get(int(c), str(c)): int((outliers.labels[picked] == c).sum())
            for c in np.unique(outliers.labels[picked])
        }
        exposed_classes = tuple(int(c) for c in np.unique(outliers.labels[picked]))
        print(f'outlier exposure with {len(picked)} labelled anomalous frames: {counts}')
        report = fit_outlier_exposure(
            detector,
            train_frames,
            np.asarray(outliers.frames)[picked],
            OutlierExposureConfig(epochs=oe['epochs'], margin=oe['margin'], seed=train_config.seed),
            exposed_classes=counts,
            progress=progress,
        )
        detector.calibrate(validation_frames, fpr=fpr)
        provenance['outlier_exposure'] = {'exposed_frames': report.exposed_frames, 'per_class': counts}
    elif oe['enabled']:
        print('no outliers_set in the dataset: training without outlier exposure')
    bundle = save_bundle(out / 'model.pt', detector, provenance)
    extra = {'bundle': str(bundle), 'provenance': provenance}
    if 'test' in dataset.splits:
        test = dataset.load('test', **load)
        metrics = evaluate_frames(
            detector,
            np.asarray(test.frames),
            test.labels,
            out,
            f'Training run {out.name}',
            exposed_classes,
            history,
            extra,
        )
    else:
        metrics = extra
        (out / 'metrics.json').write_text(json.dumps(metrics, indent=2, default=float))
    metrics['seconds'] = round(time.perf_counter() - started, 1)
    return metrics


def _summary(metrics: Mapping) -> str:
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
    return '\n'.join(lines) + '\n(* = decision score)'


def _class_list(text: str) -> list[int]:
    codes = {name: code for code, name in ANOMALY_CLASSES.items() if code}
    try:
        return [int(item) if item.isdigit() else codes[item.strip()] for item in text.split(',') if item.strip()]
    except KeyError as error:
        raise argparse.ArgumentTypeError(f'unknown class {error}; known: {", ".join(codes)}') from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='visual-anomaly-train',
        description='Train and evaluate camera anomaly detectors for mobile robots. Datasets use the '
        'Hazards&Robots corridor layout (train_set/, validation_set/, test_set/, outliers_set/, metadata/*.csv); '
        '"generate" writes a synthetic one.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n')[1],
    )
    commands = parser.add_subparsers(dest='command', required=True)

    generate = commands.add_parser('generate', help='write a synthetic corridor dataset in the Hazards&Robots layout')
    generate.add_argument('root', type=Path, help='output folder')
    generate.add_argument('--train', type=int, default=4000, help='normal training frames')
    generate.add_argument('--validation', type=int, default=500, help='normal validation frames')
    generate.add_argument('--test', type=int, default=1500, help='test frames, normal and anomalous')
    generate.add_argument('--outliers', type=int, default=400, help='labelled anomalous frames for outlier exposure')
    generate.add_argument('--anomaly-fraction', type=float, default=0.3, help='share of anomalous test frames')
    generate.add_argument('--image-size', type=int, default=512, help='frame side in pixels (the dataset uses 512)')
    generate.add_argument(
        '--outlier-classes',
        type=_class_list,
        help='anomaly classes of outliers_set, e.g. '
        'boxes,cable,water (default: all); the others stay unseen in training',
    )
    generate.add_argument('--seed', type=int, default=0, help='world and sampling seed')

    train = commands.add_parser('train', help='train a model bundle and evaluate it on the test split')
    train.add_argument('--data', type=Path, required=True, help='dataset root (Hazards&Robots layout)')
    train.add_argument('--out', type=Path, required=True, help='run folder for the bundle, metrics and plots')
    train.add_argument(
        '--config',
        type=Path,
        default=DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None,
        help='YAML training configuration (default: config/train.yaml)',
    )
    train.add_argument('--epochs', type=int, help='override training.epochs')
    train.add_argument('--base-channels', type=int, help='override model.base_channels (autoencoder width F)')
    train.add_argument('--device', help='override training.device: auto, cpu, cuda, cuda:N')
    train.add_argument('--no-outlier-exposure', action='store_true', help='train the autoencoder only')

    evaluate = commands.add_parser('evaluate', help='score a dataset split with a bundle; metrics, plots, report')
    evaluate.add_argument('bundle', type=Path, help='model bundle (.pt or .onnx)')
    evaluate.add_argument('--data', type=Path, required=True, help='dataset root (Hazards&Robots layout)')
    evaluate.add_argument('--out', type=Path, required=True, help='folder for metrics, plots and report.md')
    evaluate.add_argument('--split', default='test', choices=('test', 'outliers', 'validation', 'train'))
    evaluate.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:N')
    evaluate.add_argument('--cache-dir', type=Path, help='64x64 frame cache folder (default: <data>/.cache_64)')

    report = commands.add_parser('report', help='re-render report.md of a run folder from its metrics.json')
    report.add_argument('run', type=Path, help='run folder')

    export = commands.add_parser(
        'export', help='write a .pt bundle as an .onnx bundle, which scores on a CPU with onnxruntime, without PyTorch'
    )
    export.add_argument('bundle', type=Path, help='model bundle (.pt)')
    export.add_argument('out', type=Path, nargs='?', help='output .onnx file (default: next to the bundle)')
    commands.add_parser(
        'mnist', help="re-run the seed documents' MNIST experiments against ours (visual-anomaly-train mnist --help)"
    )
    for sub in (generate, train, evaluate, report):
        sub.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['mnist']:  # the suite has its own options
        from .mnist_suite import main as mnist_main

        return mnist_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == 'generate':
            root = write_hazards_layout(
                args.root,
                args.train,
                args.validation,
                args.test,
                args.outliers,
                args.seed,
                args.image_size,
                args.anomaly_fraction,
                args.outlier_classes,
            )
            print(f'wrote a synthetic corridor dataset to {root}')
        elif args.command == 'train':
            overrides = {
                'training': {'epochs': args.epochs, 'device': args.device},
                'model': {'base_channels': args.base_channels},
            }
            if args.no_outlier_exposure:
                overrides['outlier_exposure'] = {'enabled': False}
            metrics = train_run(args.data, args.out, load_config(args.config, overrides), not args.quiet)
            print(_summary(metrics))
            print(f'bundle, metrics, plots and report.md in {args.out} ({metrics["seconds"]} s)')
        elif args.command == 'evaluate':
            detector = load_bundle(args.bundle, args.device)
            split = HazardsDataset(args.data).load(args.split, cache_dir=args.cache_dir, progress=not args.quiet)
            exposed = exposed_classes_of(args.bundle)
            metrics = evaluate_frames(
                detector,
                np.asarray(split.frames),
                split.labels,
                args.out,
                f'Evaluation of {args.bundle.name} on {args.data.name}/{args.split}',
                exposed,
                extra={'bundle': str(args.bundle), 'dataset': str(args.data)},
            )
            print(_summary(metrics))
            print(f'metrics, plots and report.md in {args.out}')
        elif args.command == 'export':
            out = args.out or args.bundle.with_suffix('.onnx')
            if out.suffix != '.onnx':
                raise ValueError(f'the exported bundle must end in .onnx, got {out}')
            if args.bundle.suffix != '.pt':
                raise ValueError(f'export reads a .pt bundle, got {args.bundle}')
            provenance = read_bundle_metadata(args.bundle)['provenance']
            export_onnx(
                out, load_bundle(args.bundle, 'cpu', backend='torch'), {**provenance, 'exported_from': args.bundle.name}
            )
            print(f'wrote {out} ({out.stat().st_size / 1e6:.1f} MB): load it like the .pt bundle, without PyTorch')
        else:
            metrics = json.loads((args.run / 'metrics.json').read_text())
            images = {
                caption: args.run / name for caption, name in REPORT_IMAGES.items() if (args.run / name).is_file()
            }
            print(write_report(args.run, f'Run {args.run.name}', metrics, images))
    except (BundleError, FileNotFoundError, ValueError) as error:
        print(f'visual-anomaly-train {args.command}: {error}', file=sys.stderr)
        return 2
    return 0


def exposed_classes_of(path: Path) -> tuple[int, ...]:
    """Codes of the anomaly classes a bundle's OE head was exposed to, from its provenance."""
    per_class = read_bundle_metadata(path).get('provenance', {}).get('outlier_exposure', {}).get('per_class', {})
    codes = {name: code for code, name in ANOMALY_CLASSES.items()}
    return tuple(sorted(codes[name] for name in per_class if name in codes))


if __name__ == '__main__':
    sys.exit(main())
