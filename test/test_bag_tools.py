"""rosbag2 tools: dataset -> bag -> offline evaluation, annotated outputs, interval labels, patrol -> training set.

Every bag here is a real rosbag2 folder (sqlite3 or MCAP) written and read with the rosbags library.
"""

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer

from visual_anomaly import bag_tools
from visual_anomaly.bag_tools import (
    ANOMALY_TOPIC,
    CAMERA_TOPIC,
    COMPRESSED_TOPIC,
    EPOCH_NS,
    GROUND_TRUTH_TOPIC,
    OVERLAY_TOPIC,
    TYPESTORE,
    bag_to_training_set,
    dataset_to_bag,
    evaluate_bag,
    labels_from_intervals,
    read_bag_frames,
    read_labels,
)
from visual_anomaly.core import AutoencoderConfig, ConvAutoencoder, Detector, load_bundle, resize_frame, save_bundle
from visual_anomaly.training import cli as training_cli
from visual_anomaly.training.corridor_world import ANOMALY_CLASSES, write_hazards_layout
from visual_anomaly.training.hazards import HazardsDataset
from visual_anomaly.training.metrics import evaluation_metrics
from visual_anomaly.training.report import _anomalous_runs, plot_score_timeline

STEP_NS = 100_000_000  # 10 Hz


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """A tiny Hazards&Robots layout (12 test frames of 128 px, some anomalous) and a calibrated F=8 bundle."""
    base = tmp_path_factory.mktemp('bags')
    root = write_hazards_layout(
        base / 'data', n_train=24, n_validation=8, n_test=12, n_outliers=0, image_size=128, test_anomaly_fraction=0.4
    )
    dataset = HazardsDataset(root)
    torch.manual_seed(0)
    detector = Detector(ConvAutoencoder(AutoencoderConfig(base_channels=8)), device='cpu')
    detector.calibrate(np.asarray(dataset.load('validation', progress=False).frames))
    bundle = save_bundle(base / 'model.pt', detector)
    test = dataset.load('test', progress=False)
    assert 0 < (test.labels > 0).sum() < len(test)
    reloaded = load_bundle(bundle, 'cpu')
    expected = reloaded.detect_resized(np.asarray(test.frames))
    thresholds = {kind: t.value for kind, t in reloaded.calibration.thresholds.items()}
    return {'base': base, 'root': root, 'bundle': bundle, 'test': test, 'expected': expected, 'thresholds': thresholds}


@pytest.fixture(scope='module')
def bags(world):
    """bags(compressed, storage) -> the test split written as a bag (made once per variant)."""
    made = {}

    def get(compressed: bool = False, storage: str = 'sqlite3') -> Path:
        key = (compressed, storage)
        if key not in made:
            path = world['base'] / f'test_{"compressed" if compressed else "raw"}_{storage}'
            made[key] = dataset_to_bag(world['root'], path, compressed=compressed, storage=storage, progress=False)
        return made[key]

    return get


def _messages(bag: Path, topic: str) -> list:
    with AnyReader([bag], default_typestore=TYPESTORE) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        return [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages(connections=connections)]


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _scores_csv(out: Path) -> list[dict]:
    with (out / 'scores.csv').open(newline='') as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
@pytest.mark.parametrize('compressed', [False, True], ids=['image', 'compressed'])
def test_round_trip_gives_the_dataset_scores_and_metrics(world, bags, tmp_path, compressed, storage):
    test, expected = world['test'], world['expected']
    bag = bags(compressed, storage)
    assert (bag / 'metadata.yaml').is_file()
    assert yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']['storage_identifier'] == (
        storage
    )
    frames = read_bag_frames(bag, progress=False)
    assert frames.topic == (COMPRESSED_TOPIC if compressed else CAMERA_TOPIC)
    assert frames.rejected == []
    np.testing.assert_array_equal(frames.stamps, EPOCH_NS + STEP_NS * np.arange(len(test)))
    # The strongest statement: the 64x64 frames equal the dataset cache bit for bit, on both paths.
    np.testing.assert_array_equal(frames.frames64, test.frames)
    camera = _messages(bag, frames.topic)
    if compressed:  # the files' own JPEG bytes, not a re-encoding
        assert all(msg.format == 'jpeg' for _, msg in camera)
        assert [bytes(msg.data) for _, msg in camera] == [path.read_bytes() for path in test.paths]
    else:
        assert all(msg.encoding == 'bgr8' and msg.header.frame_id == 'camera' for _, msg in camera)
        assert (camera[0][1].height, camera[0][1].width) == (128, 128)
    truth = _messages(bag, GROUND_TRUTH_TOPIC)
    assert [_stamp(msg) for _, msg in truth] == frames.stamps.tolist() == [t for t, _ in camera]
    assert [msg.vector.x for _, msg in truth] == test.labels.tolist()
    assert [msg.vector.y for _, msg in truth] == test.difficulty.tolist()
    np.testing.assert_array_equal(read_labels(bag, frames.stamps), test.labels)

    with_overlays = (compressed, storage) in ((False, 'sqlite3'), (True, 'mcap'))
    overlay_bag = tmp_path / 'overlay_bag' if with_overlays else None
    video = tmp_path / 'overlay.mp4' if not compressed and with_overlays else None
    out = tmp_path / 'eval'
    metrics = evaluate_bag(
        world['bundle'], bag, out, device='cpu', overlay_bag=overlay_bag, video=video, progress=False
    )

    rows = _scores_csv(out)
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
        overlays = _messages(overlay_bag, OVERLAY_TOPIC)
        assert [_stamp(msg) for _, msg in overlays] == frames.stamps.tolist() == [t for t, _ in overlays]
        assert all(
            (m.encoding, m.height, m.width, m.header.frame_id) == ('bgr8', 128, 128, 'camera') for _, m in overlays
        )
        anomaly = _messages(overlay_bag, ANOMALY_TOPIC)
        assert [_stamp(msg) for _, msg in anomaly] == frames.stamps.tolist()
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


