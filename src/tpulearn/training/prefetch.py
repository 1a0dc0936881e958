"""Reading the next step's graphs while the current step computes."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor


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
