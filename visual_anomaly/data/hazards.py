"""Loader for the Hazards&Robots corridor dataset layout: the real dataset or a synthetic one (``training.world``).

Split kinds and their folders under the dataset root (the first folder present is used):

- ``train``: ``train_set`` (RA-L / TAROS) or ``training_set`` (Data in Brief)
- ``validation``: ``validation_set``
- ``test``: ``test_set``
- ``outliers``: ``outliers_set`` (RA-L / TAROS) or ``training_mixed_set`` (Data in Brief)

Frames are the folder's .jpg/.jpeg/.png files (other files are ignored), matched to CSV rows by
their position in the sorted file list, as in the authors' code. CSVs are looked up in
``<root>/metadata`` as ``<stem>_frames*.csv``, ``<stem>`` being the folder name without ``_set``;
this finds the RA-L names ``train_frames_envs.csv``, ``validation_frames_envs.csv`` and
``outliers_frames_labels.csv``, while the RA-L test CSV is the bare ``frames_labels.csv``.
Assumption: the Data-in-Brief CSV names were not checked against the release (we have no copy);
we expect ``training_mixed_frames_labels.csv`` (seen in third-party code), ``test_frames_labels.csv``
and the like. If several CSVs match, those with ``label`` in their name win. Data-in-Brief labels are
returned as written; that release may number its classes differently (see its ``labels_mapping.txt``).

Columns: ``label`` (required for test and outliers; train and validation frames are normal, so
their labels default to 0 and their CSV is optional), ``difficulty`` (default 0), ``env`` (optional).
A ``frame`` column, when present, must name the sorted files (file name or stem).

Per-pixel masks are optional: a ``<split folder>_masks`` folder beside a split holds one PNG per frame
(:mod:`visual_anomaly.data.masks`); :meth:`HazardsDataset.load` returns them at 64x64 when present.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from visual_anomaly.core.preprocessing import resize_frame
from visual_anomaly.data.images import decode_image
from visual_anomaly.data.masks import read_masks

SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    'train': ('train_set', 'training_set'),
    'validation': ('validation_set',),
    'test': ('test_set',),
    'outliers': ('outliers_set', 'training_mixed_set'),
}
NORMAL_ONLY = ('train', 'validation')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
CACHE_VERSION = 1
_EXTRA_CSVS = {'test': ('frames_labels.csv',)}
_REDUCTIONS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))
_COPY_CHUNK = 4096

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitIndex:
    """The image files of one split and their metadata, aligned row by row."""

    kind: str
    folder: Path
    csv: Path | None
    paths: list[Path]
    labels: np.ndarray
    difficulty: np.ndarray
    env: np.ndarray | None


@dataclass(frozen=True)
class CachedSplit:
    """Decoded frames, (N, S, S, 3) uint8 RGB memory-mapped read-only, with metadata aligned to them.

    ``masks``: (N, S, S) bool per-pixel ground truth (True = anomalous), None when the split has none.
    """

    frames: np.ndarray
    labels: np.ndarray
    difficulty: np.ndarray
    env: np.ndarray | None
    paths: list[Path]
    bad_files: list[Path]
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)


class HazardsDataset:
    """A dataset root in either layout; see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.folders: dict[str, Path] = {}
        for kind, names in SPLIT_FOLDERS.items():
            found = [self.root / name for name in names if (self.root / name).is_dir()]
            if found:
                self.folders[kind] = found[0]
        if not self.folders:
            expected = sorted({name for names in SPLIT_FOLDERS.values() for name in names})
            raise FileNotFoundError(f'no split folder in {self.root}; expected some of {expected}')

    @property
    def splits(self) -> tuple[str, ...]:
        """The split kinds present, in the order train, validation, test, outliers."""
        return tuple(self.folders)

    def split(self, kind: str) -> SplitIndex:
        """List the files of split ``kind`` and read their metadata CSV."""
        if kind not in self.folders:
            raise ValueError(f'no {kind!r} split in {self.root}; available: {self.splits}')
        folder = self.folders[kind]
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f'no {"/".join(IMAGE_SUFFIXES)} files in {folder}')
        csv_path = self._find_csv(kind, folder)
        if csv_path is None:
            zeros = np.zeros(len(paths), np.int64)
            return SplitIndex(kind, folder, None, paths, zeros, zeros.copy(), None)
        with csv_path.open(newline='') as handle:
            reader = csv.DictReader(handle)
            rows, columns = list(reader), reader.fieldnames or []
        if len(rows) != len(paths):
            raise ValueError(f'{csv_path} has {len(rows)} rows but {folder} has {len(paths)} image files')
        if 'frame' in columns:
            for i, (row, path) in enumerate(zip(rows, paths, strict=True)):
                if Path(row['frame']).name not in (path.name, path.stem):
                    raise ValueError(f'{csv_path} row {i} names {row["frame"]!r} but the sorted file there is {path}')

        def column(name: str) -> np.ndarray:
            values = []
            for number, row in enumerate(rows, start=2):
                try:
                    values.append(int(row[name]))
                except (TypeError, ValueError):
                    raise ValueError(f'{csv_path} line {number}: {name} {row[name]!r} is not an integer') from None
            return np.array(values, np.int64)

        if 'label' in columns:
            labels = column('label')
        elif kind in NORMAL_ONLY:
            labels = np.zeros(len(paths), np.int64)
        else:
            raise ValueError(f'{csv_path} has no label column; columns: {columns}')
        difficulty = column('difficulty') if 'difficulty' in columns else np.zeros(len(paths), np.int64)
        env = column('env') if 'env' in columns else None
        return SplitIndex(kind, folder, csv_path, paths, labels, difficulty, env)

    def load(
        self,
        kind: str,
        cache_dir: str | Path | None = None,
        image_size: int = 64,
        workers: int | None = None,
        progress: bool = True,
    ) -> CachedSplit:
        """Split ``kind`` decoded to ``image_size`` RGB, cached in ``cache_dir`` (default ``<root>/.cache_<size>``).

        The cache is reused while the folder's file names, sizes and mtimes are unchanged. Files that
        cannot be decoded are logged, listed in ``bad_files`` and dropped together with their metadata
        and masks. Masks, when the split has them, are read at ``image_size`` each time (they are small).
        """
        index = self.split(kind)
        cache_dir = Path(cache_dir) if cache_dir is not None else self.root / f'.cache_{image_size}'
        base = cache_dir / f'{index.folder.name}_{image_size}'
        frames, bad = _cached_frames(index.paths, base, image_size, workers, progress)
        for name, reason in bad.items():
            logger.warning('skipping bad frame %s: %s', index.folder / name, reason)
        keep = np.array([path.name not in bad for path in index.paths])
        kept_paths = [path for path, kept in zip(index.paths, keep, strict=True) if kept]
        return CachedSplit(
            frames=frames,
            labels=index.labels[keep],
            difficulty=index.difficulty[keep],
            env=None if index.env is None else index.env[keep],
            paths=kept_paths,
            bad_files=[path for path, kept in zip(index.paths, keep, strict=True) if not kept],
            masks=read_masks(kept_paths, image_size, workers),
        )

    def _find_csv(self, kind: str, folder: Path) -> Path | None:
        metadata = self.root / 'metadata'
        pattern = f'{folder.name.removesuffix("_set")}_frames*.csv'
        candidates = sorted(metadata.glob(pattern))
        if not candidates:
            candidates = [metadata / name for name in _EXTRA_CSVS.get(kind, ()) if (metadata / name).is_file()]
        if len(candidates) > 1:
            candidates = [path for path in candidates if 'label' in path.name] or candidates
        if len(candidates) > 1:
            raise ValueError(f'several CSVs could describe {folder}: {[str(path) for path in candidates]}')
        if candidates:
            return candidates[0]
        if kind in NORMAL_ONLY:
            return None
        found = sorted(path.name for path in metadata.glob('*.csv')) if metadata.is_dir() else 'no metadata folder'
        looked_for = [pattern, *_EXTRA_CSVS.get(kind, ())]
        raise FileNotFoundError(f'no labels CSV for {folder} in {metadata}: looked for {looked_for}; found {found}')


