"""The training loop: plain objects in, metrics out; side effects (progress, TensorBoard,
checkpoints) live here and nowhere in the library below it."""

from __future__ import annotations

import math
import resource
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .scoring import autocast, evaluate_scores, score_dataset

# Metrics where a larger value is better; the rest (errors) are minimised.
MAXIMISED = ("kendall_tau", "opa", "score")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("trainer.device=cuda but no CUDA device is available")
    return torch.device(device)


class Trainer:
    """Trains a config-scoring model on one collection.

    Args:
        max_steps: optimizer steps.
        graphs_per_batch: graphs per step (each with its own sample of configs); the loss
            is the mean over them.
        grad_clip: max gradient norm (``None`` or 0: no clipping).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"`` or ``"bf16"`` (autocast, on CUDA or on CPUs with bf16
            instructions; see benchmarks/results.md for what it gains).
        val_every: validate (and checkpoint) every this many steps, and at the end.
        select_metric: validation metric choosing the ``best`` checkpoint: ``"auto"`` (OPA
            for layout, as the official trainers; the Kaggle score for tile), or any metric
            the Evaluator returns (``kendall_tau``, ``score``, ``top1_error``, ...).
        patience: stop after this many validations without improvement (0: never).
        log_every: steps between loss logs.
        progress: ``"auto"`` (a bar only on a terminal), ``True`` or ``False``.
        configs_per_graph, seed: recorded for reference (the data config samples them).
        resume: ``True`` continues from ``<out_dir>/checkpoints/last.pt``, a path from that
            checkpoint; ``False`` starts afresh.
        gst: graph segment training settings used when the model is a
            :class:`~tpulearn.segments.SegmentModel` with segments enabled: ``keep_prob``,
            ``rescale``, ``missing``, ``fill_chunk``, ``dropout_unit`` (see
            :class:`~tpulearn.segments.GSTTrainer`).
    """

    def __init__(
        self,
        max_steps: int = 1000,
        graphs_per_batch: int = 4,
        grad_clip: float | None = 1.0,
        device: str = "auto",
        precision: str = "fp32",
        val_every: int = 100,
        select_metric: str = "auto",
        patience: int = 0,
        log_every: int = 10,
        progress: str | bool = "auto",
        configs_per_graph: int = 32,
        seed: int = 0,
        resume: bool | str = False,
        gst: dict | None = None,
    ):
        self.max_steps, self.graphs_per_batch, self.grad_clip = (
            max_steps,
            graphs_per_batch,
            grad_clip,
        )
        self.device, self.precision = resolve_device(device), precision
        self.val_every, self.select_metric, self.patience = val_every, select_metric, patience
        self.log_every, self.seed, self.resume = log_every, seed, resume
        self.gst_settings = dict(gst or {})
        self.gst = None  # a GSTTrainer once fit() meets a segment model
        self._order_key: tuple[int, int] | None = None
        self._order = np.empty(0, dtype=np.int64)
        self.progress = sys.stderr.isatty() if progress == "auto" else bool(progress)

    # ---------------------------------------------------------------- batches

    def graph_indices(self, step: int, num_graphs: int) -> list[tuple[int, int]]:
        """(epoch, graph) pairs of one step: each epoch visits every graph once in an order
        fixed by (seed, epoch), so a resumed run sees the same batches."""
        out = []
        for k in range(step * self.graphs_per_batch, (step + 1) * self.graphs_per_batch):
            epoch, pos = divmod(k, num_graphs)
            out.append((epoch, int(self._epoch_order(epoch, num_graphs)[pos])))
        return out

    def _epoch_order(self, epoch: int, num_graphs: int) -> np.ndarray:
        # One permutation per epoch, kept until the epoch changes (not redrawn per graph).
        if self._order_key != (epoch, num_graphs):
            self._order_key = (epoch, num_graphs)
            self._order = np.random.default_rng((self.seed, epoch)).permutation(num_graphs)
        return self._order

    # ---------------------------------------------------------------- fit

    def fit(self, model, loss_fn, optimizer, data, out_dir, scheduler=None, config=None):
        """Train, validate, checkpoint; return the best validation metrics and paths.

        Args:
            model: config-scoring model.
            loss_fn: ``loss_fn(scores [1, C], runtime [1, C]) -> scalar``.
            optimizer, scheduler: torch optimizer and optional LR scheduler (stepped each step).
            data: a :class:`~tpulearn.training.data.CollectionData`.
            out_dir: run folder (checkpoints, TensorBoard events).
            config: the resolved config, stored in checkpoints.
        """
        out_dir = Path(out_dir)
        resume = self.resume
        if resume is True or resume == "true":
            resume = out_dir / "checkpoints" / "last.pt"
        model.to(self.device)
        self.gst = self._gst_trainer(model)
        train_set = data.train_set()
        valid_set = data.eval_set("valid")
        start, best, history, bad = 0, None, [], 0
        if resume:
            state = load_checkpoint(resume, (config or {}).get("model"))
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler"):
                scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            if self.gst is not None and state.get("gst"):
                self.gst.load_state_dict(state["gst"])
            start, best, history, bad = state["step"], state["best"], state["history"], state["bad"]

        writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start or None)
        ckpt = {
            "last": out_dir / "checkpoints" / "last.pt",
            "best": out_dir / "checkpoints" / "best.pt",
        }

        def save(which: str, step: int) -> None:
            save_checkpoint(
                ckpt[which],
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "rng": rng_state(),
                    "step": step,
                    "best": best,
                    "history": history,
                    "bad": bad,
                    **data.feature_state(),
                    "gst": self.gst.state_dict() if self.gst is not None else None,
                    "config": config or {},
                },
            )

        bar = tqdm(total=self.max_steps, initial=start, desc="train", disable=not self.progress)
        seen, t0 = 0, time.perf_counter()
        step = start
        loader = Prefetcher(train_set, lambda s: self.graph_indices(s, len(train_set)))
        try:
            for step in range(start, self.max_steps):
                graphs = loader.get(step, self.max_steps)
                loss, configs = self._step(model, loss_fn, optimizer, train_set, graphs, step)
                if scheduler is not None:
                    scheduler.step()
                seen += configs
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                writer.add_scalar("train/loss", loss, step + 1)
                writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step + 1)
                writer.add_scalar("train/configs_per_s", rate, step + 1)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", cfg_s=f"{rate:.0f}")
                if not self.progress and (step + 1) % self.log_every == 0:
                    print(
                        f"step {step + 1}/{self.max_steps} loss {loss:.4f} {rate:.0f} configs/s",
                        flush=True,
                    )
                if (step + 1) % self.val_every == 0 or step + 1 == self.max_steps:
                    metrics = self.validate(model, valid_set, data)
                    history.append({"step": step + 1, "loss": loss, **metrics})
                    print(f"valid step {step + 1}: " + _fmt(metrics), flush=True)
                    for k, v in metrics.items():
                        writer.add_scalar(f"valid/{k}", v, step + 1)
                    writer.add_scalar("memory/max_rss_mb", _max_rss_mb(), step + 1)
                    if self.device.type == "cuda":
                        writer.add_scalar(
                            "memory/cuda_max_mb",
                            torch.cuda.max_memory_allocated() / 2**20,
                            step + 1,
                        )
                    metric = self._metric_name(metrics)
                    improved = best is None or _better(metrics[metric], best[metric], metric)
                    if improved:
                        best, bad = {"step": step + 1, **metrics}, 0
                    else:
                        bad += 1
                    save("last", step + 1)
                    if improved:
                        save("best", step + 1)
                    if self.patience and bad >= self.patience:
                        print(f"early stop at step {step + 1}: {bad} validations without gain")
                        break
        except KeyboardInterrupt:
            save("last", step)
            print(f"interrupted: saved {ckpt['last']} at step {step}; resume with")
            print(f"  trainer.resume={ckpt['last']}")
            raise
        finally:
            loader.close()
            bar.close()
            writer.close()
        return {
            "best": best,
            "select_metric": self._metric_name(best) if best else None,
            "history": history,
            "checkpoints": {k: str(v) for k, v in ckpt.items()},
            "tensorboard": str(out_dir / "tensorboard"),
            "max_rss_mb": _max_rss_mb(),
        }

    def _gst_trainer(self, model):
        from ..segments import GSTTrainer, SegmentModel

        if not (isinstance(model, SegmentModel) and model.enabled):
            return None
        return GSTTrainer(model, seed=self.seed, **self.gst_settings)

    def _metric_name(self, metrics: dict) -> str:
        if self.select_metric == "auto":
            return "opa" if "opa" in metrics else "score"
        if self.select_metric not in metrics:
            raise ValueError(
                f"trainer.select_metric={self.select_metric!r} is not a validation metric of "
                f"this collection; choose one of {sorted(metrics)}"
            )
        return self.select_metric

    def _step(self, model, loss_fn, optimizer, train_set, graphs, step) -> tuple[float, int]:
        """One optimizer step over ``graphs``, the step's (graph index, data) pairs."""
        model.train()
        optimizer.zero_grad(set_to_none=True)
        total, configs = 0.0, 0
        for idx, data in graphs:
            data = data.to(self.device)
            with autocast(self.device, self.precision):
                if self.gst is not None:
                    # One segment carries the gradient; the rest come from the history table.
                    scores = self.gst.step([data], [train_set.num_configs[idx]])[0]
                else:
                    scores = model(data)
            loss = loss_fn(scores.float()[None], data.config_runtime[None]) / len(graphs)
            loss.backward()
            total += loss.item()
            configs += data.config_runtime.numel()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
        optimizer.step()
        if not math.isfinite(total):
            raise FloatingPointError(f"non-finite training loss at step {step + 1}")
        return total, configs

    def validate(self, model, valid_set, data) -> dict:
        graphs = list(score_dataset(model, valid_set, self.device, data.eval_chunk, self.precision))
        metrics, _ = evaluate_scores(data.collection, graphs)
        return metrics


