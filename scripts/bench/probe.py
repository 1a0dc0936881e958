"""One call in a fresh interpreter, stopped above a memory cap, and this process's RSS.

Peak memory is read from ``/proc`` (``VmHWM``, resettable), so only what the probed call
allocates counts, not what the caller holds. Linux only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

RSS_CAP_MB = 8_000  # a probe above this is stopped (whole graphs grow without bound)
TIMEOUT_S = 900
SCRIPTS = Path(__file__).resolve().parent.parent  # the folder that holds this package


def rss_mb(field: str = "VmRSS") -> float:
    """This process's ``VmRSS`` (now) or ``VmHWM`` (peak) in MB."""
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


def reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current RSS. (``ru_maxrss`` cannot be reset, and a child
    started by ``subprocess`` inherits its parent's peak through exec.)"""
    Path("/proc/self/clear_refs").write_text("5")


def run_probe(
    module: str,
    function: str,
    args: list,
    cap_mb: float = RSS_CAP_MB,
    timeout_s: float = TIMEOUT_S,
    path: str | Path | None = SCRIPTS,
) -> dict:
    """``module.function(*args)`` in a fresh interpreter, its JSON result read back.

    The child is stopped when its RSS passes ``cap_mb`` or it runs longer than
    ``timeout_s``; the result is then ``{"capped": why, "seconds": ...}``.

    Args:
        module, function: what to call (an importable module).
        args: JSON-serialisable positional arguments.
        cap_mb: the RSS above which the child is stopped.
        timeout_s: the wall time after which the child is stopped.
        path: a folder put first on the child's ``sys.path`` (by default ``scripts/``, so
            that ``bench.*`` modules import).

    Raises:
        RuntimeError: the child failed (its stderr's tail in the message).
    """
    code = (
        "import sys, json, importlib; "
        + (f"sys.path.insert(0, {str(path)!r}); " if path is not None else "")
        + f"f = getattr(importlib.import_module({module!r}), {function!r}); "
        + f"print(json.dumps(f(*json.loads({json.dumps(json.dumps(args))}))))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    start, peak = time.perf_counter(), 0.0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = max(peak, int(status.split("VmRSS:")[1].split()[0]) / 1024)
        except (FileNotFoundError, IndexError):
            pass
        too_long = time.perf_counter() - start > timeout_s
        if peak > cap_mb or too_long:
            proc.kill()
            proc.communicate()
            why = f"RSS above {cap_mb:.0f} MB" if not too_long else "time limit"
            return {"capped": why, "seconds": time.perf_counter() - start}
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise RuntimeError(
            f"probe {module}.{function}{tuple(args)} failed:\n{stderr.decode()[-2000:]}"
        )
    return json.loads(stdout.decode().strip().splitlines()[-1])
