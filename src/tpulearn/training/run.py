"""``train(cfg)`` and ``evaluate(cfg)``: build the objects a config names and run them.

This is the composition layer: it instantiates ``_target_`` entries (Hydra's
``instantiate``) and hands plain objects to the :class:`~tpulearn.training.Trainer`.
Entry points (``train.py``, ``evaluate.py``, console scripts) wrap these in ``@hydra.main``;
tests compose a config and call them directly.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..submission import make_id, make_rows, write_submission
from .checkpoint import load_checkpoint
from .scoring import evaluate_scores, score_dataset


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: DictConfig) -> dict:
    """Train the configured model on the configured data; return the run's metrics.

    Returns:
        ``{"best": {...validation metrics at the best step...}, "history": [...],
        "checkpoints": {"last", "best"}, "tensorboard": dir, "data": description}``.
    """
    seed_everything(int(cfg.trainer.seed))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    data = instantiate(cfg.data)
    model = instantiate(cfg.model)
    loss_fn = instantiate(cfg.loss)
    optimizer = instantiate(cfg.optim)(params=model.parameters())
    scheduler = instantiate(cfg.scheduler)(optimizer=optimizer) if cfg.get("scheduler") else None
    gst = instantiate(cfg.gst) if cfg.get("gst") else None
    trainer = instantiate(cfg.trainer, gst=gst)
    out_dir = Path(cfg.out_dir)
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    if main:
        print(f"data: {data.describe()}")
        print(f"model: {model!r}")
    result = trainer.fit(model, loss_fn, optimizer, data, out_dir, scheduler, resolved)
    result["data"] = data.describe()
    if not main:
        return result
    best = result["best"] or {}
    print(
        f"best validation (step {best.get('step')}, selected on {result['select_metric']}): "
        + " ".join(f"{k} {v:.4f}" for k, v in best.items() if k != "step" and isinstance(v, float))
    )
    print(f"checkpoints: {result['checkpoints']['best']} (best), {result['checkpoints']['last']}")
    print(f"tensorboard: tensorboard --logdir {result['tensorboard']}")
    return result


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """A trained model, its config and feature statistics from a checkpoint (notebook use).

    Returns:
        ``(model, config, features)``: the model in eval mode on ``device``, the run's
        resolved config, and ``{"normalizer", "config_normalizer"}`` state dicts (values
        may be None) for :meth:`CollectionData.load_feature_state`.
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
    model, train_cfg, features = load_model(cfg.ckpt, cfg.get("device", "cpu"))
    data_cfg = train_cfg.data
    overrides = {k: v for k, v in (cfg.get("data") or {}).items() if v is not None}
    if overrides:
        data_cfg = OmegaConf.merge(data_cfg, overrides)
    data = instantiate(data_cfg)
    data.load_feature_state(features)
    dataset = data.eval_set(cfg.split)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graphs = list(
        score_dataset(model, dataset, cfg.get("device", "cpu"), data.eval_chunk, progress=True)
    )
    result: dict = {"data": data.describe(), "split": cfg.split, "graphs": len(graphs)}
    if all(g.config_runtime.any() for g in graphs):
        metrics, per_graph = evaluate_scores(data.collection, graphs)
        result["metrics"] = metrics
        path = out_dir / f"per_graph_{cfg.split}.csv"
        with open(path, "w", newline="") as fp:
            names = sorted({k for row in per_graph.values() for k in row})
            writer = csv.writer(fp)
            writer.writerow(["graph", *names])
            for stem, row in per_graph.items():
                writer.writerow([stem, *(row.get(k) for k in names)])
        result["per_graph_csv"] = str(path)
        print(
            f"{data.collection} {cfg.split}: "
            + " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        )
        if cfg.get("plots", False):
            from ..plots import write_evaluation_plots

            folder = out_dir / "plots" / cfg.split
            pngs = write_evaluation_plots(data.collection, graphs, per_graph, folder)
            result["plots"] = [str(p) for p in pngs]
            print(f"plots ({len(pngs)} PNG files):\n" + "\n".join(result["plots"]))
    elif cfg.get("plots", False):
        result["plots"] = []
        print(f"plots: none, the {cfg.split} split is unlabelled")
    if cfg.split == "test":
        preds = {g.stem: _full_order(g) for g in graphs}
        rows = make_rows(data.collection, preds)
        path = write_submission(
            out_dir / f"submission_{data.collection.replace(':', '_')}.csv", rows
        )
        result["submission"] = str(path)
        first = make_id(data.collection, graphs[0].stem)
        print(f"submission rows for {len(rows)} graphs: {path} (first id {first})")
    return result


def _full_order(g) -> np.ndarray:
    """Scores indexed by config row (the file's order), for submission ranking."""
    scores = np.full(int(g.config_index.max()) + 1, np.inf)
    scores[g.config_index] = g.scores
    return scores
