"""One collection's train / valid / test datasets, built from plain arguments (a config).

Normalisation statistics are fitted on the train split only and shared with the other
splits, so evaluation sees exactly what training saw; they travel in checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, get_args

from .._checks import check_choice, check_folder, check_int, warn_if_disabled
from ..graph import ConfigContext
from .config_cache import config_feat_nbytes
from .datasets import LayoutDataset, TileDataset, split_files
from .features import FeatureNormalizer
from .sample import eval_indices_path, is_sample_root, root_path
from .sampling import (
    DEDUP_MODES,
    AllConfigsSampler,
    ConfigSampler,
    FastBiasedSampler,
    FixedIndicesSampler,
    UniformSampler,
)
from .schema import parse_collection, root_above

ValidIndices = Literal["official", "all"]
# Without a cache an item decompresses its graph's whole node_config_feat: from a train
# graph this large on, the run says what a cache would save.
UNCACHED_NOTE_BYTES = 256 << 20
#: Configs per pass through the config-dependent layers when evaluating, by default.
EVAL_CHUNK = 64
Normalize = Literal["zscore", "minmax"] | None

# The sampler names of configs written before samplers became config nodes (they are
# stored in checkpoints, which evaluation re-instantiates).
SAMPLER_NAMES: dict[str, Callable[[int], ConfigSampler]] = {
    "uniform": UniformSampler,
    "fast_biased": FastBiasedSampler,
}


def data_root_folder(root: str | Path | None) -> Path:
    """``None`` or ``"sample"`` -> the bundled sample; otherwise the given folder."""
    if root == "":
        raise FileNotFoundError(
            "no data root given: pass data.root=DIR (the released dataset, or a synthetic "
            "collection written by `python -m tpulearn.data.synthetic DIR`; data.root=sample "
            "for the bundled files); the full-dataset configs also read TPUGRAPHS_ROOT"
        )
    root = root_path(root)
    if root.is_file():
        raise FileNotFoundError(
            f"data root {root} is a file; the data root is the folder that holds npz/ (as "
            "released: npz/tile/xla/<split>/*.npz, npz/layout/<source>/<search>/<split>/*.npz)"
        )
    if not root.is_dir():
        raise FileNotFoundError(
            f"data root {root} does not exist; pass data.root=DIR or set TPUGRAPHS_ROOT, "
            f"and download with `python scripts/download_tpugraphs.py --root {root} ...`"
        )
    above = root_above(root)
    if above is not None:
        raise FileNotFoundError(
            f"data root {root} is (or is inside) the dataset's npz/ folder; the data root is the "
            f"folder that holds npz/: data.root={above}"
        )
    return root


class CollectionData:
    """Datasets of one TpuGraphs collection.

    Args:
        collection: ``"tile:xla"`` or ``"layout:<xla|nlp>:<default|random>"``.
        task: ``"tile"`` or ``"layout"``; must match the collection (models read it).
        root: data root laid out as released; ``None`` = the bundled sample.
        configs_per_graph: configs sampled per graph per training step; at least 2, since
            every loss compares configs of one graph.
        sampler: the training sampler's constructor given ``configs_per_graph``: a
            :class:`~tpulearn.data.ConfigSampler` class or a partial of one (what a
            ``configs/data/sampler/*.yaml`` node with ``_partial_: true`` gives). The
            names ``"uniform"`` and ``"fast_biased"`` of older configs (those stored in
            checkpoints) still work and mean the class with its default arguments.
        valid_indices: ``"official"`` (the fixed 1000-config subsets, layout only; all
            configs for graphs they do not list) or ``"all"``.
        normalize: ``"zscore"``, ``"minmax"`` or ``None`` for node features.
        log_features: signed log1p before normalising (no effect without ``normalize``).
        dedup: train on distinct configs only: ``true`` / ``"min"`` labels a repeated
            config with its fastest measurement, ``"mean"`` with the mean of its measured
            copies (validation and test are never de-duplicated).
        cache_dir: memory-mapped cache of layout config features (``None``: in memory;
            no effect on tile collections).
        eval_chunk: configs per pass through the config-dependent layers during
            evaluation (see :func:`~tpulearn.training.score_dataset`).
        seed: sampling seed.
        context_hops: layout only: every split keeps just the configurable nodes and the
            nodes within this many hops of one (:class:`~tpulearn.graph.ConfigContext`),
            as the Kaggle winners did; faster, but the model no longer sees the whole
            graph. ``None`` keeps every node.
        tile_layout: tile only: the config features also give each config's output
            tile along the root's minor-to-major order, with the sizes and tile counts
            of those dimensions (:func:`~.features.tile_layout_features`; 42 features
            per config, for a model built with ``tile_layout``).
        folds: split the train graphs into this many folds and train on all but one (``None``:
            train on every graph). The split's files, sorted by name, go to folds in turn
            (file ``i`` to fold ``i % folds``), the same for every run, so the members of an
            ensemble trained with different ``fold`` see different graphs: the Kaggle
            winners' ensembles of folds. Validation and the feature statistics follow
            (statistics are fitted on the graphs trained on).
        fold: the fold left out, taken modulo ``folds``; ``None`` = ``seed``, so that runs
            of different seeds leave out different folds.
        extra_train: other layout collections whose train graphs are trained on too (e.g.
            ``["layout:nlp:random"]`` for ``layout:xla:random``: programs of another kind
            timed on the same hardware), from the same root; validation, its indices and
            the checkpoint selection stay those of ``collection``. The graphs join the
            collection's own (after them, in each collection's file order) before
            ``folds`` splits them, and the feature statistics are fitted on all of them.
            Every train graph's file name must be unique: the ``default`` and ``random``
            collections of one source hold the same graphs under the same names.

    Raises:
        ValueError: an unknown collection, sampler name, ``valid_indices`` or
            ``normalize``, a ``task`` that does not match the collection,
            ``configs_per_graph`` below 2 or ``eval_chunk`` below 1 (or not integers),
            ``context_hops`` on a tile collection or below 0, ``folds`` below 2 or above
            the number of train graphs (at :meth:`train_set`), an ``extra_train``
            collection that is not a layout collection or is ``collection`` itself, or
            (at :meth:`train_set`) two train graphs of one name.

    Warns:
        UserWarning: ``log_features``, ``cache_dir`` or ``tile_layout`` set to a
            non-default value that the other arguments make ineffective.
    """

    def __init__(
        self,
        collection: str,
        task: str,
        root: str | Path | None = None,
        configs_per_graph: int = 32,
        sampler: Callable[[int], ConfigSampler] | str = FastBiasedSampler,
        valid_indices: ValidIndices = "official",
        normalize: Normalize = "zscore",
        log_features: bool = True,
        dedup: bool | str = False,
        cache_dir: str | Path | None = None,
        eval_chunk: int = EVAL_CHUNK,
        seed: int = 0,
        context_hops: int | None = None,
        tile_layout: bool = False,
        folds: int | None = None,
        fold: int | None = None,
        extra_train: Sequence[str] | None = None,
    ):
        kind, self.source, self.search = parse_collection(collection)
        if kind != task:
            raise ValueError(f"data.task={task!r} does not match collection {collection!r}")
        if isinstance(sampler, str):
            sampler = SAMPLER_NAMES[check_choice("data.sampler", sampler, SAMPLER_NAMES)]
        elif not callable(sampler):
            raise TypeError(
                "data.sampler must build a ConfigSampler from the configs per graph (a "
                f"class or partial, e.g. configs/data/sampler/*.yaml), got {sampler!r}"
            )
        check_choice("data.valid_indices", valid_indices, get_args(ValidIndices))
        check_choice("data.normalize", normalize, (*FeatureNormalizer.MODES, None))
        warn_if_disabled(
            "data.log_features", log_features, True, bool(normalize), "data.normalize is null"
        )
        warn_if_disabled(
            "data.cache_dir", cache_dir, None, task == "layout", "tile data is kept in memory"
        )
        check_folder("data.cache_dir", cache_dir)
        warn_if_disabled("data.tile_layout", tile_layout, False, task == "tile", "task is layout")
        self.tile_layout = tile_layout and task == "tile"
        if context_hops is not None and (task != "layout" or context_hops < 0):
            raise ValueError("data.context_hops applies to layout collections and must be >= 0")
        self.context_hops = context_hops
        why = "every loss compares configs of one graph: with one, nothing is learnt"
        check_int("data.configs_per_graph", configs_per_graph, 2, why)
        check_int("data.eval_chunk", eval_chunk, 1)
        check_choice("data.dedup", dedup, DEDUP_MODES)
        if folds is not None and folds < 2:
            raise ValueError(f"data.folds must be >= 2 (or null: every train graph), got {folds}")
        self.folds, self.fold = folds, fold
        self.extra_train = list(extra_train or [])
        for other in self.extra_train:
            if parse_collection(other)[0] != "layout" or task != "layout":
                raise ValueError(
                    f"data.extra_train applies to layout collections: got {other!r} for "
                    f"{collection!r}"
                )
            if other == collection:
                raise ValueError(f"data.extra_train names data.collection itself ({other!r})")
        if len(set(self.extra_train)) != len(self.extra_train):
            raise ValueError(f"data.extra_train names a collection twice: {self.extra_train}")
        self.collection, self.task = collection, task
        self.root = data_root_folder(root)
        self.is_sample = is_sample_root(self.root)
        self.configs_per_graph, self.sampler = configs_per_graph, sampler
        self.valid_indices, self.normalize, self.log_features = (
            valid_indices,
            normalize,
            log_features,
        )
        self.dedup, self.cache_dir, self.eval_chunk, self.seed = dedup, cache_dir, eval_chunk, seed
        self.node_normalizer: FeatureNormalizer | None = None
        self.config_normalizer: FeatureNormalizer | None = None  # tile config features

    def _dataset(self, split: str, sampler, **kwargs):
        common = dict(
            sampler=sampler, node_normalizer=self.node_normalizer, seed=self.seed, **kwargs
        )
        if self.task == "tile":
            return TileDataset(
                self.root,
                split,
                config_normalizer=self.config_normalizer,
                tile_layout=self.tile_layout,
                **common,
            )
        return LayoutDataset(
            self.root,
            self.source,
            self.search,
            split,
            cache_dir=self.cache_dir,
            transform=self.layout_transform(),
            **common,
        )

    def layout_transform(self) -> ConfigContext | None:
        """The per-graph transform of every layout split (None: whole graphs)."""
        return None if self.context_hops is None else ConfigContext(self.context_hops)

    def train_set(self):
        """Training split with the training sampler; fits the normaliser on first use."""
        ds = self._dataset(
            "train",
            self.sampler(self.configs_per_graph),
            dedup=self.dedup,
            files=self.train_files(),
        )
        if self.normalize and self.node_normalizer is None:
            self.node_normalizer = ds.fit_normalizer(mode=self.normalize, log=self.log_features)
            if self.task == "tile":
                self.config_normalizer = ds.fit_config_normalizer(self.normalize, self.log_features)
        ds.node_normalizer = self.node_normalizer
        if self.task == "tile":
            ds.config_normalizer = self.config_normalizer
        return ds

    @property
    def left_out_fold(self) -> int | None:
        """The train fold this run does not train on (``None`` without ``folds``)."""
        if self.folds is None:
            return None
        return (self.seed if self.fold is None else self.fold) % self.folds

    def train_files(self) -> list[Path] | None:
        """The train graphs of this run: ``None`` (the whole split) without ``folds`` or
        ``extra_train``."""
        if self.folds is None and not self.extra_train:
            return None
        files = split_files(self.root, self.collection, "train")
        for other in self.extra_train:
            files += split_files(self.root, other, "train")
        seen: dict[str, Path] = {}
        for path in files:
            if path.stem in seen:
                raise ValueError(
                    f"data.extra_train: two train graphs named {path.stem}: {seen[path.stem]} "
                    f"and {path}; graphs are told apart by file name (the default and random "
                    "collections of one source share theirs), so name collections of "
                    "another source"
                )
            seen[path.stem] = path
        if self.folds is None:
            return files
        if len(files) < self.folds:
            where = files[0].parent
            if self.extra_train:
                where = f"{where} and the train splits of {', '.join(self.extra_train)}"
            raise ValueError(
                f"data.folds={self.folds} needs at least as many train graphs; "
                f"{where} {'have' if self.extra_train else 'has'} {len(files)}"
            )
        return [path for i, path in enumerate(files) if i % self.folds != self.left_out_fold]

    def feature_state(self) -> dict:
        """Fitted feature statistics, for checkpoints.

        The node-feature normaliser is saved under the key ``"normalizer"``, older than
        tile config normalisers; the key stays so that existing checkpoints load.
        """
        node = self.node_normalizer
        return {
            "normalizer": node.state_dict() if node else None,
            "config_normalizer": (
                self.config_normalizer.state_dict() if self.config_normalizer else None
            ),
        }

    def load_feature_state(self, state: dict) -> None:
        """Restore statistics saved by :meth:`feature_state` (evaluation reuses them)."""
        load = FeatureNormalizer.from_state_dict
        self.node_normalizer = load(state["normalizer"]) if state.get("normalizer") else None
        cfg = state.get("config_normalizer")
        self.config_normalizer = load(cfg) if cfg else None

    def eval_set(self, split: str):
        """A split for evaluation: official fixed indices (valid, layout) or all configs."""
        sampler = AllConfigsSampler()
        if split == "valid" and self.valid_indices == "official" and self.task == "layout":
            path = eval_indices_path(self.collection, self.root)
            if not path.is_file():
                path = eval_indices_path(self.collection)  # the copy bundled with tpulearn
            # Graphs the official subsets do not list are evaluated on every config.
            sampler = FixedIndicesSampler(path, unlisted="all")
        return self._dataset(split, sampler, min_configs=1)

    def uncached_note(self) -> str | None:
        """What training this layout collection without ``cache_dir`` costs, when a train
        graph's ``node_config_feat`` reaches :data:`UNCACHED_NOTE_BYTES` (read from the
        files' headers, nothing decompressed); ``None`` otherwise, with a cache or for tile.
        """
        if self.task != "layout" or self.cache_dir is not None:
            return None
        train = self.train_files() or split_files(self.root, self.collection, "train")
        sizes = [config_feat_nbytes(path) for path in train]
        if max(sizes) < UNCACHED_NOTE_BYTES:
            return None
        try:
            valid = split_files(self.root, self.collection, "valid")
        except FileNotFoundError:
            valid = []
        cache = sum(sizes) + sum(config_feat_nbytes(path) for path in valid)
        return (
            "without data.cache_dir every training step decompresses its graph's whole "
            f"node_config_feat to sample {self.configs_per_graph} configs of it: "
            f"{_size(sum(sizes) / len(sizes))} per train graph on average, "
            f"{_size(max(sizes))} at most, in time and memory; data.cache_dir=DIR (or "
            f"TPULEARN_CACHE=DIR) keeps an uncompressed copy ({_size(cache)} for the train "
            "and valid graphs), filled once, and reads only the sampled rows"
        )

    def describe(self) -> str:
        where = "the bundled TpuGraphs sample" if self.is_sample else str(self.root)
        text = f"{self.collection} from {where}"
        if self.extra_train:
            text += f", also training on the train graphs of {', '.join(self.extra_train)}"
        if self.folds is not None:
            text += f", training on all but fold {self.left_out_fold} of {self.folds}"
        return text


def _size(nbytes: float) -> str:
    if nbytes >= 1e9:
        return f"{nbytes / 1e9:.1f} GB"
    return f"{nbytes / 1e6:.0f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.0f} kB"
