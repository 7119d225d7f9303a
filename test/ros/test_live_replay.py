"""Live replay: a bag played through DDS into the node process; every frame is accounted for."""

import json
import threading

import numpy as np
import pytest
from ros_helpers import DOMAIN_ID, REPO, RosTester  # noqa: F401  (sets a private ROS_DOMAIN_ID)

from training.world import CorridorWorld, write_split
from visual_anomaly.bags.convert import dataset_to_bag
from visual_anomaly.bags.labels import read_labels
from visual_anomaly.ros.live_replay import bag_frame_stamps, play_bag, record_live, replay_bag
from visual_anomaly.ros.process import replay_args, start_node_process

pytestmark = pytest.mark.slow  # a node process, bags played over DDS

MODEL = REPO / 'models' / 'default.pt'


@pytest.fixture(scope='module')
def patrol_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp('replay') / 'patrol'
    frames, infos, _ = CorridorWorld(seed=0, image_size=128).patrol(
        40, np.random.default_rng(2), anomaly_rate=0.4, classes=[7, 9, 11], speed_m_per_frame=0.15
    )
    write_split(root, 'test_set', frames, infos)
    return dataset_to_bag(root, root.parent / 'bag', split='test', rate_hz=20.0, progress=False), infos


def test_every_frame_is_accounted_for_and_aligned_by_stamp(patrol_bag, tmp_path):
    bag, infos = patrol_bag
    metrics = replay_bag(bag, tmp_path, model=str(MODEL), rate=2.0, progress=False)
    counters = metrics['node_counters']
    assert metrics['frames_published'] == len(infos) == 40
    assert counters['received'] == 40
    assert counters['processed'] + counters['dropped'] + counters['rejected'] == 40
    assert metrics['frames_unaccounted'] == 0
    assert metrics['frames_answered'] == counters['processed']
    assert metrics['end_to_end_ms']['p50'] > 0
    labels = np.array([info.label for info in infos])
    detection = metrics['detection']
    answered_positive = detection['true_positives'] + detection['false_negatives']
    assert answered_positive <= (labels > 0).sum()
    assert json.loads((tmp_path / 'live_metrics.json').read_text())['frames_published'] == 40
    assert (tmp_path / 'live_timeline.png').is_file()


def test_recording_next_to_an_external_player_reports_what_replay_does(patrol_bag, tmp_path):
    """The ros2 launch + ros2 bag play + visual-anomaly-bag record path, with our player standing in for ros2."""
    bag, _ = patrol_bag
    # 10 Hz: a frame every 100 ms, which the node keeps up with even when CI's two cores are busy (at 20 Hz it
    # dropped one now and then under a load of 6-8, and the two runs then scored different frames)
    replayed = replay_bag(bag, tmp_path / 'replay', model=str(MODEL), rate=0.5, progress=False)
    node = start_node_process(*replay_args('/camera/image_raw', compressed=False, model=str(MODEL)))
    recorded: dict = {}
    recorder = threading.Thread(target=lambda: recorded.update(record_live(bag, tmp_path / 'record', idle_s=3.0)))
    player = RosTester('player')
    try:
        recorder.start()
        player.spin_for(2.0)  # let the recorder match the node's outputs before the first frame
        play_bag(bag, None, 0.5, player.node, progress=False)
        recorder.join(timeout=120)
    finally:
        node.terminate()
        node.wait(timeout=20)
        player.close()
    assert recorded['frames_unaccounted'] == 0 and recorded['frames_answered'] == recorded['node_counters']['processed']
    assert recorded['node_counters']['dropped'] == replayed['node_counters']['dropped'] == 0
    assert recorded['detection']['roc_auc'] == pytest.approx(replayed['detection']['roc_auc'])
    assert recorded['detection']['f1'] == pytest.approx(replayed['detection']['f1'])
    assert (tmp_path / 'record' / 'live_metrics.json').is_file()


def test_a_node_that_cannot_start_fails_the_replay_with_its_reason(patrol_bag, tmp_path):
    bag, _ = patrol_bag
    broken = tmp_path / 'broken.pt'
    broken.write_bytes(b'not a model')
    with pytest.raises(RuntimeError, match='cannot start.*broken.pt'):
        replay_bag(bag, tmp_path / 'out', model=str(broken), progress=False)


def test_labels_in_the_bag_follow_the_frames(patrol_bag):
    bag, infos = patrol_bag
    stamps, topic = bag_frame_stamps(bag)
    assert topic == '/camera/image_raw'
    np.testing.assert_array_equal(read_labels(bag, stamps), [info.label for info in infos])


def test_a_bag_without_the_topic_is_refused_with_the_topic_list(patrol_bag, tmp_path):
    bag, _ = patrol_bag
    with pytest.raises(ValueError, match='the bag has: .*/camera/image_raw'):
        replay_bag(bag, tmp_path, model=str(MODEL), topic='/nope', progress=False)
