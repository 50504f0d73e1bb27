"""Where a benchmark's numbers come from, written into its ``--json`` file as ``source``.

``provenance()`` returns the command line (relative to the repository root), the UTC date and
the machine (cores, CPU model, load average, the process's niceness, Python, torch when
installed), so that a data file next to a plot in docs/ says which run made it.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def provenance() -> dict:
    """``{"command", "date", "machine"}`` of the running benchmark."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    try:  # the installed version, also where only the children import torch
        from importlib.metadata import version

        torch = version("torch")
    except Exception:  # noqa: BLE001 (not installed: the file says so)
        torch = None
    return {"command": " ".join([str(script), *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": {"nproc": os.cpu_count(), "cpu": _cpu(),
                        "load_avg": [round(x, 2) for x in os.getloadavg()],
                        "niceness": os.nice(0),  # 19 under `nice -n 19`: a shared machine
                        "python": platform.python_version(),
                        "torch": torch}}