def test_missing_and_wrong_topics_list_the_bags_topics(world, bags, tmp_path, capsys):
    bag = bags()
    listing = ('/camera/image_raw (sensor_msgs/msg/Image)', '/ground_truth/anomaly (geometry_msgs/msg/Vector3Stamped)')
    with pytest.raises(ValueError, match='no topic /front_camera') as missing:
        read_bag_frames(bag, topic='/front_camera', progress=False)
    with pytest.raises(ValueError, match='carries geometry_msgs/msg/Vector3Stamped') as wrong:
        read_bag_frames(bag, topic=GROUND_TRUTH_TOPIC, progress=False)
    with pytest.raises(ValueError, match='carries sensor_msgs/msg/Image') as wrong_labels:
        read_labels(bag, np.array([EPOCH_NS]), topic=CAMERA_TOPIC)
    for error in (missing, wrong, wrong_labels):
        assert all(item in str(error.value) for item in listing)
    with pytest.raises(ValueError, match='12 of 12 frames have no label'):
        read_labels(bag, EPOCH_NS + 1 + STEP_NS * np.arange(12))

    out = tmp_path / 'eval'
    argv = ['evaluate', str(world['bundle']), str(bag), '--out', str(out), '--topic', '/front_camera', '--quiet']
    assert bag_tools.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('visual-anomaly-bag evaluate:')
    assert all(item in err for item in listing)
    assert bag_tools.main(['evaluate', str(world['bundle']), str(tmp_path / 'nothing'), '--out', str(out)]) == 2
    assert 'no bag at' in capsys.readouterr().err
    assert bag_tools.main(['from-dataset', str(world['root']), str(bag), '--quiet']) == 2  # never overwrites
    assert 'exists' in capsys.readouterr().err


def _image(stamp: int, frame: np.ndarray, encoding: str = 'bgr8', step: int | None = None):
    frame = np.ascontiguousarray(frame)
    height, width = frame.shape[:2]
    return TYPESTORE.types['sensor_msgs/msg/Image'](
        header=bag_tools._header(stamp),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step if step is not None else frame.strides[0],
        data=frame.reshape(-1),
    )


