"""The check that a run's steps have an order to learn (tpulearn.training.ranked)."""

import math
from fractions import Fraction
from types import SimpleNamespace

import pytest

from tpulearn.training.ranked import RankWatch, check_train_graphs
from tpulearn.training.step import StepStats

TWO_RUNTIMES = StepStats(loss=1.0, configs=4, opa=0.0, rankable=0)  # configs alike
ONE_RUNTIME = StepStats(loss=0.0, configs=4, opa=math.nan, rankable=0)
RANKABLE = StepStats(loss=1.0, configs=4, opa=0.5, rankable=1)


class Log:
    def __init__(self):
        self.lines = []

    def write(self, line):
        self.lines.append(line)


class Split:
    folder = "ROOT/train"
    too_few_distinct = []

    def __len__(self):
        return 3


def watch(task="layout", steps_per_epoch=Fraction(3, 2)):
    log = Log()
    return RankWatch(SimpleNamespace(steps_per_epoch=steps_per_epoch), Split(), task, log), log


def test_an_epoch_is_waited_for_and_one_rankable_step_ends_the_watch():
    w, log = watch()
    w.after(TWO_RUNTIMES)  # 1 of the epoch's 2 steps (1.5 rounded up)
    w.after(RANKABLE)
    for _ in range(5):
        w.after(ONE_RUNTIME)  # no longer watched
    assert w.done and not log.lines


def test_an_epoch_of_one_runtime_raises_whatever_the_task():
    for task in ("layout", "tile"):
        w, _ = watch(task)
        w.after(ONE_RUNTIME)
        with pytest.raises(ValueError, match=r"none of the 2 steps of an epoch \(3 train"):
            w.after(ONE_RUNTIME)


def test_alike_configs_warn_once_with_each_task_s_advice():
    for task, advice in (("layout", "data.dedup=mean"), ("tile", "tile config features")):
        w, log = watch(task)
        for _ in range(6):
            w.after(TWO_RUNTIMES)
        assert len(log.lines) == 1 and log.lines[0].startswith("warning: nothing to rank in ROOT")
        assert "(2 step(s), 3 train graph(s))" in log.lines[0] and advice in log.lines[0]


def test_an_empty_train_split_is_refused():
    class Empty(Split):
        excluded = []

        def __len__(self):
            return 0

    with pytest.raises(ValueError, match="^no graph to train on in ROOT/train: it holds none$"):
        check_train_graphs(Empty())
    check_train_graphs(Split())  # three graphs: nothing to refuse
