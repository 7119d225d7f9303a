"""Many bags at once: finding them, naming them, and running one job per bag in parallel on Ray.

Ray is optional (``pip install visual_anomaly[fleet]``, or ``ray`` from requirements.txt off the
robot) and imported only when a :class:`Fleet` starts. By default the fleet is an embedded local
Ray instance with ``workers`` CPUs (nothing to start); ``address`` (``auto`` or ``ray://HOST:PORT``)
joins an existing cluster instead, whose nodes must have this package installed and see the bags
and the output folder at the same paths (bags are read where they lie). A model is put into Ray's
object store once (:class:`ModelFiles`) and written to a local file once per worker process.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm.auto import tqdm

from visual_anomaly.bags.io import CAMERA_TOPIC

ROS1_SUFFIX = '.bag'
RAY_MISSING = (
    'several bags are run in parallel on Ray, which is not installed: pip install "ray==2.60.0" (or give one bag)'
)


# -- finding and naming bags -----------------------------------------------------------------------


def is_bag(path: Path) -> bool:
    """A rosbag2 folder (with metadata.yaml) or a ROS 1 ``.bag`` file."""
    return (path / 'metadata.yaml').is_file() if path.is_dir() else path.suffix == ROS1_SUFFIX


def single_bag(paths: Sequence[Path]) -> Path | None:
    """The one bag when ``paths`` is one path that is not a folder of bags (a single-bag run, no Ray), else None."""
    if len(paths) == 1 and not (paths[0].is_dir() and not is_bag(paths[0])):
        return paths[0]
    return None


def find_bags(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every bag named by ``paths``: bags themselves, and the bags anywhere under folders (sorted, no repeats).

    A path that does not exist, or a folder that holds no bag, is a ValueError naming it.
    """
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f'no bag or folder at {path}')
        if is_bag(path):
            found[path] = None
            continue
        inside = sorted(_bags_under(path))
        if not inside:
            raise ValueError(f'{path}: no bag in this folder (rosbag2 folders with metadata.yaml, or ROS 1 .bag files)')
        found.update(dict.fromkeys(inside))
    return list(found)


def _bags_under(folder: Path) -> Iterable[Path]:
    for root, folders, files in os.walk(folder):
        if 'metadata.yaml' in files:
            folders.clear()  # a bag's own folder holds no further bags
            yield Path(root)
            continue
        folders.sort()
        yield from (Path(root) / name for name in files if name.endswith(ROS1_SUFFIX))


def bag_names(bags: Sequence[Path]) -> dict[Path, str]:
    """A short unique name per bag: its path below the folder all of them share (``robot3/patrol_0412``)."""
    absolute = [bag.resolve() for bag in bags]
    common = Path(os.path.commonpath([bag.parent for bag in absolute])) if bags else Path()
    return {bag: full.relative_to(common).as_posix() for bag, full in zip(bags, absolute, strict=True)}


def robot_of(name: str, topic: str | None) -> str:
    """The robot of a bag: its camera topic's namespace (``/robot3/camera/image_raw`` -> ``robot3``), else the
    folder that holds the bag (``robot3/patrol_0412`` -> ``robot3``), else ``-``."""
    marker = '/' + CAMERA_TOPIC.strip('/').split('/')[0] + '/'  # '/camera/'
    if topic and marker in topic and not topic.startswith(marker):
        return topic[: topic.index(marker)].strip('/')
    parent = Path(name).parent.as_posix()
    return parent if parent != '.' else '-'


