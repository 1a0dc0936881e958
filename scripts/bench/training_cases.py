"""The cases of group ``training``: a model, prepared steps of graphs and a loss each.

Tile SAGE on the bundled and on a synthetic tile collection, layout SAGE 2x256 on the whole
graph and on the Kaggle 1st place's pruned graph, layout GCN and GAT 3x64 (train.py's
model), and GST with the paper's model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .layout import paper_layout_model

POOL = 4  # distinct config samples cycled through (loaded before timing)


@dataclass
class TrainingCase:
    """One training benchmark: each of ``steps`` is the ``graphs`` argument of one
    :func:`tpulearn.training.train_step` (``(data, num_configs)`` pairs, on the CPU)."""

    label: str
    build: Callable[[], torch.nn.Module]
    steps: list[list[tuple]]
    loss: torch.nn.Module
    warmup: int = 2


def _tile_steps(ds, graphs: int, pool: int) -> list[list[tuple]]:
    """``pool`` steps of ``graphs`` items (graph ``g`` of a step is file ``g % len``)."""
    ds.node_normalizer = ds.fit_normalizer(mode="minmax", log=False)
    ds.config_normalizer = ds.fit_config_normalizer("minmax", log=False)
    steps = []
    for b in range(pool):
        ds.set_epoch(b)
        files = [g % len(ds) for g in range(graphs)]
        steps.append([(ds[f], ds.num_configs[f]) for f in files])
    return steps


def _layer_model(layer: str) -> torch.nn.Module:
    """The layout model train.py builds by default, with layer type ``layer``."""
    from tpulearn import models

    torch.manual_seed(0)
    return getattr(models, layer)(
        "layout", hidden_channels=64, num_layers=3, readout="sum+max", config_node_readout=True
    )


def training_cases(tmp: Path):
    """Yield every :class:`TrainingCase`; synthetic files are written under ``tmp``."""
    from tpulearn.data import LayoutDataset, TileDataset, UniformSampler, sample_root
    from tpulearn.data.synthetic import write_tile_collection
    from tpulearn.losses import ListMLELoss, PairwiseHingeLoss
    from tpulearn.models import SAGE
    from tpulearn.segments import SegmentModel

    root = sample_root()

    def tile_model():
        torch.manual_seed(0)
        return SAGE("tile", hidden_channels=64, num_layers=3, l2_normalize=True, readout="sum")

    bundled = TileDataset(root, "train", sampler=UniformSampler(10))
    steps = _tile_steps(bundled, 10, POOL)
    record = bundled.read(0)
    listmle = ListMLELoss(temperature=10.0)
    yield TrainingCase(
        f"tile SAGE 3x64, bundled tile:xla train ({len(bundled)} kernel: {record.num_nodes} "
        f"nodes, {record.num_configs} configs, so 10 copies x {record.num_configs} configs "
        "per step), ListMLE (temperature 10)",
        tile_model,
        steps,
        listmle,
    )
    write_tile_collection(
        tmp, num_graphs={"train": 10, "valid": 0, "test": 0}, nodes=(10, 100), configs=(50, 100)
    )
    synthetic = TileDataset(tmp, "train", sampler=UniformSampler(10))
    steps = _tile_steps(synthetic, 10, POOL)
    yield TrainingCase(
        f"tile SAGE 3x64, synthetic tile:xla (10 kernels of 10-100 nodes, "
        f"{sum(d.num_nodes for d, _ in steps[0]):,} nodes in all; 10 graphs x 10 configs per "
        "step), ListMLE (temperature 10)",
        tile_model,
        steps,
        listmle,
    )

    layout = LayoutDataset(root, "xla", "default", "train", sampler=UniformSampler(32))
    layout.node_normalizer = layout.fit_normalizer(log=True)
    samples = []
    for epoch in range(POOL):
        layout.set_epoch(epoch)
        samples.append(layout[0])
    nodes = samples[0].num_nodes

    def layout_model():
        torch.manual_seed(0)
        return SAGE("layout", hidden_channels=256, num_layers=2)

    hinge = PairwiseHingeLoss(margin=0.1)
    yield TrainingCase(
        f"layout SAGE 2x256 on the whole graph, bundled layout:xla:default train unet3d "
        f"({nodes:,} nodes), 32 configs per step, pairwise hinge",
        layout_model,
        [[(d, layout.num_configs[0])] for d in samples],
        hinge,
    )

    # The layer types at train.py's model size (configs/model/sage.yaml): GAT's attention
    # takes the same exact path as the linear layers, so it should stay within a small
    # factor of GCN (issue 17: it ran 30x slower on C copies of the subgraph).
    for layer in ("GCN", "GAT"):
        yield TrainingCase(
            f"layout {layer} 3x64 (train.py's model: sum+max readout, configurable-node "
            f"pool) on the whole graph, bundled layout:xla:default train unet3d "
            f"({nodes:,} nodes), 32 configs per step, pairwise hinge",
            functools.partial(_layer_model, layer),
            [[(d, layout.num_configs[0])] for d in samples],
            hinge,
        )

    # The Kaggle 1st place's graph: configurable nodes and their direct neighbours only
    # (the transform `data.context_hops=1` applies to each item; node-states then count
    # the nodes actually processed).
    from tpulearn.graph import ConfigContext

    pruned = [ConfigContext(1)(d) for d in samples]
    yield TrainingCase(
        f"layout SAGE 2x256, context_hops=1 (configurable nodes and their direct neighbours: "
        f"{pruned[0].num_nodes:,} of {nodes:,} nodes of unet3d, the Kaggle 1st place's "
        "pruning), 32 configs per step, pairwise hinge",
        layout_model,
        [[(d, layout.num_configs[0])] for d in pruned],
        hinge,
    )

    def gst_model():
        return SegmentModel(paper_layout_model(), max_segment_nodes=1000)

    # Warm-up visits every sample once, so the history table holds all their configs.
    yield TrainingCase(
        f"layout GST, SAGE 3x256 in 1000-node segments, unet3d ({nodes:,} nodes), 32 configs "
        "per step, history filled (steady state; the gradient runs through one segment), "
        "pairwise hinge",
        gst_model,
        [[(d, layout.num_configs[0])] for d in samples],
        hinge,
        warmup=POOL,
    )
