"""Starting the detector node as a process of its own (live replay, benchmarks, tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The module ``python -m`` runs to start the node (the ``visual-anomaly-node`` entry point).
NODE_MODULE = 'visual_anomaly.cli.node'


def start_node_process(
    *ros_args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    options: Sequence[str] = (),
) -> subprocess.Popen:
    """The detector node as a separate process with ``--ros-args`` ``ros_args``.

    ``env`` adds to (or overrides) this process's environment; ``options`` go before ``--ros-args``
    (``--lifecycle``, say); stdout is discarded and stderr (the node's log) is a text pipe, read with
    ``communicate()``.
    """
    return subprocess.Popen(
        [sys.executable, '-m', NODE_MODULE, *options, '--ros-args', *ros_args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def replay_args(topic: str, compressed: bool, model: str | None = None, device: str = 'cpu') -> list[str]:
    """``--ros-args`` for a node that takes every frame of ``topic`` reliably, as a replay needs."""
    args = ['-p', f'model_path:={model}'] if model else []
    return [
        *args,
        '-p',
        f'device:={device}',
        '-p',
        'reliability:=reliable',
        '-p',
        'queue_depth:=100',
        '-p',
        f'compressed:={str(compressed).lower()}',
        '-r',
        f'image:={topic}',
    ]
