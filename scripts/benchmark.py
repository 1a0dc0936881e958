"""Benchmarks of tpulearn, written to ``benchmarks/results.md`` and ``results.json``.

    python scripts/benchmark.py                    # every benchmark
    python scripts/benchmark.py --only scoring     # one group
    python scripts/benchmark.py --quick            # fewer repeats, smaller sizes: a smoke run
    python scripts/benchmark.py --out /tmp/bench   # write the results elsewhere

Groups: ``metrics``, ``scoring``, ``gst_memory``, ``gst_speed``, ``io`` (npz reading and
validation), ``training`` (full training steps: configs/s and node-states/s) and
``memory`` (peak memory of a training epoch over a synthetic collection, by graph count).
CUDA cases run when a GPU is available.

Each line reports the median of several runs and their spread (min - max), with the device
and the command that reproduces it. Results of different groups are merged into the
existing JSON, so groups can be rerun separately; the markdown table is rewritten from it.

``--quick`` runs one repeat per case (three training steps), skips the naive scoring of the
21,918-node graph, probes ``gst_memory`` at 5,000 nodes only and shrinks the synthetic files.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tpulearn.segments.memory import (
    measure_step_memory,
    paper_layout_model,
    reset_peak_rss,
    rss_mb,
    run_probe,
)

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
    """Scoring every config of a real graph: exact pruning (with distinct states) vs C full
    copies, fp32 and bf16, at two model sizes: SAGE 3x64 and SAGE 2x256 (the size of the
    Kaggle 1st place's model, hidden 256 and 2 SAGE blocks)."""
    from tpulearn.models import SAGE

    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name, data in _scoring_cases():
        num_configs = data.config_runtime.numel()
        big_graph = data.num_nodes > 10_000
        for device, (hidden, layers) in itertools.product(devices, ((64, 3), (256, 2))):
            torch.manual_seed(0)
            model = SAGE("layout", hidden_channels=hidden, num_layers=layers)
            model = model.to(device).eval()
            params = sum(p.numel() for p in model.parameters())
            data_dev = data.to(device)
            reference = None
            for prune in (False, True):
                for precision in ("fp32", "bf16"):
                    if precision == "bf16" and device == "cpu" and not args.bf16_cpu:
                        continue
                    # The naive path on the big graph takes minutes per run on 2 cores.
                    slow = not prune and big_graph and device == "cpu"
                    if slow and (args.quick or hidden > 64):
                        continue
                    model.prune = prune
                    # C full copies hold [chunk, N, H]: keep their chunk small.
                    chunk = args.config_chunk if prune else min(args.config_chunk, 50)

                    def run(model=model, data_dev=data_dev, precision=precision, chunk=chunk):
                        with (
                            torch.inference_mode(),
                            torch.autocast(
                                data_dev.node_feat.device.type,
                                torch.bfloat16,
                                enabled=precision == "bf16",
                            ),
                        ):
                            out = model(data_dev, config_chunk=chunk)
                        if data_dev.node_feat.is_cuda:
                            torch.cuda.synchronize()
                        return out

                    extra = {}
                    if precision == "fp32":
                        scores = run().float()
                        if prune and reference is not None:
                            diff = (scores - reference).abs().max() / reference.abs().max()
                            extra["max_rel_diff_vs_unpruned"] = float(diff)
                        elif not prune:
                            reference = scores
                    warmup = 0 if slow or args.quick or precision == "fp32" else 1
                    times = timed(run, 1 if slow else args.repeats, warmup=warmup)
                    rows.append(
                        result(
                            f"scoring all configs, {name}, SAGE {layers}x{hidden}, "
                            f"pruning {'on' if prune else 'off'}, {precision}",
                            "configs/s",
                            lambda t, c=num_configs: c / t,
                            times,
                            device=device,
                            parameters=params,
                            seconds_median=statistics.median(times),
                            config_chunk=chunk,
                            **extra,
                        )
                    )
                    print(rows[-1], flush=True)
    return rows


# ---------------------------------------------------------------------- gst_memory

GST_SIZES = (5_000, 10_000, 20_000, 40_000)
GST_SIZES_QUICK = (5_000,)
GST_RSS_CAP_MB = 8_000  # a full-graph probe above this is stopped (the machine has 24 GB)
GST_PROBE_TIMEOUT_S = 900


# (label, step_memory mode, halo hops, max_age)
GST_MEMORY_CASES = (
    ("GST, 1000-node segments", "gst", 0, None),
    (
        "GST, 1000-node segments with a 2-hop halo, other segments recomputed each step",
        "gst",
        2,
        0,
    ),
    ("every segment in the gradient, checkpointed, 1000-node segments", "checkpoint", 0, None),
    ("full graph", "full", 0, None),
)


def _run_gst_probe(num_nodes: int, mode: str, halo_hops: int = 0, max_age=None) -> dict:
    """One training step's peak RSS in a fresh interpreter, stopped above the cap."""
    return measure_step_memory(
        num_nodes, mode, GST_RSS_CAP_MB, GST_PROBE_TIMEOUT_S, halo_hops, max_age
    )


def _gst_memory_rows(sizes: tuple[int, ...] = GST_SIZES) -> list[dict]:
    rows = []
    for num_nodes in sizes:
        for label, mode, halo_hops, max_age in GST_MEMORY_CASES:
            probe = _run_gst_probe(num_nodes, mode, halo_hops, max_age)
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
    model = SegmentModel(paper_layout_model(), max_segment_nodes=1000).train()
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
    return _gst_memory_rows(GST_SIZES_QUICK if args.quick else GST_SIZES)


def bench_gst_speed(args) -> list[dict]:
    """Graph segment training on the real sample: step time and scoring time, fp32 / bf16."""
    return _gst_real_rows(args, "fp32") + _gst_real_rows(args, "bf16")


# ---------------------------------------------------------------------- shared helpers


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _npz_mb(path: Path) -> float:
    """Decompressed size of an npz file: its .npy members (headers included), in MB."""
    with zipfile.ZipFile(path) as zf:
        return sum(info.file_size for info in zf.infolist()) / 1e6


# ---------------------------------------------------------------------- io

IO_CONFIGS = 2_000  # configs of the synthetic nlp-scale file (20k nodes, 1k configurable)
IO_CONFIGS_QUICK = 500
IO_TILE_PASSES = 200  # bundled tile files are a few KB: read them this many times per run


def _np_load_all(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def bench_io(args) -> list[dict]:
    """npz reading and validation (MB/s of decompressed arrays) against a bare ``np.load``
    of every member, and ``read_layout`` through the memory-mapped config cache."""
    from tpulearn.data import LayoutDataset, UniformSampler, read_layout, read_tile, sample_root
    from tpulearn.data.synthetic import BENCHMARK_LAYOUT, benchmark_layout_graph

    rows = []

    def add(what, unit, value_of, times, **extra) -> None:
        rows.append(result(what, unit, value_of, times, device="cpu", **extra))
        print(rows[-1], flush=True)

    def throughput(what: str, files: list[Path], read, passes: int = 1) -> None:
        mb = sum(_npz_mb(p) for p in files)

        def run() -> None:
            for _ in range(passes):
                for path in files:
                    read(path)

        times = timed(run, args.repeats)
        add(
            what,
            "MB/s",
            lambda t: mb * passes / t,
            times,
            decompressed_mb=mb,
            files=len(files),
            ms_per_pass=statistics.median(times) / passes * 1e3,
        )

    root = sample_root()
    layout_files = sorted(root.glob("npz/layout/*/*/*/*.npz"))
    tile_files = sorted(root.glob("npz/tile/xla/*/*.npz"))
    for files, reader, kind, passes in (
        (layout_files, read_layout, "layout", 1),
        (tile_files, read_tile, "tile", IO_TILE_PASSES),
    ):
        mb = sum(_npz_mb(p) for p in files)
        where = f"the {len(files)} bundled {kind} files ({mb:.3g} MB decompressed)"
        if passes > 1:
            where += f", read {passes} times per run"
        throughput(f"{reader.__name__} (read + validate), {where}", files, reader, passes)
        throughput(f"np.load, every member decompressed, {where}", files, _np_load_all, passes)

    configs = args.io_configs
    with tempfile.TemporaryDirectory(prefix="tpulearn-bench-io-") as tmp:
        tmp = Path(tmp)
        path = tmp / "synthetic_nlp.npz"
        graph = benchmark_layout_graph(num_configs=configs, source="nlp")
        np.savez_compressed(path, **graph)
        del graph
        mb = _npz_mb(path)
        sizes = {**BENCHMARK_LAYOUT, "num_configs": configs}
        where = (
            f"synthetic layout:nlp file ({sizes['num_nodes']:,} nodes, "
            f"{sizes['num_configurable']:,} configurable, {configs:,} configs; "
            f"{mb:.0f} MB decompressed, {path.stat().st_size / 1e6:.0f} MB on disk)"
        )
        throughput(f"read_layout (read + validate), {where}", [path], read_layout)
        throughput(f"np.load, every member decompressed, {where}", [path], _np_load_all)

        fills = itertools.count()
        throughput(
            f"read_layout with cache_dir, first read (node_config_feat streamed into the "
            f"uncompressed cache file), {where}",
            [path],
            lambda p: read_layout(p, cache_dir=tmp / f"fill{next(fills)}"),
        )
        cache = tmp / "cache"
        read_layout(path, cache_dir=cache)
        times = timed(lambda: read_layout(path, cache_dir=cache), max(3, args.repeats))
        add(
            f"read_layout with cache_dir, cache hit (node_config_feat memory-mapped, nothing "
            f"decompressed; files in the page cache), {where}",
            "ms",
            lambda t: t * 1e3,
            times,
            decompressed_mb=mb,
        )
        for cache_dir, label in ((None, "no cache"), (tmp / "dataset-cache", "cache hit")):
            ds = LayoutDataset(
                tmp, "nlp", "random", "train", sampler=UniformSampler(32), files=[path]
            )
            ds.cache_dir = cache_dir
            ds[0]  # fills the cache
            epochs = itertools.count(1)

            def item(ds=ds, epochs=epochs):
                ds.set_epoch(next(epochs))
                return ds[0]

            times = timed(item, max(3, args.repeats), warmup=0)
            add(
                f"LayoutDataset item, 32 random configs, {label}, {where}",
                "ms",
                lambda t: t * 1e3,
                times,
                decompressed_mb=mb,
            )
    return rows


# ---------------------------------------------------------------------- training

TRAIN_STEPS, TRAIN_STEPS_QUICK = 10, 3
TRAIN_POOL = 4  # distinct config samples cycled through (loaded before timing)
NODE_STATES = "node-states = graph nodes x configs per step"


def _tile_batches(ds, graphs: int, pool: int) -> list:
    """``pool`` batches of ``graphs`` items (graph ``g`` of the batch is file ``g % len``)."""
    from torch_geometric.data import Batch

    ds.normalizer = ds.fit_normalizer(mode="minmax", log=False)
    ds.config_normalizer = ds.fit_config_normalizer("minmax", log=False)
    batches = []
    for b in range(pool):
        ds.set_epoch(b)
        batches.append(Batch.from_data_list([ds[g % len(ds)] for g in range(graphs)]))
    return batches


@dataclass
class _TrainingCase:
    """One training benchmark: ``forward_for(model)`` gives ``forward(batch) -> (scores
    [B, C], runtime [B, C], normalizer or None)``; ``batches`` stay on the CPU."""

    label: str
    build: Callable[[], torch.nn.Module]
    forward_for: Callable
    batches: list
    loss: torch.nn.Module
    warmup: int = 2


def _training_cases(tmp: Path):
    from tpulearn.data import LayoutDataset, TileDataset, UniformSampler, sample_root
    from tpulearn.data.synthetic import write_tile_collection
    from tpulearn.losses import ListMLELoss, PairwiseHingeLoss
    from tpulearn.models import SAGE
    from tpulearn.segments import GSTTrainer, SegmentModel

    root = sample_root()

    def tile_model():
        torch.manual_seed(0)
        return SAGE("tile", hidden_channels=64, num_layers=3, l2_normalize=True, readout="sum")

    def tile_forward(model):
        def forward(batch):
            b = batch.num_graphs
            runtime = batch.config_runtime.view(b, -1)
            return model(batch), runtime, batch.config_runtime_normalizers.view(b, -1)

        return forward

    bundled = TileDataset(root, "train", sampler=UniformSampler(10))
    batches = _tile_batches(bundled, 10, TRAIN_POOL)
    record = bundled.read(0)
    listmle = ListMLELoss(temperature=10.0)
    yield _TrainingCase(
        f"tile SAGE 3x64, bundled tile:xla train ({len(bundled)} kernel: {record.num_nodes} "
        f"nodes, {record.num_configs} configs, so 10 copies x {record.num_configs} configs "
        "per step), ListMLE (temperature 10)",
        tile_model,
        tile_forward,
        batches,
        listmle,
    )
    write_tile_collection(
        tmp, num_graphs={"train": 10, "valid": 0, "test": 0}, nodes=(10, 100), configs=(50, 100)
    )
    synthetic = TileDataset(tmp, "train", sampler=UniformSampler(10))
    batches = _tile_batches(synthetic, 10, TRAIN_POOL)
    yield _TrainingCase(
        f"tile SAGE 3x64, synthetic tile:xla (10 kernels of 10-100 nodes, "
        f"{batches[0].num_nodes:,} nodes in all; 10 graphs x 10 configs per step), "
        "ListMLE (temperature 10)",
        tile_model,
        tile_forward,
        batches,
        listmle,
    )

    layout = LayoutDataset(root, "xla", "default", "train", sampler=UniformSampler(32))
    layout.normalizer = layout.fit_normalizer(log=True)
    samples = []
    for epoch in range(TRAIN_POOL):
        layout.set_epoch(epoch)
        samples.append(layout[0])
    nodes = samples[0].num_nodes

    def layout_model():
        torch.manual_seed(0)
        return SAGE("layout", hidden_channels=256, num_layers=2)

    def layout_forward(model):
        return lambda data: (model(data)[None], data.config_runtime[None], None)

    hinge = PairwiseHingeLoss(margin=0.1)
    yield _TrainingCase(
        f"layout SAGE 2x256 on the whole graph, bundled layout:xla:default train unet3d "
        f"({nodes:,} nodes), 32 configs per step, pairwise hinge",
        layout_model,
        layout_forward,
        samples,
        hinge,
    )

    # The Kaggle 1st place's graph: configurable nodes and their direct neighbours only
    # (what `context_hops=1` does inside the model; done once here so node-states count
    # the nodes actually processed).
    from tpulearn.graph import config_context

    pruned = [config_context(d, 1) for d in samples]
    yield _TrainingCase(
        f"layout SAGE 2x256, context_hops=1 (configurable nodes and their direct neighbours: "
        f"{pruned[0].num_nodes:,} of {nodes:,} nodes of unet3d, the Kaggle 1st place's "
        "pruning), 32 configs per step, pairwise hinge",
        layout_model,
        layout_forward,
        pruned,
        hinge,
    )

    def gst_model():
        return SegmentModel(paper_layout_model(), max_segment_nodes=1000)

    def gst_forward(model):
        trainer = GSTTrainer(model)
        num_configs = [layout.num_configs[0]]
        return lambda data: (
            trainer.step([data], num_configs),
            data.config_runtime[None],
            None,
        )

    # Warm-up visits every sample once, so the history table holds all their configs.
    yield _TrainingCase(
        f"layout GST, SAGE 3x256 in 1000-node segments, unet3d ({nodes:,} nodes), 32 configs "
        "per step, history filled (steady state; the gradient runs through one segment), "
        "pairwise hinge",
        gst_model,
        gst_forward,
        samples,
        hinge,
        warmup=TRAIN_POOL,
    )


def bench_training(args) -> list[dict]:
    """Full training steps (forward, loss, backward, gradient clipping, Adam) on prepared
    batches: configs/s and node-states/s, fp32 and bf16 autocast, on every device."""
    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tpulearn-bench-train-") as tmp:
        for case in _training_cases(Path(tmp)):
            batches = case.batches
            configs = int(batches[0].config_runtime.numel())
            graphs = getattr(batches[0], "num_graphs", 1)
            node_states = int(batches[0].num_nodes) * configs // graphs
            for device in _devices():
                on_device = [b.to(device) for b in batches]
                for precision in ("fp32", "bf16"):
                    model = case.build().to(device).train()
                    forward = case.forward_for(model)
                    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
                    cycle = itertools.cycle(on_device)

                    def step(
                        model=model,
                        forward=forward,
                        optimizer=optimizer,
                        cycle=cycle,
                        device=device,
                        bf16=precision == "bf16",
                        loss_fn=case.loss,
                    ):
                        batch = next(cycle)
                        optimizer.zero_grad(set_to_none=True)
                        with torch.autocast(device, torch.bfloat16, enabled=bf16):
                            scores, runtime, normalizer = forward(batch)
                        loss_fn(scores.float(), runtime, normalizer=normalizer).backward()
                        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                        optimizer.step()
                        _sync(device)

                    if device == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    times = timed(step, args.train_steps, warmup=case.warmup)
                    extra = {}
                    if device == "cuda":
                        extra["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
                    params = _parameters(model)
                    rows.append(
                        result(
                            f"training step, {case.label}, {params:,} parameters, {precision}; "
                            f"{configs} configs and {node_states:,} node-states per step "
                            f"({NODE_STATES})",
                            "configs/s",
                            lambda t, c=configs: c / t,
                            times,
                            device=device,
                            precision=precision,
                            parameters=params,
                            configs_per_step=configs,
                            node_states_per_step=node_states,
                            node_states_per_s=statistics.median(node_states / t for t in times),
                            node_states_per_s_min=node_states / max(times),
                            node_states_per_s_max=node_states / min(times),
                            step_seconds_median=statistics.median(times),
                            warmup_steps=case.warmup,
                            load_average=load,
                            **extra,
                        )
                    )
                    print(rows[-1], flush=True)
    return rows


# ---------------------------------------------------------------------- memory

MEMORY_SIZES = (20, 20_000, 5_000)  # graphs, nodes per graph, configs per graph
MEMORY_SIZES_QUICK = (8, 5_000, 500)
MEMORY_CONFIGURABLE = 0.04  # share of configurable nodes (800 of 20k)
MEMORY_RSS_CAP_MB = 16_000
MEMORY_TIMEOUT_S = 3_600
MEMORY_COLLECTION = "layout:nlp:random"


def _epoch_memory_probe(root: str, num_graphs: int, device: str, cache: bool, epochs: int):
    """Run in a fresh interpreter: GST training epochs over the first ``num_graphs`` train
    graphs under ``root``, one graph per step with 32 uniformly sampled configs.

    Returns per epoch the process's peak RSS (VmHWM, reset between epochs; ``ru_maxrss``
    would not do: a child started by ``subprocess`` inherits its parent's peak through
    exec), the RSS before the epoch, its duration and, on CUDA,
    ``torch.cuda.max_memory_allocated``.
    """
    import shutil

    from tpulearn.data import LayoutDataset, UniformSampler, collection_dir
    from tpulearn.losses import pairwise_hinge_loss
    from tpulearn.segments import GSTTrainer, SegmentModel

    files = sorted(collection_dir(root, MEMORY_COLLECTION, "train").glob("*.npz"))[:num_graphs]
    cache_dir = Path(tempfile.mkdtemp(prefix="cache-", dir=root)) if cache else None
    _, source, search = MEMORY_COLLECTION.split(":")
    ds = LayoutDataset(
        root, source, search, "train", sampler=UniformSampler(32), cache_dir=cache_dir, files=files
    )
    ds.normalizer = ds.fit_normalizer(log=True)
    model = SegmentModel(paper_layout_model(), max_segment_nodes=1000).to(device).train()
    trainer = GSTTrainer(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    out = []
    try:
        for epoch in range(epochs):
            if epoch:
                reset_peak_rss()
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            base, start = rss_mb("VmRSS"), time.perf_counter()
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                data = ds[i].to(device)
                optimizer.zero_grad(set_to_none=True)
                scores = trainer.step([data], [ds.num_configs[i]])
                pairwise_hinge_loss(scores, data.config_runtime.unsqueeze(0)).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                del data, scores
            _sync(device)
            out.append(
                {
                    "peak_mb": rss_mb("VmHWM"),
                    "rss_before_mb": base,
                    "seconds": time.perf_counter() - start,
                    "cuda_peak_mb": (
                        torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
                    ),
                }
            )
    finally:
        if cache_dir is not None:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return out


def bench_memory(args) -> list[dict]:
    """Peak memory of GST training epochs over a synthetic collection, by graph count."""
    from tpulearn.data.synthetic import write_layout_collection

    graphs, nodes, configs = args.memory_graphs, args.memory_nodes, args.memory_configs
    counts = sorted({max(1, graphs // 4), graphs})
    rows = []
    with tempfile.TemporaryDirectory(prefix="tpulearn-bench-memory-") as root:
        start = time.perf_counter()
        _, source, search = MEMORY_COLLECTION.split(":")
        files = write_layout_collection(
            root,
            source,
            search,
            num_graphs={"train": graphs, "valid": 0, "test": 0},
            nodes=(nodes, nodes),
            configurable_fraction=MEMORY_CONFIGURABLE,
            configs=(configs, configs),
        )
        print(f"wrote {len(files)} graphs in {time.perf_counter() - start:.1f} s", flush=True)
        with np.load(files[0]) as npz:
            configurable = int(npz["node_config_ids"].shape[0])
        sizes = [_npz_mb(p) for p in files]
        collection = (
            f"the graphs of synthetic {MEMORY_COLLECTION} ({nodes:,} nodes, "
            f"{configurable:,} configurable, {configs:,} configs each)"
        )
        for device in _devices():
            probes = [(count, True, 2) for count in counts] + [(graphs, False, 1)]
            for count, cache, epochs in probes:
                probe = run_probe(
                    "benchmark",
                    "_epoch_memory_probe",
                    [str(root), count, device, cache, epochs],
                    MEMORY_RSS_CAP_MB,
                    MEMORY_TIMEOUT_S,
                    Path(__file__).parent,
                )
                what = (
                    "peak RSS of a GST training epoch (one graph per step, 32 configs sampled "
                    f"uniformly; SAGE 3x256 in 1000-node segments), {count} of {collection}, "
                    + (
                        "memory-mapped config cache"
                        if cache
                        else "no cache (node_config_feat decompressed per item)"
                    )
                )
                extra = dict(
                    device=device,
                    graphs=count,
                    nodes_per_graph=nodes,
                    configurable_per_graph=configurable,
                    configs_per_graph=configs,
                    largest_graph_mb=max(sizes[:count]),
                    collection_mb=sum(sizes[:count]),
                )
                if isinstance(probe, dict) and "capped" in probe:
                    rows.append(
                        result(
                            f"{what}: stopped ({probe['capped']})",
                            "MB",
                            lambda v: v,
                            [MEMORY_RSS_CAP_MB],
                            capped=probe["capped"],
                            **extra,
                        )
                    )
                    print(rows[-1], flush=True)
                    continue
                for epoch, stats in enumerate(probe):
                    if not cache:
                        label = ", one epoch"
                    elif epoch == 0:
                        label = ", first epoch (fills the cache)"
                    else:
                        label = ", second epoch (cache hits)"
                    common = dict(
                        rss_before_epoch_mb=stats["rss_before_mb"],
                        epoch_seconds=stats["seconds"],
                        **extra,
                    )
                    rows.append(
                        result(what + label, "MB", lambda v: v, [stats["peak_mb"]], **common)
                    )
                    print(rows[-1], flush=True)
                    if stats["cuda_peak_mb"] is not None:
                        rows.append(
                            result(
                                what.replace("peak RSS", "peak CUDA memory allocated") + label,
                                "MB",
                                lambda v: v,
                                [stats["cuda_peak_mb"]],
                                **common,
                            )
                        )
                        print(rows[-1], flush=True)
    return rows


GROUPS = {
    "metrics": bench_metrics,
    "scoring": bench_scoring,
    "gst_memory": bench_gst_memory,
    "gst_speed": bench_gst_speed,
    "io": bench_io,
    "training": bench_training,
    "memory": bench_memory,
}


# ---------------------------------------------------------------------- output


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    text = f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, "
    text += f"{torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


# Markdown columns after the standard ones, per group: (header, row key, format).
COLUMNS = {
    "scoring": [
        ("parameters", "parameters", "{:,}"),
        ("seconds", "seconds_median", "{:.3g}"),
        ("max rel. diff vs unpruned", "max_rel_diff_vs_unpruned", "{:.1e}"),
    ],
    "io": [("decompressed MB", "decompressed_mb", "{:.3g}")],
    "training": [
        ("node-states/s", "node_states_per_s", "{:.4g}"),
        ("parameters", "parameters", "{:,}"),
    ],
    "memory": [
        ("graphs", "graphs", "{}"),
        ("nodes/graph", "nodes_per_graph", "{:,}"),
        ("configs/graph", "configs_per_graph", "{:,}"),
        ("largest graph MB", "largest_graph_mb", "{:,.0f}"),
        ("collection MB", "collection_mb", "{:,.0f}"),
        ("RSS before epoch MB", "rss_before_epoch_mb", "{:,.0f}"),
    ],
}


def write(results: dict, out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# tpulearn benchmarks",
        "",
        "Written by `scripts/benchmark.py`; median of `runs` runs, spread = min - max.",
        "",
    ]
    for group, entry in results.items():
        columns = COLUMNS.get(group, [])
        lines += [
            f"## {group}",
            "",
            f"Measured {entry['date']} on {entry['machine']}.",
            f"Command: `{entry['command']}`",
            "",
            "| what | device | median | spread | runs |" + "".join(f" {c[0]} |" for c in columns),
            "|---|---|---|---|---|" + "---|" * len(columns),
        ]
        for row in entry["rows"]:
            cells = "".join(
                f" {fmt.format(row[key]) if row.get(key) is not None else ''} |"
                for _, key, fmt in columns
            )
            lines.append(
                f"| {row['what']} | {row['device']} | {row['median']:.4g} {row['unit']} | "
                f"{row['min']:.4g} - {row['max']:.4g} | {row['runs']} |" + cells
            )
        lines.append("")
    (out / "results.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
        "--out", type=Path, default=OUT, help="folder of results.md and results.json"
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        default=None,
        help=f"timed steps per training case (default {TRAIN_STEPS}, --quick {TRAIN_STEPS_QUICK})",
    )
    parser.add_argument(
        "--io-configs",
        type=int,
        default=None,
        help=f"configs of the synthetic io file (default {IO_CONFIGS:,}, --quick "
        f"{IO_CONFIGS_QUICK})",
    )
    for i, (name, what) in enumerate(
        (("graphs", "graphs"), ("nodes", "nodes per graph"), ("configs", "configs per graph"))
    ):
        parser.add_argument(
            f"--memory-{name}",
            type=int,
            default=None,
            help=f"memory group: {what} of the synthetic collection (default "
            f"{MEMORY_SIZES[i]:,}, --quick {MEMORY_SIZES_QUICK[i]:,})",
        )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    defaults = {
        "train_steps": TRAIN_STEPS_QUICK if args.quick else TRAIN_STEPS,
        "io_configs": IO_CONFIGS_QUICK if args.quick else IO_CONFIGS,
        **dict(
            zip(
                ("memory_graphs", "memory_nodes", "memory_configs"),
                MEMORY_SIZES_QUICK if args.quick else MEMORY_SIZES,
                strict=True,
            )
        ),
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
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


if __name__ == "__main__":
    raise SystemExit(main())
