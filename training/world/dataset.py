"""Frame sets of the corridor and photo worlds, and the on-disk layout of the Hazards&Robots corridor dataset."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from training.world.corridor import CorridorWorld, anomaly_classes
from training.world.photo import PhotoWorld, photo_classes
from training.world.photo_assets import PHOTO_BUILDINGS, PHOTO_CLASSES
from training.world.scene import FrameInfo
from visual_anomaly.data.masks import MASK_SIZE, write_mask
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES, class_code

WORLDS: tuple[str, ...] = ('corridor', *PHOTO_BUILDINGS)  # photo-c is held out: never tune on it


def make_world(
    name: str,
    seed: int = 0,
    image_size: int = 512,
    n_environments: int = 4,
    jpeg_quality: tuple[int, int] | None = (70, 95),
) -> CorridorWorld | PhotoWorld:
    """World ``name`` (one of :data:`WORLDS`): the corridor world, or a building of the photo worlds."""
    if name == 'corridor':
        return CorridorWorld(seed, image_size, n_environments, jpeg_quality)
    if name in PHOTO_BUILDINGS:
        return PhotoWorld(name, seed, image_size, n_environments, jpeg_quality)
    raise ValueError(f'unknown world {name!r}; known: {", ".join(WORLDS)}')


def world_classes(name: str, classes: Sequence[int | str] | None) -> list[int]:
    """Class codes of ``classes`` (names or codes) in world ``name``; all of its classes when None or empty."""
    if name == 'corridor':
        return anomaly_classes([class_code(str(item)) for item in classes or ()])
    return photo_classes(classes)


def world_class_names(name: str) -> dict[int, str]:
    """The names of world ``name``'s class codes (0 = normal)."""
    return dict(PHOTO_CLASSES if name in PHOTO_BUILDINGS else ANOMALY_CLASSES)


def generate_frames(
    n: int,
    seed: int = 0,
    *,
    image_size: int = 512,
    anomaly_fraction: float = 0.0,
    classes: Sequence[int] | None = None,
    world_seed: int = 0,
    n_environments: int = 4,
    jpeg_quality: tuple[int, int] | None = (70, 95),
    world: str = 'corridor',
) -> tuple[np.ndarray, list[FrameInfo], np.ndarray]:
    """``n`` independent frames, ``round(n * anomaly_fraction)`` of them anomalous (classes cycled), shuffled.

    ``world_seed`` fixes the corridors; ``seed`` the sampled poses, lighting and anomalies, so that
    training and test sets drawn with different seeds show the same building. Returns the RGB frames,
    their ground truth and their (n, 64, 64) bool masks (True where the anomaly is visible). An
    anomalous frame's object is placed until it is in view; one that never gets there (rare) leaves a
    normal frame, so count anomalies by ``label`` rather than trusting ``anomaly_fraction``. ``world``
    names the world (:data:`WORLDS`); ``classes`` are its class codes or names.
    """
    if not 0.0 <= anomaly_fraction <= 1.0:
        raise ValueError(f'anomaly_fraction must be in [0, 1], got {anomaly_fraction}')
    classes = world_classes(world, classes)
    rng = np.random.default_rng(seed)
    renderer = make_world(world, world_seed, image_size, n_environments, jpeg_quality)
    n_anomalous = round(n * anomaly_fraction)
    labels = np.zeros(n, np.int64)
    labels[:n_anomalous] = [classes[i % len(classes)] for i in range(n_anomalous)]
    labels = rng.permutation(labels)
    frames = np.empty((n, image_size, image_size, 3), np.uint8)
    masks = np.empty((n, MASK_SIZE, MASK_SIZE), bool)
    infos = []
    for i, label in enumerate(labels):
        frames[i], info, masks[i] = renderer.render(rng, int(label))
        infos.append(info)
    return frames, infos, masks


