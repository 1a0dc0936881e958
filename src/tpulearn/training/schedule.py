"""Which graphs each training step takes: one permutation per epoch, split into shards.

Graph ``i`` belongs to shard ``i % shards``; every step takes ``graphs_per_batch /
shards`` graphs from each shard, so a one-process run with ``shards=N`` sees exactly the
batches of an N-process run, and the order depends only on (seed, epoch), so a resumed run
sees the batches of an uninterrupted one.
"""

from __future__ import annotations

import numpy as np

from .distributed import World


class BatchSchedule:
    """The (epoch, graph) pairs of every step of a run.

    Args:
        graphs_per_batch: graphs per step over all shards.
        num_graphs: training graphs.
        shards: graph ownership groups (:func:`num_shards`).
        seed: seed of the per-epoch permutations.
    """

    def __init__(self, graphs_per_batch: int, num_graphs: int, shards: int = 1, seed: int = 0):
        self.graphs_per_batch, self.num_graphs = graphs_per_batch, num_graphs
        self.shards, self.seed = shards, seed
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def graph_indices(self, step: int, ranks=None) -> list[tuple[int, int]]:
        """(epoch, graph) pairs of one step for the shards ``ranks`` (default: all).

        Each shard owns graphs ``i % shards == rank`` and visits them once per epoch in
        the order of one permutation of all graphs fixed by (seed, epoch). With one shard
        this is that permutation itself.
        """
        shards = self.shards
        per_shard = self.graphs_per_batch // shards
        out = []
        for rank in range(shards) if ranks is None else ranks:
            owned = (self.num_graphs - rank + shards - 1) // shards
            for k in range(step * per_shard, (step + 1) * per_shard):
                epoch, pos = divmod(k, owned)
                out.append((epoch, int(self._epoch_order(epoch, rank)[pos])))
        return out

    def _epoch_order(self, epoch: int, rank: int) -> np.ndarray:
        # One permutation per epoch, kept until the epoch changes (not redrawn per graph).
        key = (epoch, rank)
        if key not in self._orders:
            perm = np.random.default_rng((self.seed, epoch)).permutation(self.num_graphs)
            # Keep the two newest epochs per shard: a step may straddle an epoch boundary.
            stale = [k for k in self._orders if k[1] == rank and k[0] < epoch - 1]
            for k in stale:
                del self._orders[k]
            self._orders[key] = perm[perm % self.shards == rank]
        return self._orders[key]


def num_shards(requested: int | None, graphs_per_batch: int, num_graphs: int, world: World) -> int:
    """The number of shards of a run, checked against its batch and graphs.

    Args:
        requested: ``trainer.shards`` (None: one per process).
        graphs_per_batch: graphs per step; must be a multiple of the shards.
        num_graphs: training graphs; every shard needs at least one.
        world: the processes of the run; under torchrun each is one shard.
    """
    shards = requested or world.size
    if world.distributed and shards != world.size:
        raise ValueError(
            f"trainer.shards={shards} but {world.size} processes run; leave it "
            "null (one shard per process)"
        )
    if shards < 1 or graphs_per_batch % shards:
        raise ValueError(
            f"trainer.graphs_per_batch={graphs_per_batch} must be a multiple of the "
            f"number of shards ({shards}: processes or trainer.shards)"
        )
    if num_graphs < shards:
        raise ValueError(
            f"{num_graphs} training graphs cannot be shared by {shards} shards: every "
            "process needs at least one graph"
        )
    return shards
