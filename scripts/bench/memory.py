"""Group ``memory``: peak memory of GST training epochs over a synthetic collection, by
graph count, each run of epochs probed in a fresh interpreter (:mod:`.probe`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .layout import paper_layout_model
from .probe import reset_peak_rss, rss_mb, run_probe
from .timing import devices, npz_mb, result, sync

NAME = "memory"
COLUMNS = [
    ("graphs", "graphs", "{}"),
    ("nodes/graph", "nodes_per_graph", "{:,}"),
    ("configs/graph", "configs_per_graph", "{:,}"),
    ("largest graph MB", "largest_graph_mb", "{:,.0f}"),
    ("collection MB", "collection_mb", "{:,.0f}"),
    ("RSS before epoch MB", "rss_before_epoch_mb", "{:,.0f}"),
]

SIZES = (20, 20_000, 5_000)  # graphs, nodes per graph, configs per graph
SIZES_QUICK = (8, 5_000, 500)
CONFIGURABLE = 0.04  # share of configurable nodes (800 of 20k)
RSS_CAP_MB = 16_000
TIMEOUT_S = 3_600
COLLECTION = "layout:nlp:random"


def epoch_memory_probe(root: str, num_graphs: int, device: str, cache: bool, epochs: int):
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

    files = sorted(collection_dir(root, COLLECTION, "train").glob("*.npz"))[:num_graphs]
    cache_dir = Path(tempfile.mkdtemp(prefix="cache-", dir=root)) if cache else None
    _, source, search = COLLECTION.split(":")
    ds = LayoutDataset(
        root, source, search, "train", sampler=UniformSampler(32), cache_dir=cache_dir, files=files
    )
    ds.node_normalizer = ds.fit_normalizer(log=True)
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
            sync(device)
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


def run(args) -> list[dict]:
    """Peak memory of GST training epochs over a synthetic collection, by graph count."""
    from tpulearn.data.synthetic import write_layout_collection

    graphs, nodes, configs = args.memory_graphs, args.memory_nodes, args.memory_configs
    counts = sorted({max(1, graphs // 4), graphs})
    rows = []
    with tempfile.TemporaryDirectory(prefix="tpulearn-bench-memory-") as root:
        start = time.perf_counter()
        _, source, search = COLLECTION.split(":")
        files = write_layout_collection(
            root,
            source,
            search,
            num_graphs={"train": graphs, "valid": 0, "test": 0},
            nodes=(nodes, nodes),
            configurable_fraction=CONFIGURABLE,
            configs=(configs, configs),
        )
        print(f"wrote {len(files)} graphs in {time.perf_counter() - start:.1f} s", flush=True)
        with np.load(files[0]) as npz:
            configurable = int(npz["node_config_ids"].shape[0])
        sizes = [npz_mb(p) for p in files]
        collection = (
            f"the graphs of synthetic {COLLECTION} ({nodes:,} nodes, "
            f"{configurable:,} configurable, {configs:,} configs each)"
        )
        for device in devices():
            probes = [(count, True, 2) for count in counts] + [(graphs, False, 1)]
            for count, cache, epochs in probes:
                probe = run_probe(
                    __name__,
                    "epoch_memory_probe",
                    [str(root), count, device, cache, epochs],
                    RSS_CAP_MB,
                    TIMEOUT_S,
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
                            [RSS_CAP_MB],
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