def reduced_decode_flag(short_side: int, image_size: int) -> int:
    """The strongest OpenCV JPEG reduction keeping at least 2 x ``image_size`` pixels (512 -> 1/4 for 64)."""
    for factor, flag in _REDUCTIONS:
        if short_side // factor >= 2 * image_size:
            return flag
    return cv2.IMREAD_COLOR


def decode_frame(path: Path, flag: int, image_size: int) -> np.ndarray:
    """Decode ``path`` with read ``flag``, resize to ``image_size`` RGB; raise ValueError if it is not a whole image."""
    data = np.fromfile(path, np.uint8)
    image = decode_image(data, flag)
    if min(image.shape[:2]) < image_size and flag != cv2.IMREAD_COLOR:
        image = decode_image(data)
    return resize_frame(image, 'bgr', image_size)


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f'{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n'.encode())
    return digest.hexdigest()


def _cached_frames(
    paths: list[Path], base: Path, image_size: int, workers: int | None, progress: bool
) -> tuple[np.ndarray, dict[str, str]]:
    """Frames of the readable ``paths`` from ``base``.npy, rebuilt unless ``base``.json matches the files."""
    npy, sidecar = base.with_suffix('.npy'), base.with_suffix('.json')
    meta = {'version': CACHE_VERSION, 'image_size': image_size, 'count': len(paths), 'fingerprint': _fingerprint(paths)}
    try:
        stored = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        stored = {}
    if npy.is_file() and all(stored.get(key) == value for key, value in meta.items()):
        return np.load(npy, mmap_mode='r'), stored['bad_files']
    base.parent.mkdir(parents=True, exist_ok=True)
    sidecar.unlink(missing_ok=True)
    bad = _decode_into(paths, npy, image_size, workers, progress)
    sidecar.write_text(json.dumps({**meta, 'source': str(paths[0].parent), 'bad_files': bad}, indent=1))
    return np.load(npy, mmap_mode='r'), bad


