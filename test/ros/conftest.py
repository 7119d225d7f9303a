"""The test node every module of these tests talks to the detector through."""

from __future__ import annotations

import pytest
from ros_helpers import RosTester


@pytest.fixture(scope='module')
def tester(request):
    """A test node of its own for each module (named after it), closed after the module's tests."""
    ros = RosTester(f'tester_{request.module.__name__.rsplit(".", 1)[-1]}')
    yield ros
    ros.close()