class Prefetcher:
    """Reads the graphs of step s + 1 in a background thread while step s computes (file
    reading and decompression release the GIL). Only this thread touches the dataset, in
    step order, so the samples are those of a sequential run.

    Args:
        dataset: the training dataset (``set_epoch`` + indexing).
        pairs_of: ``step -> [(epoch, graph index), ...]``.
    """

    def __init__(self, dataset, pairs_of):
        self.dataset, self.pairs_of = dataset, pairs_of
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="tpulearn-prefetch")
        self.pending: dict[int, Future] = {}

    def _load(self, step: int) -> list:
        out = []
        for epoch, idx in self.pairs_of(step):
            self.dataset.set_epoch(epoch)
            out.append((idx, self.dataset[idx]))
        return out

    def get(self, step: int, end: int) -> list:
        """The (graph index, data) pairs of ``step``; starts reading ``step + 1 < end``."""
        future = self.pending.pop(step, None) or self.pool.submit(self._load, step)
        self.pending.clear()
        if step + 1 < end:
            self.pending[step + 1] = self.pool.submit(self._load, step + 1)
        return future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _fmt(metrics: dict) -> str:
    return " ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )


def _better(new: float, old: float, metric: str) -> bool:
    return new > old if metric in MAXIMISED else new < old


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
