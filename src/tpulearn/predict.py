"""Score the configs of any TpuGraphs file or record with a trained checkpoint.

from tpulearn.predict import Predictor
predictor = Predictor.from_checkpoint("outputs/.../checkpoints/best.pt")
scores = predictor.score_file("graph.npz")        # [num_configs], lower = faster
scores = predictor.score_record(record)           # a record read or featurized in memory
order = predictor.rank_file("graph.npz")          # config indices, fastest first

An :class:`Ensemble` of several checkpoints of one task has the same interface; per graph it
combines its members' scores by mean rank (default) or mean z-score (:mod:`tpulearn.combine`):

ensemble = Ensemble.from_checkpoints(["runs/seed0", "runs/seed1", "runs/seed2"])
scores = ensemble.score_file("graph.npz")         # mean rank per config, lower = faster
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ._checks import check_folder, check_int, resolve_device
from .combine import check_combine, combine_scores
from .data import (
    FeatureNormalizer,
    LayoutRecord,
    TileRecord,
    TpuGraphsFormatError,
    read_layout,
    read_tile,
)
from .data.collection import EVAL_CHUNK
from .data.items import TpuGraphData, item_configs, layout_item, tile_item
from .data.schema import LAYOUT_KEYS, TILE_KEYS
from .graph import ConfigContext
from .training import CheckpointMismatchError
from .training.scoring import scoring_calls


class Predictor:
    """A trained model with the feature statistics it was trained with.

    Args:
        model: a config-scoring model (``model(data) -> [C]``).
        task: ``"tile"`` or ``"layout"``.
        node_normalizer: the node-feature normaliser of its training run (or None).
        device: where to run.
        chunk: configs per pass through the config-dependent layers (see
            :func:`~tpulearn.training.score_dataset`); by default as a run validates.
        config_normalizer: the tile config-feature normaliser of its run (or None).
        transform: the per-graph transform of its run's data (``data.context_hops``:
            a :class:`~tpulearn.graph.ConfigContext`), applied to each item; None: none.
        tile_layout: tile items carry the config features of ``data.tile_layout``.
        cache_dir: where :meth:`score_file` keeps an uncompressed copy of a layout file's
            config features and reads them memory-mapped, an item at a time (as
            ``data.cache_dir`` does in training); None: each file's are decompressed into
            memory whole (gigabytes for the largest nlp graphs).
    """

    def __init__(
        self,
        model,
        task: str,
        node_normalizer: FeatureNormalizer | None,
        device="cpu",
        chunk=EVAL_CHUNK,
        config_normalizer: FeatureNormalizer | None = None,
        transform: Callable[[TpuGraphData], TpuGraphData] | None = None,
        tile_layout: bool = False,
        cache_dir: str | Path | None = None,
    ):
        device = resolve_device(device)
        self.cache_dir = check_folder("cache_dir", cache_dir)
        self.model = model.to(device).eval()
        self.tile_layout = tile_layout
        self.task, self.device, self.chunk = task, device, check_int("chunk", chunk, 1)
        self.node_normalizer = node_normalizer
        self.config_normalizer = config_normalizer
        self.transform = transform

    def __repr__(self) -> str:
        # What a notebook shows: which model scores, on what, with which inputs.
        extras = [
            name
            for name, on in (
                ("node normaliser", self.node_normalizer is not None),
                ("config normaliser", self.config_normalizer is not None),
                ("tile_layout", self.tile_layout),
            )
            if on
        ]
        if self.transform is not None:
            extras.append(repr(self.transform))
        inputs = f", {', '.join(extras)}" if extras else ""
        return f"Predictor({self.task}, {self.model!r}, device={self.device}{inputs})"

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "cpu",
        chunk: int | None = None,
        cache_dir: str | Path | None | bool = None,
    ) -> Predictor:
        """The predictor of a checkpoint file, or of a run folder (its
        ``checkpoints/best.pt``); see :func:`tpulearn.evaluation.load_model`.

        ``chunk`` None: the run's ``data.eval_chunk``, so a file scores as ``evaluate.py``
        scores every config of it (the test split). A model with config attention scores
        each config among the others of its chunk: another chunk gives other scores.
        ``cache_dir`` None: ``$TPULEARN_CACHE`` where it is set, as training and
        ``evaluate.py`` read it, else none; False: none (config features in memory).
        """
        from .evaluation import load_model

        cache_dir = default_cache_dir(cache_dir)
        model, config, features = load_model(path, device)
        if chunk is None:
            chunk = config.data.get("eval_chunk") or EVAL_CHUNK
        load = FeatureNormalizer.from_state_dict
        # Checkpoint keys: "normalizer" is the node-feature one (the key predates tile
        # config normalisers and stays so that existing checkpoints load).
        node_state, config_state = features["normalizer"], features["config_normalizer"]
        node_normalizer = load(node_state) if node_state else None
        config_normalizer = load(config_state) if config_state else None
        hops = config.data.get("context_hops")
        transform = None if hops is None else ConfigContext(hops)
        tile_layout = bool(config.data.get("tile_layout", False))
        return cls(
            model,
            config.data.task,
            node_normalizer,
            device,
            chunk,
            config_normalizer,
            transform,
            tile_layout,
            cache_dir,
        )

    def score_file(self, path: str | Path) -> np.ndarray:
        """Scores [num_configs] of every config in the file, in file order.

        Raises:
            TpuGraphsFormatError: the file is missing, damaged or breaks an invariant.
            CheckpointMismatchError: the file is of the other task (a tile file for a
                layout model or the reverse).
        """
        return self.score_record(read_record(path, self.task, self.cache_dir))

    @torch.no_grad()
    def score_record(self, record: TileRecord | LayoutRecord) -> np.ndarray:
        """Scores [num_configs] of every config of a validated record, in row order.

        Args:
            record: a record as :func:`~tpulearn.data.read_tile` /
                :func:`~tpulearn.data.read_layout` or :mod:`tpulearn.featurize` return
                it, of this predictor's task.
        """
        expected = TileRecord if self.task == "tile" else LayoutRecord
        if not isinstance(record, expected):
            raise TypeError(
                f"a {self.task} predictor scores {expected.__name__}s, got {type(record).__name__}"
            )
        budget, kwargs = scoring_calls(self.model, self.chunk)  # as score_dataset
        feat = record.config_feat if self.task == "tile" else record.node_config_feat
        size = item_configs(feat, self.chunk, budget)
        parts = []
        for start in range(0, record.num_configs, size):
            rows = np.arange(start, min(start + size, record.num_configs), dtype=np.int64)
            data = self._item(record, rows)
            parts.append(self.model(data.to(self.device), **kwargs).float().cpu().numpy())
        return np.concatenate(parts)

    def rank_file(self, path: str | Path) -> np.ndarray:
        """Config indices of the file, predicted fastest first."""
        return np.argsort(self.score_file(path), kind="stable")

    def _item(self, record, rows: np.ndarray):
        # The dataset defaults the training runs use: layout padding re-encoded.
        if self.task == "tile":
            data = tile_item(
                record,
                rows,
                self.node_normalizer,
                self.config_normalizer,
                tile_layout=self.tile_layout,
            )
        else:
            data = layout_item(record, rows, self.node_normalizer)
        return data if self.transform is None else self.transform(data)


class Ensemble:
    """Several predictors of one task scoring as one, with :class:`Predictor`'s interface.

    Per graph, each member scores every config and :func:`tpulearn.combine.combine_scores`
    combines the scores: ``"rank"`` (mean of each member's average ranks, the default:
    invariant to each member's score scale, as the metrics are) or ``"zscore"`` (mean of
    each member's z-scores over the graph's configs). Lower stays faster.

    Args:
        members: predictors of one task.
        combine: ``"rank"`` or ``"zscore"``.
        names: a name per member for messages (its checkpoint); default ``member <i>``.

    Raises:
        ValueError: no members, or an unknown ``combine``.
        CheckpointMismatchError: members of different tasks (the message names both).
    """

    def __init__(
        self,
        members: Sequence[Predictor],
        combine: str = "rank",
        names: Sequence[str] | None = None,
    ):
        self.combine = check_combine(combine)
        self.members = list(members)
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        self.names = (
            [str(n) for n in names]
            if names
            else [f"member {i}" for i in range(1, len(self.members) + 1)]
        )
        if len(self.names) != len(self.members):
            raise ValueError(f"{len(self.names)} names for {len(self.members)} members")
        for name, member in zip(self.names[1:], self.members[1:], strict=True):
            if member.task != self.task:
                raise CheckpointMismatchError(
                    f"ensemble members of different tasks: {self.names[0]} is a {self.task} "
                    f"model, {name} a {member.task} model; combine checkpoints of one task"
                )

    @classmethod
    def from_checkpoints(
        cls,
        paths: Sequence[str | Path],
        device: str = "cpu",
        chunk: int | None = None,
        combine: str = "rank",
        cache_dir: str | Path | None | bool = None,
    ) -> Ensemble:
        """The ensemble of checkpoint files or run folders (each as
        :meth:`Predictor.from_checkpoint` takes it, ``chunk`` and ``cache_dir`` too); each
        checkpoint once (ValueError otherwise, as
        :func:`~tpulearn.evaluation.checkpoint_files`)."""
        from .evaluation import checkpoint_files

        if isinstance(paths, (str, Path)):
            raise TypeError("from_checkpoints takes a list of checkpoints, got one path")
        check_combine(combine)  # before loading any checkpoint
        files = checkpoint_files(list(paths))
        members = [Predictor.from_checkpoint(f, device, chunk, cache_dir) for f in files]
        return cls(members, combine, names=[str(f) for f in files])

    @property
    def task(self) -> str:
        return self.members[0].task

    def __repr__(self) -> str:
        return (
            f"Ensemble({self.task}, {len(self.members)} members, combine={self.combine}: "
            f"{', '.join(self.names)})"
        )

    def score_file(self, path: str | Path) -> np.ndarray:
        """Ensemble scores [num_configs] of every config in the file, in file order; the
        errors of :meth:`Predictor.score_file`; the file is read once, with the first
        member's ``cache_dir``."""
        return self.score_record(read_record(path, self.task, self.members[0].cache_dir))

    def score_record(self, record: TileRecord | LayoutRecord) -> np.ndarray:
        """Ensemble scores [num_configs] of every config of a record, in row order."""
        return combine_scores([m.score_record(record) for m in self.members], self.combine)

    def rank_file(self, path: str | Path) -> np.ndarray:
        """Config indices of the file, predicted fastest first (ties: lower index first)."""
        return np.argsort(self.score_file(path), kind="stable")


