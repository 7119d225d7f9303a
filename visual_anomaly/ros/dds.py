"""Fast DDS settings for a process that publishes camera frames (the node bench, ``visual-anomaly-bag replay``).

Fast DDS, the default RMW, hands a sample to a subscriber on the same machine through a shared-memory
segment of the *publishing* participant: 512 KB unless configured. A larger sample, such as a
640x480 rgb8 frame (900 KB), goes out in 64 KB fragments, and those the segment has no room for at
that moment are dropped: reliable QoS resends them only after the subscriber's NACK, 10-15 ms
later (heartbeat and NACK response delays), and best effort loses the frame. How many frames that
hits depends on how fast the subscriber drains the segment: most of them on a busy 2-core machine.
The subscriber's settings play no part, so the detector node cannot avoid this: the camera
driver's process needs a segment that holds its frames, e.g.
``FASTDDS_BUILTIN_TRANSPORTS='DEFAULT?sockets_size=2MB'`` in its environment (Fast DDS makes the
segment twice the socket buffer size) or an XML profile with a larger ``segment_size``.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: The default transports (shared memory, UDPv4) with 2 MB socket buffers, hence a 4 MB segment.
LARGE_FRAME_TRANSPORTS = 'DEFAULT?sockets_size=2MB'
#: The variables by which a user configures Fast DDS; when one is set, the configuration is theirs.
FASTDDS_SETTINGS = ('FASTDDS_BUILTIN_TRANSPORTS', 'FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')


def use_large_frame_transports(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Make room for camera frames in the Fast DDS participants created from now on (call before ``rclpy.init``).

    Sets ``FASTDDS_BUILTIN_TRANSPORTS`` in ``environ`` (default ``os.environ``, which child processes
    inherit) unless one of :data:`FASTDDS_SETTINGS` is set there already; other RMWs ignore it.
    Returns the value set, or None when the environment was left alone.
    """
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in FASTDDS_SETTINGS):
        return None
    environ['FASTDDS_BUILTIN_TRANSPORTS'] = LARGE_FRAME_TRANSPORTS
    return LARGE_FRAME_TRANSPORTS
