"""One collection's train / valid / test datasets, built from plain arguments (a config).

Normalisation statistics are fitted on the train split only and shared with the other
splits, so evaluation sees exactly what training saw; they travel in checkpoints.
"""

from __future__ import annotations

import os
from pathlib import Path

from .datasets import LayoutDataset, TileDataset
from .features import FeatureNormalizer
from .sample import eval_indices_path, sample_root
from .sampling import AllConfigsSampler, FastBiasedSampler, FixedIndicesSampler, UniformSampler
from .schema import parse_collection

SAMPLERS = ("uniform", "fast_biased")


def resolve_root(root: str | Path | None) -> Path:
    """``None`` or ``"sample"`` -> the bundled sample; otherwise the given folder."""
    if root is None or root == "sample":
        return sample_root()
    if root == "":
        raise FileNotFoundError(
            "no data root given: pass data.root=DIR (or data.root=sample for the bundled "
            "files) or set the TPUGRAPHS_ROOT environment variable"
        )
    root = Path(os.path.expanduser(str(root)))
    if not root.is_dir():
        raise FileNotFoundError(
            f"data root {root} does not exist; pass data.root=DIR or set TPUGRAPHS_ROOT, "
            f"and download with `python scripts/download_tpugraphs.py --root {root} ...`"
        )
    return root


class CollectionData:
    """Datasets of one TpuGraphs collection.

    Args:
        collection: ``"tile:xla"`` or ``"layout:<xla|nlp>:<default|random>"``.
        task: ``"tile"`` or ``"layout"``; must match the collection (models read it).
        root: data root laid out as released; ``None`` = the bundled sample.
        configs_per_graph: configs sampled per graph per training step.
        sampler: ``"uniform"`` or ``"fast_biased"`` for training.
        valid_indices: ``"official"`` (the fixed 1000-config subsets, layout only; all
            configs for graphs they do not list) or ``"all"``.
        normalize: ``"zscore"``, ``"minmax"`` or ``None`` for node features.
        log_features: signed log1p before normalising.
        dedup: train on distinct configs only.
        cache_dir: memory-mapped cache of layout config features (``None``: in memory).
        eval_chunk: configs scored at a time during evaluation.
        seed: sampling seed.
    """

    def __init__(
        self,
        collection: str,
        task: str,
        root: str | Path | None = None,
        configs_per_graph: int = 32,
        sampler: str = "fast_biased",
        valid_indices: str = "official",
        normalize: str | None = "zscore",
        log_features: bool = True,
        dedup: bool = False,
        cache_dir: str | Path | None = None,
        eval_chunk: int = 64,
        seed: int = 0,
    ):
        kind, self.source, self.search = parse_collection(collection)
        if kind != task:
            raise ValueError(f"data.task={task!r} does not match collection {collection!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"data.sampler must be one of {SAMPLERS}, got {sampler!r}")
        if valid_indices not in ("official", "all"):
            raise ValueError(
                f"data.valid_indices must be 'official' or 'all', got {valid_indices!r}"
            )
        self.collection, self.task = collection, task
        self.root = resolve_root(root)
        self.is_sample = self.root == sample_root()
        self.configs_per_graph, self.sampler = configs_per_graph, sampler
        self.valid_indices, self.normalize, self.log_features = (
            valid_indices,
            normalize,
            log_features,
        )
        self.dedup, self.cache_dir, self.eval_chunk, self.seed = dedup, cache_dir, eval_chunk, seed
        self.normalizer: FeatureNormalizer | None = None
        self.config_normalizer: FeatureNormalizer | None = None  # tile config features

    def _dataset(self, split: str, sampler, **kwargs):
        common = dict(sampler=sampler, normalizer=self.normalizer, seed=self.seed, **kwargs)
        if self.task == "tile":
            return TileDataset(self.root, split, config_normalizer=self.config_normalizer, **common)
        return LayoutDataset(
            self.root, self.source, self.search, split, cache_dir=self.cache_dir, **common
        )

    def train_set(self):
        """Training split with the training sampler; fits the normaliser on first use."""
        cls = UniformSampler if self.sampler == "uniform" else FastBiasedSampler
        ds = self._dataset("train", cls(self.configs_per_graph), dedup=self.dedup)
        if self.normalize and self.normalizer is None:
            self.normalizer = ds.fit_normalizer(mode=self.normalize, log=self.log_features)
            if self.task == "tile":
                self.config_normalizer = ds.fit_config_normalizer(self.normalize, self.log_features)
        ds.normalizer = self.normalizer
        if self.task == "tile":
            ds.config_normalizer = self.config_normalizer
        return ds

    def feature_state(self) -> dict:
        """Fitted feature statistics, for checkpoints."""
        return {
            "normalizer": self.normalizer.state_dict() if self.normalizer else None,
            "config_normalizer": (
                self.config_normalizer.state_dict() if self.config_normalizer else None
            ),
        }

    def load_feature_state(self, state: dict) -> None:
        """Restore statistics saved by :meth:`feature_state` (evaluation reuses them)."""
        load = FeatureNormalizer.from_state_dict
        self.normalizer = load(state["normalizer"]) if state.get("normalizer") else None
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

    def describe(self) -> str:
        where = "the bundled TpuGraphs sample" if self.is_sample else str(self.root)
        return f"{self.collection} from {where}"
