"""A damaged bag is never read as a whole one: what its index lists is counted against what was read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visual_anomaly.bags.io import (
    CAMERA_TOPIC,
    EPOCH_NS,
    IMAGE_TYPE,
    TYPESTORE,
    header_msg,
    image_msg,
    open_writer,
    write_message,
)
from visual_anomaly.cli.bag import main

FRAMES = 24  # 256x256 raw frames: about five to an MCAP chunk (1 MiB), so damage in the middle spares the first


def _damaged_patrol(folder: Path, storage: str, garbage: int = 256 * 1024) -> Path:
    """A bag of FRAMES smooth random frames at 10 Hz whose storage file has ``garbage`` seeded random
    bytes written over its middle (more than one message, so some record header is hit)."""
    rng = np.random.default_rng(0)
    bag = folder / f'damaged_{storage}'
    with open_writer(bag, storage) as writer:
        connection = writer.add_connection(CAMERA_TOPIC, IMAGE_TYPE, typestore=TYPESTORE)
        for k in range(FRAMES):
            frame = np.repeat(np.repeat(rng.integers(0, 256, (32, 32, 3), np.uint8), 8, axis=0), 8, axis=1)
            stamp = EPOCH_NS + k * 100_000_000
            write_message(writer, connection, stamp, image_msg(frame, header_msg(stamp)))
    storage_file = next(path for path in bag.iterdir() if path.suffix in ('.mcap', '.db3'))
    data = bytearray(storage_file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + garbage] = rng.integers(0, 256, garbage, np.uint8).tobytes()
    storage_file.write_bytes(bytes(data))
    return bag


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _read_of(err: str) -> int:
    """The count in "... but N could be read ..."."""
    return int(err.split(' but ')[1].split(' could be read')[0])


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_evaluate_refuses_a_damaged_bag_unless_allowed_partial(world, tmp_path, capsys, storage):
    bag = _damaged_patrol(tmp_path, storage)
    labels = tmp_path / 'labels.csv'
    labels.write_text('start,end,label\n0.2,0.4,cable\n')
    argv = ['evaluate', str(world['bundle']), str(bag), '--labels', str(labels), '--quiet', '--device', 'cpu']
    assert main([*argv, '--out', str(tmp_path / 'refused')]) == 2
    err = _one_line(capsys)
    assert err.startswith(f'visual-anomaly-bag evaluate: {bag}: damaged bag, its index lists {FRAMES} messages on ')
    read = _read_of(err)
    assert 0 < read < FRAMES and err.endswith('--allow-partial goes on with those')
    assert not (tmp_path / 'refused' / 'metrics.json').exists()
    assert main([*argv, '--out', str(tmp_path / 'partial'), '--allow-partial']) == 0
    metrics = json.loads((tmp_path / 'partial' / 'metrics.json').read_text())
    assert metrics['missing'] == FRAMES - read and metrics['frames'] + metrics['rejected'] == read
    assert f'({metrics["rejected"]} rejected, {FRAMES - read} missing from the damaged bag)' in capsys.readouterr().out


def test_to_training_set_refuses_a_damaged_bag_unless_allowed_partial(tmp_path, capsys):
    bag = _damaged_patrol(tmp_path, 'mcap')
    out = tmp_path / 'set'
    assert main(['to-training-set', str(bag), str(out), '--quiet']) == 2
    err = _one_line(capsys)
    assert err.startswith(f'visual-anomaly-bag to-training-set: {bag}: damaged bag, its index lists {FRAMES}')
    assert not out.exists()
    assert main(['to-training-set', str(bag), str(out), '--quiet', '--allow-partial']) == 0
    source = json.loads((out / 'metadata' / 'source.json').read_text())
    assert source['frames'] == FRAMES and source['missing'] == FRAMES - _read_of(err)
    assert len(list((out / 'train_set').iterdir())) + len(list((out / 'validation_set').iterdir())) == source['kept']
    assert source['kept'] <= FRAMES - source['missing']
    assert f'{source["missing"]} missing from the damaged bag' in capsys.readouterr().out


@pytest.mark.parametrize('command', ['replay', 'record'])
def test_replay_and_record_refuse_a_damaged_bag_before_the_node_starts(tmp_path, capsys, command):
    from visual_anomaly.ros.live_replay import bag_frame_stamps  # rclpy

    bag = _damaged_patrol(tmp_path, 'mcap')
    assert main([command, str(bag), '--out', str(tmp_path / 'out'), '--quiet']) == 2
    err = _one_line(capsys)
    assert err.startswith(f'visual-anomaly-bag {command}: {bag}: damaged bag, its index lists {FRAMES} messages on ')
    assert not (tmp_path / 'out' / 'live_metrics.json').exists()
    stamps, _ = bag_frame_stamps(bag, allow_partial=True)  # what --allow-partial plays: the readable frames
    assert len(stamps) == _read_of(err) and np.all(np.diff(stamps) > 0)
