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


# ---------------------------------------------------------------------- gst_memory

GST_SIZES = (5_000, 10_000, 20_000, 40_000)
GST_RSS_CAP_MB = 8_000  # a full-graph probe above this is stopped (the machine has 24 GB)
GST_PROBE_TIMEOUT_S = 900


def _gst_sage():
    """The paper's layout model at its size: SAGE 3 x 256, PReLU, residual, dropout 0.1,
    opcode embedding 128, mean + max readout."""
    from tpulearn.models import SAGE

    torch.manual_seed(0)
    return SAGE(
        "layout",
        hidden_channels=256,
        num_layers=3,
        dropout=0.1,
        residual=True,
        act="prelu",
        readout="mean+max",
        opcode_dim=128,
    )


def _synthetic_layout_data(num_nodes: int, num_configs: int = 32, seed: int = 0):
    """A synthetic layout graph with real shape statistics (4% configurable nodes)."""
    from tpulearn.data import FeatureNormalizer, TpuGraphData, reencode_minor_to_major
    from tpulearn.data.synthetic import make_layout_graph

    g = make_layout_graph(
        np.random.default_rng(seed), num_nodes, num_nodes // 25, num_configs, search="random"
    )
    feat = reencode_minor_to_major(g["node_feat"])
    feat = FeatureNormalizer(log=True).partial_fit(feat).transform(feat)
    return TpuGraphData(
        node_feat=torch.from_numpy(feat),
        node_opcode=torch.from_numpy(g["node_opcode"].astype(np.int64)),
        edge_index=torch.from_numpy(np.ascontiguousarray(g["edge_index"].T)),
        node_config_ids=torch.from_numpy(g["node_config_ids"]),
        node_config_feat=torch.from_numpy(g["node_config_feat"]),
        config_runtime=torch.from_numpy(g["config_runtime"]),
        node_splits=torch.from_numpy(g["node_splits"].reshape(-1)),
        config_index=torch.arange(num_configs),
        num_nodes=num_nodes,
        stem=f"synthetic{num_nodes}",
    )


def _rss_mb(field: str) -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets the peak RSS (VmHWM, ru_maxrss) to the current RSS.
    Path("/proc/self/clear_refs").write_text("5")