def default_cache_dir(cache_dir: str | Path | None | bool) -> str | Path | None:
    """The cache folder ``from_checkpoint`` reads through: ``None`` (or True) ->
    ``$TPULEARN_CACHE`` (None where unset or empty), ``False`` -> None, a folder as given."""
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        return os.environ.get("TPULEARN_CACHE") or None
    return cache_dir


def read_record(
    path: str | Path, task: str, cache_dir: str | Path | None = None
) -> TileRecord | LayoutRecord:
    """The validated record of a ``task`` file (a layout file's config features
    memory-mapped from ``cache_dir`` when given: :func:`~tpulearn.data.read_layout`).

    Raises:
        TpuGraphsFormatError: the file is missing, damaged or breaks an invariant.
        CheckpointMismatchError: the file is of the other task.
    """
    try:
        if task == "tile":
            return read_tile(Path(path))
        return read_layout(Path(path), cache_dir=cache_dir)
    except TpuGraphsFormatError:
        other = _other_task_of(Path(path), task)
        if other is None:
            raise
        raise CheckpointMismatchError(
            f"{path} is a {other} file but the checkpoint's model is a {task} "
            f"model: score it with a {other} checkpoint"
        ) from None


def _other_task_of(path: Path, task: str) -> str | None:
    """The other task when the npz holds exactly that task's keys, else None."""
    other = "layout" if task == "tile" else "tile"
    try:
        with np.load(path) as npz:
            keys = set(npz.files)
    except Exception:  # unreadable: the reader's own error says why
        return None
    wanted = set(LAYOUT_KEYS if other == "layout" else TILE_KEYS)
    own = set(TILE_KEYS if task == "tile" else LAYOUT_KEYS)
    return other if wanted <= keys and not own <= keys else None
