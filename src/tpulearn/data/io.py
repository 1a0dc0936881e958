"""Read one TpuGraphs npz file into a validated record.

Every structural invariant of the dataset is checked here, once, when a file is read, so
that the rest of the library can trust a record. A broken file raises
:class:`~tpulearn.data.schema.TpuGraphsFormatError` naming the file, the key, what was
expected and what was found, never a bare zipfile or numpy traceback.

Layout files can be huge once decompressed (``node_config_feat`` of an nlp train graph
with 90k configs is several GB). :func:`read_layout` can therefore keep that one array
out of memory: with ``cache_dir`` it is streamed into an uncompressed, memory-mapped
``.npy`` file (:mod:`.config_cache`). Archives are opened and arrays checked by
:mod:`._npz`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import check_folder
from ._npz import _Checker, _NpzReader
from .config_cache import _cached_config_feat
from .schema import (
    LAYOUT_CONFIG_FEAT_DIM,
    LAYOUT_KEYS,
    NODE_FEAT_DIM,
    NUM_OPCODES,
    TILE_CONFIG_FEAT_DIM,
    TILE_KEYS,
)


@dataclass(frozen=True, eq=False)
class _GraphRecord:
    """The graph part shared by tile and layout records (npz key names kept)."""

    path: Path
    stem: str
    node_feat: np.ndarray
    node_opcode: np.ndarray
    edge_index: np.ndarray

    @property
    def num_nodes(self) -> int:
        return self.node_feat.shape[0]

    @property
    def num_configs(self) -> int:
        return self.config_runtime.shape[0]


@dataclass(frozen=True, eq=False)
class TileRecord(_GraphRecord):
    """One tile:xla kernel: a small graph measured under many tile configurations.

    Attributes keep the npz key names. Shapes: ``node_feat`` [n, 140] float32,
    ``node_opcode`` [n] int64, ``edge_index`` [m, 2] int64 (row ``[u, v]``: u consumes v),
    ``config_feat`` [c, 24] float32, ``config_runtime`` [c] int64 (ns),
    ``config_runtime_normalizers`` [c] int64.
    """

    config_feat: np.ndarray
    config_runtime: np.ndarray
    config_runtime_normalizers: np.ndarray
    labelled: bool


@dataclass(frozen=True, eq=False)
class LayoutRecord(_GraphRecord):
    """One layout graph: a whole XLA program measured under many layout configurations.

    Attributes keep the npz key names. Shapes: ``node_feat`` [n, 140] float32,
    ``node_opcode`` [n] int64, ``edge_index`` [m, 2] int64, ``node_config_ids`` [nc] int64
    (sorted), ``node_config_feat`` [c, nc, 18] float32 (an in-memory array, or a read-only
    memory map when read with a cache), ``config_runtime`` [c] int64 (ns),
    ``node_splits`` [k] int64 (flattened; starts at 0, ends at n).
    """

    node_config_ids: np.ndarray
    node_config_feat: np.ndarray
    config_runtime: np.ndarray
    node_splits: np.ndarray
    labelled: bool


def _read_graph(reader: _NpzReader, check: _Checker) -> tuple[np.ndarray, ...]:
    """The graph keys shared by tile and layout files: features, opcodes, edges."""
    node_feat = check.floating("node_feat", reader.load("node_feat"))
    check.shape("node_feat", node_feat, (None, NODE_FEAT_DIM))
    n = node_feat.shape[0]
    if n == 0:
        check.fail("node_feat", "at least one node", "0 rows")

    node_opcode = check.integer("node_opcode", reader.load("node_opcode"))
    check.shape("node_opcode", node_opcode, (n,))
    check.in_range("node_opcode", node_opcode, 0, NUM_OPCODES)

    edge_index = check.integer("edge_index", reader.load("edge_index"))
    if edge_index.size == 0:
        edge_index = edge_index.reshape(0, 2)
    check.shape("edge_index", edge_index, (None, 2))
    check.in_range("edge_index", edge_index, 0, n)
    return node_feat, node_opcode, edge_index


def _check_runtime(check: _Checker, key: str, runtime: np.ndarray) -> np.ndarray:
    runtime = check.integer(key, runtime)
    check.shape(key, runtime, (None,))
    if runtime.shape[0] == 0:
        check.fail(key, "at least one config", "0 configs")
    if (runtime < 0).any():
        check.fail(key, "runtimes >= 0", f"value {runtime.min()}")
    return runtime


def read_tile(path: str | Path) -> TileRecord:
    """Read and validate one tile:xla npz file.

    Args:
        path: an ``.npz`` file of ``npz/tile/xla/<split>/``.

    Returns:
        A :class:`TileRecord` with dtypes normalised (opcodes, edges, runtimes int64).

    Raises:
        TpuGraphsFormatError: the file is missing, damaged or breaks an invariant.
    """
    path = Path(path)
    check = _Checker(path)
    with _NpzReader(path, TILE_KEYS) as reader:
        node_feat, node_opcode, edge_index = _read_graph(reader, check)
        runtime = _check_runtime(check, "config_runtime", reader.load("config_runtime"))
        c = runtime.shape[0]
        config_feat = check.floating("config_feat", reader.load("config_feat"))
        check.shape("config_feat", config_feat, (c, TILE_CONFIG_FEAT_DIM))
        normalizers = _check_runtime(
            check, "config_runtime_normalizers", reader.load("config_runtime_normalizers")
        )
        check.count("config_runtime_normalizers", normalizers.shape[0], c, "configs")
        labelled = bool(runtime.any())
        if labelled and (normalizers == 0).any():
            # The target is runtime / normalizer (the default config's runtime): a zero
            # would rank its config at inf or nan in the metrics, losses and de-duplication.
            bad = int(np.flatnonzero(normalizers == 0)[0])
            check.fail(
                "config_runtime_normalizers",
                "normalizers > 0 in a labelled file (each divides its config's runtime)",
                f"0 at config {bad}",
            )
    return TileRecord(
        path=path,
        stem=path.stem,
        node_feat=node_feat,
        node_opcode=node_opcode,
        edge_index=edge_index,
        config_feat=config_feat,
        config_runtime=runtime,
        config_runtime_normalizers=normalizers,
        labelled=labelled,
    )


def read_layout(path: str | Path, cache_dir: str | Path | None = None) -> LayoutRecord:
    """Read and validate one layout npz file.

    Args:
        path: an ``.npz`` file of ``npz/layout/<source>/<search>/<split>/``.
        cache_dir: where to keep an uncompressed copy of ``node_config_feat``. When given,
            that array is streamed into ``<cache_dir>/<stem>.node_config_feat.npy`` on the
            first read (bounded memory, validated on the way) and returned as a read-only
            memory map, so indexing a few config rows reads only those rows. Without it the
            array is decompressed into memory.

    Returns:
        A :class:`LayoutRecord`; ``node_splits`` is flattened to 1-D.

    Raises:
        TpuGraphsFormatError: the file is missing, damaged or breaks an invariant.
        ValueError: ``cache_dir`` is a file.
    """
    path = Path(path)
    check_folder("cache_dir", cache_dir)
    check = _Checker(path)
    with _NpzReader(path, LAYOUT_KEYS) as reader:
        node_feat, node_opcode, edge_index = _read_graph(reader, check)
        n = node_feat.shape[0]
        runtime = _check_runtime(check, "config_runtime", reader.load("config_runtime"))
        c = runtime.shape[0]

        ids = _node_config_ids(reader, check, n)

        splits = check.integer("node_splits", reader.load("node_splits")).reshape(-1)
        if splits.size < 2 or splits[0] != 0 or splits[-1] != n or (np.diff(splits) < 0).any():
            check.fail(
                "node_splits",
                f"non-decreasing boundaries from 0 to {n}",
                np.array2string(splits, threshold=8),
            )

        expected = (c, ids.shape[0], LAYOUT_CONFIG_FEAT_DIM)
        if cache_dir is None:
            feat = check.floating("node_config_feat", reader.load("node_config_feat"))
            check.shape("node_config_feat", feat, expected)
        else:
            feat = _cached_config_feat(path, Path(cache_dir), check, expected)
    return LayoutRecord(
        path=path,
        stem=path.stem,
        node_feat=node_feat,
        node_opcode=node_opcode,
        edge_index=edge_index,
        node_config_ids=ids,
        node_config_feat=feat,
        config_runtime=runtime,
        node_splits=splits,
        labelled=bool(runtime.any()),
    )


def _node_config_ids(reader: _NpzReader, check: _Checker, num_nodes: int) -> np.ndarray:
    ids = check.integer("node_config_ids", reader.load("node_config_ids"))
    check.shape("node_config_ids", ids, (None,))
    check.in_range("node_config_ids", ids, 0, num_nodes)
    if ids.size > 1 and (np.diff(ids) <= 0).any():
        at = int(np.argmax(np.diff(ids) <= 0))
        check.fail(
            "node_config_ids",
            "strictly increasing node ids",
            f"{ids[at]} followed by {ids[at + 1]} at position {at}",
        )
    return ids


def read_layout_graph(path: str | Path) -> tuple[np.ndarray, ...]:
    """A layout file without its config features: ``(node_feat, node_opcode, edge_index,
    node_config_ids, config_runtime)``, validated as :func:`read_layout` does.

    ``node_config_feat`` (gigabytes on the largest nlp graphs) is never decompressed, so
    statistics over a whole collection stay cheap.
    """
    path = Path(path)
    check = _Checker(path)
    with _NpzReader(path, LAYOUT_KEYS) as reader:
        node_feat, node_opcode, edge_index = _read_graph(reader, check)
        ids = _node_config_ids(reader, check, node_feat.shape[0])
        runtime = _check_runtime(check, "config_runtime", reader.load("config_runtime"))
    return node_feat, node_opcode, edge_index, ids, runtime


def read_graph(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Only the graph of a tile or layout file: ``(node_feat, node_opcode, edge_index)``.

    Validated like :func:`read_tile`; the config arrays are never decompressed, which
    makes fitting feature statistics over a collection cheap.
    """
    path = Path(path)
    with _NpzReader(path, ("node_feat", "node_opcode", "edge_index")) as reader:
        return _read_graph(reader, _Checker(path))


def read_config_runtime(path: str | Path) -> np.ndarray:
    """Only the ``config_runtime`` array of a file (cheap: npz members load lazily)."""
    path = Path(path)
    with _NpzReader(path, ("config_runtime",)) as reader:
        return _check_runtime(_Checker(path), "config_runtime", reader.load("config_runtime"))
