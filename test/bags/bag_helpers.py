"""Helpers of the bag tests: reading back what a bag or an evaluation holds."""

import csv
from pathlib import Path

from rosbags.highlevel import AnyReader

from visual_anomaly.bags.io import TYPESTORE

STEP_NS = 100_000_000  # 10 Hz


def messages(bag: Path, topic: str) -> list:
    """(receive time, message) of every message on ``topic``."""
    with AnyReader([bag], default_typestore=TYPESTORE) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        return [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages(connections=connections)]


def stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def scores_csv(out: Path) -> list[dict]:
    with (out / 'scores.csv').open(newline='') as handle:
        return list(csv.DictReader(handle))
