"""For benchmarks/bench_dashboard.py: when the first frame was drawn, and what was loaded.

Active only when TRAINBOARD_FIRST_FRAME_FILE names a file; costs nothing otherwise.
"""

from __future__ import annotations

import json
import os
import sys

HEAVY = ("mlflow", "torch", "transformers", "matplotlib")


def process_age() -> float:
    """Seconds since this process started (Linux /proc)."""
    with open("/proc/self/stat") as fh:
        stat = fh.read()
    start_ticks = int(stat[stat.rfind(")") + 2 :].split()[19])
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def record_first_frame() -> None:
    path = os.environ.get("TRAINBOARD_FIRST_FRAME_FILE")
    if not path:
        return
    data = {"seconds_since_start": process_age(), "heavy_loaded": [m for m in HEAVY if m in sys.modules]}
    with open(path, "w") as fh:
        json.dump(data, fh)
