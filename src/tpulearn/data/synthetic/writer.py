"""Synthetic collections on disk: atomic npz writes in the release's folder layout.

Every file is a function of the seed, its split and its index only, so a file does not
change when others are added. A split written again with fewer graphs loses this writer's
files beyond the new count (the readers would otherwise take them for part of it); files
of other names in the folder are not touched (:func:`foreign_files` lists them; the command
line refuses to write beside them unless asked). Each collection folder also gets a
sidecar, ``synthetic.json`` (next to the split folders, which the readers glob for
``*.npz``): per split, the cost-model family, noise, seed and sizes the files were written
with, so that the oracle (:func:`~.families.oracle_metrics`) can be computed from the files
alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..._checks import check_int
from ..schema import SPLITS, collection_dir, parse_collection
from .families import _sidecar_record, resolve_family, sidecar_path
from .layout import _layout_arrays
from .tile import make_tile_graph

DEFAULT_NUM_GRAPHS = MappingProxyType({"train": 8, "valid": 2, "test": 2})


def check_sizes(
    task: str,
    nodes: tuple[int, int] | None = None,
    configs: tuple[int, int] | None = None,
    num_configurable: tuple[int, int] | None = None,
) -> None:
    """Refuse size ranges a writer cannot draw from, before it writes anything.

    Args:
        task: ``"tile"`` or ``"layout"`` (a layout graph needs at least 3 nodes).
        nodes, configs, num_configurable: inclusive ranges ``(lo, hi)``; None: not checked.

    Raises:
        ValueError: naming the range and what it must be.
    """
    for what, bounds in (
        ("nodes", nodes),
        ("configs", configs),
        ("num_configurable", num_configurable),
    ):
        if bounds is not None and not 1 <= bounds[0] <= bounds[1]:
            raise ValueError(f"{what} must be a range (lo, hi) with 1 <= lo <= hi, got {bounds}")
    if task == "layout" and nodes is not None and nodes[0] < 3:
        raise ValueError(f"layout graphs need at least 3 nodes, got nodes={nodes}")


def _draw(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """An integer from the inclusive range ``bounds`` (checked by :func:`check_sizes`)."""
    lo, hi = bounds
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


def _file_prefix(collection: str, split: str) -> str:
    """The names this writer gives a split's files: ``<prefix><index>.npz``."""
    task, source, _ = parse_collection(collection)
    return f"synthetic_{split}_" if task == "tile" else f"synthetic_{source}_{split}_"


def foreign_files(root: str | Path, collection: str) -> list[Path]:
    """The ``.npz`` files in the collection's split folders under ``root`` that this
    writer did not name (real files, or another tool's): the readers glob every ``*.npz``
    of a split, so synthetic files written beside them would be read with them."""
    found = []
    for split in SPLITS:
        prefix = _file_prefix(collection, split)
        for path in sorted(collection_dir(root, collection, split).glob("*.npz")):
            index = path.name[len(prefix) : -len(".npz")]
            if not (path.name.startswith(prefix) and index.isdigit()):
                found.append(path)
    return found


def _remove_stale(folder: Path, prefix: str, count: int) -> None:
    """Delete this writer's files ``<prefix><index>.npz`` of a split with index >= ``count``.

    Left from an earlier, larger write, they would be read as part of the split the
    sidecar now describes. Other files in the folder are left alone.
    """
    for path in folder.glob(f"{prefix}*.npz"):
        index = path.name[len(prefix) : -len(".npz")]
        if index.isdigit() and int(index) >= count:
            path.unlink()