def _decode_into(paths: list[Path], npy: Path, image_size: int, workers: int | None, progress: bool) -> dict[str, str]:
    """Decode ``paths`` in parallel into ``npy``, leaving out bad files; return {bad file name: reason}."""
    flag = cv2.IMREAD_COLOR
    for path in paths:  # the first decodable frame sets the JPEG reduction; smaller frames fall back
        try:
            image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        except (OSError, cv2.error):
            continue
        if image is not None:
            flag = reduced_decode_flag(min(image.shape[:2]), image_size)
            break
    scratch = npy.with_suffix('.partial.npy')
    out = np.lib.format.open_memmap(scratch, 'w+', np.uint8, (len(paths), image_size, image_size, 3))

    def decode(i: int) -> str | None:
        try:
            out[i] = decode_frame(paths[i], flag, image_size)
        except (OSError, ValueError, cv2.error) as error:
            return str(error)
        return None

    bad = {}
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(decode, range(len(paths)))
        bar = tqdm(zip(paths, results, strict=True), total=len(paths), desc=paths[0].parent.name, disable=not progress)
        for path, reason in bar:
            if reason is not None:
                bad[path.name] = reason
    out.flush()
    if bad:  # copy the good rows into a shorter array
        good = np.flatnonzero([path.name not in bad for path in paths])
        if not good.size:
            scratch.unlink()
            raise ValueError(f'no decodable frame in {paths[0].parent}')
        compact_path = npy.with_suffix('.compact.npy')
        compact = np.lib.format.open_memmap(compact_path, 'w+', np.uint8, (len(good), image_size, image_size, 3))
        for start in range(0, len(good), _COPY_CHUNK):
            compact[start : start + _COPY_CHUNK] = out[good[start : start + _COPY_CHUNK]]
        compact.flush()
        scratch.unlink()
        scratch = compact_path
    os.replace(scratch, npy)  # a new file: arrays still mapping the old cache stay valid
    return bad
