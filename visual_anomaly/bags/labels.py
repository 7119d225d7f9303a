"""Ground truth per camera frame: from the ground-truth topic or from a CSV of anomalous intervals.

Both conventions are described in the ``visual_anomaly.bags`` package docstring.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from visual_anomaly.bags.io import (
    GROUND_TRUTH_TOPIC,
    VECTOR_TYPE,
    ReadTally,
    deserialized,
    open_bag,
    raw_messages,
    stamp_ns,
    topic_connections,
)

MAX_CLASS_CODE = 2**31 - 1
ABSOLUTE_TIME_S = 1e8  # interval times at least this large are absolute bag times (auto time base)
TIME_BASES = ('auto', 'relative', 'absolute')
_SLACK_S = 1e-6  # a little slack so that an interval typed to the millisecond includes the frames at its ends


def read_labels(bag_path: str | os.PathLike, stamps: np.ndarray, topic: str = GROUND_TRUTH_TOPIC) -> np.ndarray:
    """Class codes (int64, 0 = normal) of the frames stamped ``stamps``, from the ground-truth topic.

    Labels match frames by exact header stamp; frames without one are an error.
    """
    bag_path = Path(bag_path)
    table: dict[int, int] = {}
    with open_bag(bag_path) as reader:
        try:
            connections = topic_connections(reader, bag_path, topic, (VECTOR_TYPE,), VECTOR_TYPE)
        except ValueError as error:
            raise ValueError(f'{error}. Without a ground-truth topic, label the frames with an intervals CSV') from None
        tally = ReadTally.of(bag_path, connections, allow_partial=True)  # a damaged bag leaves frames unlabelled
        for connection, _, raw in raw_messages(reader, connections, tally):
            msg = deserialized(reader, raw, connection.msgtype)
            if msg is not None:
                table[stamp_ns(msg.header)] = int(round(msg.vector.x))
    stamps = np.asarray(stamps, np.int64)
    missing = [int(s) for s in stamps if int(s) not in table]
    if missing:
        raise ValueError(
            f'{bag_path}: {len(missing)} of {len(stamps)} frames have no label on {topic} '
            f"(first at stamp {missing[0]} ns); labels must carry their frame's header stamp"
        )
    return np.array([table[int(s)] for s in stamps], np.int64)


def _integer(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def interval_classes(labels: list[str]) -> dict[str, int]:
    """The class code of each interval label text: an integer stands for itself (any positive = anomalous,
    ``0`` or ``normal`` = normal); any other text is a class of its own, numbered in order of first
    appearance with the positive codes that no integer label uses. Names are not case-sensitive."""
    codes: dict[str, int] = {}
    taken = {value for text in labels if (value := _integer(text)) is not None}
    free = (code for code in range(1, len(labels) + len(taken) + 2) if code not in taken)
    for text in labels:
        key = text.strip().lower()
        if key in codes:
            continue
        value = _integer(key)
        codes[key] = value if value is not None else 0 if key == 'normal' else next(free)
    return codes


def interval_class_names(csv_path: str | os.PathLike) -> dict[int, str]:
    """Names of the anomalous codes that :func:`labels_from_intervals` gives the CSV's frames."""
    codes = interval_classes([label for _, _, label in read_intervals(csv_path)])
    return {code: text if _integer(text) is None else f'class {code}' for text, code in codes.items() if code > 0}


def read_intervals(csv_path: str | os.PathLike) -> list[tuple[float, float, str]]:
    """The (start s, end s, label) rows of a ``start,end,label`` CSV; ``#`` lines and blank lines are skipped."""
    csv_path = Path(csv_path)
    try:
        with csv_path.open(newline='', encoding='utf-8') as handle:
            lines = [line for line in handle if line.strip() and not line.lstrip().startswith('#')]
    except UnicodeDecodeError as error:
        raise ValueError(f'{csv_path}: not a text CSV (byte {error.start} is not UTF-8)') from None
    reader = csv.DictReader(lines, skipinitialspace=True)
    columns = [name.strip() for name in reader.fieldnames or []]
    if not {'start', 'end', 'label'} <= set(columns):
        raise ValueError(f'{csv_path}: expected the columns start,end,label; found {columns}')
    intervals = []
    for number, row in enumerate(reader, start=2):
        row = {key.strip(): (value or '').strip() for key, value in row.items() if key is not None}
        where = f'{csv_path} line {number}'
        try:
            start, end = float(row['start']), float(row['end'])
        except (TypeError, ValueError):
            start = end = math.nan
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f'{where}: start and end must be seconds, got {row["start"]!r}, {row["end"]!r}')
        if end < start:
            raise ValueError(f'{where}: end {end} is before start {start}')
        _check_label(row['label'], where)
        intervals.append((start, end, row['label']))
    return intervals


def _check_label(label: str | None, where: str) -> None:
    """A label is a name, or an integer class code in 0..MAX_CLASS_CODE."""
    if not label:
        raise ValueError(f'{where}: empty label')
    code = _integer(label)
    if code is not None and not 0 <= code <= MAX_CLASS_CODE:
        raise ValueError(f'{where}: class code {label} must be between 0 (normal) and {MAX_CLASS_CODE}')


def _uses_absolute_times(intervals: list[tuple[float, float, str]], time_base: str, csv_path: Path) -> bool:
    absolute = [start >= ABSOLUTE_TIME_S for start, _, _ in intervals]
    if time_base == 'auto' and intervals and any(absolute) != all(absolute):
        raise ValueError(f'{csv_path}: mixes absolute (>= {ABSOLUTE_TIME_S:g} s) and relative times')
    return time_base == 'absolute' or (time_base == 'auto' and any(absolute))


def labels_from_intervals(csv_path: str | os.PathLike, stamps: np.ndarray, time_base: str = 'auto') -> np.ndarray:
    """Class codes of the frames stamped ``stamps`` from a ``start,end,label`` CSV of anomalous intervals.

    Labels are the user's own: see :func:`interval_classes` for their codes and
    :func:`interval_class_names` for the names to report them by. ``time_base``: ``relative``
    (seconds after the first frame), ``absolute`` (bag time, Unix seconds) or ``auto`` (absolute
    when the times are >= 1e8 s); see the ``visual_anomaly.bags`` docstring.
    """
    if time_base not in TIME_BASES:
        raise ValueError(f"time_base must be 'auto', 'relative' or 'absolute', got {time_base!r}")
    stamps = np.asarray(stamps, np.int64)
    intervals = read_intervals(csv_path)
    use_absolute = _uses_absolute_times(intervals, time_base, Path(csv_path))
    origin = 0 if use_absolute or not len(stamps) else int(stamps[0])
    times_s = (stamps - origin) / 1e9
    codes = interval_classes([label for _, _, label in intervals])
    labels = np.zeros(len(stamps), np.int64)
    for start, end, label in intervals:
        labels[(times_s >= start - _SLACK_S) & (times_s <= end + _SLACK_S)] = codes[label.lower()]
    return labels
