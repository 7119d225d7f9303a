"""``visual-anomaly-bag``: every subcommand's help, one-line errors (exit 2), outputs."""

import subprocess
import sys

import pytest

from visual_anomaly.cli.bag import main

SUBCOMMANDS = ('from-dataset', 'evaluate', 'replay', 'record', 'to-training-set', 'calibrate')


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as done:
        main(['--help'])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert all(command in text for command in SUBCOMMANDS)
    assert 'python -m pydoc visual_anomaly.bags' in text and 'visual-anomaly-bag evaluate models/default.pt' in text


@pytest.mark.parametrize('command', SUBCOMMANDS)
def test_every_subcommand_has_help_and_quiet(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, '--help'])
    assert done.value.code == 0
    assert '--quiet' in capsys.readouterr().out


def test_user_errors_are_one_line_exit_2(world, bags, tmp_path, capsys):
    bag = bags()
    listing = ('/camera/image_raw (sensor_msgs/msg/Image)', '/ground_truth/anomaly (geometry_msgs/msg/Vector3Stamped)')
    out = tmp_path / 'eval'
    argv = ['evaluate', str(world['bundle']), str(bag), '--out', str(out), '--topic', '/front_camera', '--quiet']
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('visual-anomaly-bag evaluate:')
    assert all(item in err for item in listing)
    assert main(['evaluate', str(world['bundle']), str(tmp_path / 'nothing'), '--out', str(out)]) == 2
    assert 'no bag at' in capsys.readouterr().err
    assert main(['from-dataset', str(world['root']), str(bag), '--quiet']) == 2  # never overwrites
    assert 'exists' in capsys.readouterr().err
    corrupt = tmp_path / 'corrupt'
    corrupt.mkdir()
    (corrupt / 'metadata.yaml').write_text('rosbag2_bagfile_information: {version: 9}\n')
    assert main(['to-training-set', str(corrupt), str(tmp_path / 'set'), '--quiet']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(
        f'visual-anomaly-bag to-training-set: {corrupt}: not a readable'
    )


def test_from_dataset_prints_the_bag_and_shows_progress_only_on_a_terminal(world, tmp_path, capsys, monkeypatch):
    bag = tmp_path / 'bag'
    assert main(['from-dataset', str(world['root']), str(bag), '--split', 'validation', '--storage', 'mcap']) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f'wrote {bag}'
    assert '%|' not in captured.err  # a log file gets no progress bar
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    assert main(['from-dataset', str(world['root']), str(tmp_path / 'tty'), '--split', 'validation']) == 0
    assert '%|' in capsys.readouterr().err


@pytest.mark.slow  # a new interpreter
def test_a_missing_file_is_one_line_in_a_new_interpreter(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            '-c',
            'import sys; from visual_anomaly.cli.bag import main; sys.exit(main())',
            'evaluate',
            str(tmp_path / 'model.pt'),
            str(tmp_path / 'nonexistent'),
            '--out',
            str(tmp_path / 'out'),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith('visual-anomaly-bag evaluate: ') and str(tmp_path / 'model.pt') in line
