"""The configuration of a training run: the one place its defaults come from.

:class:`RunConfig` nests one dataclass per section of ``config/train.yaml`` (which documents
these defaults and equals them). :func:`load_config` layers a YAML file and then command-line
overrides on the defaults; an unknown section or key, or a bad value, is a ``ValueError``
naming where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

from training.autoencoder import TrainConfig
from training.change_exposure import ChangeExposureConfig
from training.outlier_exposure import OutlierExposureConfig
from visual_anomaly.core import AutoencoderConfig, PreprocessingConfig
from visual_anomaly.core.change import MemoryFitConfig


@dataclass
class ModelConfig:
    """The autoencoder's width F and embedding size, and the input normalization (``standardize`` or ``scale``)."""

    base_channels: int = AutoencoderConfig.base_channels
    embedding_dim: int = AutoencoderConfig.embedding_dim
    normalization: str = PreprocessingConfig.normalization

    def __post_init__(self) -> None:
        self.autoencoder()  # validates the values
        self.preprocessing()

    def autoencoder(self) -> AutoencoderConfig:
        return AutoencoderConfig(base_channels=self.base_channels, embedding_dim=self.embedding_dim)

    def preprocessing(self) -> PreprocessingConfig:
        return PreprocessingConfig(normalization=self.normalization)


@dataclass
class ExposureConfig:
    """Outlier exposure: whether, with how many labelled anomalous frames per class (0: all), how long, what margin.

    ``change_epochs`` train the MLP on the change evidence (models with a patrol memory), ``epochs``
    the one on the autoencoder's embedding (models without).
    """

    enabled: bool = True
    frames_per_class: int = 20
    change_epochs: int = ChangeExposureConfig.epochs
    epochs: int = OutlierExposureConfig.epochs
    margin: float = OutlierExposureConfig.margin
    head: str = OutlierExposureConfig.head  # mlp (the thesis) or realnvp (the paper's density, margin loss)
    density_margin: float = OutlierExposureConfig.density_margin

    def __post_init__(self) -> None:
        self.fit_config(seed=0)  # validates the values
        self.change_fit_config(seed=0, exclude_steps=0)

    def fit_config(self, seed: int) -> OutlierExposureConfig:
        return OutlierExposureConfig(
            epochs=self.epochs, margin=self.margin, head=self.head, density_margin=self.density_margin, seed=seed
        )

    def change_fit_config(self, seed: int, exclude_steps: int) -> ChangeExposureConfig:
        return ChangeExposureConfig(
            epochs=self.change_epochs,
            margin=self.margin,
            head=self.head,
            density_margin=self.density_margin,
            exclude_steps=exclude_steps,
            seed=seed,
        )


@dataclass
class CalibrationConfig:
    """Share of normal validation frames the threshold may flag."""

    false_positive_rate: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 <= self.false_positive_rate <= 1.0:
            raise ValueError(f'false_positive_rate must be in [0, 1], got {self.false_positive_rate}')


@dataclass
class DataConfig:
    """Where the 64x64 frame cache goes (default ``<dataset>/.cache_64``) and how many threads decode (default all)."""

    cache_dir: str | None = None
    workers: int | None = None


@dataclass
class RunConfig:
    """Every setting of ``visual-anomaly-train train``, by section."""

    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    memory: MemoryFitConfig = field(default_factory=MemoryFitConfig)
    outlier_exposure: ExposureConfig = field(default_factory=ExposureConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict:
        """Sections -> keys -> values, in the layout of ``config/train.yaml``."""
        return asdict(self)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Mapping] | None = None) -> RunConfig:
    """The defaults, updated by the YAML file at ``path`` and then by ``overrides``.

    In the file, ``null`` is a value where a key can take one (``chroma_weight: null`` compares RGB)
    and otherwise leaves the key as it was; in ``overrides``, ``None`` means "not given" and leaves
    the key as it was. In the ``data`` section ``None`` always means "the default".
    """
    config = RunConfig()
    if path is not None:
        config = merge(config, read_yaml(Path(path)), str(path))
    return merge(config, overrides or {}, 'command line', none_is_a_value=False)


def read_yaml(path: Path) -> Mapping:
    """The sections of a YAML configuration file (empty for an empty file)."""
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f'{path}: not valid YAML: {error}') from None
    if not isinstance(loaded, dict):
        raise ValueError(f'{path}: expected a mapping of sections, got {type(loaded).__name__}')
    return loaded


def merge(config: RunConfig, layer: Mapping[str, Mapping], source: str, none_is_a_value: bool = True) -> RunConfig:
    """``config`` updated by ``layer`` (sections -> keys -> values); errors name ``source``. A ``None`` value
    is kept for keys that can be None when ``none_is_a_value``, and skipped otherwise."""
    sections = [item.name for item in fields(config)]
    for section, values in layer.items():
        if section not in sections or not isinstance(values, dict):
            raise ValueError(f'{source}: unknown section {section!r}; known: {sorted(sections)}')
        current = getattr(config, section)
        known = [item.name for item in fields(current)]
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f'{source}: unknown keys {sorted(unknown)} in {section!r}; known: {sorted(known)}')
        can_be_none = {item.name for item in fields(current) if 'None' in str(item.type)}
        nullable = set(known) if section == 'data' else can_be_none if none_is_a_value else set()
        kept = {key: value for key, value in values.items() if value is not None or key in nullable}
        try:
            config = replace(config, **{section: replace(current, **kept)})
        except (TypeError, ValueError) as error:
            raise ValueError(f'{source}: bad value in {section!r}: {error}') from None
    return config
