"""Group ``gst_speed``: graph segment training on the real sample, step time and scoring
time, fp32 and bf16 autocast on the CPU.

Row labels name the reference GST code's times on the same machine kind, so that each row
reads against them.
"""

from __future__ import annotations

import os
import statistics

import torch

from .layout import paper_layout_model
from .timing import result, timed

NAME = "gst_speed"
COLUMNS: list[tuple[str, str, str]] = []


def rows_for(args, precision: str = "fp32") -> list[dict]:
    """GST step time on unet3d and segment scoring of unet_3d.4x4.bf16 (real files)."""
    from tpulearn.data import AllConfigsSampler, LayoutDataset, UniformSampler, sample_root
    from tpulearn.losses import pairwise_hinge_loss
    from tpulearn.segments import GSTTrainer, SegmentModel

    root = sample_root()
    train = LayoutDataset(root, "xla", "default", "train", sampler=UniformSampler(32))
    train.node_normalizer = train.fit_normalizer(log=True)
    model = SegmentModel(paper_layout_model(), max_segment_nodes=1000).train()
    trainer = GSTTrainer(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    load = os.getloadavg()[0]

    bf16 = precision == "bf16"

    def step(data) -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            scores = trainer.step([data], num_configs=[train.num_configs[0]])
        pairwise_hinge_loss(scores.float(), data.config_runtime.unsqueeze(0)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rows = []
    # Steady state: the same 32 configs every step, so their history entries are filled.
    fixed = train[0]
    times = timed(lambda: step(fixed), 5 * args.repeats, warmup=2)
    rows.append(
        result(
            "GST training step, unet3d (2,774 nodes, 3 segments), 32 configs, SAGE 3x256, "
            f"{precision} (reference GST code, fp32: 0.71 s)",
            "s",
            lambda t: t,
            times,
            device="cpu",
            configs_per_s=32 / statistics.median(times),
            parameters=sum(p.numel() for p in model.parameters()),
            load_average=load,
        )
    )
    print(rows[-1], flush=True)
    # Fresh samples each step: never-seen configs first need the no-grad fill pass.
    samples = iter(range(10**6))

    def fresh() -> None:
        train.set_epoch(next(samples) + 1)
        step(train[0])

    times = timed(fresh, 5 * args.repeats, warmup=0)
    rows.append(
        result(
            "GST training step, unet3d, fresh 32-config samples (fill pass for new configs "
            f"included; data loading included), {precision}",
            "s",
            lambda t: t,
            times,
            device="cpu",
            configs_per_s=32 / statistics.median(times),
            load_average=load,
        )
    )
    print(rows[-1], flush=True)

    valid = LayoutDataset(root, "xla", "default", "valid", sampler=AllConfigsSampler())
    valid.node_normalizer = train.node_normalizer
    data = valid[0]
    model.eval()

    def score() -> None:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            model(data, config_chunk=args.config_chunk)

    times = timed(score, args.repeats, warmup=0)
    rows.append(
        result(
            f"scoring all {data.config_runtime.numel():,} configs of unet_3d.4x4.bf16 "
            f"({model.partition(data).num_segments} segments, fresh, summed), SAGE 3x256, "
            f"{precision} (reference GST code, fp32: 65 s)",
            "s",
            lambda t: t,
            times,
            device="cpu",
            configs_per_s=data.config_runtime.numel() / statistics.median(times),
            config_chunk=args.config_chunk,
            load_average=load,
        )
    )
    print(rows[-1], flush=True)
    return rows


def run(args) -> list[dict]:
    """Graph segment training on the real sample: step time and scoring time, fp32 / bf16."""
    return rows_for(args, "fp32") + rows_for(args, "bf16")
