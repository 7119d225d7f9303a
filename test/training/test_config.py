"""The training configuration: one set of defaults, documented by config/train.yaml, layered and validated."""

from pathlib import Path

import pytest
import yaml

from training.autoencoder import TrainConfig
from training.config import RunConfig, load_config
from training.outlier_exposure import OutlierExposureConfig
from visual_anomaly.core import AutoencoderConfig

TRAIN_YAML = Path(__file__).resolve().parents[2] / 'config' / 'train.yaml'


def test_the_documented_file_is_exactly_the_defaults():
    assert yaml.safe_load(TRAIN_YAML.read_text()) == RunConfig().to_dict()
    assert load_config(TRAIN_YAML) == RunConfig()


def test_the_library_defaults_are_the_command_line_defaults():
    config = RunConfig()
    assert config.training == TrainConfig()
    training = config.training
    assert (training.epochs, training.lr_patience, training.early_stopping_patience) == (300, 4, 8)
    assert training.min_delta == 0.001
    assert config.model.base_channels == AutoencoderConfig().base_channels == 16
    assert config.outlier_exposure.epochs == OutlierExposureConfig().epochs == 100
    assert config.outlier_exposure.margin == OutlierExposureConfig().margin


def test_a_file_and_then_the_command_line_override_the_defaults(tmp_path):
    path = tmp_path / 'small.yaml'
    path.write_text(yaml.safe_dump({'model': {'base_channels': 8}, 'training': {'epochs': 5, 'batch_size': 16}}))
    config = load_config(path, {'training': {'epochs': 2, 'device': None}, 'data': {'cache_dir': None}})
    assert (config.model.base_channels, config.training.epochs, config.training.batch_size) == (8, 2, 16)
    assert config.training.device == 'auto'  # None on the command line: not given
    assert config.model.embedding_dim == RunConfig().model.embedding_dim


def test_null_in_a_file_is_a_value_where_a_key_can_be_null(tmp_path):
    path = tmp_path / 'plain.yaml'
    path.write_text('memory:\n  chroma_weight: null\n  texture_window: null\n  frames: null\n')
    config = load_config(path, {'memory': {'texture_window': None}})
    assert (config.memory.chroma_weight, config.memory.texture_window) == (None, None)  # RGB, no texture
    assert config.memory.frames == RunConfig().memory.frames  # a key that cannot be null keeps its value
    assert load_config(None, {'memory': {'chroma_weight': None}}).memory.chroma_weight == 3.0  # not given


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('training:\n  epocs: 3\n', "unknown keys \\['epocs'\\] in 'training'"),
        ('trainin:\n  epochs: 3\n', "unknown section 'trainin'"),
        ('training: 3\n', "unknown section 'training'"),
        ('- model\n', 'expected a mapping of sections'),
        ('training: {epochs: [\n', 'not valid YAML'),
        ('training:\n  epochs: 0\n', 'must be positive'),
        ('training:\n  min_delta: 1\n', 'min_delta must be in'),
        ('training:\n  epochs: many\n', "bad value in 'training'"),
        ('model:\n  normalization: none\n', 'normalization must be one of'),
        ('calibration:\n  false_positive_rate: 2\n', 'false_positive_rate'),
    ],
)
def test_bad_files_are_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_bad_overrides_name_the_command_line():
    with pytest.raises(ValueError, match="command line: unknown keys \\['width'\\] in 'model'"):
        load_config(None, {'model': {'width': 3}})
