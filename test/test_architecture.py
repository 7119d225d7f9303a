"""The package's layers, checked from the source: every import points down, no module imports in a circle.

Layers, lowest first (README, "Architecture"): a module may import its own layer and the ones below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = (
    'visual_anomaly.core',
    'visual_anomaly.data',
    'visual_anomaly.evaluation',
    'visual_anomaly.bags',
    'visual_anomaly.ros',
    'training',
    'visual_anomaly.cli',
)
ROS_PACKAGES = {'rclpy', 'sensor_msgs', 'std_msgs', 'std_srvs', 'geometry_msgs', 'diagnostic_msgs', 'rcl_interfaces'}
ROS_PACKAGES |= {'visualization_msgs', 'lifecycle_msgs', 'builtin_interfaces', 'ament_index_python'}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _sources() -> dict[str, Path]:
    files = [*ROOT.joinpath('visual_anomaly').rglob('*.py'), *ROOT.joinpath('training').rglob('*.py')]
    return {_module_name(path): path for path in files}


def _imports(module: str, path: Path) -> set[str]:
    """Every module named by an import statement of ``path``, at any depth (lazy imports count)."""
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split('.')
            base = base[: len(base) - node.level + 1] if node.level else []
            target = '.'.join(base + ([node.module] if node.module else []))
            found.add(target)
            found.update(f'{target}.{alias.name}' for alias in node.names)  # ``from pkg import module``
    return found


def _layer(module: str) -> int | None:
    for index, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + '.'):
            return index
    return None


SOURCES = _sources()
GRAPH = {module: {m for m in _imports(module, path) if m in SOURCES} for module, path in SOURCES.items()}


def test_every_module_belongs_to_a_layer():
    unplaced = [m for m in SOURCES if _layer(m) is None and m not in ('visual_anomaly', 'training')]
    assert not unplaced, f'modules outside every layer: {unplaced}'


def test_imports_point_down():
    upward = [
        f'{module} ({LAYERS[_layer(module)]}) imports {target} ({LAYERS[_layer(target)]})'
        for module, targets in GRAPH.items()
        for target in targets
        if _layer(module) is not None and _layer(target) is not None and _layer(target) > _layer(module)
    ]
    assert not upward, '\n'.join(upward)


def test_nothing_imports_the_command_line_tools():
    users = [f'{m} imports {t}' for m, ts in GRAPH.items() for t in ts if _layer(t) == 6 and _layer(m) != 6]
    assert not users, users


def test_only_the_ros_layer_uses_ros():
    offenders = [
        f'{module} imports {name}'
        for module, path in SOURCES.items()
        if _layer(module) is not None and _layer(module) < LAYERS.index('visual_anomaly.ros')
        for name in _imports(module, path)
        if name.split('.')[0] in ROS_PACKAGES - {'ament_index_python'}
    ]
    assert not offenders, offenders


def test_no_module_imports_private_names_of_another():
    """``from module import _name`` across modules is reaching into internals (tests and benches included)."""
    files = [*SOURCES.values(), *ROOT.joinpath('test').rglob('*.py'), *ROOT.joinpath('bench').rglob('*.py')]
    offenders = [
        f'{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {node.module}'
        for path in files
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ImportFrom) and node.module != '__future__'
        for alias in node.names
        if alias.name.startswith('_')
    ]
    assert not offenders, '\n'.join(offenders)


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if target in SOURCES and _parent_package(module) != target:
                if state.get(target) == 1:
                    return [*path, module, target]
                if target not in state and (cycle := visit(target, [*path, module])):
                    return cycle
        state[module] = 2
        return None

    for module in sorted(SOURCES):
        if module not in state and (cycle := visit(module, [])):
            pytest.fail('import cycle: ' + ' -> '.join(cycle))


def _parent_package(module: str) -> str:
    return module.rpartition('.')[0]


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The checker itself must flag an upward arrow (guards against a test that cannot fail)."""
    probe = ROOT / 'visual_anomaly' / 'core' / 'device.py'
    parsed = _imports('visual_anomaly.core.device', probe) | {'visual_anomaly.ros.node'}
    assert any(_layer(t) is not None and _layer(t) > 0 for t in parsed)
