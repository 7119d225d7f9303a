"""Bundles whose pieces disagree, or whose bytes changed, are refused in one sentence naming the file,
before anything the metadata asks for is built."""

from __future__ import annotations

import logging
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hostile_bundles import onnx_allocating_at_run_time, rewritten_pt, save_sealed_onnx

from visual_anomaly.core import BundleError, export_onnx, load_bundle, read_bundle_metadata, save_bundle
from visual_anomaly.core.bundle_checks import CHECKSUM_KEY, checksum
from visual_anomaly.core.onnx_backend import CHECKSUM_PROPERTY, is_sealed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def saved(tmp_path, small_detector, frames64) -> Path:
    small_detector.calibrate(frames64, fpr=0.1)
    return save_bundle(tmp_path / 'model.pt', small_detector)


def _refused(path: Path, message: str) -> str:
    with pytest.raises(BundleError, match=message) as error:
        load_bundle(path, 'cpu')
    text = str(error.value)
    assert text.startswith(f'{path}: ') and '\n' not in text, text
    return text


def _flip_a_weight_bit(source: Path, out: Path) -> Path:
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:  # the largest stored tensor: the autoencoder's weights
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 100] ^= 0x10
    out.write_bytes(bytes(data))
    return out


def test_a_bit_flipped_weight_is_refused(saved, tmp_path):
    flipped = _flip_a_weight_bit(saved, tmp_path / 'flipped.pt')
    payload = torch.load(flipped, weights_only=True)  # the archive still reads: only the checksum can tell
    assert payload[CHECKSUM_KEY] != checksum(payload)
    _refused(flipped, 'damaged or altered model bundle')
    _refused(
        rewritten_pt(saved, tmp_path / 'edited.pt', seal=False, preprocessing={'normalization': 'scale'}),
        'do not match the checksum',
    )


def test_a_bundle_without_checksum_loads_with_a_warning(saved, tmp_path, frames64, caplog):
    payload = torch.load(saved, weights_only=True)
    del payload[CHECKSUM_KEY]
    torch.save(payload, tmp_path / 'old.pt')
    with caplog.at_level(logging.WARNING):
        old = load_bundle(tmp_path / 'old.pt', 'cpu', backend='torch')
    assert 'old.pt: no checksum' in caplog.text
    np.testing.assert_array_equal(
        old.detect(frames64).score, load_bundle(saved, 'cpu', backend='torch').detect(frames64).score
    )


def test_the_shipped_bundles_carry_their_checksums():
    payload = torch.load(REPO / 'models' / 'default.pt', weights_only=True)
    assert payload[CHECKSUM_KEY] == checksum(payload)
    assert is_sealed((REPO / 'models' / 'default.onnx').read_bytes())


def test_an_onnx_bundle_with_a_changed_weight_is_refused(saved, tmp_path, caplog):
    exported = export_onnx(tmp_path / 'model.onnx', load_bundle(saved, 'cpu', backend='torch'))
    weights = max(onnx.load(exported).graph.initializer, key=lambda tensor: len(tensor.raw_data)).raw_data
    data = bytearray(exported.read_bytes())
    assert len(weights) > 1000 and data.count(weights) == 1
    data[data.find(weights) + len(weights) // 2] ^= 0x10
    (tmp_path / 'flipped.onnx').write_bytes(bytes(data))
    onnx.load(tmp_path / 'flipped.onnx')  # still a valid graph: only the checksum can tell
    _refused(tmp_path / 'flipped.onnx', 'damaged or altered model bundle, its graph, weights and metadata do not match')
    old = onnx.load(exported)  # as exported before the checksum: loads, with a warning
    kept = [prop for prop in old.metadata_props if prop.key != CHECKSUM_PROPERTY]
    del old.metadata_props[:]
    old.metadata_props.extend(kept)
    onnx.save(old, tmp_path / 'old.onnx')
    with caplog.at_level(logging.WARNING):
        assert load_bundle(tmp_path / 'old.onnx').threshold_ == load_bundle(exported).threshold_
    assert 'old.onnx: no checksum' in caplog.text


def test_a_tiny_bundle_declaring_a_huge_network_is_refused_without_building_it(saved, tmp_path):
    """base_channels=1024 would build a 3.3 GB network; the refusal must come from the shapes alone."""
    huge = rewritten_pt(saved, tmp_path / 'huge.pt', autoencoder={'base_channels': 1024})
    assert huge.stat().st_size < 2e6
    script = (
        'from visual_anomaly.core import BundleError, load_bundle\n'
        f'try:\n    load_bundle({str(huge)!r}, "cpu")\nexcept BundleError as error:\n    print(error)\n'
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of a pytest process
        # that has grown to 1.2 GB during the suite would report that
        "print(int(next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')).split()[1]) // 1024)"
    )
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120, check=True)
    message, peak_mb = done.stdout.strip().splitlines()
    assert 'huge.pt: inconsistent model bundle, the autoencoder weights do not match the architecture' in message
    assert 'encoder.0.0.weight is [8, 3, 3, 3]' in message and '[1024, 3, 3, 3]' in message
    assert int(peak_mb) < 1000, f'{peak_mb} MB: the declared network was built'


@pytest.mark.parametrize(
    ('sections', 'message'),
    [
        ({'preprocessing': {'image_size': 200000}}, 'image_size must be between 1 and 4096, got 200000'),
        ({'preprocessing': {'image_size': 128}}, 'frames are resized to 128 px but the network takes 64 px'),
        ({'autoencoder': {'embedding_dim': 64}}, 'head reads 128-d embeddings, the network gives 64'),
        ({'oe_head': {'head': 'realnvp'}}, 'the outlier-exposure head weights do not match'),
        ({'oe_head': {'input': 'change'}}, 'reads the change evidence but it has no patrol memory'),
        ({'autoencoder': {'in_channels': 1}}, 'the network takes 1 channels, frames have 3'),
        ({'memory': {'neighbours': 8}}, 'patrol memory cannot be built'),
    ],
)
def test_pieces_that_disagree_are_refused(saved, tmp_path, sections, message):
    _refused(rewritten_pt(saved, tmp_path / 'odd.pt', **sections), message)


def test_onnx_graphs_that_do_not_give_what_the_metadata_says_are_refused(saved, tmp_path):
    exported = export_onnx(tmp_path / 'model.onnx', load_bundle(saved, 'cpu', backend='torch'))
    model = onnx.load(exported)
    kept = [output for output in model.graph.output if output.name != 'mse']
    del model.graph.output[:]
    model.graph.output.extend(kept)
    save_sealed_onnx(model, tmp_path / 'no_mse.onnx')
    _refused(tmp_path / 'no_mse.onnx', r'the graph lacks the output\(s\) mse')
    metadata = next(p for p in onnx.load(exported).metadata_props if p.key == 'visual_anomaly.metadata')
    model = onnx.load(exported)
    next(p for p in model.metadata_props if p.key == metadata.key).value = metadata.value.replace(
        '"image_size": 64, "normalization"', '"image_size": 32, "normalization"'
    )
    save_sealed_onnx(model, tmp_path / 'small.onnx')
    _refused(tmp_path / 'small.onnx', r"takes frames of shape \['batch', 64, 64, 3\], the preprocessing gives 32x32x3")


def test_a_graph_that_fails_when_it_runs_is_refused_at_load(tmp_path):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hungry = onnx_allocating_at_run_time(
        tmp_path / 'hungry.onnx', read_bundle_metadata(REPO / 'models' / 'default.onnx')
    )
    text = _refused(hungry, 'the model fails on a blank frame .*Failed to allocate memory')
    assert 'hungry.onnx' in text
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # kB
