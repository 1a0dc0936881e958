"""Lazy, streamed datasets over the released folder layout.

Each item is one graph with a sample of its configs, as a :class:`TpuGraphData` (a PyG
``Data``). Files are opened one at a time when an item is asked for; nothing but the file
list, the config counts and (optionally) de-duplicated rows and their labels are kept
between items, so memory is bounded by the largest single graph, never by the collection.

About 350 lines: the tile and layout datasets are thin subclasses of one shared
base, and splitting them from it would scatter one idea.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .._checks import check_choice
from .features import FeatureNormalizer, reencode_minor_to_major, tile_config_features
from .io import (
    LayoutRecord,
    TileRecord,
    read_config_runtime,
    read_graph,
    read_layout,
    read_tile,
)
from .items import TpuGraphData, item_configs, layout_item, tile_item
from .sample import is_sample_root
from .sampling import (
    DEDUP_MODES,
    ConfigSampler,
    UniformSampler,
    copy_of,
    mean_of_copies,
    standing_rows,
)
from .schema import SPLITS, collection_dir, download_name

DOWNLOAD_HINT = (
    "download it with `python scripts/download_tpugraphs.py --collections {name} --root {root}`"
)


def _missing_hint(root: str | Path, collection: str) -> str:
    """How to get a split that is not there: download it into ``root``, or, where
    ``root`` is the bundled sample (read-only, a few files), into a root of one's own."""
    name = download_name(collection)
    if not is_sample_root(root):
        return DOWNLOAD_HINT.format(name=name, root=root)
    held = [s for s in SPLITS if any(collection_dir(root, collection, s).glob("*.npz"))]
    return (
        f"the bundled sample holds {collection}'s {' and '.join(held) or 'no'} split"
        f"{'s' if len(held) != 1 else ''} only; train on the released files: "
        f"`python scripts/download_tpugraphs.py --collections {name} --root DIR`, then "
        "data.root=DIR"
    )


def graphs_named(graphs: list[tuple[Path, str]], limit: int = 5) -> str:
    """``"a.npz (why); b.npz (why) and 3 more"``: graphs with the reason each is named,
    the first ``limit`` of them."""
    listed = "; ".join(f"{path.name} ({why})" for path, why in graphs[:limit])
    return listed + (f" and {len(graphs) - limit} more" if len(graphs) > limit else "")


def split_files(root: str | Path, collection: str, split: str) -> list[Path]:
    """The ``.npz`` files of one split of a collection, sorted; a missing or empty folder
    is an error that says how to download it."""
    folder = collection_dir(root, collection, split)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"TpuGraphs folder {folder} does not exist; " + _missing_hint(root, collection)
        )
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"no .npz files in {folder}; " + _missing_hint(root, collection))
    return files


