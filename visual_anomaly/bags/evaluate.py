"""Offline evaluation of a bag: every camera frame scored with a model bundle, a report, annotated outputs."""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.rosbag2 import Writer
from tqdm.auto import tqdm

from visual_anomaly.bags.io import (
    ANOMALY_TOPIC,
    GROUND_TRUTH_TOPIC,
    IMAGE_TYPE,
    OVERLAY_TOPIC,
    TYPESTORE,
    VECTOR_TYPE,
    BagFrames,
    DecodedFrame,
    ReadTally,
    bag_storage,
    camera_connections,
    header_msg,
    image_msg,
    iter_decoded,
    open_bag,
    open_writer,
    read_bag_frames,
    vector_msg,
    write_message,
)
from visual_anomaly.bags.labels import interval_class_names, labels_from_intervals, read_labels
from visual_anomaly.core import DetectionResult, FrameScorer, load_bundle
from visual_anomaly.core.visualization import decision_label, error_heatmap, overlay
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES

VIDEO_FOURCC = 'mp4v'


@dataclass
class ScoredBag:
    """The usable camera frames of a bag, their class codes and the detector's verdicts, aligned."""

    path: Path
    frames: BagFrames
    classes: np.ndarray
    result: DetectionResult
    class_names: Mapping[int, str] = field(default_factory=lambda: dict(ANOMALY_CLASSES))


def _score_batches(detector: FrameScorer, frames: np.ndarray, batch_size: int, progress: bool) -> DetectionResult:
    """``detector.detect_resized`` over ``frames`` in batches (with a progress bar), merged into one result."""
    parts = [
        detector.detect_resized(frames[start : start + batch_size])
        for start in tqdm(range(0, len(frames), batch_size), desc='scoring', unit='batch', disable=not progress)
    ]
    oe = [part.oe_probability for part in parts]
    return DetectionResult(
        mse=np.concatenate([part.mse for part in parts]),
        error_map=np.concatenate([part.error_map for part in parts]),
        anomaly_map=np.concatenate([part.anomaly_map for part in parts]),
        embedding=np.concatenate([part.embedding for part in parts]),
        oe_probability=None if oe[0] is None else np.concatenate(oe),
        scores={kind: np.concatenate([part.scores[kind] for part in parts]) for kind in parts[0].scores},
        score=np.concatenate([part.score for part in parts]),
        is_anomaly=np.concatenate([part.is_anomaly for part in parts]),
        threshold=parts[0].threshold,
    )