def _update_sidecar(root: str | Path, collection: str, records: Mapping[str, dict]) -> Path:
    """Merge per-split records into the collection's ``synthetic.json`` (atomically).

    Splits not written by this call keep their records: their files are unchanged.
    """
    path = sidecar_path(root, collection)
    path.parent.mkdir(parents=True, exist_ok=True)
    splits: dict[str, dict] = {}
    if path.is_file():
        try:
            splits = dict(json.loads(path.read_text()).get("splits", {}))
        except (ValueError, AttributeError):
            splits = {}  # unreadable: rewritten from this call's records
    splits.update(records)
    text = json.dumps({"collection": collection, "splits": splits}, indent=1, sort_keys=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _split_counts(num_graphs: Mapping[str, int] | None) -> dict[str, int]:
    counts = dict(DEFAULT_NUM_GRAPHS if num_graphs is None else num_graphs)
    unknown = set(counts) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; expected {', '.join(SPLITS)}")
    for split, count in counts.items():
        check_int(f"num_graphs[{split!r}]", count, 0)
    return counts


def write_tile_collection(
    root: str | Path,
    *,
    num_graphs: Mapping[str, int] | None = None,
    nodes: tuple[int, int] = (5, 40),
    configs: tuple[int, int] = (10, 50),
    seed: int = 0,
    noise: float | None = None,
    duplicate_fraction: float = 0.0,
    family: str | None = None,
    labelled_test: bool = False,
) -> list[Path]:
    """Write a synthetic tile:xla collection under ``<root>/npz/tile/xla/<split>/``.

    Args:
        root: data root, laid out as the release.
        num_graphs: kernels per split; default ``{"train": 8, "valid": 2, "test": 2}``.
        nodes: inclusive range of nodes per kernel.
        configs: inclusive range of configs per kernel.
        seed: everything written is a function of it (and of the other arguments).
        noise, duplicate_fraction: see :func:`make_tile_graph`.
        family: a key of :data:`~.families.TILE_FAMILIES`. ``None`` (the legacy call):
            ``tile_spill`` with :data:`~.cost.DEFAULT_NOISE` unless ``noise`` is given,
            bit-identical to files written before families; a named family defaults to
            its own noise.
        labelled_test: test files carry runtimes too, as valid ones do (the release's
            test files have none): a held-out split to report on that checkpoint
            selection never saw.

    Returns:
        The written npz files, split by split. Test files are unlabelled unless
        ``labelled_test``.
    """
    check_sizes("tile", nodes, configs)
    fam, noise = resolve_family("tile", family, noise)
    counts = _split_counts(num_graphs)
    paths, records = [], {}
    for split, count in counts.items():
        records[split] = _sidecar_record(
            fam.name,
            noise,
            seed,
            num_graphs=count,
            nodes=nodes,
            configs=configs,
            duplicate_fraction=duplicate_fraction,
        )
        folder = collection_dir(root, "tile:xla", split)
        folder.mkdir(parents=True, exist_ok=True)
        prefix = _file_prefix("tile:xla", split)
        for i in range(count):
            # One generator per file: a file does not change when others are added.
            rng = np.random.default_rng([seed, 0, SPLITS.index(split), i])
            arrays = make_tile_graph(
                rng,
                _draw(rng, nodes),
                _draw(rng, configs),
                labelled=labelled_test or split != "test",
                noise=noise,
                duplicate_fraction=duplicate_fraction,
                family=fam.name,
            )
            paths.append(_write_npz(folder / f"{prefix}{i:04d}.npz", arrays))
        _remove_stale(folder, prefix, count)
    _update_sidecar(root, "tile:xla", records)
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
    noise: float | None = None,
    duplicate_fraction: float = 0.0,
    family: str | None = None,
    labelled_test: bool = False,
    config_seed: int | None = None,
) -> list[Path]:
    """Write a synthetic layout collection under ``<root>/npz/layout/<source>/<search>/``.

    Graphs depend on ``(seed, source, split, index)`` only, so the ``default`` and
    ``random`` collections of one source share their graphs (as the release does) and
    differ in their configs. ``config_seed`` gives the same graphs another draw of configs
    (and of their noise): written to another root, it tells how a model ranks configs it
    has not seen on the graphs it trained on, apart from graphs it has not seen.

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
        family: a key of :data:`~.families.LAYOUT_FAMILIES`. ``None`` (the legacy call):
            ``neighbour_vote`` with :data:`~.cost.DEFAULT_NOISE` unless ``noise`` is
            given, bit-identical to files written before families; a named family
            defaults to its own noise (calibrated for an oracle tau of ~0.7).
        labelled_test: as in :func:`write_tile_collection`.
        config_seed: ``None``: the collection's own configs; an int: another stream of
            configs and noise on the same graphs (recorded in the sidecar).

    Returns:
        The written npz files, split by split. Test files are unlabelled unless
        ``labelled_test``.
    """
    collection = f"layout:{source}:{search}"
    parse_collection(collection)  # clear error for an unknown source or search
    if config_seed is not None and config_seed < 0:
        raise ValueError(f"config_seed must be >= 0 (or None), got {config_seed}")
    check_sizes("layout", nodes, configs, num_configurable)
    fam, noise = resolve_family("layout", family, noise)
    # A config seed extends each graph's config stream: the same graphs, other configs.
    reseed = () if config_seed is None else (int(config_seed),)
    paths, records = [], {}
    for split, count in _split_counts(num_graphs).items():
        records[split] = _sidecar_record(
            fam.name,
            noise,
            seed,
            num_graphs=count,
            nodes=nodes,
            configurable_fraction=configurable_fraction,
            num_configurable=num_configurable,
            configs=configs,
            duplicate_fraction=duplicate_fraction,
            **({"config_seed": reseed[0]} if reseed else {}),
        )
        folder = collection_dir(root, collection, split)
        folder.mkdir(parents=True, exist_ok=True)
        prefix = _file_prefix(collection, split)
        for i in range(count):
            key = (seed, 1, ("xla", "nlp").index(source), SPLITS.index(split), i)
            structure = np.random.default_rng(key)
            config = np.random.default_rng((*key, ("default", "random").index(search), *reseed))
            n = _draw(structure, nodes)
            if num_configurable is None:
                nc = int(round(configurable_fraction * n))
            else:
                nc = _draw(structure, num_configurable)
            arrays = _layout_arrays(
                structure,
                config,
                n,
                min(max(nc, 1), n - 2),
                _draw(config, configs),
                labelled=labelled_test or split != "test",
                source=source,
                search=search,
                noise=noise,
                duplicate_fraction=duplicate_fraction,
                cost=fam.cost,
            )
            paths.append(_write_npz(folder / f"{prefix}{i:03d}.npz", arrays))
        _remove_stale(folder, prefix, count)
    _update_sidecar(root, collection, records)
    return paths
