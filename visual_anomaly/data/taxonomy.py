"""The anomaly classes of the Hazards&Robots corridor dataset, by their integer codes."""

from __future__ import annotations

ANOMALY_CLASSES: dict[int, str] = {
    0: 'normal',
    1: 'water',
    2: 'cable',
    3: 'cellophane',
    4: 'defects',
    5: 'hanging_cable',
    6: 'floor',
    7: 'human',
    8: 'screws',
    9: 'boxes',
    10: 'door',
    11: 'cones',
    12: 'tape',
    13: 'trolley',
    14: 'debris',
    15: 'misc',
    16: 'shard',
    17: 'sawdust',
    18: 'foam',
    19: 'clutter',
}
#: Classes that cover a good part of a 64x64 frame; the rest are small or low-contrast ("tricky").
LARGE_CLASSES: tuple[int, ...] = (7, 9, 10, 11, 13, 15, 19)


def class_name(code: int) -> str:
    """The name of a Hazards&Robots class code (the code itself as text when unknown)."""
    return ANOMALY_CLASSES.get(int(code), str(code))


def class_code(name: str) -> int:
    """The Hazards&Robots code of a class name or of a code given as text; raises ``ValueError`` naming it."""
    text = name.strip()
    if text.isdigit():
        return int(text)
    for code, known in ANOMALY_CLASSES.items():
        if known == text.lower():
            return code
    raise ValueError(f'unknown anomaly class {text!r}; known: {", ".join(ANOMALY_CLASSES.values())}')
