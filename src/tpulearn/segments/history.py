"""The historical embedding table of GST: one stored score per (graph, config, segment).

In GST a training step back-propagates through one segment per graph and takes the other
segments' contributions from this table; the trained segment's fresh value is written
back (detached) after the step.

Layout: one dense float32 tensor ``[num_configs, num_segments]`` per graph, in a dict
keyed by the partition key (``stem:num_nodes:method:limit``), plus a bool tensor of the
same shape saying which entries were ever written ("filled"). So the entry of
(graph g, config c, segment s) is ``values[g][c, s]`` (row-major, flat position
``c * num_segments + s`` within the graph, the order of the reference's flat table);
``c`` is the config's row in the file (``config_index``). The table also keeps a step
counter (:meth:`tick`, once per training step) and the step of each entry's last write, so
entries older than a bound can be recomputed (``max_age`` of the GST step). A graph's
tensors are allocated the first time it is seen, sized by its config count (given, or
grown to the largest config row seen), never as one fixed 5e8-entry array: a 100k-config
graph of 44 segments takes 22 MB (values and flags) plus 18 MB of write steps (int32).
Tensors live on the table's device (the model's).
"""

from __future__ import annotations

import torch
from torch import Tensor


class HistoryTable:
    """Stored per-segment scores, ``values[key]`` ``[num_configs, num_segments]``.

    Args:
        device: where the tensors live (follow the model's device; see :meth:`to`).
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device = torch.device(device or "cpu")
        self.values: dict[str, Tensor] = {}
        self.filled: dict[str, Tensor] = {}
        self.stamps: dict[str, Tensor] = {}  # step of each entry's last write
        self.clock = 0

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __len__(self) -> int:
        return len(self.values)

    @property
    def num_entries(self) -> int:
        return sum(v.numel() for v in self.values.values())

    def num_segments(self, key: str) -> int:
        return self.values[key].shape[1]

    def ensure(self, key: str, num_configs: int, num_segments: int) -> None:
        """Allocate graph ``key`` (zeros, unfilled) or grow it to ``num_configs`` rows."""
        if key not in self.values:
            self.values[key] = torch.zeros(num_configs, num_segments, device=self.device)
            self.filled[key] = torch.zeros(
                num_configs, num_segments, dtype=torch.bool, device=self.device
            )
            self.stamps[key] = torch.zeros(
                num_configs, num_segments, dtype=torch.int32, device=self.device
            )
            return
        have, segments = self.values[key].shape
        if segments != num_segments:
            raise ValueError(
                f"graph {key!r} has {segments} segments in the table, asked for {num_segments}"
            )
        if num_configs > have:
            extra = num_configs - have
            self.values[key] = torch.cat(
                [self.values[key], self.values[key].new_zeros(extra, segments)]
            )
            self.filled[key] = torch.cat(
                [self.filled[key], self.filled[key].new_zeros(extra, segments)]
            )
            self.stamps[key] = torch.cat(
                [self.stamps[key], self.stamps[key].new_zeros(extra, segments)]
            )

    def read(self, key: str, config_index: Tensor) -> tuple[Tensor, Tensor]:
        """Stored values and filled flags of the given configs, both ``[C, num_segments]``.

        Args:
            key: the graph.
            config_index: config rows in the file, ``[C]`` int64.
        """
        rows = config_index.to(self.device)
        return self.values[key][rows], self.filled[key][rows]

    def age(self, key: str, config_index: Tensor) -> Tensor:
        """Steps since each entry of the given configs was written, ``[C, num_segments]``
        (meaningful where filled)."""
        return self.clock - self.stamps[key][config_index.to(self.device)]

    def tick(self) -> None:
        """Advance the step counter (once per training step)."""
        self.clock += 1

    @torch.no_grad()
    def write(self, key: str, config_index: Tensor, segments: Tensor | int, values: Tensor):
        """Store detached ``values`` at (config_index[i], segments[i]) for every i.

        Args:
            key: the graph.
            config_index: config rows ``[C]``.
            segments: one segment id for all, or ``[C]``.
            values: ``[C]``; any dtype, stored as float32.
        """
        rows = config_index.to(self.device)
        cols = torch.as_tensor(segments, device=self.device).expand_as(rows)
        self.values[key][rows, cols] = values.detach().to(self.device, torch.float32)
        self.filled[key][rows, cols] = True
        self.stamps[key][rows, cols] = self.clock

    def to(self, device: torch.device | str) -> HistoryTable:
        """Move every tensor to ``device`` (in place; returns self)."""
        self.device = torch.device(device)
        self.values = {k: v.to(self.device) for k, v in self.values.items()}
        self.filled = {k: v.to(self.device) for k, v in self.filled.items()}
        self.stamps = {k: v.to(self.device) for k, v in self.stamps.items()}
        return self

    def state_dict(self) -> dict:
        """``{"values", "filled", "stamps": {key: [C, S]}, "clock": int}`` (checkpoints)."""
        return {
            "values": {k: v.clone() for k, v in self.values.items()},
            "filled": {k: v.clone() for k, v in self.filled.items()},
            "stamps": {k: v.clone() for k, v in self.stamps.items()},
            "clock": self.clock,
        }

    def load_state_dict(self, state: dict) -> None:
        """Replace the table with a :meth:`state_dict` (moved to this table's device).

        Graphs without ``stamps`` (a state saved before write steps were kept) load with
        every entry written at step 0."""
        if set(state["values"]) != set(state["filled"]):
            raise ValueError("history state: `values` and `filled` hold different graphs")
        self.values = {k: v.to(self.device, torch.float32) for k, v in state["values"].items()}
        self.filled = {k: v.to(self.device, torch.bool) for k, v in state["filled"].items()}
        stamps = state.get("stamps") or {}
        if not set(stamps) <= set(self.values):
            raise ValueError("history state: `stamps` holds graphs that `values` does not")
        self.stamps = {
            k: stamps[k].to(self.device, torch.int32)
            if k in stamps
            else torch.zeros_like(v, dtype=torch.int32)
            for k, v in self.values.items()
        }
        self.clock = int(state.get("clock", 0))

    def __repr__(self) -> str:
        return f"HistoryTable({len(self)} graphs, {self.num_entries:,} entries, {self.device})"
