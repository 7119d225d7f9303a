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


def _venv() -> Path:
    """The venv the README's setup made (scripts/setup_env.sh), which these tests run in."""
    prefix = Path(sys.prefix)
    if not list(prefix.glob('.visual_anomaly-*.sha256')):
        pytest.fail(f'{prefix} was not set up by scripts/setup_env.sh; run the README test command (scripts/test.sh)')
    return prefix


def _profile(venv: Path) -> str:
    """The setup_env.sh profile this venv was set up with (sourcing another would install it there)."""
    made = {path.name.split('-')[-1].removesuffix('.sha256') for path in venv.glob('.visual_anomaly-*.sha256')}
    return next(profile for profile in ('robot', 'dev', 'runtime') if profile in made)


@pytest.mark.parametrize('options', ['set +euo pipefail', 'set -u', 'set -o pipefail'])
def test_setup_env_leaves_the_shell_options_as_they_were(options):
    venv = _venv()
    script = (
        f'{options}; echo "$-|$(shopt -po pipefail)"; source scripts/setup_env.sh {_profile(venv)} > /dev/null; '
        'echo "$-|$(shopt -po pipefail)"; source scripts/setup_env.sh nonsense 2> /dev/null; '
        'echo "failed with $?"; echo "$-|$(shopt -po pipefail)"'
    )
    env = dict(os.environ, VISUAL_ANOMALY_VENV=str(venv))
    result = subprocess.run(['bash', '-c', script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    before, after, failed, after_failure = result.stdout.strip().splitlines()
    assert before == after == after_failure, result.stdout
    assert failed == 'failed with 2', result.stderr


def test_the_venv_is_laid_out_where_ros2_launch_looks():
    prefix = _venv()
    share = prefix / 'share' / 'visual_anomaly'
    assert (prefix / 'share/ament_index/resource_index/packages/visual_anomaly').is_file()
    # ros2launch finds a launch file by package with os.walk, which does not enter linked folders
    found = {name for _, _, files in os.walk(share) for name in files}
    expected = {'package.xml', 'visual_anomaly.launch.py', 'visual_anomaly_rviz.launch.py', 'visual_anomaly.yaml'}
    assert expected | {'visual_anomaly.rviz', 'default.pt', 'default.onnx'} <= found
    # launch_ros runs a package's executable from <prefix>/lib/<package>/
    for executable in ('visual-anomaly-node', 'visual-anomaly-bag'):
        assert shutil.which(executable, path=str(prefix / 'lib' / 'visual_anomaly')), executable


# What each third-party import of the robot-side code (visual_anomaly/, launch/) is installed as.
ROSDEP_KEYS = {
    'numpy': 'python3-numpy',
    'cv2': 'python3-opencv',
    'PIL': 'python3-pil',
    'torch': 'python3-torch',
    'yaml': 'python3-yaml',
    'sklearn': 'python3-sklearn',
    'scipy': 'python3-scipy',
    'tqdm': 'python3-tqdm',
    'matplotlib': 'python3-matplotlib',
}
PIP_ONLY = {'rosbags', 'onnx', 'onnxruntime', 'ray'}  # optional, from pip (see the comment in package.xml)
OURS = {'visual_anomaly', 'training'}


def _robot_pins() -> dict[str, str]:
    """The versions requirements-robot.txt pins itself (Ubuntu 24.04's), by lower-case distribution name."""
    pins = {}
    for line in (ROOT / 'requirements-robot.txt').read_text().splitlines():
        requirement = line.split('#')[0].strip()
        if '==' in requirement:
            name, version = requirement.split('==')
            pins[name.lower()] = version
    return pins


def test_package_xml_floors_are_the_versions_the_robot_lane_tests():
    from importlib.metadata import packages_distributions

    from packaging.version import Version

    floors = {d.name: d.version_gte for d in parse_package(ROOT / 'package.xml').exec_depends if d.version_gte}
    pins = _robot_pins()
    distributions = packages_distributions()
    for module, key in ROSDEP_KEYS.items():
        distribution = distributions[module][0].lower()
        if key == 'python3-torch':  # from pip on robots too, pinned alike in both lanes
            assert key not in floors and distribution not in pins
        else:
            assert Version(pins[distribution]).release[:3] == Version(floors[key]).release, key


def _imported_modules(*folders: str) -> set[str]:
    import ast

    names = set()
    for folder in folders:
        for path in (ROOT / folder).rglob('*.py'):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split('.')[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split('.')[0])
    return names - set(sys.stdlib_module_names) - OURS


def test_package_xml_declares_what_the_robot_side_code_imports():
    declared = {d.name for d in parse_package(ROOT / 'package.xml').exec_depends}
    imported = _imported_modules('visual_anomaly', 'launch')
    for module in sorted(imported - PIP_ONLY):
        assert ROSDEP_KEYS.get(module, module) in declared, f'{module} is imported but not declared'
    assert 'rviz2' not in declared  # headless robots: the rviz launch path checks for it instead
