"""The command line of ``scripts/benchmark.py``: which groups run, with which sizes, and
where their results are merged.

Results of different groups are merged into the existing ``results.json``, so groups can be
rerun separately; ``results.md`` is rewritten from it (:mod:`.report`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from . import (
    gst_memory,
    gst_speed,
    memory,
    metrics,
    npz_io,
    recipe,
    score_items,
    scoring,
    training,
)
from .report import machine
from .report import write as write_files

OUT = Path(__file__).resolve().parents[2] / "benchmarks"
# --quick without --out: a smoke run's numbers stay out of the committed results.
QUICK_OUT = Path(tempfile.gettempdir()) / "tpulearn-benchmark-quick"
DESCRIPTION = "Benchmarks of tpulearn, written to benchmarks/results.md and results.json."

MODULES = (
    metrics,
    scoring,
    score_items,
    gst_memory,
    gst_speed,
    npz_io,
    training,
    recipe,
    memory,
)
GROUPS = {module.NAME: module.run for module in MODULES}
COLUMNS = {module.NAME: module.COLUMNS for module in MODULES if module.COLUMNS}


def write(results: dict, out: Path = OUT) -> None:
    """Write ``results.json`` and ``results.md`` under ``out`` (see :func:`.report.write`)."""
    write_files(results, out, COLUMNS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with size defaults filled in (smaller ones under ``--quick``)."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--only", nargs="+", choices=sorted(GROUPS), default=sorted(GROUPS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="one run per case, smaller sizes (a smoke run)"
    )
    parser.add_argument(
        "--config-chunk",
        type=int,
        default=256,
        help="configs per forward pass when scoring (C-full-copy runs use at most 50)",
    )
    parser.add_argument(
        "--bf16-cpu", action="store_true", help="also time bf16 autocast on the CPU (scoring)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"folder of results.md and results.json (default: {OUT.name}/, the committed "
        f"results; with --quick, {QUICK_OUT})",
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        default=None,
        help=f"timed steps per training case (default {training.STEPS}, --quick "
        f"{training.STEPS_QUICK})",
    )
    parser.add_argument(
        "--io-configs",
        type=int,
        default=None,
        help=f"configs of the synthetic io file (default {npz_io.CONFIGS:,}, --quick "
        f"{npz_io.CONFIGS_QUICK})",
    )
    for i, (name, what) in enumerate(
        (("graphs", "graphs"), ("nodes", "nodes per graph"), ("configs", "configs per graph"))
    ):
        parser.add_argument(
            f"--memory-{name}",
            type=int,
            default=None,
            help=f"memory group: {what} of the synthetic collection (default "
            f"{memory.SIZES[i]:,}, --quick {memory.SIZES_QUICK[i]:,})",
        )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = QUICK_OUT if args.quick else OUT
    if args.quick:
        args.repeats = 1
    defaults = {
        "train_steps": training.STEPS_QUICK if args.quick else training.STEPS,
        "io_configs": npz_io.CONFIGS_QUICK if args.quick else npz_io.CONFIGS,
        **dict(
            zip(
                ("memory_graphs", "memory_nodes", "memory_configs"),
                memory.SIZES_QUICK if args.quick else memory.SIZES,
                strict=True,
            )
        ),
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen groups, merging each one's rows into the result files as it ends."""
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for group in args.only:
        rows = GROUPS[group](args)
        results[group] = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": machine(),
            "command": "python scripts/benchmark.py " + " ".join(argv),
            "rows": rows,
        }
        write(results, args.out)
    print(f"wrote {args.out / 'results.md'}")
    return 0
