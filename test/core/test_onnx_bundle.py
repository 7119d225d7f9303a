"""Exported .onnx bundles: the .pt bundle's scores and decisions, on a machine without PyTorch."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hostile_bundles import save_sealed_onnx

from training.world import CorridorWorld
from visual_anomaly.core import (
    SCORE_KINDS,
    BundleError,
    Detector,
    OnnxModel,
    export_onnx,
    load_bundle,
    read_bundle_metadata,
)
from visual_anomaly.core import bundle as bundle_module

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PT, DEFAULT_ONNX = REPO / 'models' / 'default.pt', REPO / 'models' / 'default.onnx'


@pytest.fixture(scope='module')
def corridor64() -> np.ndarray:
    """64x64 patrol frames, a third of them anomalous: the default model's world."""
    world = CorridorWorld(seed=0, image_size=64)
    frames, _, _ = world.patrol(64, np.random.default_rng(3), anomaly_rate=0.3, speed_m_per_frame=0.1)
    return frames


@pytest.fixture
def exported(tmp_path, small_detector, frames64):
    small_detector.calibrate(frames64, fpr=0.1)
    small_detector.decision_score = 'oe'
    return export_onnx(tmp_path / 'model.onnx', small_detector, {'dataset': 'unit test'}), small_detector


def test_the_shipped_onnx_is_the_shipped_model(corridor64):
    """models/default.onnx must be re-exported whenever models/default.pt changes."""
    eager = load_bundle(DEFAULT_PT, 'cpu', backend='torch')
    onnx_model = load_bundle(DEFAULT_ONNX)
    assert isinstance(onnx_model, OnnxModel) and onnx_model.backend == 'onnxruntime'
    pt_metadata, onnx_metadata = read_bundle_metadata(DEFAULT_PT), read_bundle_metadata(DEFAULT_ONNX)
    assert onnx_metadata['provenance'].pop('exported_from') == 'default.pt'
    assert onnx_metadata == pt_metadata, 'stale: visual-anomaly-train export models/default.pt'
    expected, got = eager.detect_resized(corridor64), onnx_model.detect_resized(corridor64)
    assert got.score.std() > 0.5  # the frames really differ, so agreement means something
    for kind in SCORE_KINDS:  # "same scores within 1e-5 (relative, for the change peaks of ~10-30)" ...
        tolerance = {'rtol': 0.01, 'atol': 0.05} if kind in ('oe', 'fused') else {'rtol': 1e-5, 'atol': 1e-5}
        np.testing.assert_allclose(
            got.scores[kind], expected.scores[kind], **tolerance
        )  # ... OE: see test_change_exposure
    np.testing.assert_array_equal(got.is_anomaly, expected.is_anomaly)
    assert got.is_anomaly.any() and not got.is_anomaly.all()
    assert (onnx_model.decision_score, onnx_model.threshold_) == (eager.decision_score, eager.threshold_)


def test_export_round_trip(exported, frames64, caplog):
    path, original = exported
    with caplog.at_level(logging.WARNING):
        loaded = load_bundle(path, device='cuda')  # a GPU request is answered on the CPU, with a warning
    assert 'runs on the CPU' in caplog.text
    assert loaded.decision_score == 'oe' and loaded.calibration == original.calibration
    assert loaded.available_scores == original.available_scores and loaded.image_size == 64
    assert read_bundle_metadata(path)['provenance'] == {'dataset': 'unit test'}
    in_memory = Detector(
        original.autoencoder, original.preprocessing, original.oe_head, original.calibration, backend='onnxruntime'
    )
    for batch in (frames64[:1], frames64):  # the file holds exactly the graph the in-memory backend runs
        got, expected = loaded.detect(batch), in_memory.detect(batch)
        for kind in original.available_scores:
            np.testing.assert_allclose(got.scores[kind], expected.scores[kind], rtol=0, atol=1e-9)
        np.testing.assert_allclose(got.error_map, original.detect(batch).error_map, rtol=1e-4, atol=1e-6)
    loaded.set_threshold(-1e9)
    assert loaded.predict(frames64).all()
    with pytest.raises(BundleError, match='runs with onnxruntime'):
        load_bundle(path, backend='torch')
    with pytest.raises(ValueError, match='device must be'):
        load_bundle(path, device='tpu')


