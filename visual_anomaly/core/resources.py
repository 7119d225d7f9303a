"""Files the package ships (default models, configuration), found where the package is installed."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = 'visual_anomaly'
_CHECKOUT = Path(__file__).resolve().parents[2]  # a source checkout holds models/ and config/ at its top


def share_dir() -> Path:
    """The package's share folder: the ament index where ROS knows the package, else the install prefix,
    else the source checkout this module runs from."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, PackageNotFoundError, ValueError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        pass
    prefix_share = Path(sys.prefix) / 'share' / PACKAGE
    if (prefix_share / 'package.xml').exists():
        return prefix_share
    if (_CHECKOUT / 'package.xml').exists():
        return _CHECKOUT
    raise FileNotFoundError(
        f'cannot find the share folder of {PACKAGE} (not in the ament index, {sys.prefix}, or a checkout)'
    )


def default_model_path() -> Path:
    """The shipped model: ``models/default.pt``, or its ONNX export ``default.onnx`` where PyTorch is missing."""
    try:
        import torch  # noqa: F401 - the .pt bundle needs it, so it is loaded either way

        name = 'default.pt'
    except ImportError:
        name = 'default.onnx'
    return share_dir() / 'models' / name
