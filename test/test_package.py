"""The robot path as far as this machine allows: package.xml, colcon build, installed executables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FILES = [
    'package.xml',
    'setup.py',
    'setup.cfg',
    'resource',
    'visual_anomaly',
    'training',
    'launch',
    'config',
    'models',
]
RUNTIME_KEYS = {
    'rclpy',
    'sensor_msgs',
    'std_msgs',
    'diagnostic_msgs',
    'visualization_msgs',
    'python3-torch',
    'python3-opencv',
    'python3-numpy',
    'python3-sklearn',
    'python3-yaml',
}


def test_package_xml_parses_and_validates():
    package = parse_package(ROOT / 'package.xml')
    package.validate()
    assert package.name == 'visual_anomaly' and package.package_format == 3
    assert package.get_build_type() == 'ament_python'
    assert {d.name for d in package.exec_depends} >= RUNTIME_KEYS


def test_versions_agree():
    import visual_anomaly

    package = parse_package(ROOT / 'package.xml')
    setup_py = (ROOT / 'setup.py').read_text()
    assert package.version == visual_anomaly.__version__
    assert f"version='{package.version}'" in setup_py


@pytest.fixture(scope='module')
def colcon_install(tmp_path_factory) -> Path:
    colcon = shutil.which('colcon')
    if colcon is None:
        pytest.fail('colcon is not installed; run the README test command (scripts/test.sh)')
    workspace = tmp_path_factory.mktemp('ws')
    source = workspace / 'src' / 'visual_anomaly'
    source.mkdir(parents=True)
    for name in PACKAGE_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns('__pycache__'))
        elif path.exists():
            shutil.copy2(path, source / name)
    result = subprocess.run(
        [colcon, 'build', '--event-handlers', 'console_direct+'],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workspace / 'install'


def test_colcon_build_installs_package(colcon_install):
    prefix = colcon_install / 'visual_anomaly'
    assert (prefix / 'share/ament_index/resource_index/packages/visual_anomaly').is_file()
    assert (prefix / 'share/visual_anomaly/package.xml').is_file()
    for model in ('default.pt', 'default.onnx'):  # the .onnx is what a robot without PyTorch loads
        assert (prefix / 'share/visual_anomaly/models' / model).stat().st_size > 1_000_000
    site = next(prefix.glob('lib/python3*/site-packages'))
    assert (site / 'visual_anomaly/core/detector.py').is_file()
    assert (site / 'visual_anomaly/cli/demo.py').is_file()


# The dev venv holds an editable install of this checkout; hide its import hook so that the
# executable imports the colcon install space, as it does on a robot.
_RUN_WITHOUT_EDITABLE = (
    'import runpy, sys;'
    "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')];"
    'script = sys.argv.pop(1); sys.argv[0] = script;'
    "namespace = runpy.run_path(script, run_name='__main__')"
)


def test_installed_executable_starts_and_exits_cleanly(colcon_install):
    prefix = colcon_install / 'visual_anomaly'
    executable = prefix / 'lib/visual_anomaly/visual-anomaly-demo'
    assert executable.is_file(), sorted(p.name for p in (prefix / 'lib').rglob('*'))
    site = next(prefix.glob('lib/python3*/site-packages'))
    env = dict(os.environ, PYTHONPATH=f'{site}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    probe = 'import visual_anomaly.cli.demo as m; print(m.__file__, file=sys.stderr)'
    script = executable.read_text().replace('import sys', f'import sys; {probe}', 1)
    patched = colcon_install.parent / 'demo-entry-point'
    patched.write_text(script)
    result = subprocess.run(
        [sys.executable, '-c', _RUN_WITHOUT_EDITABLE, str(patched), '--help'],
        cwd=colcon_install.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert 'usage: visual-anomaly-demo' in result.stdout
    assert result.stderr.strip().splitlines()[0].startswith(str(site)), result.stderr
