"""``evaluate(cfg)``: score a split with a checkpoint and write what a user reads of it.

The composition layer of evaluation: it rebuilds the model and the data a checkpoint's
config names (Hydra's ``instantiate``), scores the split with
:func:`~tpulearn.training.score_dataset`, and writes the per-graph CSV, the Kaggle
submission rows (test split) and, on request, figures. Entry points (``evaluate.py``,
``tpulearn-evaluate``) wrap it in ``@hydra.main``; tests and the leaderboard compose a
config and call it directly. :func:`load_model` is the checkpoint half of it, shared with
:class:`tpulearn.predict.Predictor`; it takes a checkpoint file or a run folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ._checks import resolve_device
from .combine import check_combine
from .data.sample import root_path
from .data.schema import parse_collection
from .submission import make_id, make_rows, write_submission
from .training import (
    GraphScores,
    combine_graphs,
    evaluate_scores,
    load_checkpoint,
    score_dataset,
)
from .training.checkpoint import CheckpointMismatchError, CheckpointReadError
from .training.progress import wants_bar


class MissingExtraError(ImportError):
    """An option needs a package of an optional extra that is not installed."""


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint a path names: a ``.pt`` file as given, a run folder's
    ``checkpoints/best.pt``, or a ``checkpoints`` folder's ``best.pt``.

    Raises:
        FileNotFoundError: a folder holding neither (the message says it is a folder).
    """
    path = Path(path)
    if not path.is_dir():
        return path
    for candidate in (path / "checkpoints" / "best.pt", path / "best.pt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"checkpoint {path} is a folder without checkpoints/best.pt: pass a checkpoint "
        "file or the folder of a training run" + _runs_inside(path)
    )


def _runs_inside(folder: Path, listed: int = 10) -> str:
    """What to pass for the training runs a folder holds (a Hydra multirun's jobs), or ""."""
    runs = [p for p in folder.iterdir() if (p / "checkpoints" / "best.pt").is_file()]
    if not runs:
        return ""
    runs.sort(key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    items = ",".join(str(p) for p in runs[:listed]) + (",..." if len(runs) > listed else "")
    return (
        f"; it holds {len(runs)} training run(s), as a multirun folder does: "
        f"ckpt=[{items}] scores them as an ensemble"
    )


def run_folder(ckpt: str | Path) -> Path:
    """The training run a checkpoint file belongs to (``<run>/checkpoints/best.pt``)."""
    ckpt = Path(ckpt)
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """A trained model, its config and feature statistics from a checkpoint (notebook use).

    Args:
        path: a checkpoint file, or a run folder (its ``checkpoints/best.pt``).
        device: where the model goes.

    Returns:
        ``(model, config, features)``: the model in eval mode on ``device``, the run's
        resolved config, and the feature statistics under their checkpoint keys,
        ``{"normalizer": node features, "config_normalizer": tile config features}``
        (state dicts or None), for :meth:`CollectionData.load_feature_state`.

    Raises:
        FileNotFoundError: nothing at ``path``, or a folder without a checkpoint.
        CheckpointReadError: the file is damaged or not a training checkpoint.
    """
    device = resolve_device(device)  # before reading the file
    path = checkpoint_file(path)
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"config", "model"} <= state.keys():
        raise CheckpointReadError(
            f"checkpoint {path} is not a training checkpoint (no 'config' and 'model' entries)"
        )
    config = OmegaConf.create(state["config"])
    model = instantiate(config.model)
    model.load_state_dict(state["model"])
    features = {k: state.get(k) for k in ("normalizer", "config_normalizer")}
    return model.to(device).eval(), config, features


def checkpoint_files(ckpt) -> list[Path]:
    """The checkpoints ``ckpt`` names (each as :func:`checkpoint_file` takes it): one path,
    or a list of them for an ensemble (``ckpt=[A,B,C]`` on the command line).

    Raises:
        ValueError: an empty list, or one checkpoint named twice (a run folder and its
            ``best.pt`` are one checkpoint): an ensemble would weigh that model twice.
    """
    items = [ckpt] if isinstance(ckpt, (str, Path)) else list(ckpt)
    if not items:
        raise ValueError("ckpt=[] names no checkpoint: pass ckpt=PATH or ckpt=[PATH,PATH,...]")
    files = [checkpoint_file(p) for p in items]
    seen: dict[Path, str] = {}
    for item, file in zip(items, files, strict=True):
        key = file.resolve()
        if key in seen:
            raise ValueError(
                f"ckpt names the checkpoint {file} twice ({seen[key]} and {item}): an "
                "ensemble would count that model twice; list each checkpoint once"
            )
        seen[key] = str(item)
    return files


