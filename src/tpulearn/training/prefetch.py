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
            on unions of their graphs with the step before's (:mod:`.union`); a step
            whose step before was not read here (the first of a resumed run) reads it
            again, the same samples.
    """

    def __init__(self, dataset, pairs_of, union_prob: float = 0.0, seed: int = 0):
        self.dataset, self.pairs_of = dataset, pairs_of
        self.union_prob, self.seed = union_prob, seed
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="tpulearn-prefetch")
        self.pending: dict[int, Future] = {}
        # The last step read and its graphs as read (shallow copies: a step moves its
        # graphs to the device in place), the partners of the next step's unions.
        self._last: tuple[int, list] | None = None

    def _read(self, step: int) -> list:
        out = []
        for epoch, idx in self.pairs_of(step):
            self.dataset.set_epoch(epoch)
            out.append((idx, self.dataset[idx]))
        return out

    def _load(self, step: int) -> list:
        graphs = self._read(step)
        out = graphs
        if union_drawn(self.seed, step, self.union_prob):
            last = self._last
            before = last[1] if last and last[0] == step - 1 else self._read(step - 1)
            out = with_unions(graphs, before)
        if self.union_prob:
            self._last = (step, [(idx, copy.copy(data)) for idx, data in graphs])
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
