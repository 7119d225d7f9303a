"""``visual-anomaly-train``: generate data, train a model bundle, evaluate it, rebuild reports.

    visual-anomaly-train generate data/corridors                 # synthetic Hazards&Robots-layout dataset
    visual-anomaly-train generate data/photo-b --world photo-b   # the same in a photographic building
    visual-anomaly-train train --data data/corridors --out runs/corridors
    visual-anomaly-train evaluate runs/corridors/model.pt --data data/corridors --out runs/eval
    visual-anomaly-train report runs/corridors                   # re-render report.md from metrics.json
    visual-anomaly-train export runs/corridors/model.pt          # model.onnx: runs without PyTorch

A run folder holds the model bundle (``model.pt``), the configuration used (``config.yaml``),
``metrics.json``, plots and ``report.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.config import load_config
from training.mnist.suite import DESCRIPTION as MNIST_DESCRIPTION
from training.mnist.suite import add_arguments as add_mnist_arguments
from training.mnist.suite import run_from_args as run_mnist
from training.run import train_run
from training.world import WORLDS, world_classes, write_hazards_layout
from visual_anomaly.cli.common import Parser, run, show_progress, subcommand
from visual_anomaly.core import export_onnx, load_bundle, read_bundle_metadata
from visual_anomaly.data.hazards import HazardsDataset
from visual_anomaly.evaluation.baselines import baselines_for
from visual_anomaly.evaluation.frames import REPORT_IMAGES, evaluate_frames, exposed_classes_of, format_summary
from visual_anomaly.evaluation.report import write_report


def generate(args: argparse.Namespace) -> None:
    outlier_classes = world_classes(args.world, args.outlier_classes) if args.outlier_classes else None
    root = write_hazards_layout(
        args.root,
        n_train=args.train,
        n_validation=args.validation,
        n_test=args.test,
        n_outliers=args.outliers,
        seed=args.seed,
        image_size=args.image_size,
        test_anomaly_fraction=args.anomaly_fraction,
        outlier_classes=outlier_classes,
        world=args.world,
    )
    print(f'wrote a synthetic {args.world} dataset to {root}')


def train(args: argparse.Namespace) -> None:
    overrides = {
        'training': {'epochs': args.epochs, 'device': args.device},
        'model': {'base_channels': args.base_channels},
    }
    if args.no_outlier_exposure:
        overrides['outlier_exposure'] = {'enabled': False}
    elif args.oe_head:
        overrides['outlier_exposure'] = {'head': args.oe_head}
    metrics = train_run(args.data, args.out, load_config(args.config, overrides), show_progress(args))
    print(format_summary(metrics))
    print(f'autoencoder: {metrics["training"]}')
    print(f'calibration: {metrics["calibration"]}')
    print(f'bundle, metrics, plots and report.md in {args.out} ({metrics["seconds"]} s)')


def evaluate(args: argparse.Namespace) -> None:
    detector = load_bundle(args.bundle, args.device)
    split = HazardsDataset(args.data).load(args.split, cache_dir=args.cache_dir, progress=show_progress(args))
    metrics = evaluate_frames(
        detector,
        np.asarray(split.frames),
        split.labels,
        args.out,
        f'Evaluation of {args.bundle.name} on {args.data.name}/{args.split}',
        exposed_classes_of(args.bundle),
        extra={'bundle': str(args.bundle), 'dataset': str(args.data)},
        baselines=baselines_for(args.bundle, args.baselines),
        masks=split.masks,
    )
    print(format_summary(metrics))
    print(f'metrics, plots and report.md in {args.out}')


def report(args: argparse.Namespace) -> None:
    metrics = json.loads((args.run / 'metrics.json').read_text())
    images = {caption: args.run / name for caption, name in REPORT_IMAGES.items() if (args.run / name).is_file()}
    print(write_report(args.run, f'Run {args.run.name}', metrics, images))


def export(args: argparse.Namespace) -> None:
    out = args.out or args.bundle.with_suffix('.onnx')
    if out.suffix != '.onnx':
        raise ValueError(f'the exported bundle must end in .onnx, got {out}')
    if args.bundle.suffix != '.pt':
        raise ValueError(f'export reads a .pt bundle, got {args.bundle}')
    provenance = read_bundle_metadata(args.bundle)['provenance']
    detector = load_bundle(args.bundle, 'cpu', backend='torch')
    export_onnx(out, detector, {**provenance, 'exported_from': args.bundle.name})
    print(f'wrote {out} ({out.stat().st_size / 1e6:.1f} MB): load it like the .pt bundle, without PyTorch')


def class_list(text: str) -> list[str]:
    """Comma-separated anomaly class names or codes, as an argument type (checked against the world's classes)."""
    return [item.strip() for item in text.split(',') if item.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog='visual-anomaly-train',
        description='Train and evaluate camera anomaly detectors for mobile robots. Datasets use the '
        'Hazards&Robots corridor layout (train_set/, validation_set/, test_set/, outliers_set/, metadata/*.csv); '
        '"generate" writes a synthetic one.',
        epilog=__doc__.split('\n\n')[1],
    )
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    quiet = [
        _generate_parser(commands),
        _train_parser(commands),
        _evaluate_parser(commands),
        _report_parser(commands),
    ]
    for sub in quiet:
        sub.add_argument('--quiet', action='store_true', help='no progress bars (they are shown only on a terminal)')
    _export_parser(commands)
    mnist = subcommand(
        commands,
        'mnist',
        run_mnist,
        help="re-run the seed documents' MNIST experiments against ours (visual-anomaly-train mnist --help)",
        description=MNIST_DESCRIPTION,
    )
    add_mnist_arguments(mnist)
    return parser


def _generate_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = subcommand(
        commands, 'generate', generate, help='write a synthetic corridor dataset in the Hazards&Robots layout'
    )
    sub.add_argument('root', type=Path, help='output folder')
    sub.add_argument('--train', type=int, default=4000, help='normal training frames')
    sub.add_argument('--validation', type=int, default=500, help='normal validation frames')
    sub.add_argument('--test', type=int, default=1500, help='test frames, normal and anomalous')
    sub.add_argument('--outliers', type=int, default=400, help='labelled anomalous frames for outlier exposure')
    sub.add_argument('--anomaly-fraction', type=float, default=0.3, help='share of anomalous test frames')
    sub.add_argument('--image-size', type=int, default=512, help='frame side in pixels (the dataset uses 512)')
    sub.add_argument(
        '--outlier-classes',
        type=class_list,
        help='anomaly classes of outliers_set, e.g. boxes,cable,water, or person,tape for a photo world '
        '(default: all); the others stay unseen in training',
    )
    sub.add_argument(
        '--world',
        choices=WORLDS,
        default='corridor',
        help='what to render: the corridor world, or photo building photo-b (tuning) or photo-c '
        '(held out: never use it to choose methods or settings); photo worlds need scikit-image',
    )
    sub.add_argument('--seed', type=int, default=0, help='world and sampling seed')
    return sub


def _train_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = subcommand(commands, 'train', train, help='train a model bundle and evaluate it on the test split')
    sub.add_argument('--data', type=Path, required=True, help='dataset root (Hazards&Robots layout)')
    sub.add_argument('--out', type=Path, required=True, help='run folder for the bundle, metrics and plots')
    sub.add_argument(
        '--config',
        type=Path,
        help='YAML training configuration layered on the defaults (config/train.yaml lists them all)',
    )
    sub.add_argument(
        '--epochs',
        type=int,
        help='override training.epochs, the maximum: training stops earlier once the validation loss stops improving',
    )
    sub.add_argument('--base-channels', type=int, help='override model.base_channels (autoencoder width F)')
    sub.add_argument('--device', help='override training.device: auto, cpu, cuda, cuda:N')
    exposure = sub.add_mutually_exclusive_group()
    exposure.add_argument('--no-outlier-exposure', action='store_true', help='train the autoencoder only')
    exposure.add_argument(
        '--oe-head',
        choices=('mlp', 'realnvp'),
        help="override outlier_exposure.head: the thesis' MLP or the published Real-NVP density (margin loss)",
    )
    return sub


def _evaluate_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = subcommand(commands, 'evaluate', evaluate, help='score a dataset split with a bundle; metrics, plots, report')
    sub.add_argument('bundle', type=Path, help='model bundle (.pt or .onnx)')
    sub.add_argument('--data', type=Path, required=True, help='dataset root (Hazards&Robots layout)')
    sub.add_argument('--out', type=Path, required=True, help='folder for metrics, plots and report.md')
    sub.add_argument('--split', default='test', choices=('test', 'outliers', 'validation', 'train'))
    sub.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:N')
    sub.add_argument('--cache-dir', type=Path, help='64x64 frame cache folder (default: <data>/.cache_64)')
    sub.add_argument(
        '--baselines',
        type=Path,
        help='trivial baselines to report beside the model (default: baselines.npz beside the bundle)',
    )
    return sub


def _report_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = subcommand(commands, 'report', report, help='re-render report.md of a run folder from its metrics.json')
    sub.add_argument('run', type=Path, help='run folder')
    return sub


def _export_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = subcommand(
        commands,
        'export',
        export,
        help='write a .pt bundle as an .onnx bundle, which scores on a CPU with onnxruntime, without PyTorch',
    )
    sub.add_argument('bundle', type=Path, help='model bundle (.pt)')
    sub.add_argument('out', type=Path, nargs='?', help='output .onnx file (default: next to the bundle)')
    return sub


def main(argv: Sequence[str] | None = None) -> int:
    return run(_parser(), argv)


if __name__ == '__main__':
    sys.exit(main())
