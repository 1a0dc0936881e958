"""Benchmarks of tpulearn, written to ``benchmarks/results.md`` and ``results.json``.

    python scripts/benchmark.py                    # every benchmark
    python scripts/benchmark.py --only scoring     # one group
    python scripts/benchmark.py --quick            # fewer repeats, for a smoke run

Each line reports the median of several runs and their spread (min - max), with the device
and the command that reproduces it. Results of different groups are merged into the
existing JSON, so groups can be rerun separately; the markdown table is rewritten from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks"


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def result(what: str, unit: str, value_of: Callable[[float], float], times, **extra) -> dict:
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


# ---------------------------------------------------------------------- groups


def bench_metrics(args) -> list[dict]:
    from tpulearn.evaluate import kendall_tau

    rng = np.random.default_rng(0)
    runtime = rng.integers(1, 10**9, 100_000)
    pred = runtime + rng.normal(0, 1e8, runtime.shape[0])
    times = timed(lambda: kendall_tau(pred, runtime), args.repeats)
    return [
        result("kendall_tau, 100k configs", "ms", lambda t: t * 1e3, times, device="cpu"),
    ]


def _scoring_cases():
    from tpulearn.data import AllConfigsSampler, LayoutDataset, sample_root

    root = sample_root()
    for source, search, split, name in (
        ("xla", "default", "valid", "xla valid unet_3d.4x4.bf16 (3,163 nodes, 1,965 configs)"),
        ("nlp", "default", "test", "nlp default test graph (21,918 nodes, 1,001 configs)"),
    ):
        ds = LayoutDataset(root, source, search, split, sampler=AllConfigsSampler())
        ds.normalizer = ds.fit_normalizer()
        yield name, ds[0]


def bench_scoring(args) -> list[dict]:
    from tpulearn.models import SAGE

    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name, data in _scoring_cases():
        num_configs = data.config_runtime.numel()
        for device in devices:
            torch.manual_seed(0)
            model = SAGE("layout", hidden_channels=64, num_layers=3).to(device).eval()
            data_dev = data.to(device)
            for prune in (True, False):
                for precision in ("fp32", "bf16"):
                    if precision == "bf16" and device == "cpu" and not args.bf16_cpu:
                        continue
                    model.prune = prune

                    def run(model=model, data_dev=data_dev, precision=precision, device=device):
                        with (
                            torch.inference_mode(),
                            torch.autocast(device, torch.bfloat16, enabled=precision == "bf16"),
                        ):
                            model(data_dev, config_chunk=args.config_chunk)
                        if device == "cuda":
                            torch.cuda.synchronize()

                    # The naive path on the big graph takes minutes per run on 2 cores.
                    slow = not prune and data.num_nodes > 10_000 and device == "cpu"
                    times = timed(run, 1 if slow else args.repeats, warmup=0 if slow else 1)
                    rows.append(
                        result(
                            f"scoring all configs, {name}, SAGE 3x64, "
                            f"pruning {'on' if prune else 'off'}, {precision}",
                            "configs/s",
                            lambda t, c=num_configs: c / t,
                            times,
                            device=device,
                            seconds_median=statistics.median(times),
                            config_chunk=args.config_chunk,
                        )
                    )
                    print(rows[-1], flush=True)
    return rows


GROUPS = {"metrics": bench_metrics, "scoring": bench_scoring}


# ---------------------------------------------------------------------- output


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    text = f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, "
    text += f"{torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def write(results: dict) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# tpulearn benchmarks",
        "",
        "Written by `scripts/benchmark.py`; median of `runs` runs, spread = min - max.",
        "",
    ]
    for group, entry in results.items():
        lines += [
            f"## {group}",
            "",
            f"Measured {entry['date']} on {entry['machine']}.",
            f"Command: `{entry['command']}`",
            "",
            "| what | device | median | spread | runs |",
            "|---|---|---|---|---|",
        ]
        for row in entry["rows"]:
            lines.append(
                f"| {row['what']} | {row['device']} | {row['median']:.4g} {row['unit']} | "
                f"{row['min']:.4g} - {row['max']:.4g} | {row['runs']} |"
            )
        lines.append("")
    (OUT / "results.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(GROUPS), default=sorted(GROUPS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run per case")
    parser.add_argument("--config-chunk", type=int, default=50)
    parser.add_argument(
        "--bf16-cpu", action="store_true", help="also time bf16 autocast on the CPU"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    path = OUT / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for group in args.only:
        rows = GROUPS[group](args)
        results[group] = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": machine(),
            "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:]),
            "rows": rows,
        }
        write(results)
    print(f"wrote {OUT / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
