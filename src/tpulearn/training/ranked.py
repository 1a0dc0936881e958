"""Whether a run's steps have anything to rank: a train split that cannot teach an order
stops the run, or is named in a warning, after an epoch, instead of spending its budget
unnoticed."""

from __future__ import annotations

import math

from ..data.datasets import graphs_named
from .step import StepStats


def check_train_graphs(train_set) -> None:
    """Refuse a train split without a graph before the run starts: every one of its files
    excluded for too few measured configs is named, instead of an error about sharing
    zero graphs among processes."""
    if len(train_set):
        return
    folder = getattr(train_set, "folder", "the train split")
    excluded = getattr(train_set, "excluded", [])
    why = (
        f"all {len(excluded)} of its graph(s) were excluded, too few configs to rank: "
        f"{graphs_named(excluded)}"
        if excluded
        else "it holds none"
    )
    raise ValueError(f"no graph to train on in {folder}: {why}")


class RankWatch:
    """Watches the steps since a run (re)started until one had a graph with an order to
    learn (:attr:`StepStats.rankable`); after an epoch of steps without one, raises or
    warns.

    It raises when every graph's sampled configs had one runtime: the loss is constant and
    more steps do not change that. When some had two runtimes but every graph's configs had
    the same config features, it warns once and the run trains on: a model scores alike
    configs alike, so a ranking loss's gradient is rounding noise, but a loss with a
    pointwise term still fits the runtimes' level, and such a split is what a smoke run of
    every collection on the bundled sample meets (its layout:xla:random train graph is one
    config measured 20 times; its tile train kernel has two configs with all-zero features).

    Args:
        budget: the run's :class:`~.budget.StepBudget` (its steps per epoch).
        train_set: the train dataset (its ``folder`` and ``too_few_distinct`` name the cause).
        task: ``"layout"`` or ``"tile"`` (the warning's advice), or ``None``.
        log: the run's :class:`~.progress.ProgressLog` (the warning's line).
    """

    def __init__(self, budget, train_set, task: str | None, log):
        self.epoch = math.ceil(budget.steps_per_epoch)
        self.train_set, self.task, self.log = train_set, task, log
        self.steps = 0
        self.paired = False  # whether a step had two runtimes at all
        self.done = False

    def after(self, stats: StepStats) -> None:
        """Count one step; raise (or warn) when it ends an epoch with nothing to rank."""
        if self.done:
            return
        self.steps += 1
        self.paired = self.paired or not math.isnan(stats.opa)
        if stats.rankable > 0:
            self.done = True
        elif self.steps >= self.epoch:
            self._nothing_to_rank()
            self.done = True

    def _nothing_to_rank(self) -> None:
        steps, graphs = self.steps, len(self.train_set)
        folder = getattr(self.train_set, "folder", "the train split")
        if not self.paired:
            named = getattr(self.train_set, "too_few_distinct", [])
            raise ValueError(
                f"nothing to rank in {folder}: none of the {steps} steps of an epoch "
                f"({graphs} train graph(s)) sampled two configs of different runtimes"
                + (f": {graphs_named(named)}" if named else "")
            )
        alike = (
            f"warning: nothing to rank in {folder}: in each step of an epoch ({steps} step(s), "
            f"{graphs} train graph(s)) every graph's sampled configs had the same config "
            "features, so a model scores them alike and a ranking loss's gradient is rounding "
            "noise"
        )
        if self.task == "layout":
            # Layout config features are the config: alike rows are one config measured
            # again and again, which de-duplication merges.
            self.log.write(
                f"{alike}; their runtimes differ by measurement noise only: data.dedup=mean "
                "trains each distinct config once, at the mean of its measurements, and stops "
                "a run that has nothing else to rank"
            )
        else:
            self.log.write(f"{alike} (tile config features do not tell every config apart)")
