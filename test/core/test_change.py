"""The patrol memory: a place looked up among normal frames and compared pixel by pixel."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from visual_anomaly.core import (
    AutoencoderConfig,
    ConvAutoencoder,
    Detector,
    PreprocessingConfig,
    Preprocessor,
    export_onnx,
    load_bundle,
    save_bundle,
)
from visual_anomaly.core.change import (
    MemoryConfig,
    MemoryFitConfig,
    PatrolMemory,
    evenly_spaced,
    first_minimum,
    fit_memory,
    leave_out_masks,
    local_spread,
    opponent_colours,
)

SIDE = 64


def _scene(rng: np.random.Generator) -> np.ndarray:
    """A wide smooth textured panorama the camera pans along."""
    noise = rng.integers(0, 256, size=(SIDE + 16, 600, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.5)


def _views(scene: np.ndarray, positions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """64x64 crops at ``positions`` along the panorama, with a pixel or two of vertical jitter."""
    rows = rng.integers(6, 10, size=len(positions))
    return np.stack([scene[r : r + SIDE, int(x) : int(x) + SIDE] for r, x in zip(rows, positions, strict=True)])


def _with_box(frames: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Frames with a 7x7 flat-coloured box at a random place; the boxes' centres."""
    frames, centres = frames.copy(), []
    for frame in frames:
        y, x = rng.integers(8, SIDE - 15, size=2)
        frame[y : y + 7, x : x + 7] = rng.integers(0, 256, size=3)
        centres.append((y + 3, x + 3))
    return frames, centres


@pytest.fixture(scope='module')
def patrol() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    scene = _scene(rng)
    train = _views(scene, np.linspace(0, 520, 400), rng)  # a patrol, in order
    test_normal = _views(scene, rng.uniform(0, 520, 60), rng)  # a later pass: other positions, other jitter
    test_anomalous, centres = _with_box(_views(scene, rng.uniform(0, 520, 60), rng), rng)
    return {'train': train, 'normal': test_normal, 'anomalous': test_anomalous, 'centres': np.array(centres)}


@pytest.fixture(scope='module')
def memory(patrol) -> PatrolMemory:
    return fit_memory(patrol['train'], PreprocessingConfig(), MemoryFitConfig(frames=100, statistics_frames=200))


def _change_maps(memory: PatrolMemory, frames: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return memory(memory.normalize(torch.from_numpy(frames))).numpy()


def test_a_small_box_stands_out_where_it_is(memory, patrol):
    normal, anomalous = _change_maps(memory, patrol['normal']), _change_maps(memory, patrol['anomalous'])
    scores = np.r_[normal.reshape(60, -1).max(1), anomalous.reshape(60, -1).max(1)]
    labels = np.r_[np.zeros(60), np.ones(60)]
    assert roc_auc_score(labels, scores) > 0.97
    peaks = np.stack(np.unravel_index(anomalous.reshape(60, -1).argmax(1), (SIDE, SIDE)), axis=1)
    assert np.median(np.abs(peaks - patrol['centres']).max(1)) <= 4  # the peak sits on the box


def test_difference_map_is_the_best_match_over_neighbours_and_shifts(memory, patrol):
    """The fast comparison equals the definition: per pixel, the smallest channel-mean squared difference (in
    the comparison colour space, local spread included) to any neighbour shifted by up to ``shift``
    (replicate padding), and the signed colour difference to that match."""
    frames = np.concatenate([patrol['normal'][:3], patrol['anomalous'][:3]])
    images = memory.normalize(torch.from_numpy(frames))
    with torch.inference_mode():
        indices = memory.nearest(images)
        best, residual = memory.difference_map(images, indices, residual=True)
        r = memory.config.shift
        images = memory.comparable(images)
        channels = images.shape[1]
        neighbours = memory.comparable(memory.normalize(memory.frames[indices.flatten()]))
        padded = torch.nn.functional.pad(neighbours, (r, r, r, r), mode='replicate').view(
            len(frames), -1, channels, SIDE + 2 * r, SIDE + 2 * r
        )
        candidates = torch.stack(
            [padded[..., dy : dy + SIDE, dx : dx + SIDE] for dy in range(2 * r + 1) for dx in range(2 * r + 1)], 2
        ).flatten(1, 2)  # (N, K * shifts, C, S, S), neighbour-major
        differences = images[:, None] - candidates
        expected, which = differences.square().mean(dim=2).min(dim=1)
        chosen = differences.gather(1, which[:, None, None].expand(len(frames), 1, channels, SIDE, SIDE))[:, 0, :3]
    assert channels == 4  # the default compares the local spread too
    torch.testing.assert_close(best, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(residual, chosen, rtol=1e-6, atol=1e-6)


def test_first_minimum_takes_the_first_of_equal_values():
    values = torch.tensor([[5.0, 2.0, 7.0, 2.0, 1.0, 1.0, 9.0]]).view(1, 7, 1)
    minimum, index = first_minimum(values)
    assert (minimum.item(), index.item()) == (1.0, 4)
    minimum, index = first_minimum(values[:, :4])
    assert (minimum.item(), index.item()) == (2.0, 1)


def test_statistics_come_from_frames_that_cannot_find_themselves(patrol):
    fitted = fit_memory(patrol['train'], PreprocessingConfig(), MemoryFitConfig(frames=100, statistics_frames=100))
    normalize = Preprocessor().normalize_tensor
    own = PatrolMemory(torch.from_numpy(patrol['train'][:100]), normalize, MemoryConfig())
    with torch.inference_mode():
        self_maps = own.smoothed_map(normalize(torch.from_numpy(patrol['train'][:100])))
    assert float(self_maps.max()) == 0.0  # a frame in the memory matches itself exactly ...
    assert float(fitted.pixel_mean.median()) > 1e-3  # ... so the statistics exclude it and its neighbours


def test_nearest_skips_excluded_frames(memory, patrol):
    images = memory.normalize(torch.from_numpy(memory.frames[:3].numpy()))
    assert memory.nearest(images)[:, 0].tolist() == [0, 1, 2]
    excluded = torch.zeros(3, memory.size, dtype=torch.bool)
    excluded[:, :3] = True
    assert not set(memory.nearest(images, excluded).flatten().tolist()) & {0, 1, 2}


def test_opponent_colours_keep_distances_at_weight_one_and_scale_only_colour():
    rng = np.random.default_rng(0)
    a, b = torch.from_numpy(rng.normal(size=(2, 100, 3))).float()
    plain = (opponent_colours(1.0) @ (a - b).T).square().sum(0)
    torch.testing.assert_close(plain, (a - b).square().sum(1))
    grey = torch.tensor([0.7, 0.7, 0.7])  # a brightness change has no colour: the weight leaves it alone
    torch.testing.assert_close(opponent_colours(5.0) @ grey, opponent_colours(1.0) @ grey)
    red = torch.tensor([1.0, 0.0, 0.0])
    assert (opponent_colours(3.0) @ red)[1:].norm() == pytest.approx(3 * (opponent_colours(1.0) @ red)[1:].norm())
    assert torch.equal(opponent_colours(None), torch.eye(3))


def test_local_spread_is_the_standard_deviation_over_the_box_cut_at_the_border():
    channel = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 1, 12, 12)).astype(np.float32))
    spread = local_spread(channel, 5)[0, 0]
    pixels = channel[0, 0].numpy()
    for y, x in ((6, 6), (0, 0), (11, 4)):
        box = pixels[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3]
        assert float(spread[y, x]) == pytest.approx(box.std(), abs=1e-5)
    assert float(local_spread(torch.full((1, 1, 8, 8), 0.3), 3).max()) < 1e-3  # a flat sheet has none


