"""The training loop: plain objects in, metrics out. It reads top to bottom; the parts it
calls live beside it: the graph order (:mod:`.schedule`), one step (:mod:`.step`), the
run state and its checkpoints (:mod:`.state`), progress and TensorBoard
(:mod:`.progress`), the check that the steps have an order to learn (:mod:`.ranked`), and
graph segment training (:mod:`tpulearn.segments.loop`)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from .._checks import check_choice, check_int, resolve_device
from ..data import TpuGraphsFormatError
from ..metrics import metric_names
from ..segments import GSTSettings, gst_trainer
from . import distributed as dist_utils
from . import folder, state
from .budget import (
    Budget,
    Cadence,
    Deadline,
    check_budget,
    check_val_every,
    parse_max_time,
    step_budget,
    time_text,
)
from .checkpoint import rng_state, set_rng_state
from .interrupt import deferred_interrupt
from .prefetch import Prefetcher
from .progress import ProgressLog, max_rss_mb, wants_bar
from .ranked import RankWatch, check_train_graphs
from .schedule import BatchSchedule, num_shards
from .scoring import PRECISIONS, validate
from .state import RunState
from .step import StepStats, step_runner, train_step


class Trainer:
    """Trains a config-scoring model on one collection.

    Args:
        max_steps: optimizer steps (``None``: ``max_epochs`` alone decides).
        max_epochs: epochs, each every training graph once (``None``: ``max_steps`` alone
            decides); a fraction is allowed. With both set the run stops at whichever comes
            first; see :mod:`.budget` for the steps an epoch takes, sharded runs included.
            The run prints its budget first (``budget: 40 epochs x 69 train graphs / 4 per
            step = 690 steps``).
        graphs_per_batch: graphs per step (each with its own sample of configs); the loss
            is the mean over them. Under ``torchrun`` this is the global batch: each of the
            N processes takes ``graphs_per_batch / N`` graphs of its own.
        grad_clip: max gradient norm (``None`` or 0: no clipping).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"`` or ``"bf16"`` (autocast, on CUDA or on CPUs with bf16
            instructions; see benchmarks/results.md for what it gains).
        val_every: validate (and checkpoint) every this many steps, or ``"epoch"`` /
            ``"<N> epochs"`` (after the step that ends each epoch or N epochs), and at the
            end.
        val_at_start: also validate the untrained model at step 0 (a fresh run only): the
            baseline the later validations improve on. It is in the history and
            TensorBoard, never checkpointed, and the ``best`` only while nothing else is;
            it uses no random numbers of the training.
        select_metric: validation metric choosing the ``best`` checkpoint: ``"auto"`` (OPA
            for layout, as the official trainers; the Kaggle score for tile), or any metric
            the Evaluator returns (``kendall_tau``, ``score``, ``top1_error``, ...).
        patience: stop after this many validations without improvement of
            ``select_metric`` (0: never); the ``best`` checkpoint is the one reported, and
            ``fit`` returns where and why it stopped (``stopped``).
        max_time: a cap on the run's wall time (``None``: none), in seconds or as a
            duration such as ``"9m"`` or ``"1h30m"``, counted from the start of ``fit``
            (reading the data included). After the first step that ends past it the run
            validates, checkpoints and stops (``stopped``, reason ``"time"``), so it
            overruns the cap by at most one step and one validation; the best checkpoint is
            the one reported. A resumed run gets the cap afresh and trains on. A run whose
            cap binds depends on the machine's speed: set the cap above what the budget
            takes where runs must repeat exactly.
        log_every: steps between step lines (loss, the batches' tau and OPA, gradient
            norm, seconds per step, ETA; means over the steps since the last line).
        progress: ``"auto"`` (a bar only on a terminal), ``True`` or ``False``.
        seed: seed of the graph order, of the GST generator and of the dropout streams of
            processes other than rank 0.
        resume: ``True`` continues from ``<out_dir>/checkpoints/last.pt``, a path from that
            checkpoint; ``False`` starts afresh; ``"auto"`` continues when that
            ``last.pt`` exists and starts afresh otherwise (a requeued Slurm job).
        overwrite: a fresh run may replace a run already in ``out_dir`` (its checkpoints
            and TensorBoard events are removed); without it such a run is refused.
        gst: graph segment training step settings (a
            :class:`~tpulearn.segments.GSTSettings` or a mapping of its fields), used when
            the model trains by GST; a warning says when they are set for one that does not.
        ema_decay: keep an exponential moving average of the weights, updated after
            every step with this decay (0.99: a horizon of ~100 steps; in the first steps
            the decay is ``(1 + n) / (10 + n)`` after n updates where that is smaller, so
            the average follows a short run), and validate, select and hand out
            (checkpoints' ``model``) the average instead of the last weights; ``None``:
            off. The average smooths the step-to-step noise of training on a few graphs
            with sampled configs.
        shards: graph ownership groups (``None``: the number of processes). Graph ``i``
            belongs to shard ``i % shards`` and each step takes ``graphs_per_batch /
            shards`` graphs from every shard, so a one-process run with ``shards=N`` sees
            exactly the batches of an N-process run.
        min_epoch_graphs: graph visits an epoch makes at least (``None``: every train
            graph once, however few): a collection of fewer graphs cycles through them
            within an epoch, so an epoch budget sized for tens of graphs still trains (and
            validates at a sensible pace) on a few (:mod:`.budget`).
        union_prob: the probability that a step trains on the disjoint union of each of
            its graphs with the graph at its place in the step before, config ``i`` beside
            config ``i`` and the runtimes summed (a runtime is a sum of op times), instead
            of on the graph alone (:mod:`.union`); 0: never. Layout collections only, and
            not with GST (a union has no history of its own).
    """

    def __init__(
        self,
        max_steps: int | None = 1000,
        graphs_per_batch: int = 4,
        grad_clip: float | None = 1.0,
        device: str = "auto",
        precision: str = "fp32",
        val_every: int = 100,
        val_at_start: bool = True,
        select_metric: str = "auto",
        patience: int = 0,
        log_every: int = 10,
        progress: str | bool = "auto",
        seed: int = 0,
        resume: bool | str = False,
        overwrite: bool = False,
        gst: GSTSettings | Mapping | None = None,
        shards: int | None = None,
        max_epochs: float | None = None,
        ema_decay: float | None = None,
        max_time: float | str | None = None,
        union_prob: float = 0.0,
        min_epoch_graphs: int | None = None,
    ):
        check_budget(max_steps, max_epochs, min_epoch_graphs)
        self.min_epoch_graphs = min_epoch_graphs
        self.max_time = parse_max_time(max_time)
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"trainer.ema_decay must lie in (0, 1) or be null, got {ema_decay}")
        self.ema_decay = ema_decay
        if not 0.0 <= union_prob <= 1.0:
            raise ValueError(f"trainer.union_prob must lie in [0, 1], got {union_prob!r}")
        self.union_prob = union_prob
        check_val_every(val_every)
        check_int("trainer.graphs_per_batch", graphs_per_batch, 1)
        check_int("trainer.log_every", log_every, 1)
        check_int("trainer.patience", patience, 0, "0: no early stopping")
        check_int("trainer.seed", seed, 0)
        if grad_clip is not None and not grad_clip >= 0:
            raise ValueError(f"trainer.grad_clip must be >= 0 or null, got {grad_clip!r}")
        self.max_epochs = max_epochs
        self.max_steps, self.graphs_per_batch, self.grad_clip = (
            max_steps,
            graphs_per_batch,
            grad_clip,
        )
        check_choice("trainer.precision", precision, PRECISIONS)
        self.device, self.precision = resolve_device(device, "trainer.device"), precision
        self.val_every, self.select_metric, self.patience = val_every, select_metric, patience
        self.val_at_start = val_at_start
        self.log_every, self.seed, self.resume = log_every, seed, resume
        self.overwrite = overwrite
        self.gst_settings = GSTSettings(**gst) if isinstance(gst, Mapping) else gst
        self.shards = shards
        self.world = dist_utils.World()
        self.progress = wants_bar(progress)

    def fit(
        self, model, loss_fn, optimizer, data, out_dir, scheduler=None, config=None, on_start=None
    ):
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
            on_start: called (rank 0, with ``out_dir``) once the run has passed its checks
                (folder, data, resumed checkpoint) and before it writes anything: an entry
                point records its config and log there, so a refused run leaves no trace.

        Raises:
            RunFolderError: ``out_dir`` holds a run and neither ``resume`` nor
                ``overwrite`` is set, or ``resume=True`` finds no checkpoint there.
            RunInterrupted: Ctrl-C (a ``KeyboardInterrupt``), after saving ``last.pt``.
            RunDataError: a data file failed to read during training or validation, after
                saving the steps trained since the last validation in ``last.pt``.
        """
        world = self.world = dist_utils.setup(self.device)
        try:
            return self._fit(model, loss_fn, optimizer, data, out_dir, scheduler, config, on_start)
        finally:
            dist_utils.teardown(world)
            self.world = dist_utils.World()

    def _fit(self, model, loss_fn, optimizer, data, out_dir, scheduler, config, on_start):
        world = self.world
        deadline = Deadline(self.max_time)
        if world.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", dist_utils.cuda_index(world.local_rank))
        out_dir = Path(dist_utils.broadcast(str(out_dir), world))
        self._check_select_metric(getattr(data, "collection", None))
        resume = folder.resume_checkpoint(out_dir, self.resume, self.overwrite)
        model.to(self.device)
        gst = gst_trainer(model, self.gst_settings, dist_utils.rank_seed(self.seed, world.rank))
        self._check_unions(getattr(data, "task", None), gst)
        train_set, valid_set = self._train_set(data, world), data.eval_set("valid")
        check_train_graphs(train_set)
        shards = num_shards(self.shards, self.graphs_per_batch, len(train_set), world)
        budget = step_budget(
            self.max_steps,
            self.max_epochs,
            len(train_set),
            self.graphs_per_batch,
            shards,
            self.min_epoch_graphs,
        )
        max_steps, cadence = budget.steps, Cadence.of(self.val_every, budget)
        if scheduler is not None and not hasattr(scheduler, "step"):
            scheduler = scheduler(max_steps)  # a scheduler built from the run's budget
        runner = step_runner(model, gst, world, self.device, self.seed)
        run = RunState(model, optimizer, scheduler, data, config or {}, gst, max_steps=max_steps)
        run.ema = self._average(model)
        if resume:
            stems = state.owned_stems(train_set.stems, world, shards)
            stored = state.restore(run, resume, world, stems)
            folder.check_resumed_config(resume, stored, run.config)
        if world.main:
            self._start(out_dir, on_start, resume, run, budget, cadence)
        out_of_time = False
        ckpt = {k: out_dir / "checkpoints" / f"{k}.pt" for k in ("last", "best")}
        log = ProgressLog(
            out_dir,
            world,
            max_steps,
            run.step,
            self.progress,
            self.log_every,
            self.device,
            cadence,
            run.config,
            deadline,
        )
        schedule = BatchSchedule(self.graphs_per_batch, len(train_set), shards, self.seed)
        ranks = [world.rank] if world.distributed else None
        loader = Prefetcher(
            train_set, lambda s: schedule.graph_indices(s, ranks), self.union_prob, self.seed
        )
        try:
            # Ctrl-C stops between steps (see .interrupt); under torchrun, at once.
            with deferred_interrupt(not world.distributed) as stop_if_asked:
                if self.val_at_start and run.step == 0 and not run.history:
                    self._validate_untrained(run, valid_set, loss_fn, log)
                    stop_if_asked()
                # A resumed run that had stopped early stays stopped.
                first = max_steps if self._stopped_early(run) else run.step
                if self._validation_owed(run, cadence, max_steps) and self._validate_and_save(
                    run, valid_set, loss_fn, None, ckpt, log
                ):
                    first = max_steps
                watch = RankWatch(budget, train_set, getattr(data, "task", None), log)
                for step in range(first, max_steps):
                    start = time.perf_counter()
                    graphs = loader.get(step, max_steps)
                    stats = self._step(runner, loss_fn, optimizer, train_set, graphs, step)
                    watch.after(stats)
                    if scheduler is not None:
                        scheduler.step()
                    if run.ema is not None:
                        run.ema.update_parameters(model)
                    run.step = step + 1
                    lr = optimizer.param_groups[0]["lr"]
                    log.step(run.step, stats, lr, time.perf_counter() - start)
                    out_of_time = run.step < max_steps and self._out_of_time(deadline)
                    due = cadence.due(run.step) or run.step == max_steps or out_of_time
                    if due and self._validate_and_save(
                        run, valid_set, loss_fn, stats.loss, ckpt, log
                    ):
                        break  # no gain in `patience` validations
                    if out_of_time:
                        log.write(
                            f"time limit reached at step {run.step}: {deadline.elapsed():.0f} s "
                            f"of trainer.max_time={time_text(self.max_time)}"
                        )
                        break
                    stop_if_asked()
        except KeyboardInterrupt:
            raise self._interrupted(run, ckpt["last"]) from None
        except TpuGraphsFormatError as exc:  # a broken file, read at this step or validation
            raise self._data_failed(run, ckpt["last"], exc) from exc
        finally:
            loader.close()
            log.close()
        return self._result(run, out_of_time, ckpt, out_dir)

    def _result(self, run: RunState, out_of_time: bool, ckpt: dict, out_dir: Path) -> dict:
        """What :meth:`fit` returns: the best validation, why the run stopped (None: it
        used its budget), the history, where its checkpoints and logs are."""
        metric = self._metric_name(run.best) if run.best else None
        stopped = None
        if self._stopped_early(run):
            stopped = self._stop_summary(run, metric)
        elif out_of_time:
            stopped = {**self._stop_summary(run, metric), "reason": "time"}
            stopped["max_time"] = self.max_time
        return {
            "best": run.best,
            "select_metric": metric,
            "steps": run.step,
            "max_steps": run.max_steps,
            "stopped": stopped,
            "history": run.history,
            "checkpoints": {k: str(v) for k, v in ckpt.items()},
            "tensorboard": str(out_dir / "tensorboard"),
            "max_rss_mb": max_rss_mb(),
            "world": {"rank": self.world.rank, "size": self.world.size},
        }

    def _check_unions(self, task: str | None, gst) -> None:
        if not self.union_prob:
            return
        if task != "layout":
            raise ValueError(
                f"trainer.union_prob={self.union_prob} needs a layout collection, got {task!r}: "
                "a tile config sets one kernel, no union of two; set trainer.union_prob=0"
            )
        if gst is not None:
            raise ValueError(
                f"trainer.union_prob={self.union_prob} cannot train by GST (segments of "
                "one graph, with a history per graph); set trainer.union_prob=0"
            )

    def _step(self, runner, loss_fn, optimizer, train_set, graphs, step) -> StepStats:
        """:func:`~.step.train_step` over the loader's (graph index, data) pairs of
        ``step``; a non-finite loss stops the run."""
        pairs = [(data, train_set.num_configs[idx]) for idx, data in graphs]
        stats = train_step(
            runner,
            loss_fn,
            optimizer,
            pairs,
            self.device,
            precision=self.precision,
            grad_clip=self.grad_clip,
            world=self.world,
        )
        if not math.isfinite(stats.loss):
            lr = optimizer.param_groups[0]["lr"]
            fix = "lower optim.lr" + (
                " or clip the gradients (trainer.grad_clip)" if self.grad_clip is None else ""
            )
            raise FloatingPointError(
                f"non-finite training loss at step {step + 1}: the run diverged at learning "
                f"rate {lr:g}; {fix}. Its checkpoints, if any, are its last validation's"
            )
        return stats

    def _validate_and_save(self, run, valid_set, loss_fn, loss: float, ckpt: dict, log) -> bool:
        """Validate at ``run.step``, checkpoint ``last`` (and ``best`` on a gain); True when
        the run has gone ``patience`` validations without gain and stops early."""
        start = time.perf_counter()
        metrics = self.validate(run.eval_model, valid_set, run.data, loss_fn)
        improved = run.record(run.step, loss, metrics, self._metric_name(metrics))
        state.save(run, ckpt["last"], self.world)
        if improved:
            state.save(run, ckpt["best"], self.world)
        log.validation(run.step, metrics, time.perf_counter() - start)
        if not self._stopped_early(run):
            return False
        stop = self._stop_summary(run, self._metric_name(metrics))
        log.write(
            f"early stop at step {stop['step']}: no gain in {stop['metric']} for "
            f"{stop['validations']} validations (trainer.patience={self.patience}); best "
            f"step {stop['best_step']}"
        )
        return True

    def _average(self, model) -> torch.optim.swa_utils.AveragedModel | None:
        """The moving average of ``model``'s weights (``ema_decay``), or None. It starts as
        a copy of the initial weights (what step 0 validates) and is updated after each
        step; under torchrun every process holds the same weights, hence the same average."""
        if self.ema_decay is None:
            return None
        decay = self.ema_decay

        def update(averaged, current, num_averaged):
            # Warm-up: the decay grows as (1 + n) / (10 + n) up to ema_decay, so a short
            # run's average is not held back at its initial weights (0.99^35 = 0.70).
            d = min(decay, (1.0 + float(num_averaged)) / (10.0 + float(num_averaged)))
            for a, c in zip(averaged, current, strict=True):
                a.lerp_(c, 1.0 - d)

        average = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=update, use_buffers=True)
        average.update_parameters(model)  # n_averaged 1: the average is the copy
        return average

    def _out_of_time(self, deadline: Deadline) -> bool:
        """Whether the run's ``max_time`` has passed; under torchrun, on any process (all
        processes then stop after the same step)."""
        if self.max_time is None:
            return False
        passed = deadline.passed()
        if self.world.distributed:
            passed = dist_utils.all_sum([float(passed)], self.world, self.device)[0] > 0
        return passed

    def _stopped_early(self, run: RunState) -> bool:
        return bool(self.patience) and run.bad >= self.patience

    def _stop_summary(self, run: RunState, metric: str) -> dict:
        """Where and why a run stopped before its budget: ``reason`` (``"patience"``;
        ``"time"`` for ``max_time``, with it), ``step``, ``max_steps``, the ``best_step``
        (that of ``best.pt``) with its ``value`` of ``metric``, and the ``validations``
        without gain since."""
        return {
            "reason": "patience",
            "step": run.step,
            "max_steps": run.max_steps,
            "best_step": run.best["step"],
            "metric": metric,
            "value": run.best.get(metric),
            "validations": run.bad,
            "patience": self.patience,
        }

    def _validate_untrained(self, run: RunState, valid_set, loss_fn, log) -> None:
        """The step-0 validation: the untrained model's metrics, the baseline of the run.
        The global RNG states are put back after it, so training draws what it would draw
        without it (validation uses none today; a model could)."""
        rng, start = rng_state(), time.perf_counter()
        metrics = self.validate(run.eval_model, valid_set, run.data, loss_fn)
        set_rng_state(rng)
        run.record(0, None, metrics, self._metric_name(metrics))
        log.validation(0, metrics, time.perf_counter() - start)

    def _start(
        self, out_dir: Path, on_start, resume: Path | None, run: RunState, budget: Budget, cadence
    ) -> None:
        """The run has passed its checks: from here on it writes into ``out_dir``."""
        if self.overwrite and folder.clear_run(out_dir):
            print(f"overwriting the run in {out_dir} (trainer.overwrite=true)")
        elif resume is None and not folder.run_checkpoints(out_dir) and folder.clear_run(out_dir):
            # A run that failed before its first checkpoint: its events would mix with these.
            print(f"removed the TensorBoard events of a run in {out_dir} that saved no checkpoint")
        if on_start is not None:
            on_start(out_dir)
        line = f"budget: {budget.text}; validation {cadence.text}"
        if self.patience:
            line += f"; early stop after {self.patience} validations without gain"
        if self.max_time is not None:
            line += f"; time limit {time_text(self.max_time)} (trainer.max_time)"
        print(line, flush=True)
        if resume is not None:
            print(f"resumed from step {run.step} ({resume})", flush=True)
            if run.saved_max_steps not in (None, budget.steps):
                print(
                    f"the checkpoint's run had a budget of {run.saved_max_steps} steps; this "
                    f"one has {budget.steps} (its budget keys, graphs or shards differ)",
                    flush=True,
                )
            if self._stopped_early(run):
                print(f"the run had stopped early at step {run.step}; nothing to train")

    @staticmethod
    def _unsaved(run: RunState) -> bool:
        """Steps trained since ``last.pt`` was written (at each validation after step 0)."""
        return run.step > 0 and (not run.history or run.history[-1]["step"] != run.step)

    def _validation_owed(self, run: RunState, cadence, max_steps: int) -> bool:
        """A resumed run whose ``last.pt`` was saved at a step due for validation without
        its validation (a file broke it, :meth:`_data_failed`): it validates first."""
        due = cadence.due(run.step) or run.step == max_steps
        return due and self._unsaved(run) and not self._stopped_early(run)

    def _data_failed(self, run: RunState, last: Path, exc: Exception) -> state.RunDataError:
        """Save the steps trained since the last validation, where this process alone can
        (not under torchrun), so a broken file costs no training; the error says where."""
        if self.world.distributed or not self._unsaved(run):
            return state.RunDataError(exc, run.step, None)
        state.save(run, last, self.world)
        return state.RunDataError(exc, run.step, last)

    def _interrupted(self, run: RunState, last: Path) -> state.RunInterrupted:
        """Save ``last.pt`` where a collective still can; the exception says where."""
        if self.world.distributed:
            # The other processes may be gone: no collective can run, so no save.
            return state.RunInterrupted(run.step, last, saved=False)
        state.save(run, last, self.world)
        return state.RunInterrupted(run.step, last, saved=True)

    def _train_set(self, data, world):
        """The training split; under torchrun rank 0 fits the feature statistics once and
        sends them to the others (every rank would compute the same from all files)."""
        if not world.distributed:
            return data.train_set()
        train_set = data.train_set() if world.main else None
        features = dist_utils.broadcast(data.feature_state() if world.main else None, world)
        if not world.main:
            data.load_feature_state(features)
            train_set = data.train_set()
        return train_set

    def _check_select_metric(self, collection: str | None) -> None:
        """Refuse, before the run starts, a ``select_metric`` its validation will not
        report (else the run would train to its first validation and fail there)."""
        if self.select_metric == "auto" or collection is None:
            return
        self._metric_name(dict.fromkeys((*metric_names(collection), "val_loss")), collection)

    def _metric_name(self, metrics: dict, collection: str = "this collection") -> str:
        if self.select_metric == "auto":
            return "opa" if "opa" in metrics else "score"
        if self.select_metric not in metrics:
            other = ""
            for task, example in (("layout", "layout:xla:default"), ("tile", "tile:xla")):
                known = ":" in collection and collection.split(":")[0] != task
                if known and self.select_metric in metric_names(example):
                    # e.g. experiment=layout_fast (which selects on kendall_tau) with data=tile_xla
                    other = f" ({self.select_metric} is a {task} metric: a {task} experiment?)"
            raise ValueError(
                f"trainer.select_metric={self.select_metric!r} is not a validation metric of "
                f"{collection}{other}; choose one of {sorted(metrics)}"
            )
        return self.select_metric

    def validate(self, model, valid_set, data, loss_fn=None) -> dict:
        """Metrics of the validation split (:func:`~.scoring.validate`), and ``val_loss``
        with ``loss_fn``."""
        return validate(model, valid_set, data, self.world, self.device, self.precision, loss_fn)