def write_scores_csv(path: Path, scored: ScoredBag) -> Path:
    """One row per frame: header stamp, seconds since the first frame, label, decision score, flag, every score."""
    stamps, result = scored.frames.stamps, scored.result
    kinds = list(result.scores)
    with path.open('w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(['stamp_ns', 'time_s', 'label', 'score', 'is_anomaly', *kinds])
        for i, stamp in enumerate(stamps):
            writer.writerow(
                [
                    int(stamp),
                    f'{(stamp - stamps[0]) / 1e9:.6f}',
                    int(scored.classes[i]),
                    repr(float(result.score[i])),
                    int(result.is_anomaly[i]),
                    *(repr(float(result.scores[kind][i])) for kind in kinds),
                ]
            )
    return path


def read_scores_csv(path: Path) -> dict[str, np.ndarray]:
    """The columns of a :func:`write_scores_csv` file: ``stamp_ns``, ``label`` and ``is_anomaly`` as integers,
    ``time_s``, ``score`` and every score kind as the float64 values written (repr round-trips exactly)."""
    with path.open(newline='') as handle:
        rows = list(csv.reader(handle))
    header, values = rows[0], np.array(rows[1:], dtype=object).reshape(len(rows) - 1, len(rows[0]))
    integers = ('stamp_ns', 'label', 'is_anomaly')
    return {
        name: values[:, column].astype(np.int64 if name in integers else np.float64)
        for column, name in enumerate(header)
    }


def _frame_rate(stamps: np.ndarray) -> float:
    gaps = np.diff(stamps)
    gaps = gaps[gaps > 0]
    return float(np.clip(1e9 / np.median(gaps), 1.0, 120.0)) if gaps.size else 10.0


class _Video:
    """An MP4 video opened at the size of its first image; later images are resized to it."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] = (0, 0)

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            self.size = image.shape[1::-1]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC)
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise ValueError(f'OpenCV cannot write an {VIDEO_FOURCC} video to {self.path}')
        if image.shape[1::-1] != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)

    def release(self) -> None:
        if self.writer is not None:
            self.writer.release()


@contextmanager
def _maybe_writer(bag_path: Path | None, storage: str) -> Iterator[Writer | None]:
    if bag_path is None:
        yield None
        return
    with open_writer(bag_path, storage) as writer:
        yield writer


def _overlay_image(scored: ScoredBag, i: int, frame: np.ndarray, error_scale: float) -> np.ndarray:
    """Frame ``i`` with its heatmap and verdict (and its ground-truth class when anomalous)."""
    result = scored.result
    flag = bool(result.is_anomaly[i])
    label = decision_label(flag, float(result.score[i]), result.threshold)
    if scored.classes[i] > 0:
        label += f' [{scored.class_names.get(int(scored.classes[i]), scored.classes[i])}]'
    heat = error_heatmap(result.anomaly_map[i], error_scale, frame.shape[1::-1])
    return overlay(frame, heat, 0.5, label, flag)


def _annotate(
    writer: Writer, connections: tuple[Any, Any], scored: ScoredBag, i: int, item: DecodedFrame, image: np.ndarray
) -> None:
    """Write the overlay of frame ``i`` and its verdict, as the node publishes it, under the frame's stamp."""
    result = scored.result
    header = header_msg(item.stamp, item.header.frame_id)
    verdict = vector_msg(header, float(result.score[i]), result.threshold, bool(result.is_anomaly[i]))
    write_message(writer, connections[0], item.stamp, image_msg(image, header))
    write_message(writer, connections[1], item.stamp, verdict)


def write_overlays(
    scored: ScoredBag, *, error_scale: float, overlay_bag: Path | None, video: Path | None, progress: bool = True
) -> None:
    """Second pass over the camera topic: heatmap overlays into a new bag and/or an MP4, one per scored frame."""
    frames = scored.frames
    sink = _Video(video, _frame_rate(frames.stamps)) if video is not None else None
    with open_bag(scored.path) as reader, _maybe_writer(overlay_bag, bag_storage(scored.path)) as writer:
        _, msgtype, connections = camera_connections(reader, scored.path, frames.topic)
        if writer is not None:
            outputs = (
                writer.add_connection(OVERLAY_TOPIC, IMAGE_TYPE, typestore=TYPESTORE),
                writer.add_connection(ANOMALY_TOPIC, VECTOR_TYPE, typestore=TYPESTORE),
            )
        decoded = iter_decoded(reader, connections, msgtype, ReadTally.of(scored.path, connections, allow_partial=True))
        i = -1
        try:
            for item in tqdm(decoded, total=len(frames) + len(frames.rejected), desc='overlays', disable=not progress):
                if item.frame is None:
                    continue
                i += 1  # the same messages in the same order as the scoring pass
                if i >= len(frames) or item.stamp != frames.stamps[i]:
                    raise ValueError(f'{scored.path} changed while it was evaluated')
                image = _overlay_image(scored, i, item.frame, error_scale)
                if writer is not None:
                    _annotate(writer, outputs, scored, i, item, image)
                if sink is not None:
                    sink.write(image)
        finally:
            if sink is not None:
                sink.release()


def _write_report(
    detector: FrameScorer, bundle_path: Path, scored: ScoredBag, out: Path, labels: str, baselines: Path | None
) -> dict:
    """Timeline, scores.csv, metrics, plots and report.md in ``out``; returns the metrics."""
    from visual_anomaly.evaluation.baselines import baselines_for  # matplotlib, sklearn: lazily
    from visual_anomaly.evaluation.frames import evaluate_frames, exposed_classes_of
    from visual_anomaly.evaluation.report import plot_score_timeline

    frames, result = scored.frames, scored.result
    out.mkdir(parents=True, exist_ok=True)
    times_s = (frames.stamps - frames.stamps[0]) / 1e9
    timeline = plot_score_timeline(
        times_s, result.score, result.threshold, scored.classes, out / 'timeline.png', scored.class_names
    )
    write_scores_csv(out / 'scores.csv', scored)
    extra = {
        'bundle': str(bundle_path),
        'bag': str(scored.path),
        'topic': frames.topic,
        'message_type': frames.msgtype,
        'labels': labels,
        'rejected': len(frames.rejected),
        'missing': frames.missing,
        'rejected_frames': [{'stamp_ns': stamp, 'reason': reason} for stamp, reason in frames.rejected[:100]],
        'duration_s': float(times_s[-1]),
    }
    return evaluate_frames(
        detector,
        frames.frames,
        scored.classes,
        out,
        f'Evaluation of {bundle_path.name} on the bag {scored.path.name} ({frames.topic})',
        exposed_classes=exposed_classes_of(bundle_path),
        extra=extra,
        extra_images={'Score over time': timeline},
        result=result,
        baselines=baselines_for(bundle_path, baselines),
        class_names=scored.class_names,
    )


def evaluate_bag(
    bundle_path: str | os.PathLike,
    bag_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    topic: str | None = None,
    labels_csv: str | os.PathLike | None = None,
    device: str = 'auto',
    batch_size: int = 256,
    overlay_bag: str | os.PathLike | None = None,
    video: str | os.PathLike | None = None,
    baselines: str | os.PathLike | None = None,
    progress: bool = True,
    allow_partial: bool = False,
    scorer: FrameScorer | None = None,
) -> dict:
    """Score every camera frame of a bag with a model bundle and write metrics, plots and report.md into ``out``.

    Labels come from the ground-truth topic, or from ``labels_csv`` (intervals) when given. ``out``
    also receives ``timeline.png`` (score over time) and ``scores.csv`` (see :func:`write_scores_csv`).
    ``overlay_bag`` and ``video`` add annotated outputs (see ``visual_anomaly.bags``). The trivial
    baselines saved in ``baselines`` (default: ``baselines.npz`` beside the bundle, when its training run
    wrote one) are scored on the same frames and reported beside the detector. A damaged bag (fewer
    camera messages readable than its index lists) is a ``BagError`` unless ``allow_partial``. Returns the
    metrics with ``frames``, ``rejected`` (count), ``missing`` (messages of a damaged bag), ``seconds``
    (wall time of the whole evaluation) and ``frames_per_second`` (detector throughput on the resized
    frames, decoding excluded). ``scorer``, the bundle already loaded (for ``device``), saves loading it
    again for every bag of a fleet.
    """
    started = time.perf_counter()
    bag_path, out = Path(bag_path), Path(out)
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    if overlay_bag is not None and Path(overlay_bag).exists():
        raise FileExistsError(f'{overlay_bag} exists; give a path for a new bag folder')
    detector = load_bundle(bundle_path, device) if scorer is None else scorer
    frames = read_bag_frames(
        bag_path, topic, image_size=detector.image_size, progress=progress, allow_partial=allow_partial
    )
    if not len(frames):
        raise ValueError(f'{bag_path}: no usable frame on {frames.topic} ({len(frames.rejected)} rejected)')
    if labels_csv is not None:  # the user's own classes
        classes, names = labels_from_intervals(labels_csv, frames.stamps), interval_class_names(labels_csv)
    else:  # ground truth written from a Hazards&Robots-layout dataset
        classes, names = read_labels(bag_path, frames.stamps), dict(ANOMALY_CLASSES)
    read_seconds = time.perf_counter() - started

    scoring_started = time.perf_counter()
    result = _score_batches(detector, frames.frames, batch_size, progress)
    scored = ScoredBag(bag_path, frames, classes, result, names)
    score_seconds = time.perf_counter() - scoring_started

    labels = str(labels_csv) if labels_csv is not None else GROUND_TRUTH_TOPIC
    metrics = _write_report(detector, Path(bundle_path), scored, out, labels, baselines)
    if overlay_bag is not None or video is not None:
        write_overlays(
            scored,
            error_scale=detector.heatmap_scale,
            overlay_bag=Path(overlay_bag) if overlay_bag is not None else None,
            video=Path(video) if video is not None else None,
            progress=progress,
        )
        metrics['outputs'] = {
            key: str(value) for key, value in (('overlay_bag', overlay_bag), ('video', video)) if value is not None
        }
    metrics['read_seconds'] = round(read_seconds, 3)
    metrics['frames_per_second'] = round(len(frames) / max(score_seconds, 1e-9), 1)
    metrics['seconds'] = round(time.perf_counter() - started, 3)
    (out / 'metrics.json').write_text(json.dumps(metrics, indent=2, default=float))
    return metrics
