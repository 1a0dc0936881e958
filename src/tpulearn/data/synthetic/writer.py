"""Synthetic collections on disk: atomic npz writes in the release's folder layout.

Every file is a function of the seed, its split and its index only, so a file does not
change when others are added.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..schema import SPLITS, collection_dir, parse_collection
from .cost import DEFAULT_NOISE
from .layout import _layout_arrays
from .tile import make_tile_graph

DEFAULT_NUM_GRAPHS = MappingProxyType({"train": 8, "valid": 2, "test": 2})


def _draw(rng: np.random.Generator, bounds: tuple[int, int], what: str) -> int:
    """An integer from the inclusive range ``bounds``."""
    lo, hi = bounds
    if not 1 <= lo <= hi:
        raise ValueError(f"{what} must be a range (lo, hi) with 1 <= lo <= hi, got {bounds}")
    return int(rng.integers(lo, hi + 1))


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """``np.savez_compressed`` to a temporary name in the same folder, then rename.

    A reader never sees a half-written file, even if generation is interrupted.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _split_counts(num_graphs: Mapping[str, int] | None) -> dict[str, int]:
    counts = dict(DEFAULT_NUM_GRAPHS if num_graphs is None else num_graphs)
    unknown = set(counts) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; expected {', '.join(SPLITS)}")
    return counts


def write_tile_collection(
    root: str | Path,
    *,
    num_graphs: Mapping[str, int] | None = None,
    nodes: tuple[int, int] = (5, 40),
    configs: tuple[int, int] = (10, 50),
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
    duplicate_fraction: float = 0.0,
) -> list[Path]:
    """Write a synthetic tile:xla collection under ``<root>/npz/tile/xla/<split>/``.

    Args:
        root: data root, laid out as the release.
        num_graphs: kernels per split; default ``{"train": 8, "valid": 2, "test": 2}``.
        nodes: inclusive range of nodes per kernel.
        configs: inclusive range of configs per kernel.
        seed: everything written is a function of it (and of the other arguments).
        noise, duplicate_fraction: see :func:`make_tile_graph`.

    Returns:
        The written files, split by split. Test files are unlabelled.
    """
    paths = []
    for split, count in _split_counts(num_graphs).items():
        folder = collection_dir(root, "tile:xla", split)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            # One generator per file: a file does not change when others are added.
            rng = np.random.default_rng([seed, 0, SPLITS.index(split), i])
            arrays = make_tile_graph(
                rng,
                _draw(rng, nodes, "nodes"),
                _draw(rng, configs, "configs"),
                labelled=split != "test",
                noise=noise,
                duplicate_fraction=duplicate_fraction,
            )
            paths.append(_write_npz(folder / f"synthetic_{split}_{i:04d}.npz", arrays))
    return paths


def write_layout_collection(
    root: str | Path,
    source: str = "xla",
    search: str = "random",
    *,
    num_graphs: Mapping[str, int] | None = None,
    nodes: tuple[int, int] = (50, 300),
    configurable_fraction: float = 0.1,
    num_configurable: tuple[int, int] | None = None,
    configs: tuple[int, int] = (20, 100),
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
    duplicate_fraction: float = 0.0,
) -> list[Path]:
    """Write a synthetic layout collection under ``<root>/npz/layout/<source>/<search>/``.

    Graphs depend on ``(seed, source, split, index)`` only, so the ``default`` and
    ``random`` collections of one source share their graphs (as the release does) and
    differ in their configs.

    Args:
        root: data root, laid out as the release.
        source: ``"xla"`` or ``"nlp"``.
        search: ``"default"`` or ``"random"``.
        num_graphs: graphs per split; default ``{"train": 8, "valid": 2, "test": 2}``.
        nodes: inclusive range of nodes per graph.
        configurable_fraction: share of nodes that are configurable (at least one).
        num_configurable: inclusive range of configurable nodes; overrides the fraction.
        configs: inclusive range of configs per graph.
        seed: everything written is a function of it (and of the other arguments).
        noise, duplicate_fraction: see :func:`make_layout_graph`.

    Returns:
        The written files, split by split. Test files are unlabelled.
    """
    collection = f"layout:{source}:{search}"
    parse_collection(collection)  # clear error for an unknown source or search
    if nodes[0] < 3:
        raise ValueError(f"layout graphs need at least 3 nodes, got nodes={nodes}")
    paths = []
    for split, count in _split_counts(num_graphs).items():
        folder = collection_dir(root, collection, split)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            key = (seed, 1, ("xla", "nlp").index(source), SPLITS.index(split), i)
            structure = np.random.default_rng(key)
            config = np.random.default_rng((*key, ("default", "random").index(search)))
            n = _draw(structure, nodes, "nodes")
            if num_configurable is None:
                nc = int(round(configurable_fraction * n))
            else:
                nc = _draw(structure, num_configurable, "num_configurable")
            arrays = _layout_arrays(
                structure,
                config,
                n,
                min(max(nc, 1), n - 2),
                _draw(config, configs, "configs"),
                labelled=split != "test",
                source=source,
                search=search,
                noise=noise,
                duplicate_fraction=duplicate_fraction,
            )
            paths.append(_write_npz(folder / f"synthetic_{source}_{split}_{i:03d}.npz", arrays))
    return paths