def _write_images(folder: Path, frames: np.ndarray, rng: np.random.Generator, quality: tuple[int, int]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, frame in enumerate(frames):
        name = f'frame_{i:06d}.jpg'
        params = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(quality[0], quality[1] + 1))]
        if not cv2.imwrite(str(folder / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
            raise OSError(f'could not write {folder / name}')
        names.append(name)
    return names


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open('w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


_SPLIT_CSV = {
    'train_set': ('train_frames_envs.csv', ('frame', 'env')),
    'validation_set': ('validation_frames_envs.csv', ('frame', 'env')),
    'test_set': ('frames_labels.csv', ('frame', 'label', 'difficulty')),
    'outliers_set': ('outliers_frames_labels.csv', ('frame', 'label', 'difficulty')),
}


def write_split(
    root: str | Path,
    split: str,
    frames: np.ndarray,
    infos: Sequence[FrameInfo],
    seed: int = 0,
    jpeg_quality: tuple[int, int] = (70, 95),
    *,
    masks: np.ndarray | None = None,
) -> Path:
    """Write RGB ``frames`` as ``root/split/frame_NNNNNN.jpg`` and their CSV in ``root/metadata``.

    ``masks`` (bool, one per frame) go to ``root/split_masks/frame_NNNNNN.png``, white = anomalous
    (:mod:`visual_anomaly.data.masks`).
    """
    if split not in _SPLIT_CSV:
        raise ValueError(f'split must be one of {sorted(_SPLIT_CSV)}, got {split!r}')
    if masks is not None and len(masks) != len(frames):
        raise ValueError(f'{len(masks)} masks for {len(frames)} frames')
    root = Path(root)
    names = _write_images(root / split, frames, np.random.default_rng(seed), jpeg_quality)
    if masks is not None:
        for name, mask in zip(names, masks, strict=True):
            write_mask(root / split / name, mask)
    csv_name, header = _SPLIT_CSV[split]
    fields = {'frame': None, 'env': 'env', 'label': 'label', 'difficulty': 'difficulty'}
    rows = [
        (name, *(getattr(info, fields[column]) for column in header[1:]))
        for name, info in zip(names, infos, strict=True)
    ]
    _write_csv(root / 'metadata' / csv_name, header, rows)
    return root / split


def write_hazards_layout(
    root: str | Path,
    n_train: int = 400,
    n_validation: int = 100,
    n_test: int = 200,
    n_outliers: int = 100,
    *,
    seed: int = 0,
    image_size: int = 512,
    test_anomaly_fraction: float = 0.3,
    outlier_classes: Sequence[int | str] | None = None,
    test_classes: Sequence[int | str] | None = None,
    jpeg_quality: tuple[int, int] = (70, 95),
    world: str = 'corridor',
) -> Path:
    """Write a synthetic dataset in the Hazards&Robots corridor layout under ``root`` and return it.

    ``train_set/`` and ``validation_set/`` hold normal frames, ``test_set/`` normal and anomalous
    frames of ``test_classes``, ``outliers_set/`` anomalous frames of ``outlier_classes`` for outlier
    exposure; ``metadata/`` holds the label and environment CSVs in sorted file order. The test and
    outliers frames have their 64x64 masks in ``test_set_masks/`` and ``outliers_set_masks/``.
    ``world`` (:data:`WORLDS`) is what is rendered; the label CSVs hold integer codes, so a photo world's
    codes and names are written to ``metadata/class_names.csv`` (code,name) beside them.
    """
    splits = {
        'train_set': (n_train, 0.0, None),
        'validation_set': (n_validation, 0.0, None),
        'test_set': (n_test, test_anomaly_fraction, test_classes),
        'outliers_set': (n_outliers, 1.0, outlier_classes),
    }
    for offset, (split, (count, fraction, classes)) in enumerate(splits.items()):
        frames, infos, masks = generate_frames(
            count,
            seed * 10 + offset + 1,
            image_size=image_size,
            anomaly_fraction=fraction,
            classes=classes,
            world_seed=seed,
            jpeg_quality=None,
            world=world,
        )
        with_masks = split in ('test_set', 'outliers_set')
        write_split(root, split, frames, infos, seed * 10 + offset, jpeg_quality, masks=masks if with_masks else None)
    if world != 'corridor':
        names = list(world_class_names(world).items())
        _write_csv(Path(root) / 'metadata' / 'class_names.csv', ('code', 'name'), names)
    return Path(root)