def evaluate(cfg: DictConfig) -> dict:
    """Score a split with a checkpoint, or an ensemble of them: metrics (labelled splits),
    per-graph CSV, and the Kaggle submission rows for the test split.

    Config keys: ``ckpt`` (a checkpoint file or a run folder; a list of them scores with
    their ensemble), ``ensemble`` (``rank`` or ``zscore``: how an ensemble combines its
    members' scores per graph, :mod:`tpulearn.combine`), ``split`` (valid|test), optional
    ``data`` overrides of each checkpoint's data config, ``out_dir`` (default
    :func:`default_out_dir`), ``device``, ``plots`` (write PNGs of a labelled split under
    ``<out_dir>/plots/<split>/``, listed in ``result["plots"]``), ``progress`` (auto:
    tqdm bars on a terminal, else a line per graph scored; true; false). Every file
    written is printed. A list of one checkpoint is that checkpoint alone.

    Raises:
        MissingExtraError: ``plots`` is set and matplotlib is missing (raised before any
            work).
        CheckpointMismatchError: ensemble members of different tasks or collections, or
            whose data configs select different configs (the message names both).
    """
    if cfg.get("plots", False):
        _require_matplotlib()
    device = resolve_device(cfg.get("device", "cpu"))
    bar = wants_bar(cfg.get("progress", "auto"), "progress")
    ckpts = checkpoint_files(cfg.ckpt)
    combine = check_combine(cfg.get("ensemble") or "rank")
    overrides = {k: v for k, v in (cfg.get("data") or {}).items() if v is not None}
    members = [_load_member(ckpt, device, overrides) for ckpt in ckpts]
    if len(members) == 1:
        print(f"checkpoint: {ckpts[0]}")
    else:
        print(f"ensemble of {len(members)} checkpoints, combined by ensemble={combine}:")
        print("\n".join(f"  member {i}: {m.ckpt}" for i, m in enumerate(members, start=1)))
        _check_members(members)
    first = members[0]
    data, train_cfg = first.data, first.train_cfg
    out_dir = cfg.get("out_dir") or default_out_dir(
        first.ckpt, cfg.split, data.collection, train_cfg, ckpts, combine
    )
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission: one line, before scoring
        raise ValueError(f"out_dir={out_dir} cannot be made a folder: {exc.strerror}") from None
    scored = []
    for i, m in enumerate(members, start=1):
        dataset = m.data.eval_set(cfg.split)
        graphs = score_dataset(m.model, dataset, device, m.data.eval_chunk, progress=bar)
        if not bar:
            who = f"member {i}: " if len(members) > 1 else ""
            graphs = _graph_lines(graphs, len(dataset), who)
        scored.append(list(graphs))
    graphs = scored[0] if len(members) == 1 else combine_graphs(ckpts, scored, combine)
    result: dict = {"data": data.describe(), "split": cfg.split, "graphs": len(graphs)}
    if len(members) > 1:
        result["members"], result["ensemble"] = [str(c) for c in ckpts], combine
        path = out_dir / "ensemble.json"
        path.write_text(json.dumps({"members": result["members"], "ensemble": combine}) + "\n")
        print(f"ensemble members: {path}")
    if all(g.config_runtime.any() for g in graphs):
        _report_metrics(cfg, data.collection, graphs, out_dir, result)
    elif cfg.get("plots", False):
        result["plots"] = []
        print(f"plots: none, the {cfg.split} split is unlabelled")
    if cfg.split == "test":
        _report_submission(data.collection, graphs, out_dir, result)
    return result


def default_out_dir(
    ckpt: Path,
    split: str,
    collection: str,
    train_cfg: DictConfig,
    members: Sequence[Path] = (),
    combine: str = "rank",
) -> Path:
    """``<run>/eval/<split>`` beside the checkpoint's run; a collection other than the
    run's own gets its own folder, ``<run>/eval/<split>-<collection>``. A checkpoint other
    than ``best.pt`` (``last.pt``) writes under ``<run>/eval/<its stem>/``, so scoring it
    does not replace what the best checkpoint's evaluation wrote.

    An ensemble (more than one ``members``, ``ckpt`` the first) writes beside its first
    member's run, under ``<run>/eval/ensemble-<digest>/``: the digest hashes the members'
    resolved paths and ``combine``, so one ensemble rewrites its own folder and never
    another's (its ``ensemble.json`` lists the members).
    """
    folder = run_folder(ckpt) / "eval"
    if len(members) > 1:
        key = "\n".join([combine, *(str(Path(m).resolve()) for m in members)])
        folder = folder / f"ensemble-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    elif Path(ckpt).name != "best.pt":
        folder = folder / Path(ckpt).stem
    if collection == train_cfg.data.get("collection", collection):
        return folder / split
    return folder / f"{split}-{collection.replace(':', '_')}"


@dataclass
class _Member:
    """A checkpoint's model, its run's config and its data (its feature statistics)."""

    ckpt: Path
    model: torch.nn.Module
    train_cfg: DictConfig
    data: object  # tpulearn.data.CollectionData


