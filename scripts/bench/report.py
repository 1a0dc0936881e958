"""The result files: ``results.json`` (every group's rows) and ``results.md`` (its tables)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch


def machine() -> str:
    """The machine a result was measured on: cores, CPU, torch, threads and GPU."""
    cpu = platform.processor() or platform.machine()
    text = f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, "
    text += f"{torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def write(results: dict, out: Path, columns: dict[str, list[tuple[str, str, str]]]) -> None:
    """Write ``results.json`` and rewrite ``results.md`` from it, one table per group.

    Args:
        results: ``{group: {"date", "machine", "command", "rows"}}``.
        out: the folder of both files (created if missing).
        columns: markdown columns after the standard ones, per group:
            ``(header, row key, format)``; a row without the key leaves the cell empty.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# tpulearn benchmarks",
        "",
        "Written by `scripts/benchmark.py`; median of `runs` runs, spread = min - max.",
        "",
    ]
    for group, entry in results.items():
        extra = columns.get(group, [])
        lines += [
            f"## {group}",
            "",
            f"Measured {entry['date']} on {entry['machine']}.",
            f"Command: `{entry['command']}`",
            "",
            "| what | device | median | spread | runs |" + "".join(f" {c[0]} |" for c in extra),
            "|---|---|---|---|---|" + "---|" * len(extra),
        ]
        for row in entry["rows"]:
            cells = "".join(
                f" {fmt.format(row[key]) if row.get(key) is not None else ''} |"
                for _, key, fmt in extra
            )
            lines.append(
                f"| {row['what']} | {row['device']} | {row['median']:.4g} {row['unit']} | "
                f"{row['min']:.4g} - {row['max']:.4g} | {row['runs']} |" + cells
            )
        lines.append("")
    (out / "results.md").write_text("\n".join(lines))
