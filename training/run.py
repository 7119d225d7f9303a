"""A training run: a detector fitted on a Hazards&Robots-layout dataset, saved as a bundle and evaluated.

A run folder holds the model bundle (``model.pt``), the configuration used (``config.yaml``),
``metrics.json``, plots and ``report.md``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml

from training.autoencoder import TrainingHistory, fit_autoencoder
from training.change_exposure import fit_change_exposure
from training.config import RunConfig
from training.outlier_exposure import fit_outlier_exposure
from visual_anomaly.core import ConvAutoencoder, Detector, Preprocessor, save_bundle
from visual_anomaly.core.change import fit_memory
from visual_anomaly.data.hazards import CachedSplit, HazardsDataset
from visual_anomaly.data.taxonomy import class_name
from visual_anomaly.evaluation.baselines import BASELINES_FILE, Baseline, fit_baselines, save_baselines
from visual_anomaly.evaluation.frames import evaluate_frames


def train_run(data: Path, out: Path, config: RunConfig, progress: bool = True) -> dict:
    """Train a bundle on the dataset at ``data``, save it in ``out`` and evaluate it on the test split."""
    started = time.perf_counter()
    dataset = HazardsDataset(data)
    check_splits(dataset, config.outlier_exposure.enabled)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'config.yaml').write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    load = functools.partial(
        dataset.load, cache_dir=config.data.cache_dir, workers=config.data.workers, progress=progress
    )
    train, validation = np.asarray(load('train').frames), np.asarray(load('validation').frames)
    detector, history = fit_detector(train, validation, config, progress)
    provenance = {
        'dataset': str(data),
        'train_frames': len(train),
        'validation_frames': len(validation),
        'best_epoch': history.best_epoch,
        'epochs_run': len(history.val_loss),
        'stop_reason': history.stop_reason,
        'config': config.to_dict(),
    }
    exposed: tuple[int, ...] = ()
    if config.outlier_exposure.enabled and 'outliers' in dataset.splits:
        exposed, provenance['outlier_exposure'] = expose_outliers(detector, train, load('outliers'), config, progress)
        detector.calibrate(validation, fpr=config.calibration.false_positive_rate)
    elif config.outlier_exposure.enabled:
        print('no outliers_set in the dataset: training without outlier exposure')
    bundle, partial = out / 'model.pt', out / 'model.partial.pt'  # renamed once the whole run has succeeded
    try:
        save_bundle(partial, detector, provenance)
        baselines = fit_baselines(train, validation, config.calibration.false_positive_rate)
        save_baselines(out / BASELINES_FILE, baselines)  # evaluations of the bundle find them beside it
        test = load('test') if 'test' in dataset.splits else None
        extra = {'bundle': str(bundle), 'provenance': provenance, 'training': history.summary()}
        extra['calibration'] = detector.calibration.thresholds[detector.decision_score].describe()
        exposed_names = tuple(class_name(code) for code in exposed)
        metrics = evaluate_run(detector, test, out, exposed_names, history, extra, baselines)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, bundle)
    metrics['seconds'] = round(time.perf_counter() - started, 1)
    return metrics


def check_splits(dataset: HazardsDataset, outlier_exposure: bool) -> None:
    """Read every split's file list and CSV before the first epoch: a bad row fails the run before it
    trains, naming the file and line. An unusable ``outliers_set`` says how to train without it; without
    outlier exposure it is not read."""
    for kind in dataset.splits:
        if kind == 'outliers' and not outlier_exposure:
            continue  # not used by this run
        try:
            dataset.split(kind)
        except ValueError as error:
            if kind == 'outliers' and outlier_exposure:
                raise ValueError(
                    f'{error}; to train without outlier exposure, pass --no-outlier-exposure '
                    '(or remove the empty folder)'
                ) from None
            raise


def fit_detector(
    train: np.ndarray, validation: np.ndarray, config: RunConfig, progress: bool = True
) -> tuple[Detector, TrainingHistory]:
    """An autoencoder trained on normal 64x64 frames (in patrol order), with a patrol memory of them unless
    disabled, in a detector calibrated on the validation frames."""
    model = ConvAutoencoder(config.model.autoencoder())
    preprocessing = config.model.preprocessing()
    print(f'training F={config.model.base_channels} on {len(train)} frames, validating on {len(validation)}')
    history = fit_autoencoder(model, train, validation, Preprocessor(preprocessing), config.training, progress)
    print(f'autoencoder: {history.summary()}')
    detector = Detector(model, preprocessing, device=config.training.device)
    if config.memory.enabled:
        memory = fit_memory(train, preprocessing, config.memory)
        print(f'patrol memory: {memory.size} of {len(train)} training frames')
        detector.set_memory(memory)
    detector.calibrate(validation, fpr=config.calibration.false_positive_rate)
    return detector, history


def expose_outliers(
    detector: Detector, train: np.ndarray, outliers: CachedSplit, config: RunConfig, progress: bool = True
) -> tuple[tuple[int, ...], dict]:
    """Fit the detector's OE head on some labelled frames of ``outliers``; the exposed class codes and provenance.

    The caller recalibrates the detector afterwards.
    """
    seed = config.training.seed
    picked = pick_exposed(outliers.labels, config.outlier_exposure.frames_per_class, seed)
    codes = np.unique(outliers.labels[picked])
    counts = {class_name(code): int((outliers.labels[picked] == code).sum()) for code in codes}
    print(f'outlier exposure with {len(picked)} labelled anomalous frames: {counts}')
    exposed = np.asarray(outliers.frames)[picked]
    if detector.memory is not None:  # the MLP on the change evidence's embedding
        fit_config = config.outlier_exposure.change_fit_config(seed, config.memory.exclude_steps)
        report = fit_change_exposure(detector, train, exposed, fit_config, counts, progress)
    else:  # the MLP on the autoencoder's embedding, as published
        fit_config = config.outlier_exposure.fit_config(seed)
        report = fit_outlier_exposure(detector, train, exposed, fit_config, counts, progress)
    return tuple(int(code) for code in codes), {'exposed_frames': report.exposed_frames, 'per_class': counts}


def pick_exposed(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of up to ``per_class`` frames of each anomaly class (all when ``per_class`` is 0)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for code in np.unique(labels[labels > 0]):
        members = np.flatnonzero(labels == code)
        chosen.append(members if per_class <= 0 else rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, np.int64)


def evaluate_run(
    detector: Detector,
    test: CachedSplit | None,
    out: Path,
    exposed: tuple[str, ...],
    history: TrainingHistory,
    extra: dict,
    baselines: Sequence[Baseline] = (),
) -> dict:
    """Metrics, plots and ``report.md`` of the test split in ``out``; only ``extra`` in ``metrics.json`` without one."""
    if test is None:
        (out / 'metrics.json').write_text(json.dumps(extra, indent=2, default=float))
        return extra
    title = f'Training run {out.name}'
    frames = np.asarray(test.frames)
    return evaluate_frames(
        detector,
        frames,
        test.labels,
        out,
        title,
        exposed,
        asdict(history),
        extra,
        baselines=baselines,
        masks=test.masks,
    )