def _gst_memory_probe(num_nodes: int, mode: str) -> dict:
    """Run in a fresh interpreter: peak RSS of training steps on one synthetic graph.

    ``mode`` ``"gst"``: a first step (its no-grad fill pass included), then three
    steady-state steps (the largest peak is kept); ``"full"``: one whole-graph step.
    Each step is forward + pairwise hinge loss + backward + Adam.
    """
    from tpulearn.losses import pairwise_hinge_loss
    from tpulearn.segments import GSTTrainer, SegmentModel

    data = _synthetic_layout_data(num_nodes)
    model = SegmentModel(_gst_sage(), max_segment_nodes=1000, enabled=mode == "gst").train()
    trainer = GSTTrainer(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    out = {"num_segments": model.partition(data).num_segments}

    def step(name: str) -> None:
        _reset_peak_rss()
        base = _rss_mb("VmRSS")
        start = time.perf_counter()
        scores = trainer.step([data])
        pairwise_hinge_loss(scores, data.config_runtime.unsqueeze(0)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out[name] = {
            "peak_mb": _rss_mb("VmHWM"),
            "base_mb": base,
            "seconds": time.perf_counter() - start,
        }

    if mode == "gst":
        step("first")
        # Steady state: the trained segment is drawn at random; report the largest of 3.
        for i in range(3):
            step(f"step{i}")
        out["step"] = max((out.pop(f"step{i}") for i in range(3)), key=lambda s: s["peak_mb"])
    else:
        step("step")
    return out


def _run_gst_probe(num_nodes: int, mode: str) -> dict:
    """The probe in a subprocess, stopped when its RSS passes the cap or it runs too long."""
    import subprocess

    code = (
        f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import benchmark; print(json.dumps(benchmark._gst_memory_probe({num_nodes}, "
        f"{mode!r})))"
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
        too_long = time.perf_counter() - start > GST_PROBE_TIMEOUT_S
        if peak > GST_RSS_CAP_MB or too_long:
            proc.kill()
            proc.wait()
            why = f"RSS above {GST_RSS_CAP_MB} MB" if not too_long else "time limit"
            return {"capped": why, "seconds": time.perf_counter() - start}
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"gst memory probe failed:\n{stderr.decode()[-2000:]}")
    return json.loads(stdout.decode().strip().splitlines()[-1])


def _gst_memory_rows() -> list[dict]:
    rows = []
    for num_nodes in GST_SIZES:
        for mode in ("gst", "full"):
            probe = _run_gst_probe(num_nodes, mode)
            label = "GST, 1000-node segments" if mode == "gst" else "full graph"
            what = (
                f"peak RSS of one training step, synthetic {num_nodes:,} nodes (4% configurable),"
                f" 32 configs, SAGE 3x256, {label}"
            )
            if "capped" in probe:
                rows.append(
                    result(
                        f"{what}: stopped ({probe['capped']}), peak above the cap",
                        "MB",
                        lambda v: v,
                        [GST_RSS_CAP_MB],
                        device="cpu",
                        capped=probe["capped"],
                    )
                )
                print(rows[-1], flush=True)
                continue
            for name in ("first", "step"):
                if name not in probe:
                    continue
                stats = probe[name]
                suffix = ", first step (with the no-grad fill pass)" if name == "first" else ""
                rows.append(
                    result(
                        what + suffix,
                        "MB",
                        lambda v: v,
                        [stats["peak_mb"]],
                        device="cpu",
                        rss_before_step_mb=stats["base_mb"],
                        step_increase_mb=stats["peak_mb"] - stats["base_mb"],
                        step_seconds=stats["seconds"],
                        num_segments=probe["num_segments"],
                    )
                )
                print(rows[-1], flush=True)
    return rows


def _gst_real_rows(args, precision: str = "fp32") -> list[dict]:
    """GST step time on unet3d and segment scoring of unet_3d.4x4.bf16 (real files)."""
    from tpulearn.data import AllConfigsSampler, LayoutDataset, UniformSampler, sample_root
    from tpulearn.losses import pairwise_hinge_loss
    from tpulearn.segments import GSTTrainer, SegmentModel

    root = sample_root()
    train = LayoutDataset(root, "xla", "default", "train", sampler=UniformSampler(32))
    train.normalizer = train.fit_normalizer(log=True)
    model = SegmentModel(_gst_sage(), max_segment_nodes=1000).train()
    trainer = GSTTrainer(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    load = os.getloadavg()[0]

    bf16 = precision == "bf16"

    def step(data) -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            scores = trainer.step([data], num_configs=[train.num_configs[0]])
        pairwise_hinge_loss(scores.float(), data.config_runtime.unsqueeze(0)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rows = []
    # Steady state: the same 32 configs every step, so their history entries are filled.
    fixed = train[0]
    times = timed(lambda: step(fixed), 5 * args.repeats, warmup=2)
    rows.append(
        result(
            "GST training step, unet3d (2,774 nodes, 3 segments), 32 configs, SAGE 3x256, "
            f"{precision} (reference GST code, fp32: 0.71 s)",
            "s",
            lambda t: t,
            times,
            device="cpu",
            configs_per_s=32 / statistics.median(times),
            parameters=sum(p.numel() for p in model.parameters()),
            load_average=load,
        )
    )
    print(rows[-1], flush=True)
    # Fresh samples each step: never-seen configs first need the no-grad fill pass.
    samples = iter(range(10**6))

    def fresh() -> None:
        train.set_epoch(next(samples) + 1)
        step(train[0])

    times = timed(fresh, 5 * args.repeats, warmup=0)
    rows.append(
        result(
            "GST training step, unet3d, fresh 32-config samples (fill pass for new configs "
            f"included; data loading included), {precision}",
            "s",
            lambda t: t,
            times,
            device="cpu",
            configs_per_s=32 / statistics.median(times),
            load_average=load,
        )
    )
    print(rows[-1], flush=True)

    valid = LayoutDataset(root, "xla", "default", "valid", sampler=AllConfigsSampler())
    valid.normalizer = train.normalizer
    data = valid[0]
    model.eval()

    def score() -> None:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            model(data, config_chunk=args.config_chunk)

    times = timed(score, args.repeats, warmup=0)
    rows.append(
        result(
            f"scoring all {data.config_runtime.numel():,} configs of unet_3d.4x4.bf16 "
            f"({model.partition(data).num_segments} segments, fresh, summed), SAGE 3x256, "
            f"{precision} (reference GST code, fp32: 65 s)",
            "s",
            lambda t: t,
            times,
            device="cpu",
            configs_per_s=data.config_runtime.numel() / statistics.median(times),
            config_chunk=args.config_chunk,
            load_average=load,
        )
    )
    print(rows[-1], flush=True)
    return rows


def bench_gst_memory(args) -> list[dict]:
    """Graph segment training: peak memory of one step vs graph size, GST and full graph."""
    return _gst_memory_rows()


def bench_gst_speed(args) -> list[dict]:
    """Graph segment training on the real sample: step time and scoring time, fp32 / bf16."""
    return _gst_real_rows(args, "fp32") + _gst_real_rows(args, "bf16")


GROUPS = {
    "metrics": bench_metrics,
    "scoring": bench_scoring,
    "gst_memory": bench_gst_memory,
    "gst_speed": bench_gst_speed,
}


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
