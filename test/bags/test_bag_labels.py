"""Interval labels: a start,end,label CSV in relative or absolute seconds, by class code or name."""

import json

import numpy as np
import pytest
from bag_helpers import STEP_NS, scores_csv

from visual_anomaly.bags.io import EPOCH_NS
from visual_anomaly.bags.labels import interval_class_names, labels_from_intervals, read_intervals
from visual_anomaly.cli.bag import main


def test_interval_labels(tmp_path):
    stamps = EPOCH_NS + STEP_NS * np.arange(12)
    relative = tmp_path / 'relative.csv'
    relative.write_text('# seconds after the first frame\nstart, end, label\n0.2,0.4,cable\n0.9, 1.0 ,7\n\n1.1,1.1,0\n')
    # the user's own classes: integers stand for themselves, names get the free codes in order
    np.testing.assert_array_equal(labels_from_intervals(relative, stamps), [0, 0, 1, 1, 1, 0, 0, 0, 0, 7, 7, 0])
    assert read_intervals(relative) == [(0.2, 0.4, 'cable'), (0.9, 1.0, '7'), (1.1, 1.1, '0')]
    assert interval_class_names(relative) == {1: 'cable', 7: 'class 7'}  # never a built-in name for a number
    absolute = tmp_path / 'absolute.csv'
    absolute.write_text('start,end,label\n1700000000.5,1700000000.65,human\n1700000000.6,1700000000.7,boxes\n')
    np.testing.assert_array_equal(labels_from_intervals(absolute, stamps), [0] * 5 + [1, 2, 2] + [0] * 4)
    np.testing.assert_array_equal(labels_from_intervals(absolute, stamps, time_base='relative'), np.zeros(12))
    np.testing.assert_array_equal(labels_from_intervals(relative, stamps, time_base='absolute'), np.zeros(12))
    for text, message in (
        ('start,end,label\n0,1,\n', 'line 2: empty label'),
        ('start,stop,label\n0,1,1\n', 'expected the columns start,end,label'),
        ('start,end,label\n2,1,1\n', 'end 1.0 is before start 2.0'),
        ('start,end,label\n0,1,1\n1700000000,1700000001,1\n', 'mixes absolute'),
        ('start,end,label\nsoon,1,1\n', 'line 2: start and end must be seconds'),
        ('start,end,label\n0,1,cable\nnan,nan,cable\n', 'line 3: start and end must be seconds'),
        ('start,end,label\n0,inf,cable\n', 'line 2: start and end must be seconds'),
        ('start,end,label\n0,1,12345678901234567890\n', 'line 2: class code 12345678901234567890 must be between 0'),
        ('start,end,label\n0,1,-3\n', 'line 2: class code -3 must be between 0'),
    ):
        bad = tmp_path / 'bad.csv'
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            labels_from_intervals(bad, stamps)
    binary = tmp_path / 'labels.bin'
    binary.write_bytes(b'start,end,label\n\xff\xfe\x00\x81')
    with pytest.raises(ValueError, match=r'labels\.bin: not a text CSV'):
        labels_from_intervals(binary, stamps)
    with pytest.raises(ValueError, match='time_base must be'):
        labels_from_intervals(relative, stamps, time_base='bag')


def test_any_integer_is_a_label_and_names_ignore_case(tmp_path):
    stamps = EPOCH_NS + STEP_NS * np.arange(4)
    csv_path = tmp_path / 'labels.csv'
    csv_path.write_text('start,end,label\n0,0,3\n0.1,0.1,+42\n0.2,0.2,Hanging_Cable\n0.3,0.3,hanging_cable\n')
    np.testing.assert_array_equal(labels_from_intervals(csv_path, stamps), [3, 42, 1, 1])
    assert interval_class_names(csv_path) == {3: 'class 3', 42: 'class 42', 1: 'hanging_cable'}


@pytest.mark.slow  # an evaluation with its report
def test_evaluate_takes_interval_labels(world, bags, tmp_path):
    relative = tmp_path / 'relative.csv'
    relative.write_text('# seconds after the first frame\nstart, end, label\n0.2,0.4,cat\n0.9, 1.0 ,7\n\n1.1,1.1,0\n')
    out = tmp_path / 'eval'
    argv = ['evaluate', str(world['bundle']), str(bags()), '--out', str(out), '--labels', str(relative), '--quiet']
    assert main(argv) == 0
    assert [int(row['label']) for row in scores_csv(out)] == [0, 0, 1, 1, 1, 0, 0, 0, 0, 7, 7, 0]
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['anomalous_frames'] == 5 and metrics['labels'] == str(relative)
    assert set(metrics['evaluation']['local']['per_class']) == {'cat', 'class 7'}  # the user's names, not ours
