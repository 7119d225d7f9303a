"""Fixtures of the bag tests: a tiny Hazards&Robots dataset, a bundle, its test split as bags, a normal patrol."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from training.world import write_hazards_layout
from visual_anomaly.bags.convert import dataset_to_bag
from visual_anomaly.core import AutoencoderConfig, ConvAutoencoder, Detector, load_bundle, save_bundle
from visual_anomaly.data.hazards import HazardsDataset


@pytest.fixture(scope='session')
def world(tmp_path_factory):
    """A tiny Hazards&Robots layout (12 test frames of 128 px, some anomalous) and a calibrated F=8 bundle."""
    base = tmp_path_factory.mktemp('bags')
    root = write_hazards_layout(
        base / 'data', n_train=24, n_validation=8, n_test=12, n_outliers=0, image_size=128, test_anomaly_fraction=0.4
    )
    dataset = HazardsDataset(root)
    torch.manual_seed(0)
    detector = Detector(ConvAutoencoder(AutoencoderConfig(base_channels=8)), device='cpu')
    detector.calibrate(np.asarray(dataset.load('validation', progress=False).frames))
    bundle = save_bundle(base / 'model.pt', detector)
    test = dataset.load('test', progress=False)
    assert 0 < (test.labels > 0).sum() < len(test)
    reloaded = load_bundle(bundle, 'cpu')
    expected = reloaded.detect_resized(np.asarray(test.frames))
    thresholds = {kind: t.value for kind, t in reloaded.calibration.thresholds.items()}
    return {'base': base, 'root': root, 'bundle': bundle, 'test': test, 'expected': expected, 'thresholds': thresholds}


@pytest.fixture(scope='session')
def bags(world):
    """bags(compressed, storage) -> the test split written as a bag (made once per variant)."""
    made = {}

    def get(compressed: bool = False, storage: str = 'sqlite3') -> Path:
        key = (compressed, storage)
        if key not in made:
            path = world['base'] / f'test_{"compressed" if compressed else "raw"}_{storage}'
            made[key] = dataset_to_bag(world['root'], path, compressed=compressed, storage=storage, progress=False)
        return made[key]

    return get


@pytest.fixture(scope='session')
def patrol(world):
    """A normal patrol at 10 Hz: the 24 training frames, every fourth repeated three times (robot standing still)."""
    source = HazardsDataset(world['root']).split('train').paths
    order = [k for k in range(len(source)) for _ in range(3 if k % 4 == 0 else 1)]
    folder = world['base'] / 'patrol' / 'train_set'
    folder.mkdir(parents=True)
    for position, k in enumerate(order):
        shutil.copy(source[k], folder / f'frame_{position:06d}.jpg')
    bag = dataset_to_bag(folder.parent, world['base'] / 'patrol_bag', split='train', compressed=True, progress=False)
    return {'bag': bag, 'order': order, 'source': source}
