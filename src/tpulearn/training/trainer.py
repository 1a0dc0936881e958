"""The training loop: plain objects in, metrics out; side effects (progress, TensorBoard,
checkpoints) live here and nowhere in the library below it."""

from __future__ import annotations

import contextlib
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from . import distributed as dist_utils
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .prefetch import Prefetcher
from .scoring import autocast, evaluate_scores, score_dataset

# Metrics where a larger value is better; the rest (errors) are minimised.
MAXIMISED = ("kendall_tau", "opa", "score")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("trainer.device=cuda but no CUDA device is available")
    return torch.device(device)


@dataclass
class _Run:
    """What one ``fit`` carries from step to step (and into checkpoints)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    data: object
    config: dict
    step: int = 0
    best: dict | None = None
    history: list = field(default_factory=list)
    bad: int = 0

    def record(self, step: int, loss: float, metrics: dict, metric: str) -> bool:
        """Add a validation; True when it is the best so far on ``metric``."""
        self.history.append({"step": step, "loss": loss, **metrics})
        improved = self.best is None or _better(metrics[metric], self.best[metric], metric)
        if improved:
            self.best, self.bad = {"step": step, **metrics}, 0
        else:
            self.bad += 1
        return improved


class Trainer:
    """Trains a config-scoring model on one collection.

    Args:
        max_steps: optimizer steps.
        graphs_per_batch: graphs per step (each with its own sample of configs); the loss
            is the mean over them. Under ``torchrun`` this is the global batch: each of the
            N processes takes ``graphs_per_batch / N`` graphs of its own.
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
        shards: graph ownership groups (``None``: the number of processes). Graph ``i``
            belongs to shard ``i % shards`` and each step takes ``graphs_per_batch /
            shards`` graphs from every shard, so a one-process run with ``shards=N`` sees
            exactly the batches of an N-process run.
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
        shards: int | None = None,
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
        self.shards = shards
        self._orders: dict[tuple[int, int, int, int], np.ndarray] = {}
        self.world = dist_utils.World()
        self.progress = sys.stderr.isatty() if progress == "auto" else bool(progress)

    # ---------------------------------------------------------------- batches

    def graph_indices(
        self, step: int, num_graphs: int, shards: int = 1, ranks=None
    ) -> list[tuple[int, int]]:
        """(epoch, graph) pairs of one step for the shards ``ranks`` (default: all).

        Each shard owns graphs ``i % shards == rank`` and visits them once per epoch in
        the order of one permutation of all graphs fixed by (seed, epoch), so a resumed run
        sees the same batches. With one shard this is that permutation itself.
        """
        per_shard = self.graphs_per_batch // shards
        out = []
        for rank in range(shards) if ranks is None else ranks:
            owned = (num_graphs - rank + shards - 1) // shards
            for k in range(step * per_shard, (step + 1) * per_shard):
                epoch, pos = divmod(k, owned)
                out.append((epoch, int(self._epoch_order(epoch, num_graphs, shards, rank)[pos])))
        return out

    def _epoch_order(self, epoch: int, num_graphs: int, shards: int, rank: int) -> np.ndarray:
        # One permutation per epoch, kept until the epoch changes (not redrawn per graph).
        key = (epoch, num_graphs, shards, rank)
        if key not in self._orders:
            perm = np.random.default_rng((self.seed, epoch)).permutation(num_graphs)
            # Keep the two newest epochs per shard: a step may straddle an epoch boundary.
            stale = [k for k in self._orders if k[1:] == key[1:] and k[0] < epoch - 1]
            for k in stale:
                del self._orders[k]
            self._orders[key] = perm[perm % shards == rank]
        return self._orders[key]

    def _shards(self, num_graphs: int) -> int:
        shards = self.shards or self.world.size
        if self.world.distributed and shards != self.world.size:
            raise ValueError(
                f"trainer.shards={shards} but {self.world.size} processes run; leave it "
                "null (one shard per process)"
            )
        if shards < 1 or self.graphs_per_batch % shards:
            raise ValueError(
                f"trainer.graphs_per_batch={self.graphs_per_batch} must be a multiple of the "
                f"number of shards ({shards}: processes or trainer.shards)"
            )
        if num_graphs < shards:
            raise ValueError(
                f"{num_graphs} training graphs cannot be shared by {shards} shards: every "
                "process needs at least one graph"
            )
        return shards

    # ---------------------------------------------------------------- fit

    def fit(self, model, loss_fn, optimizer, data, out_dir, scheduler=None, config=None):
        """Train, validate, checkpoint; return the best validation metrics and paths.

        Under ``torchrun`` every process calls this: the model is wrapped in
        :class:`~torch.nn.parallel.DistributedDataParallel`, each process trains on and
        validates the graphs it owns, losses and metrics are reduced over all processes,
        and only rank 0 writes checkpoints, TensorBoard events and progress.

        Args:
            model: config-scoring model.
            loss_fn: ``loss_fn(scores [1, C], runtime [1, C]) -> scalar``.
            optimizer, scheduler: torch optimizer and optional LR scheduler (stepped each step).
            data: a :class:`~tpulearn.data.CollectionData`.
            out_dir: run folder (checkpoints, TensorBoard events); rank 0's is used by all.
            config: the resolved config, stored in checkpoints.
        """
        world = self.world = dist_utils.setup(self.device)
        try:
            return self._fit(model, loss_fn, optimizer, data, out_dir, scheduler, config)
        finally:
            dist_utils.teardown(world)
            self.world = dist_utils.World()

    def _fit(self, model, loss_fn, optimizer, data, out_dir, scheduler, config):
        world = self.world
        if world.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", dist_utils.cuda_index(world.local_rank))
        out_dir = Path(dist_utils.broadcast(str(out_dir), world))
        model.to(self.device)
        self.gst = self._gst_trainer(model, world.rank)
        train_set = self._train_set(data, world)
        valid_set = data.eval_set("valid")
        shards = self._shards(len(train_set))
        runner = self._runner(model)
        run = _Run(model, optimizer, scheduler, data, config or {})
        resume = self.resume
        if resume is True or resume == "true":
            resume = out_dir / "checkpoints" / "last.pt"
        if resume:
            self._restore(run, resume, train_set, shards)
        writer = (
            SummaryWriter(str(out_dir / "tensorboard"), purge_step=run.step or None)
            if world.main
            else dist_utils.NullWriter()
        )
        ckpt = {k: out_dir / "checkpoints" / f"{k}.pt" for k in ("last", "best")}
        bar = tqdm(
            total=self.max_steps,
            initial=run.step,
            desc="train",
            disable=not (self.progress and world.main),
        )
        seen, t0 = 0, time.perf_counter()
        ranks = [world.rank] if world.distributed else None
        loader = Prefetcher(
            train_set, lambda s: self.graph_indices(s, len(train_set), shards, ranks)
        )
        try:
            for step in range(run.step, self.max_steps):
                graphs = loader.get(step, self.max_steps)
                loss, configs = self._step(runner, loss_fn, optimizer, train_set, graphs, step)
                if scheduler is not None:
                    scheduler.step()
                run.step = step + 1
                seen += configs
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                self._log_step(writer, bar, run, loss, rate)
                if run.step % self.val_every == 0 or run.step == self.max_steps:
                    metrics = self.validate(model, valid_set, data)
                    self._log_validation(writer, run.step, metrics)
                    improved = run.record(run.step, loss, metrics, self._metric_name(metrics))
                    self._save(run, ckpt["last"])
                    if improved:
                        self._save(run, ckpt["best"])
                    if self.patience and run.bad >= self.patience:
                        if world.main:
                            print(
                                f"early stop at step {run.step}: {run.bad} validations without gain"
                            )
                        break
        except KeyboardInterrupt:
            if world.distributed:
                # The other processes may be gone: no collective can run, so no save.
                print(
                    f"interrupted at step {run.step}; resume from {ckpt['last']} (last validation)"
                )
                raise
            self._save(run, ckpt["last"])
            print(f"interrupted: saved {ckpt['last']} at step {run.step}; resume with")
            print(f"  trainer.resume={ckpt['last']}")
            raise
        finally:
            loader.close()
            bar.close()
            writer.close()
        return {
            "best": run.best,
            "select_metric": self._metric_name(run.best) if run.best else None,
            "history": run.history,
            "checkpoints": {k: str(v) for k, v in ckpt.items()},
            "tensorboard": str(out_dir / "tensorboard"),
            "max_rss_mb": _max_rss_mb(),
            "world": {"rank": world.rank, "size": world.size},
        }

    def _runner(self, model):
        """What a training step calls: the model's step forward, in DDP under torchrun."""
        runner = dist_utils.StepModule(model, self.gst)
        world = self.world
        if not world.distributed:
            return runner
        runner = torch.nn.parallel.DistributedDataParallel(
            runner,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            # A step may leave parameters unused (e.g. a GST segment without
            # configurable nodes never reaches the config encoder).
            find_unused_parameters=True,
        )
        # Same initial weights everywhere (DDP broadcast them); own dropout streams.
        if world.rank:
            torch.manual_seed(self.seed * 1_000_003 + world.rank)
        return runner

    def _restore(self, run: _Run, path, train_set, shards: int) -> None:
        """Continue from a checkpoint: weights, optimizer, scheduler, RNGs, GST history."""
        state = load_checkpoint(path, run.config.get("model"))
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        if run.scheduler is not None and state.get("scheduler"):
            run.scheduler.load_state_dict(state["scheduler"])
        world = self.world
        per_rank = state.get("rng_ranks") or [state["rng"]]
        set_rng_state(per_rank[world.rank] if len(per_rank) == world.size else state["rng"])
        if self.gst is not None and state.get("gst"):
            self._load_gst_state(state["gst"], train_set, shards)
        run.step, run.best, run.history, run.bad = (
            state["step"],
            state["best"],
            state["history"],
            state["bad"],
        )

    def _save(self, run: _Run, path: Path) -> None:
        """Checkpoint at ``run.step``: collectives first (every rank takes part), then rank 0
        writes, with every rank's RNG state and history entries."""
        world = self.world
        gst_states = dist_utils.all_gather(
            self.gst.state_dict() if self.gst is not None else None, world
        )
        rngs = dist_utils.all_gather(rng_state(), world)
        if not world.main:
            return
        scheduler = run.scheduler
        save_checkpoint(
            path,
            {
                "model": run.model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": rngs[0],
                "rng_ranks": rngs if world.distributed else None,
                "step": run.step,
                "best": run.best,
                "history": run.history,
                "bad": run.bad,
                **run.data.feature_state(),
                "gst": dist_utils.merge_gst_states(gst_states) if self.gst else None,
                "config": run.config,
            },
        )

    def _log_step(self, writer, bar, run: _Run, loss: float, rate: float) -> None:
        step = run.step
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("train/lr", run.optimizer.param_groups[0]["lr"], step)
        writer.add_scalar("train/configs_per_s", rate, step)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", cfg_s=f"{rate:.0f}")
        if self.world.main and not self.progress and step % self.log_every == 0:
            print(f"step {step}/{self.max_steps} loss {loss:.4f} {rate:.0f} configs/s", flush=True)

    def _log_validation(self, writer, step: int, metrics: dict) -> None:
        if self.world.main:
            print(f"valid step {step}: " + _fmt(metrics), flush=True)
        for k, v in metrics.items():
            writer.add_scalar(f"valid/{k}", v, step)
        writer.add_scalar("memory/max_rss_mb", _max_rss_mb(), step)
        if self.device.type == "cuda":
            writer.add_scalar("memory/cuda_max_mb", torch.cuda.max_memory_allocated() / 2**20, step)

    def _train_set(self, data, world):
        """The training split; under torchrun rank 0 fits the feature statistics once and
        sends them to the others (every rank would compute the same from all files)."""
        if not world.distributed:
            return data.train_set()
        train_set = data.train_set() if world.main else None
        state = dist_utils.broadcast(data.feature_state() if world.main else None, world)
        if not world.main:
            data.load_feature_state(state)
            train_set = data.train_set()
        return train_set

    def _load_gst_state(self, state: dict, train_set, shards: int) -> None:
        """Restore the history entries of the graphs this process owns (all of them in a
        one-process run), and its own RNG when the run had as many processes."""
        from ..segments import key_stem

        world = self.world
        table = state["table"]
        if world.distributed:
            stems = train_set.stems
            mine = {stems[i] for i in dist_utils.owned(len(stems), world.rank, shards)}
            table = {
                part: {k: v for k, v in entries.items() if key_stem(k) in mine}
                if isinstance(entries, dict)
                else entries  # the step counter
                for part, entries in table.items()
            }
        generators = state.get("generators") or [state["generator"]]
        generator = generators[world.rank] if len(generators) == world.size else None
        self.gst.table.load_state_dict(table)
        if generator is not None:
            self.gst.generator.set_state(generator)

    def _gst_trainer(self, model, rank: int = 0):
        from ..segments import GSTTrainer, SegmentModel

        if not (isinstance(model, SegmentModel) and model.enabled) or model.checkpoint:
            return None  # whole graphs, or exact checkpointed segments: the model's forward
        # Rank 0 keeps the run's seed (a one-process run is rank 0); the others their own.
        seed = self.seed if rank == 0 else self.seed * 1_000_003 + rank
        return GSTTrainer(model, seed=seed, **self.gst_settings)

    def _metric_name(self, metrics: dict) -> str:
        if self.select_metric == "auto":
            return "opa" if "opa" in metrics else "score"
        if self.select_metric not in metrics:
            raise ValueError(
                f"trainer.select_metric={self.select_metric!r} is not a validation metric of "
                f"this collection; choose one of {sorted(metrics)}"
            )
        return self.select_metric

    def _step(self, runner, loss_fn, optimizer, train_set, graphs, step) -> tuple[float, int]:
        """One optimizer step over ``graphs``, this process's (graph index, data) pairs.

        Returns the step's loss (the mean over the global batch) and the configs scored by
        all processes. Under DDP gradients are averaged over processes once, after the
        last graph; every process holds the same number of graphs, so the result equals
        one process training on the whole batch.
        """
        runner.train()
        optimizer.zero_grad(set_to_none=True)
        total, configs = 0.0, 0
        ddp = isinstance(runner, torch.nn.parallel.DistributedDataParallel)
        for i, (idx, data) in enumerate(graphs):
            data = data.to(self.device)
            last = i == len(graphs) - 1
            sync = runner.no_sync() if ddp and not last else contextlib.nullcontext()
            with sync:
                with autocast(self.device, self.precision):
                    # GST: one segment carries the gradient, the rest come from the table.
                    scores = runner(data, train_set.num_configs[idx])
                loss = loss_fn(scores.float()[None], data.config_runtime[None]) / len(graphs)
                loss.backward()
            total += loss.item()
            configs += data.config_runtime.numel()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(runner.parameters(), self.grad_clip)
        optimizer.step()
        total, configs = dist_utils.all_sum([total, configs], self.world, self.device)
        total /= self.world.size
        if not math.isfinite(total):
            raise FloatingPointError(f"non-finite training loss at step {step + 1}")
        return total, int(configs)

    def validate(self, model, valid_set, data) -> dict:
        """Metrics of the validation split; under torchrun each process scores the graphs
        it owns and the scores of all are gathered before the metrics are computed."""
        world = self.world
        indices = dist_utils.owned(len(valid_set), world.rank, world.size)
        graphs = score_dataset(
            model, valid_set, self.device, data.eval_chunk, self.precision, indices=indices
        )
        mine = list(zip(indices, graphs, strict=True))
        every = sorted(
            (pair for part in dist_utils.all_gather(mine, world) for pair in part),
            key=lambda pair: pair[0],
        )
        metrics, _ = evaluate_scores(data.collection, [g for _, g in every])
        return metrics


def _fmt(metrics: dict) -> str:
    return " ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )


def _better(new: float, old: float, metric: str) -> bool:
    return new > old if metric in MAXIMISED else new < old


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
