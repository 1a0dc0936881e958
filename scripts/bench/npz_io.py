"""Group ``io``: npz reading and validation against a bare ``np.load``, and ``read_layout``
through the memory-mapped config cache.

(Not named ``io``: a module of that name would shadow the standard library's for anything
run from inside this folder.)
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
from pathlib import Path

import numpy as np

from .timing import npz_mb, result, timed

NAME = "io"
COLUMNS = [("decompressed MB", "decompressed_mb", "{:.3g}")]

CONFIGS = 2_000  # configs of the synthetic nlp-scale file (20k nodes, 1k configurable)
CONFIGS_QUICK = 500
TILE_PASSES = 200  # bundled tile files are a few KB: read them this many times per run


def _np_load_all(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def run(args) -> list[dict]:
    """npz reading and validation (MB/s of decompressed arrays) against a bare ``np.load``
    of every member, and ``read_layout`` through the memory-mapped config cache."""
    from tpulearn.data import LayoutDataset, UniformSampler, read_layout, read_tile, sample_root
    from tpulearn.data.synthetic import BENCHMARK_LAYOUT, benchmark_layout_graph

    rows = []

    def add(what, unit, value_of, times, **extra) -> None:
        rows.append(result(what, unit, value_of, times, device="cpu", **extra))
        print(rows[-1], flush=True)

    def throughput(what: str, files: list[Path], read, passes: int = 1) -> None:
        mb = sum(npz_mb(p) for p in files)

        def read_all() -> None:
            for _ in range(passes):
                for path in files:
                    read(path)

        times = timed(read_all, args.repeats)
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
        (tile_files, read_tile, "tile", TILE_PASSES),
    ):
        mb = sum(npz_mb(p) for p in files)
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
        mb = npz_mb(path)
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