# -- the model, shipped once -----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFiles:
    """A bundle file (and its baselines, if any) as bytes, to be put into Ray's object store once."""

    source: str  # the bundle's path where it was read
    bundle: bytes
    baselines_source: str | None = None
    baselines: bytes | None = None

    @classmethod
    def read(cls, bundle: str | os.PathLike, baselines: str | os.PathLike | None = None) -> ModelFiles:
        """The bundle's bytes, and those of ``baselines`` (default: ``baselines.npz`` beside it, when it exists)."""
        bundle = Path(bundle)
        if not bundle.is_file():
            raise FileNotFoundError(f'no model bundle at {bundle}')
        extra = Path(baselines) if baselines is not None else bundle.parent / 'baselines.npz'
        if baselines is not None and not extra.is_file():
            raise FileNotFoundError(f'no baselines file at {extra}')
        if not extra.is_file():
            return cls(str(bundle), bundle.read_bytes())
        return cls(str(bundle), bundle.read_bytes(), str(extra), extra.read_bytes())

    def local(self) -> tuple[Path, Path | None]:
        """(bundle, baselines) as files of this process: where they were read when this node sees the same
        bytes there (one machine, a shared filesystem), else copies written once per process."""
        key = hashlib.sha256(self.bundle + (self.baselines or b'')).hexdigest()
        if key not in _LOCAL_MODELS:
            _LOCAL_MODELS[key] = self._sources() or self._copies(key[:16])
        return _LOCAL_MODELS[key]

    def _sources(self) -> tuple[Path, Path | None] | None:
        pairs = [(Path(self.source), self.bundle)]
        if self.baselines_source is not None:
            pairs.append((Path(self.baselines_source), self.baselines))
        if all(path.is_file() and path.read_bytes() == content for path, content in pairs):
            return pairs[0][0], pairs[1][0] if len(pairs) > 1 else None
        return None

    def _copies(self, key: str) -> tuple[Path, Path | None]:
        folder = Path(tempfile.mkdtemp(prefix=f'visual_anomaly_model_{key}_'))
        bundle = folder / Path(self.source).name
        bundle.write_bytes(self.bundle)
        if self.baselines is None:
            return bundle, None
        (folder / 'baselines.npz').write_bytes(self.baselines)
        return bundle, folder / 'baselines.npz'


_LOCAL_MODELS: dict[str, tuple[Path, Path | None]] = {}


# -- running ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one job gave: its value, or why it failed (one sentence), and how long it ran."""

    name: str
    value: Any = None
    error: str | None = None
    seconds: float = 0.0


def run_guarded(job: Callable[..., Any], *args: Any) -> tuple[Any, str | None, float]:
    """``job(*args)`` as (value, None, seconds), or (None, reason, seconds) when it raised."""
    started = time.perf_counter()
    try:
        return job(*args), None, time.perf_counter() - started
    except Exception as error:  # noqa: BLE001  (a bag's failure is reported, the others go on)
        return None, failure_reason(error), time.perf_counter() - started


def failure_reason(error: BaseException) -> str:
    """One line: a user error's own sentence (it names the file), anything else with its type."""
    text = str(error) if isinstance(error, ValueError | OSError | RuntimeError) else repr(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def require_ray() -> ModuleType:
    """The ``ray`` module, or a RuntimeError saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise RuntimeError(RAY_MISSING) from error
    return ray


class Fleet:
    """Ray for the length of a ``with`` block: a local instance of ``workers`` CPUs, or the cluster at ``address``.

    An instance already running in this process is used as it is (and left running).
    """

    def __init__(self, workers: int = 2, address: str | None = None, progress: bool = True) -> None:
        if workers < 1:
            raise ValueError(f'--workers must be >= 1, got {workers}')
        self.workers, self.address, self.progress = workers, address, progress
        self._started = False

    def __enter__(self) -> Fleet:
        self.ray = ray = require_ray()
        if not ray.is_initialized():
            options = {'address': self.address} if self.address else {'num_cpus': self.workers}
            ray.init(**options, include_dashboard=False, log_to_driver=False, logging_level='ERROR')
            self._started = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_guarded)
        return self

    def __exit__(self, *_: object) -> None:
        if self._started:
            self.ray.shutdown()

    def share(self, value: Any) -> Any:
        """``value`` in the object store once: its reference, for :meth:`map`, as an argument of a call."""
        return self.ray.put(value)

    def map(self, job: Callable[..., Any], calls: Sequence[tuple[str, tuple]], desc: str = 'bags') -> list[Outcome]:
        """``job(*args)`` for every (name, args) of ``calls`` on the workers, in the order of ``calls``.

        A job that raises, or whose worker dies, gives an :class:`Outcome` with its reason; the others go on.
        """
        pending = {self._remote.remote(job, *args): index for index, (_, args) in enumerate(calls)}
        outcomes: list[Outcome | None] = [None] * len(calls)
        with tqdm(total=len(calls), desc=desc, unit='bag', disable=not self.progress) as bar:
            while pending:
                done, _ = self.ray.wait(list(pending), num_returns=1)
                index = pending.pop(done[0])
                try:
                    value, error, seconds = self.ray.get(done[0])
                except self.ray.exceptions.RayError as failure:  # the worker itself died
                    value, error, seconds = None, f'the Ray worker failed: {failure_reason(failure)}', 0.0
                outcomes[index] = Outcome(calls[index][0], value, error, seconds)
                bar.update()
                bar.set_postfix(failed=sum(o is not None and o.error is not None for o in outcomes))
        return outcomes
