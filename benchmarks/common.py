"""What every benchmark records: the machine it ran on, and its results written atomically."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine_info(load_before: tuple[float, ...] | None = None) -> dict:
    """Platform, Python, core count and the load average (the machine is often shared: say how busy it was)."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    if load_before is not None:
        info["load_average_before"] = [round(x, 2) for x in load_before]
    return info


def write_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
