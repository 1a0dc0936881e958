"""Data-parallel training over ``torch.distributed``: process group set-up, graph ownership
and the few collectives the training loop needs.

``torchrun --nproc_per_node=N train.py ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT`` set;
:func:`setup` joins them into one process group (NCCL on CUDA, gloo on CPU). Jobs that
Slurm starts with several tasks (``hydra/launcher=slurm`` with ``tasks_per_node > 1``) get
the same variables from ``submitit`` when it is installed. A plain ``python train.py`` is
a world of one process and none of this runs.

Graphs are owned by ranks: graph ``i`` of a split belongs to rank ``i % shards``. Each rank
reads, trains on and validates only the graphs it owns, and keeps graph segment training's
history entries for them alone.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes, ``local_rank`` on its
    machine; ``started`` when :func:`setup` created the process group (and so ends it)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    started: bool = False

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _slurm_env() -> None:
    """Export torch.distributed variables for a multi-task Slurm job (via submitit)."""
    if "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    if "SLURM_JOB_ID" not in os.environ:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError as exc:  # pragma: no cover - only on a cluster without the extra
        raise ImportError(
            "a Slurm job with several tasks needs submitit to set up torch.distributed: "
            "pip install tpulearn[slurm]"
        ) from exc
    # Jobs from the Hydra launcher have this set; a plain `srun python train.py` has not.
    os.environ.setdefault("SUBMITIT_EXECUTOR", "slurm")
    # Keep every GPU visible: the process picks its own from LOCAL_RANK (see setup).
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def setup(device: torch.device) -> World:
    """Join the process group described by the environment, if any.

    Args:
        device: the device the trainer asked for; on CUDA each process takes
            ``cuda:<local_rank>`` and the backend is NCCL, otherwise gloo.

    Returns:
        This process's :class:`World`.
    """
    _slurm_env()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    started = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(cuda_index(local_rank))
        # Said before joining: a stray WORLD_SIZE in the environment would otherwise make a
        # plain run wait silently for processes that never come.
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        print(
            f"torch.distributed: rank {rank} of {size} joining at {where} ({backend})",
            file=sys.stderr,
            flush=True,
        )
        dist.init_process_group(backend=backend)
        started = True
    if dist.get_world_size() != size or dist.get_rank() != rank:
        raise RuntimeError(
            f"the process group ({dist.get_rank()} of {dist.get_world_size()}) does not match "
            f"RANK={rank} WORLD_SIZE={size}"
        )
    return World(rank, size, local_rank, started)


def cuda_index(local_rank: int) -> int:
    """This process's GPU: ``local_rank`` among the visible devices (a scheduler that gives
    each task one GPU leaves one visible, index 0)."""
    return local_rank % max(torch.cuda.device_count(), 1)


def teardown(world: World) -> None:
    if world.started and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of ``rank``'s own random streams: the run's ``seed`` on rank 0 (so a
    one-process run is rank 0 of any larger one), a distinct mix of both elsewhere."""
    return seed if rank == 0 else seed * 1_000_003 + rank


def owned(num_items: int, rank: int, shards: int) -> list[int]:
    """Indices of the items (graphs) that ``rank`` owns: ``i % shards == rank``."""
    return list(range(rank, num_items, shards))


def all_sum(values: list[float], world: World, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (identity for one process)."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_gather(obj, world: World) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects)."""
    if not world.distributed:
        return [obj]
    out: list = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj, world: World):
    """Rank 0's ``obj`` on every rank."""
    if not world.distributed:
        return obj
    box = [obj if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