def _with_properties(source: Path, out: Path, **properties: str | None) -> Path:
    """A copy of an ONNX file with metadata properties replaced (None: removed), its checksum matching."""
    model = onnx.load(source)
    kept = [p for p in model.metadata_props if p.key not in properties]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in properties.items():
        if value is not None:
            model.metadata_props.add(key=key, value=value)
    return save_sealed_onnx(model, out)


def test_bad_onnx_files_are_refused_with_their_path(exported, tmp_path):
    path, _ = exported
    data = path.read_bytes()
    (tmp_path / 'empty.onnx').write_bytes(b'')
    (tmp_path / 'garbage.onnx').write_bytes(b'\x08\x07 not a protobuf' * 10)
    (tmp_path / 'truncated.onnx').write_bytes(data[: len(data) // 2])
    plain = _with_properties(
        path, tmp_path / 'plain.onnx', **{bundle_module.ONNX_FORMAT_KEY: None, bundle_module.ONNX_METADATA_KEY: None}
    )
    newer = _with_properties(path, tmp_path / 'newer.onnx', **{bundle_module.ONNX_FORMAT_KEY: '2'})
    corrupt = _with_properties(path, tmp_path / 'corrupt.onnx', **{bundle_module.ONNX_METADATA_KEY: '{nope'})
    cases = {
        tmp_path / 'missing.onnx': 'not found',
        tmp_path / 'empty.onnx': 'unreadable',
        tmp_path / 'garbage.onnx': 'unreadable',
        tmp_path / 'truncated.onnx': 'unreadable',
        plain: 'not a visual_anomaly bundle',
        newer: 'newer',
        corrupt: 'corrupt',
    }
    for bad, message in cases.items():
        with pytest.raises(BundleError, match=message) as error:
            load_bundle(bad)
        assert str(bad) in str(error.value)


SCRIPT = """
import json, sys
import numpy as np
from visual_anomaly.core import BundleError, load_bundle
from visual_anomaly.core import default_model_path
model = load_bundle(default_model_path())
result = model.detect_resized(np.load(sys.argv[1]))
try:
    load_bundle(sys.argv[2])
    pt_error = None
except BundleError as error:
    pt_error = str(error)
print(json.dumps({'model': str(default_model_path()), 'score': result.score.tolist(), 'pt_error': pt_error,
                  'loaded': sorted({'torch', 'sklearn', 'matplotlib'} & set(sys.modules))}))
"""


@pytest.mark.slow  # a subprocess
def test_scoring_without_pytorch_or_scikit_learn(without_training_stack, corridor64, tmp_path):
    np.save(tmp_path / 'frames.npy', corridor64)
    for module in ('torch', 'sklearn'):  # the environment really hides them
        hidden = subprocess.run(
            [sys.executable, '-c', f'import {module}'], env={**os.environ, **without_training_stack}
        )
        assert hidden.returncode != 0
    result = subprocess.run(
        [sys.executable, '-c', SCRIPT, str(tmp_path / 'frames.npy'), str(DEFAULT_PT)],
        env={**os.environ, **without_training_stack},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['model'].endswith('default.onnx') and report['loaded'] == []
    assert 'needs PyTorch' in report['pt_error'] and 'export' in report['pt_error']
    expected = load_bundle(DEFAULT_PT, 'cpu', backend='torch').detect_resized(corridor64).score
    np.testing.assert_allclose(report['score'], expected, rtol=0.01, atol=0.05)  # fused: OE within ~1%