class _GraphDataset(torch.utils.data.Dataset):
    """Shared machinery of :class:`TileDataset` and :class:`LayoutDataset`."""

    def __init__(
        self,
        root: Path,
        collection: str,
        split: str,
        sampler: ConfigSampler | None,
        node_normalizer: FeatureNormalizer | None,
        reencode_layout: bool,
        dedup: bool | str,
        min_configs: int,
        seed: int,
        files: list[Path] | None = None,
    ):
        if files is None:
            files = split_files(root, collection, split)
        self.folder = folder = collection_dir(root, collection, split)
        self.sampler = sampler if sampler is not None else UniformSampler(32)
        self.node_normalizer = node_normalizer
        self.reencode_layout = reencode_layout
        check_choice("dedup", dedup, DEDUP_MODES)
        self.dedup: str | None = {False: None, True: "min"}.get(dedup, dedup)
        self.seed = seed
        self.min_configs = min_configs
        self.epoch = 0
        # graph index -> (kept rows, their runtimes under "mean", else None)
        self._dedup_cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

        # Config counts come from the small config_runtime member only.
        self.files: list[Path] = []
        self.num_configs: list[int] = []
        self.labelled: list[bool] = []
        self.excluded: list[tuple[Path, str]] = []
        # Graphs that dedup leaves fewer than min_configs distinct configs (found as read).
        self.too_few_distinct: list[tuple[Path, str]] = []
        for path in files:
            runtime = read_config_runtime(path)
            labelled = bool(runtime.any())
            measured = int((runtime > 0).sum()) if labelled else runtime.shape[0]
            if labelled and measured < min_configs:
                self.excluded.append((path, f"{measured} measured configs < {min_configs}"))
                continue
            self.files.append(path)
            self.num_configs.append(runtime.shape[0])
            self.labelled.append(labelled)
        if self.excluded:
            warnings.warn(
                f"{folder}: {len(self.excluded)} graph(s) excluded, too few configs to rank: "
                f"{graphs_named(self.excluded)} (see dataset.excluded)",
                stacklevel=3,
            )

    def __len__(self) -> int:
        return len(self.files)

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self.files]

    def set_epoch(self, epoch: int) -> None:
        """Change the random config samples drawn (deterministic per seed, epoch, graph)."""
        self.epoch = epoch

    def read(self, idx: int) -> TileRecord | LayoutRecord:
        raise NotImplementedError

    def _config_feat(self, record) -> np.ndarray:
        raise NotImplementedError

    def merged(self, idx: int, record):
        """``record`` as the sampler sees it and the config rows it may draw from: the
        measured ones (runtime > 0 in labelled files).

        Without ``dedup`` the record is as read. With it, one row per distinct config (its
        fastest measured copy); under ``"mean"`` that row's runtime is the mean of its
        config's measured copies (:func:`~.sampling.mean_of_copies`).
        """
        runtime = record.config_runtime
        if self.dedup is None:
            rows = np.arange(runtime.shape[0], dtype=np.int64)
        else:
            if idx not in self._dedup_cache:
                norms = getattr(record, "config_runtime_normalizers", None)
                rep = copy_of(self._config_feat(record), runtime, normalizers=norms)
                kept = standing_rows(rep)
                means = None
                if self.dedup == "mean":
                    means = mean_of_copies(rep, runtime, norms)[kept]
                self._dedup_cache[idx] = (kept, means)
                self._warn_if_too_few(record, runtime[kept] if means is None else means)
            rows, means = self._dedup_cache[idx]
            if means is not None:
                runtime = runtime.copy()
                runtime[rows] = means
                record = dataclasses.replace(record, config_runtime=runtime)
        if record.labelled:
            rows = rows[runtime[rows] > 0]
        return record, rows

    def _warn_if_too_few(self, record, kept_runtime: np.ndarray) -> None:
        """Warn where de-duplication leaves a labelled graph (kept at init for its measured
        configs) fewer than ``min_configs`` distinct measured ones, and list it in
        ``too_few_distinct``: its items have nothing to rank. Known only once the config
        features are read, at the graph's first item."""
        distinct = int((kept_runtime > 0).sum())
        if record.labelled and distinct < self.min_configs:
            measured = int((record.config_runtime > 0).sum())
            why = f"{measured} measured configs but {distinct} distinct under dedup={self.dedup!r}"
            self.too_few_distinct.append((record.path, why))
            warnings.warn(
                f"{record.path}: {why}, fewer than {self.min_configs}: its items have "
                "nothing to rank",
                stacklevel=3,
            )

    def __getitem__(self, idx: int) -> TpuGraphData:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"graph index {idx} out of range for {len(self)} graphs")
        return self.to_data(*self.sample_rows(idx % len(self)))

    def sample_rows(self, idx: int):
        """Graph ``idx`` as the sampler sees it and the config rows it picks for item
        ``idx`` this epoch: ``(record, rows)``, reading the file once."""
        record, rows = self.merged(idx, self.read(idx))
        rng = np.random.default_rng((self.seed, self.epoch, idx))
        rows = self.sampler(rows, record.config_runtime, rng, record.stem)
        return record, np.asarray(rows, dtype=np.int64)

    def sample_chunks(self, idx: int, chunk_size: int, max_bytes: int | None = None):
        """The sampler's configs of graph ``idx`` as Data items of at most ``chunk_size``
        configs, reading the file once (evaluation of graphs too large to score in one
        piece); ``max_bytes``: see :meth:`row_chunks`."""
        yield from self.row_chunks(*self.sample_rows(idx), chunk_size, max_bytes)

    def row_chunks(self, record, rows: np.ndarray, chunk_size: int, max_bytes: int | None = None):
        """Data items of ``rows`` of ``record``, in order, of ``chunk_size`` configs; with
        ``max_bytes``, of as many whole chunks as :func:`item_configs` fits in that many
        bytes of config features (for a model that chunks its configs itself)."""
        size = item_configs(self._config_feat(record), chunk_size, max_bytes)
        for start in range(0, rows.shape[0], size):
            yield self.to_data(record, rows[start : start + size])

    def chunks(self, idx: int, chunk_size: int):
        """Every config of graph ``idx`` in file order, as Data items of ``chunk_size``
        configs (for evaluation; the file is read once)."""
        record = self.read(idx)
        for start in range(0, record.num_configs, chunk_size):
            stop = min(start + chunk_size, record.num_configs)
            yield self.to_data(record, np.arange(start, stop, dtype=np.int64))

    def to_data(self, record, rows: np.ndarray) -> TpuGraphData:
        raise NotImplementedError

    def fit_normalizer(self, mode: str = "zscore", log: bool = True) -> FeatureNormalizer:
        """Fit a node-feature normaliser on this dataset's graphs (use the train split).

        Features are re-encoded first when the dataset re-encodes them, so statistics match
        what the model sees.
        """
        norm = FeatureNormalizer(mode=mode, log=log)
        for i in range(len(self)):
            feat = self.read_graph_features(i)
            norm.partial_fit(reencode_minor_to_major(feat) if self.reencode_layout else feat)
        return norm

    def read_graph_features(self, idx: int) -> np.ndarray:
        return read_graph(self.files[idx])[0]


