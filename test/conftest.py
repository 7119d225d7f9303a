"""Shared fixtures: small models and frames for fast, deterministic tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visual_anomaly.core import AutoencoderConfig, ConvAutoencoder, Detector, OutlierExposureHead


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        '--robot-lane',
        action='store_true',
        help="the robot lane (.venv-robot, Ubuntu 24.04's library versions): skip tests marked off_robot",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line('markers', 'off_robot(reason): not run in the robot lane, for the stated reason')


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the robot lane, skip every test marked ``off_robot``, with the marker's reason."""
    if not config.getoption('--robot-lane'):
        return
    for item in items:
        marker = item.get_closest_marker('off_robot')
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=f'robot lane: {marker.kwargs["reason"]}'))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def small_detector() -> Detector:
    """An untrained but seeded F=8 detector with an OE head, on the CPU."""
    torch.manual_seed(0)
    model = ConvAutoencoder(AutoencoderConfig(base_channels=8))
    return Detector(model, oe_head=OutlierExposureHead(), device='cpu')


@pytest.fixture
def frames64(rng: np.random.Generator) -> np.ndarray:
    """Smooth random 64x64 RGB frames (noise would make every frame equally anomalous)."""
    base = rng.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)


def _hiding(folder, packages: tuple[str, ...]) -> dict[str, str]:
    """Environment for a subprocess in which importing any of ``packages`` fails."""
    import os

    for name in packages:
        (folder / name).mkdir()
        (folder / name / '__init__.py').write_text(
            f"raise ImportError('No module named {name} (hidden by the test)')\n"
        )
    return {'PYTHONPATH': os.pathsep.join(filter(None, [str(folder), os.environ.get('PYTHONPATH')]))}


@pytest.fixture(scope='session')
def without_pytorch(tmp_path_factory) -> dict[str, str]:
    """Environment for a subprocess in which ``import torch`` fails, as on a robot without PyTorch."""
    return _hiding(tmp_path_factory.mktemp('no_pytorch'), ('torch',))


@pytest.fixture(scope='session')
def without_training_stack(tmp_path_factory) -> dict[str, str]:
    """Environment for a subprocess without PyTorch and scikit-learn: what a robot scoring ``.onnx`` needs."""
    return _hiding(tmp_path_factory.mktemp('no_training_stack'), ('torch', 'sklearn'))


@pytest.fixture(scope='session')
def without_ray(tmp_path_factory) -> dict[str, str]:
    """Environment for a subprocess in which ``import ray`` fails, as on a robot (Ray is an off-robot extra)."""
    return _hiding(tmp_path_factory.mktemp('no_ray'), ('ray',))
