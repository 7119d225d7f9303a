"""Offline evaluation of a bag: the dataset's scores and metrics, scores.csv, annotated bag and video."""

import json

import cv2
import numpy as np
import pytest
import yaml
from bag_helpers import messages, scores_csv, stamp

from visual_anomaly.bags.evaluate import evaluate_bag
from visual_anomaly.bags.io import ANOMALY_TOPIC, OVERLAY_TOPIC, read_bag_frames
from visual_anomaly.data.taxonomy import ANOMALY_CLASSES
from visual_anomaly.evaluation.metrics import evaluation_metrics

pytestmark = pytest.mark.slow  # each evaluation renders its plots and report


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
@pytest.mark.parametrize('compressed', [False, True], ids=['image', 'compressed'])
def test_evaluation_gives_the_dataset_scores_and_metrics(world, bags, tmp_path, compressed, storage):
    test, expected = world['test'], world['expected']
    bag = bags(compressed, storage)
    frames = read_bag_frames(bag, progress=False)
    with_overlays = (compressed, storage) in ((False, 'sqlite3'), (True, 'mcap'))
    overlay_bag = tmp_path / 'overlay_bag' if with_overlays else None
    video = tmp_path / 'overlay.mp4' if not compressed and with_overlays else None
    out = tmp_path / 'eval'
    metrics = evaluate_bag(
        world['bundle'], bag, out, device='cpu', overlay_bag=overlay_bag, video=video, progress=False
    )

    rows = scores_csv(out)
    assert [int(row['stamp_ns']) for row in rows] == frames.stamps.tolist()
    assert [int(row['label']) for row in rows] == test.labels.tolist()
    np.testing.assert_allclose([float(row['score']) for row in rows], expected.score, rtol=0, atol=1e-5)
    np.testing.assert_array_equal([float(row['score']) for row in rows], expected.score)  # same input, same batch
    for kind, values in expected.scores.items():
        np.testing.assert_array_equal([float(row[kind]) for row in rows], values)
    reference = evaluation_metrics(expected.scores, world['thresholds'], test.labels, ANOMALY_CLASSES)
    np.testing.assert_equal(metrics['evaluation'], reference)
    assert metrics['frames'] == len(test) and metrics['rejected'] == 0
    assert metrics['anomalous_frames'] == int((test.labels > 0).sum())
    assert metrics['seconds'] > 0 and metrics['frames_per_second'] > 0
    assert metrics['topic'] == frames.topic
    assert json.loads((out / 'metrics.json').read_text())['seconds'] == metrics['seconds']
    report = (out / 'report.md').read_text()
    for image in ('roc.png', 'scores.png', 'heatmaps.png', 'timeline.png'):
        assert f']({image})' in report and (out / image).is_file()

    if overlay_bag is not None:
        overlays = messages(overlay_bag, OVERLAY_TOPIC)
        assert [stamp(msg) for _, msg in overlays] == frames.stamps.tolist() == [t for t, _ in overlays]
        assert all(
            (m.encoding, m.height, m.width, m.header.frame_id) == ('bgr8', 128, 128, 'camera') for _, m in overlays
        )
        anomaly = messages(overlay_bag, ANOMALY_TOPIC)
        assert [stamp(msg) for _, msg in anomaly] == frames.stamps.tolist()
        np.testing.assert_allclose([msg.vector.x for _, msg in anomaly], expected.score)
        assert [msg.vector.z for _, msg in anomaly] == expected.is_anomaly.astype(float).tolist()
        storage_written = yaml.safe_load((overlay_bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        assert storage_written['storage_identifier'] == storage  # the input bag's storage
    if video is not None:
        capture = cv2.VideoCapture(str(video))
        assert capture.isOpened()
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(test)
        read = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            assert image.shape == (128, 128, 3)
            read += 1
        capture.release()
        assert read == len(test)


def test_evaluation_refuses_bad_options_before_reading(world, bags, tmp_path):
    with pytest.raises(ValueError, match='batch_size must be >= 1'):
        evaluate_bag(world['bundle'], bags(), tmp_path / 'eval', batch_size=0)
    with pytest.raises(FileExistsError, match='give a path for a new bag folder'):
        evaluate_bag(world['bundle'], bags(), tmp_path / 'eval', overlay_bag=bags())