def _graph_lines(graphs, total: int, who: str):
    """``graphs`` as they come, printing a line as each is scored: what a log shows in
    place of the progress bars."""
    start = time.perf_counter()
    for i, graph in enumerate(graphs, start=1):
        seconds = time.perf_counter() - start
        print(
            f"{who}scored {i}/{total} graphs: {graph.stem} ({graph.scores.shape[0]:,} configs, "
            f"{seconds:.1f} s)",
            flush=True,
        )
        start = time.perf_counter()
        yield graph


def _load_member(ckpt: Path, device, overrides: dict) -> _Member:
    model, train_cfg, features = load_model(ckpt, device)
    data_cfg = train_cfg.data
    wanted = overrides.get("collection")
    if wanted and parse_collection(wanted)[0] != data_cfg.task:
        raise CheckpointMismatchError(
            f"checkpoint {ckpt} holds a {data_cfg.task} model; data.collection={wanted} is a "
            f"{parse_collection(wanted)[0]} collection: score it with a checkpoint of that task"
        )
    if data_cfg.task != "layout" and overrides.get("cache_dir") == os.environ.get("TPULEARN_CACHE"):
        # eval.yaml's default, $TPULEARN_CACHE, serves layout files: no tile warning for it.
        overrides = {k: v for k, v in overrides.items() if k != "cache_dir"}
    if overrides:
        data_cfg = OmegaConf.merge(data_cfg, overrides)
    root = data_cfg.get("root")
    if (
        "root" not in overrides
        and root not in (None, "", "sample")
        and not root_path(root).is_dir()
    ):
        # The root the run trained on, as its config spelt it: a relative one names a
        # folder beside where training ran, not beside here.
        where = "" if root_path(root).is_absolute() else f" (relative to {Path.cwd()})"
        raise FileNotFoundError(
            f"the data root in checkpoint {ckpt}'s config, data.root={root}, is not a "
            f"folder{where}: pass data.root=DIR, the folder that holds npz/"
        )
    data = instantiate(data_cfg)
    data.load_feature_state(features)
    return _Member(ckpt, model, train_cfg, data)


def _check_members(members: Sequence[_Member]) -> None:
    """Refuse an ensemble whose members score different tasks or collections."""
    first = members[0]
    for m in members[1:]:
        for what, a, b, fix in (
            ("task", first.train_cfg.data.task, m.train_cfg.data.task, "combine one task"),
            (
                "collection",
                first.data.collection,
                m.data.collection,
                "data.collection=... scores one collection with every member",
            ),
        ):
            if a != b:
                raise CheckpointMismatchError(
                    f"ensemble members disagree on the {what}: {first.ckpt} is {a}, "
                    f"{m.ckpt} is {b}; {fix}"
                )


def _require_matplotlib() -> None:
    # Checked before scoring: a missing extra should not cost a whole evaluation.
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            "plots=true needs matplotlib: pip install 'tpulearn[notebooks]' (or drop plots=true)"
        ) from None


def _report_metrics(
    cfg: DictConfig, collection: str, graphs: list[GraphScores], out_dir: Path, result: dict
) -> None:
    """Metrics of a labelled split into ``result``; the per-graph CSV and the figures."""
    metrics, per_graph = evaluate_scores(collection, graphs)
    result["metrics"] = metrics
    path = _write_per_graph_csv(per_graph, out_dir / f"per_graph_{cfg.split}.csv")
    result["per_graph_csv"] = str(path)
    print(
        f"{collection} {cfg.split}: "
        + " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    )
    print(f"per-graph metrics: {path}")
    if cfg.get("plots", False):
        # matplotlib is an optional extra: imported only when figures are asked for.
        from .plots import write_evaluation_plots

        folder = out_dir / "plots" / cfg.split
        pngs = write_evaluation_plots(collection, graphs, per_graph, folder)
        result["plots"] = [str(p) for p in pngs]
        print(f"plots ({len(pngs)} PNG files):\n" + "\n".join(result["plots"]))


def _write_per_graph_csv(per_graph: dict[str, dict], path: Path) -> Path:
    """One row per graph, one column per metric (sorted names)."""
    with open(path, "w", newline="") as fp:
        names = sorted({k for row in per_graph.values() for k in row})
        writer = csv.writer(fp)
        writer.writerow(["graph", *names])
        for stem, row in per_graph.items():
            writer.writerow([stem, *(row.get(k) for k in names)])
    return path


def _report_submission(
    collection: str, graphs: list[GraphScores], out_dir: Path, result: dict
) -> None:
    """The collection's Kaggle submission rows, written next to the other outputs."""
    scores = {g.stem: _full_order(g) for g in graphs}
    rows = make_rows(collection, scores)
    path = write_submission(out_dir / f"submission_{collection.replace(':', '_')}.csv", rows)
    result["submission"] = str(path)
    first = make_id(collection, graphs[0].stem)
    print(f"submission rows for {len(rows)} graphs: {path} (first id {first})")


def _full_order(g: GraphScores) -> np.ndarray:
    """Scores indexed by config row (the file's order), for submission ranking."""
    scores = np.full(int(g.config_index.max()) + 1, np.inf)
    scores[g.config_index] = g.scores
    return scores
