"""The trivial baselines: real separation on the synthetic corridor, persistence, and the comparison."""

from __future__ import annotations

import numpy as np
import pytest

from training.world import generate_frames
from visual_anomaly.core import NotFittedError
from visual_anomaly.data.taxonomy import LARGE_CLASSES
from visual_anomaly.evaluation.baselines import (
    BASELINES,
    PixelGaussian,
    baseline_scores,
    baselines_for,
    fit_baselines,
    load_baselines,
    save_baselines,
)
from visual_anomaly.evaluation.metrics import compare_with_baselines, detection_metrics, recall_at_fpr


@pytest.fixture(scope='module')
def corridor():
    """Normal frames of one corridor to fit on, and a test set of normal and large-object frames."""
    one_corridor = {'image_size': 64, 'n_environments': 1}
    train = generate_frames(160, seed=1, **one_corridor)[0]
    validation = generate_frames(60, seed=2, **one_corridor)[0]
    test, info = generate_frames(120, seed=3, anomaly_fraction=0.5, classes=LARGE_CLASSES, **one_corridor)[:2]
    return train, validation, test, np.array([i.label for i in info])


@pytest.mark.slow  # renders 340 frames
def test_baselines_separate_large_objects_from_normal_frames(corridor):
    train, validation, test, labels = corridor
    baselines = fit_baselines(train, validation, fpr=0.05)
    aucs = {k: detection_metrics(s, labels > 0, np.inf)['roc_auc'] for k, s in baseline_scores(baselines, test).items()}
    # independent random poses make this hard for pixel baselines (0.60-0.68 here); chance is 0.5 +- 0.05
    assert min(aucs.values()) > 0.57 and max(aucs.values()) > 0.65, aucs
    for baseline in baselines:
        flagged = (baseline.decision_function(validation) > baseline.threshold_).mean()
        assert flagged <= 0.05  # calibrated on these very frames


@pytest.mark.slow
def test_saved_baselines_score_identically_and_bad_files_are_named(corridor, tmp_path):
    train, validation, test, _ = corridor
    baselines = fit_baselines(train, validation)
    path = save_baselines(tmp_path / 'baselines.npz', baselines)
    loaded = load_baselines(path)
    assert [b.name for b in loaded] == [kind.name for kind in BASELINES]
    for before, after in zip(baselines, loaded, strict=True):
        np.testing.assert_array_equal(before.decision_function(test), after.decision_function(test))
        assert before.threshold_ == after.threshold_
    assert [b.name for b in baselines_for(tmp_path / 'model.pt')] == [b.name for b in loaded]  # found beside it
    assert baselines_for(tmp_path / 'elsewhere' / 'model.pt') == []
    (tmp_path / 'bad.npz').write_bytes(b'PK\x03\x04 not really')
    with pytest.raises(ValueError, match='bad.npz'):
        load_baselines(tmp_path / 'bad.npz')
    np.savez(tmp_path / 'objects.npz', **{'pca/mean_': np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match='objects.npz'):  # never unpickled
        load_baselines(tmp_path / 'objects.npz')


def test_an_unfitted_baseline_refuses_to_score(corridor):
    with pytest.raises(NotFittedError, match='pixel_gaussian'):
        PixelGaussian().decision_function(corridor[2])


def test_recall_at_fpr_reads_the_threshold_off_the_normals():
    normal = np.arange(100, dtype=float)  # the top 1 of 100 normals may pass: cut at 98
    anomalous = np.array([97.5, 98.5, 200.0, 50.0])
    scores, labels = np.r_[normal, anomalous], np.r_[np.zeros(100, bool), np.ones(4, bool)]
    assert recall_at_fpr(scores, labels, 0.01) == pytest.approx(0.5)
    assert recall_at_fpr(scores, labels, 0.0) == pytest.approx(0.25)


def test_the_comparison_names_the_best_baseline_and_the_classes_it_wins():
    def entry(overall, per_class):
        return {'overall': {'roc_auc': overall}, 'per_class': {k: {'roc_auc': v} for k, v in per_class.items()}}

    evaluation = {
        'local': entry(0.80, {'tape': 0.60, 'human': 0.99}),
        'baseline:pca': entry(0.85, {'tape': 0.70, 'human': 0.90}),
        'baseline:pixel_gaussian': entry(0.70, {'tape': 0.95, 'human': 0.80}),
    }
    comparison = compare_with_baselines(evaluation, 'local')
    assert comparison['best_baseline'] == 'baseline:pca' and comparison['margin'] == pytest.approx(-0.05)
    assert set(comparison['classes_lost']) == {'tape'}
    assert comparison['classes_lost']['tape']['baseline'] == 'baseline:pixel_gaussian'
