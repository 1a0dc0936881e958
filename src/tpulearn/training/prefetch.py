"""Reading the next step's graphs while the current step computes."""

from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor

from .union import union_drawn, with_unions


class Prefetcher:
    """Reads the graphs of step s + 1 in a background thread while step s computes (file
    reading and decompression release the GIL). Only this thread touches the dataset, in
    step order, so the samples are those of a sequential run.

    Args:
        dataset: the training dataset (``set_epoch`` + indexing).
        pairs_of: ``step -> [(epoch, graph index), ...]``.
        union_prob, seed: steps drawn with this probability (fixed by seed and step) train
            on unions of their graphs with those of the ``union_size - 1`` steps before
            (:mod:`.union`); a step before that was not read here (before the first of a
            resumed run) is read again, the same samples.
    """

    def __init__(
        self, dataset, pairs_of, union_prob: float = 0.0, seed: int = 0, union_size: int = 2
    ):
        self.dataset, self.pairs_of = dataset, pairs_of
        self.union_prob, self.seed, self.union_size = union_prob, seed, union_size
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="tpulearn-prefetch")
        self.pending: dict[int, Future] = {}
        # The last steps read and their graphs as read (shallow copies: a step moves its
        # graphs to the device in place), the partners of the next steps' unions.
        self._recent: dict[int, list] = {}

    def _read(self, step: int) -> list:
        out = []
        for epoch, idx in self.pairs_of(step):
            self.dataset.set_epoch(epoch)
            out.append((idx, self.dataset[idx]))
        return out

    def _load(self, step: int) -> list:
        graphs = self._read(step)
        out = graphs
        before = range(step - 1, max(step - self.union_size, -1), -1)  # nearest first
        if union_drawn(self.seed, step, self.union_prob):
            out = with_unions(graphs, *(self._recent.get(s) or self._read(s) for s in before))
        if self.union_prob:
            self._recent = {s: self._recent[s] for s in before if s in self._recent}
            self._recent[step] = [(idx, copy.copy(data)) for idx, data in graphs]
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