def test_other_encodings_bad_frames_and_ambiguous_topics(tmp_path, rng):
    frame_rgb = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    bag = tmp_path / 'odd'
    with Writer(bag, version=9) as writer:
        raw = writer.add_connection('/cam_a', 'sensor_msgs/msg/Image', typestore=TYPESTORE)
        packed = writer.add_connection('/cam_b', 'sensor_msgs/msg/CompressedImage', typestore=TYPESTORE)
        messages = [
            (raw, _image(EPOCH_NS, frame_rgb, 'rgb8')),
            (raw, _image(EPOCH_NS + 1, frame_rgb, 'bgr8', step=100)),  # step shorter than a row
            (raw, _image(EPOCH_NS + 2, frame_rgb[:, :, 0], 'mono8')),
            (raw, _image(EPOCH_NS + 3, frame_rgb[:, :, 0], '32FC1')),
        ]
        ok, png = cv2.imencode('.png', frame_rgb)
        assert ok
        compressed = TYPESTORE.types['sensor_msgs/msg/CompressedImage']
        messages += [
            (packed, compressed(header=bag_tools._header(EPOCH_NS), format='png', data=png.reshape(-1))),
            (
                packed,
                compressed(header=bag_tools._header(EPOCH_NS + 1), format='jpeg', data=np.arange(50, dtype=np.uint8)),
            ),
        ]
        for connection, msg in messages:
            writer.write(connection, _stamp(msg), TYPESTORE.serialize_cdr(msg, msg.__msgtype__))

    with pytest.raises(ValueError, match=r'several image topics \(/cam_a, /cam_b\), choose one with --topic'):
        read_bag_frames(bag, progress=False)
    frames = read_bag_frames(bag, topic='/cam_a', progress=False)
    assert frames.stamps.tolist() == [EPOCH_NS, EPOCH_NS + 2]
    np.testing.assert_array_equal(frames.frames64[0], resize_frame(frame_rgb, 'rgb'))
    np.testing.assert_array_equal(frames.frames64[1], resize_frame(frame_rgb[:, :, 0], 'mono'))
    assert [stamp for stamp, _ in frames.rejected] == [EPOCH_NS + 1, EPOCH_NS + 3]
    assert 'step' in frames.rejected[0][1] and 'unsupported encoding' in frames.rejected[1][1]
    frames = read_bag_frames(bag, topic='/cam_b', progress=False)
    np.testing.assert_array_equal(frames.frames64[0], resize_frame(frame_rgb, 'bgr'))  # PNG of the array as BGR
    assert [stamp for stamp, _ in frames.rejected] == [EPOCH_NS + 1] and 'cannot decode' in frames.rejected[0][1]


def test_interval_labels(world, bags, tmp_path):
    stamps = EPOCH_NS + STEP_NS * np.arange(12)
    relative = tmp_path / 'relative.csv'
    relative.write_text('# seconds after the first frame\nstart, end, label\n0.2,0.4,cable\n0.9, 1.0 ,7\n\n1.1,1.1,0\n')
    np.testing.assert_array_equal(labels_from_intervals(relative, stamps), [0, 0, 2, 2, 2, 0, 0, 0, 0, 7, 7, 0])
    absolute = tmp_path / 'absolute.csv'
    absolute.write_text('start,end,label\n1700000000.5,1700000000.65,human\n1700000000.6,1700000000.7,boxes\n')
    np.testing.assert_array_equal(labels_from_intervals(absolute, stamps), [0] * 5 + [7, 9, 9] + [0] * 4)
    np.testing.assert_array_equal(labels_from_intervals(absolute, stamps, time_base='relative'), np.zeros(12))
    for text, message in (
        ('start,end,label\n0,1,pallet\n', "unknown label 'pallet'.*cable"),
        ('start,stop,label\n0,1,1\n', 'expected the columns start,end,label'),
        ('start,end,label\n2,1,1\n', 'end 1.0 is before start 2.0'),
        ('start,end,label\n0,1,1\n1700000000,1700000001,1\n', 'mixes absolute'),
        ('start,end,label\nsoon,1,1\n', 'line 2: start and end must be seconds'),
    ):
        bad = tmp_path / 'bad.csv'
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            labels_from_intervals(bad, stamps)

    out = tmp_path / 'eval'
    argv = ['evaluate', str(world['bundle']), str(bags()), '--out', str(out), '--labels', str(relative), '--quiet']
    assert bag_tools.main(argv) == 0
    assert [int(row['label']) for row in _scores_csv(out)] == [0, 0, 2, 2, 2, 0, 0, 0, 0, 7, 7, 0]
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['anomalous_frames'] == 5 and metrics['labels'] == str(relative)
    assert set(metrics['evaluation']['local']['per_class']) == {'cable', 'human'}


def test_score_timeline_shades_runs_at_the_ends(tmp_path):
    classes = np.array([3, 3, 0, 0, 7, 0, 0, 1])
    path = plot_score_timeline(np.arange(8) * 0.1, np.linspace(-1, 2, 8), 0.5, classes, tmp_path / 'timeline.png')
    assert cv2.imread(str(path)) is not None
    assert _anomalous_runs(classes) == [(0, 1), (4, 4), (7, 7)]


@pytest.fixture(scope='module')
def patrol(world):
    """A normal patrol at 10 Hz: the 24 training frames, every fourth repeated three times (robot standing still)."""
    source = HazardsDataset(world['root']).split('train').paths
    order = [k for k in range(len(source)) for _ in range(3 if k % 4 == 0 else 1)]
    folder = world['base'] / 'patrol' / 'train_set'
    folder.mkdir(parents=True)
    for position, k in enumerate(order):
        shutil.copy(source[k], folder / f'frame_{position:06d}.jpg')
    bag = dataset_to_bag(folder.parent, world['base'] / 'patrol_bag', split='train', compressed=True, progress=False)
    return {'bag': bag, 'order': order, 'source': source}


