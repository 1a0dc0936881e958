"""Repeated timing and the row every benchmark reports, plus small shared helpers."""

from __future__ import annotations

import statistics
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def result(what: str, unit: str, value_of: Callable[[float], float], times, **extra) -> dict:
    """One result row: the median of ``value_of(t)`` over ``times`` and its spread.

    Args:
        what: the row's label in ``results.md``.
        unit: the unit of ``value_of``'s values.
        value_of: turns one measurement (seconds, or MB for memory rows) into the value.
        times: the measurements.
        **extra: further keys of the row (``device`` at least).
    """
    values = [value_of(t) for t in times]
    return {
        "what": what,
        "unit": unit,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
        **extra,
    }


def devices() -> list[str]:
    """The CPU, and CUDA when a GPU is available."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def sync(device: str) -> None:
    """Wait for queued CUDA work, so that a timer stops after it."""
    if device == "cuda":
        torch.cuda.synchronize()


def parameters(model: torch.nn.Module) -> int:
    """The model's parameter count."""
    return sum(p.numel() for p in model.parameters())


def npz_mb(path: Path) -> float:
    """Decompressed size of an npz file: its .npy members (headers included), in MB."""
    with zipfile.ZipFile(path) as zf:
        return sum(info.file_size for info in zf.infolist()) / 1e6
