"""The CPU's theoretical fp32 peak: cores x clock x FLOPs per cycle, an upper bound nothing can exceed.

Every factor is taken at its largest possible value, so a measured rate above the bound means the
FLOP count is wrong, not that the code is fast:

* cores: the logical CPUs this process may run on (SMT siblings share their core's FMA units, so
  counting them can only raise the bound);
* FLOPs per cycle from the CPU flags: two FMA pipes of the widest vector unit (avx512f: 2 x 16 x 2 = 64;
  fma: 2 x 8 x 2 = 32; avx: one 8-wide add and one 8-wide multiply = 16; else 8);
* clock: the highest max boost clock of the CPU's product line (a hypervisor hides the exact model
  and ``cpu MHz`` shows the nominal clock, which boost exceeds), or, for a line not in ``MAX_BOOST_GHZ``,
  that of the fastest x86 CPU shipped. ``max_ghz`` overrides it.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

# (vendor, family, model) -> (product line, highest max boost clock in GHz, the part that reaches it)
# Milan: AMD's EPYC 7003 list tops out at the 72F3's 4.1 GHz (a 2.45 GHz nominal clock, as on this
# KVM machine, matches the 7763 and its 3.5 GHz boost, but the hypervisor does not say which part it is).
MAX_BOOST_GHZ = {
    ('AuthenticAMD', 25, 1): ('AMD EPYC 7003 "Milan" (Zen 3)', 4.1, 'EPYC 72F3'),
}
FASTEST_X86_GHZ = (6.2, 'Intel Core i9-14900KS')


@dataclass(frozen=True)
class Peak:
    """A theoretical fp32 peak and how it was derived."""

    gflops: float
    cores: int
    ghz: float
    flops_per_cycle: int
    nominal_ghz: float | None
    assumption: str

    def to_dict(self) -> dict:
        return asdict(self)


def cpuinfo(path: str = '/proc/cpuinfo') -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    first = text.split('\n\n')[0]
    return {k.strip(): v.strip() for k, _, v in (line.partition(':') for line in first.splitlines()) if k.strip()}


def flops_per_cycle(flags: set[str]) -> int:
    """fp32 FLOPs per cycle per core, an upper bound from the vector extensions (two FMA pipes at most)."""
    if 'avx512f' in flags:
        return 2 * 16 * 2
    if 'fma' in flags:
        return 2 * 8 * 2
    return 16 if 'avx' in flags else 8


def max_clock(info: dict[str, str]) -> tuple[float, str]:
    """The highest clock (GHz) this CPU can run at, and where it comes from."""
    key = (info.get('vendor_id', ''), int(info.get('cpu family', -1)), int(info.get('model', -1)))
    if key in MAX_BOOST_GHZ:
        line, ghz, part = MAX_BOOST_GHZ[key]
        return ghz, f'{ghz} GHz (max boost of the {part}, the fastest {line}: family {key[1]} model {key[2]})'
    ghz, part = FASTEST_X86_GHZ
    return ghz, f'{ghz} GHz (max boost of the {part}, the fastest x86 CPU: family {key[1]} model {key[2]} not known)'


def theoretical_peak(max_ghz: float | None = None, info: dict[str, str] | None = None) -> Peak:
    """cores x clock x FLOPs/cycle of this machine (``max_ghz`` replaces the clock if given)."""
    info = cpuinfo() if info is None else info
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    per_cycle = flops_per_cycle(set(info.get('flags', '').split()))
    ghz, clock_note = (max_ghz, f'{max_ghz} GHz (given)') if max_ghz else max_clock(info)
    match = re.match(r'[\d.]+', info.get('cpu MHz', ''))
    nominal = round(float(match.group()) / 1e3, 2) if match else None
    note = (
        f'{cores} logical CPUs x {clock_note} x {per_cycle} fp32 FLOP/cycle (two FMA pipes of the widest '
        f'vector unit in the flags); CPU {info.get("model name", "unknown")}, nominal clock {nominal or "?"} GHz'
    )
    return Peak(cores * ghz * per_cycle, cores, ghz, per_cycle, nominal, note)