class TileDataset(_GraphDataset):
    """The tile:xla collection: one kernel graph and a sample of its tile configs per item.

    Args:
        root: data root laid out as released (``<root>/npz/tile/xla/<split>/*.npz``).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        sampler: which configs form an item (default: 32 uniformly without replacement).
        node_normalizer: fitted node-feature normaliser (train statistics), or None for raw.
        config_normalizer: fitted normaliser for the 24 tile config features, or None.
        reencode_layout: mark minor_to_major padding (node features 134-139) as -1.
        dedup: sample only distinct configs: ``True`` or ``"min"`` labels a repeated
            config with its fastest measurement (least ``runtime / normalizer``),
            ``"mean"`` with the mean of its measured copies' ratios; ``False`` samples
            every row.
        min_configs: labelled graphs with fewer measured configs are excluded and listed
            in ``excluded`` (a warning names them).
        seed: base seed of the per-(epoch, graph) config samples.
        files: explicit file list instead of scanning the split folder.
        tile_layout: append :func:`~.features.tile_layout_features` to the config
            features (42 per config; the config normaliser must be fitted on them).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        sampler: ConfigSampler | None = None,
        node_normalizer: FeatureNormalizer | None = None,
        config_normalizer: FeatureNormalizer | None = None,
        reencode_layout: bool = True,
        dedup: bool | str = False,
        min_configs: int = 2,
        seed: int = 0,
        files: list[Path] | None = None,
        tile_layout: bool = False,
    ):
        self.root, self.split = Path(root), split
        self.config_normalizer = config_normalizer
        self.tile_layout = tile_layout
        super().__init__(
            Path(root),
            "tile:xla",
            split,
            sampler,
            node_normalizer,
            reencode_layout,
            dedup,
            min_configs,
            seed,
            files,
        )

    def read(self, idx: int) -> TileRecord:
        return read_tile(self.files[idx])

    def fit_config_normalizer(self, mode: str = "minmax", log: bool = False) -> FeatureNormalizer:
        """Fit a normaliser of the tile config features (24, or 42 with ``tile_layout``) on
        this dataset (train split)."""
        norm = FeatureNormalizer(mode=mode, log=log)
        for i in range(len(self)):
            record = self.read(i)
            norm.partial_fit(
                tile_config_features(record.node_feat, record.config_feat, self.tile_layout)
            )
        return norm

    def _config_feat(self, record: TileRecord) -> np.ndarray:
        return record.config_feat

    def to_data(self, record: TileRecord, rows: np.ndarray) -> TpuGraphData:
        return tile_item(
            record,
            rows,
            self.node_normalizer,
            self.config_normalizer,
            self.reencode_layout,
            self.tile_layout,
        )

    def __repr__(self) -> str:
        return f"TileDataset({self.folder}, {len(self)} graphs, sampler={self.sampler!r})"


class LayoutDataset(_GraphDataset):
    """A layout collection: one program graph and a sample of its layout configs per item.

    Args:
        root: data root laid out as released
            (``<root>/npz/layout/<source>/<search>/<split>/*.npz``).
        source: ``"xla"`` or ``"nlp"``.
        search: ``"default"`` or ``"random"``.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        sampler: which configs form an item (default: 32 uniformly without replacement).
        node_normalizer: fitted node-feature normaliser (train statistics), or None for raw.
        cache_dir: folder for uncompressed, memory-mapped ``node_config_feat`` copies
            (one subfolder per collection and split), so an item reads only its sampled
            config rows; None decompresses the whole array of a graph per item.
        reencode_layout, dedup, min_configs, seed, files: as in :class:`TileDataset`.
        transform: applied to each item before it is returned (PyG's convention), e.g.
            :class:`tpulearn.graph.ConfigContext`; None: the whole graph.
    """

    def __init__(
        self,
        root: str | Path,
        source: str,
        search: str,
        split: str,
        sampler: ConfigSampler | None = None,
        node_normalizer: FeatureNormalizer | None = None,
        cache_dir: str | Path | None = None,
        reencode_layout: bool = True,
        dedup: bool | str = False,
        min_configs: int = 2,
        seed: int = 0,
        files: list[Path] | None = None,
        transform: Callable[[TpuGraphData], TpuGraphData] | None = None,
    ):
        self.root, self.source, self.search, self.split = Path(root), source, search, split
        self.transform = transform
        self.collection = f"layout:{source}:{search}"
        self.cache_dir = (
            None if cache_dir is None else Path(cache_dir) / "layout" / source / search / split
        )
        super().__init__(
            Path(root),
            self.collection,
            split,
            sampler,
            node_normalizer,
            reencode_layout,
            dedup,
            min_configs,
            seed,
            files,
        )

    def read(self, idx: int) -> LayoutRecord:
        return read_layout(self.files[idx], cache_dir=self.cache_dir)

    def _config_feat(self, record: LayoutRecord) -> np.ndarray:
        return record.node_config_feat

    def to_data(self, record: LayoutRecord, rows: np.ndarray) -> TpuGraphData:
        data = layout_item(record, rows, self.node_normalizer, self.reencode_layout)
        return data if self.transform is None else self.transform(data)

    def __repr__(self) -> str:
        return f"LayoutDataset({self.collection}, {self.split}, {len(self)} graphs)"