def test_memory_config_rejects_absurd_values():
    for bad in ({'neighbours': 0}, {'shift': -1}, {'window': 4}):
        with pytest.raises(ValueError, match='memory needs'):
            MemoryConfig(**bad)
    for weight in (0.0, -1.0, float('nan'), 1e6):
        with pytest.raises(ValueError, match='chroma_weight'):
            MemoryConfig(chroma_weight=weight)
    for window in (0, 1, 4, 17, 5.0):
        with pytest.raises(ValueError, match='texture_window'):
            MemoryConfig(texture_window=window)
    with pytest.raises(ValueError, match='cannot give 8 neighbours'):
        PatrolMemory(torch.zeros(3, SIDE, SIDE, 3, dtype=torch.uint8), Preprocessor().normalize_tensor)


@pytest.fixture(scope='module')
def detector(memory, patrol) -> Detector:
    torch.manual_seed(0)
    detector = Detector(ConvAutoencoder(AutoencoderConfig(base_channels=8)), device='cpu', backend='torch')
    detector.set_memory(memory)
    detector.calibrate(patrol['normal'], fpr=0.05)
    return detector


def test_detector_decides_on_change_and_maps_it(detector, patrol):
    assert detector.decision_score == 'change' and 'change' in detector.available_scores
    result = detector.detect_resized(patrol['anomalous'])
    peaks = result.anomaly_map.reshape(60, -1).max(1)  # the score is the map's peak, in calibrated units
    np.testing.assert_allclose(result.score, detector.calibration.normalizers['change'](peaks), rtol=1e-5)
    assert result.is_anomaly.mean() > 0.8 > detector.detect_resized(patrol['normal']).is_anomaly.mean()


def test_held_out_peaks_reach_the_tail_that_in_sample_peaks_cap_and_join_the_calibration(memory, detector, patrol):
    train = patrol['train']
    queries = evenly_spaced(len(train), 200)
    excluded = torch.from_numpy(leave_out_masks(len(train), memory.size, queries, 2))
    with torch.inference_mode():
        maps = memory.smoothed_map(memory.normalize(torch.from_numpy(train[queries])), excluded)
        in_sample = ((maps - memory.pixel_mean) / memory.pixel_scale).amax(dim=(1, 2)).numpy()
    held_out = memory.held_out_peaks
    assert held_out.shape == in_sample.shape and np.isfinite(held_out).all()
    assert np.quantile(held_out, 0.95) > 1.1 * np.quantile(in_sample, 0.95)  # a frame's own spread caps its peak
    assert detector.calibration.thresholds['change'].frames == len(patrol['normal']) + len(held_out)


def test_memory_travels_in_pt_and_onnx_bundles(detector, patrol, tmp_path):
    pt = save_bundle(tmp_path / 'model.pt', detector)
    onnx_path = export_onnx(tmp_path / 'model.onnx', detector)
    expected = detector.detect_resized(patrol['anomalous'])
    for path in (pt, onnx_path):
        loaded = load_bundle(path, 'cpu')
        got = loaded.detect_resized(patrol['anomalous'])
        assert loaded.decision_score == 'change'
        np.testing.assert_allclose(got.scores['change'], expected.scores['change'], rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(got.is_anomaly, expected.is_anomaly)
