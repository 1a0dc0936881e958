"""The training loop's background reader gives the graphs of a sequential run."""

import pytest

from tpulearn.training.prefetch import Prefetcher


class Recorder:
    """A dataset whose items name the epoch they were read in; fails on one index."""

    def __init__(self, bad: int | None = None):
        self.epoch, self.bad, self.reads = 0, bad, []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, idx: int):
        if idx == self.bad:
            raise ValueError(f"graph {idx} is broken")
        self.reads.append((self.epoch, idx))
        return f"epoch {self.epoch} graph {idx}"


def pairs_of(step: int) -> list[tuple[int, int]]:
    return [(step // 3, (step * 2) % 5), (step // 3, (step * 2 + 1) % 5)]


def test_prefetched_steps_equal_sequential_reads():
    data = Recorder()
    loader = Prefetcher(data, pairs_of)
    try:
        got = [loader.get(step, 7) for step in range(2, 7)]  # a resumed run starts at 2
    finally:
        loader.close()
    expected = [[(i, f"epoch {e} graph {i}") for e, i in pairs_of(s)] for s in range(2, 7)]
    assert got == expected
    # Each step read once, in order, and nothing read past the last step.
    assert data.reads == [pair for s in range(2, 7) for pair in pairs_of(s)]


def test_a_read_error_reaches_the_training_loop():
    loader = Prefetcher(Recorder(bad=4), pairs_of)
    try:
        assert loader.get(0, 10)[0][0] == 0
        with pytest.raises(ValueError, match="graph 4 is broken"):
            loader.get(1, 10)  # step 1 reads graphs 2, 3; step 2 reads 4
            loader.get(2, 10)
    finally:
        loader.close()
