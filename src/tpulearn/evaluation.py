"""``evaluate(cfg)``: score a split with a checkpoint and write what a user reads of it.

The composition layer of evaluation: it rebuilds the model and the data a checkpoint's
config names (Hydra's ``instantiate``), scores the split with
:func:`~tpulearn.training.score_dataset`, and writes the per-graph CSV, the Kaggle
submission rows (test split) and, on request, figures. Entry points (``evaluate.py``,
``tpulearn-evaluate``) wrap it in ``@hydra.main``; tests and the leaderboard compose a
config and call it directly. :func:`load_model` is the checkpoint half of it, shared with
:class:`tpulearn.predict.Predictor`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .submission import make_id, make_rows, write_submission
from .training import GraphScores, evaluate_scores, load_checkpoint, score_dataset


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """A trained model, its config and feature statistics from a checkpoint (notebook use).

    Returns:
        ``(model, config, features)``: the model in eval mode on ``device``, the run's
        resolved config, and the feature statistics under their checkpoint keys,
        ``{"normalizer": node features, "config_normalizer": tile config features}``
        (state dicts or None), for :meth:`CollectionData.load_feature_state`.
    """
    state = load_checkpoint(path)
    config = OmegaConf.create(state["config"])
    model = instantiate(config.model)
    model.load_state_dict(state["model"])
    features = {k: state.get(k) for k in ("normalizer", "config_normalizer")}
    return model.to(device).eval(), config, features


def evaluate(cfg: DictConfig) -> dict:
    """Score a split with a checkpoint: metrics (labelled splits), per-graph CSV, and the
    Kaggle submission rows for the test split.

    Config keys: ``ckpt`` (path), ``split`` (valid|test), optional ``data`` overrides of the
    checkpoint's data config, ``out_dir``, ``device``, ``plots`` (write PNGs of a labelled
    split under ``<out_dir>/plots/<split>/``, listed in ``result["plots"]``).
    """
    device = cfg.get("device", "cpu")
    model, train_cfg, features = load_model(cfg.ckpt, device)
    data_cfg = train_cfg.data
    overrides = {k: v for k, v in (cfg.get("data") or {}).items() if v is not None}
    if overrides:
        data_cfg = OmegaConf.merge(data_cfg, overrides)
    data = instantiate(data_cfg)
    data.load_feature_state(features)
    dataset = data.eval_set(cfg.split)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graphs = list(score_dataset(model, dataset, device, data.eval_chunk, progress=True))
    result: dict = {"data": data.describe(), "split": cfg.split, "graphs": len(graphs)}
    if all(g.config_runtime.any() for g in graphs):
        _report_metrics(cfg, data.collection, graphs, out_dir, result)
    elif cfg.get("plots", False):
        result["plots"] = []
        print(f"plots: none, the {cfg.split} split is unlabelled")
    if cfg.split == "test":
        _report_submission(data.collection, graphs, out_dir, result)
    return result


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