def test_patrol_becomes_a_trainable_training_set(patrol, tmp_path):
    root = bag_to_training_set(
        patrol['bag'], tmp_path / 'mine', every_s=0.0, validation_fraction=0.25, block_s=1.0, progress=False
    )
    source = json.loads((root / 'metadata' / 'source.json').read_text())
    assert (source['frames'], source['kept'], source['dropped_as_duplicates'], source['dropped_by_time']) == (
        36,
        24,
        12,
        0,
    )
    assert (source['train'], source['validation']) == (18, 6)
    # Each kept file is the recorded JPEG itself; map it back to its position in the patrol by stamp.
    positions = {}
    for split in ('train', 'validation'):
        with (root / 'metadata' / f'{split}_frames_envs.csv').open(newline='') as handle:
            rows = list(csv.DictReader(handle))
        assert [row['frame'] for row in rows] == [f'frame_{i:06d}.jpg' for i in range(len(rows))]
        assert {row['env'] for row in rows} == {'0'}
        positions[split] = [(int(row['stamp_ns']) - EPOCH_NS) // STEP_NS for row in rows]
        for row, position in zip(rows, positions[split], strict=True):
            original = patrol['source'][patrol['order'][position]]
            assert (root / f'{split}_set' / row['frame']).read_bytes() == original.read_bytes()
    kept = sorted(positions['train'] + positions['validation'])
    assert [patrol['order'][p] for p in kept] == list(range(24))  # one frame per standstill, none lost
    rank = {p: i for i, p in enumerate(kept)}
    validation_ranks = [rank[p] for p in positions['validation']]
    assert validation_ranks == list(range(validation_ranks[0], validation_ranks[0] + 6))  # one contiguous stretch

    dataset = HazardsDataset(root)
    assert dataset.splits == ('train', 'validation')
    train, validation = dataset.load('train', progress=False), dataset.load('validation', progress=False)
    assert (len(train), len(validation)) == (18, 6) and not train.labels.any()
    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump({'model': {'base_channels': 8}, 'training': {'batch_size': 8, 'augment': False}}))
    run = tmp_path / 'run'
    argv = ['train', '--data', str(root), '--out', str(run), '--config', str(config), '--epochs', '1']
    assert training_cli.main([*argv, '--device', 'cpu', '--no-outlier-exposure', '--quiet']) == 0
    assert load_bundle(run / 'model.pt', 'cpu').threshold_ < float('inf')

    with pytest.raises(FileExistsError):
        bag_to_training_set(patrol['bag'], root, progress=False)


def test_patrol_subsampling_by_time_from_the_command_line(patrol, tmp_path, capsys):
    root = tmp_path / 'every'
    argv = ['to-training-set', str(patrol['bag']), str(root), '--every', '0.25', '--dedup-threshold', '0', '--quiet']
    assert bag_tools.main(argv) == 0
    assert 'kept 12 of 36 frames' in capsys.readouterr().out
    source = json.loads((root / 'metadata' / 'source.json').read_text())
    assert (source['kept'], source['dropped_by_time'], source['dropped_as_duplicates']) == (12, 24, 0)
    stamps = []
    for split in ('train', 'validation'):
        with (root / 'metadata' / f'{split}_frames_envs.csv').open(newline='') as handle:
            stamps += [int(row['stamp_ns']) for row in csv.DictReader(handle)]
    assert sorted(stamps) == [EPOCH_NS + 3 * STEP_NS * i for i in range(12)]
    assert source['validation'] == 1  # round(0.1 * 12)


def test_validation_stretches_spread_over_a_long_patrol():
    stamps = EPOCH_NS + 500_000_000 * np.arange(1000, dtype=np.int64)  # 2 Hz for 500 s
    mask, segments = bag_tools._validation_mask(stamps, 0.1, 30.0, seed=3)
    assert mask.sum() == 100 and len(segments) == 2  # 50 s of validation in stretches of about 30 s
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
    starts, stops = edges[::2], edges[1::2]
    assert len(starts) == 2 and starts[0] < 500 <= starts[1]  # one stretch in each half of the patrol
    assert (stops - starts).tolist() == [50, 50]
    again, _ = bag_tools._validation_mask(stamps, 0.1, 30.0, seed=3)
    np.testing.assert_array_equal(mask, again)


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as done:
        bag_tools.main(['--help'])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert all(command in text for command in ('from-dataset', 'evaluate', 'replay', 'record', 'to-training-set'))
