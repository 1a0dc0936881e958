"""GST against whole-graph training on a synthetic layout collection: a validation curve.

    python scripts/gst_vs_full.py --mode full --steps 12000 --eval-every 1000 \
        --schedule cosine --clip-grad-norm 1
    python scripts/gst_vs_full.py --mode gst --keep-prob 1 --max-age 0 --halo-hops 2 \
        --steps 12000 --eval-every 1000 --schedule cosine --clip-grad-norm 1
    python scripts/gst_vs_full.py --mode gst --graphs-per-step 8 --steps 2000 --eval-every 250

The curves these gave are in ``benchmarks/gst_vs_full.md``.

The collection (layout:xla:random, 48 train / 12 valid graphs of 1,500-3,000 nodes, 64-128
configs, seed 0) is written to ``--data`` on first use. SAGE 2x64, pairwise hinge 0.1, Adam,
32 configs per graph; validation Kendall tau over every config of the valid graphs.
Modes: ``full`` (whole graphs), ``segments`` (the segment model with every segment fresh and
in the gradient), ``checkpoint`` (the same gradient, one segment's activations at a time),
``gst`` (one segment per graph with gradient, the rest from history).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from tpulearn.data import AllConfigsSampler, LayoutDataset, UniformSampler
from tpulearn.data.synthetic import write_layout_collection
from tpulearn.losses import PairwiseHingeLoss
from tpulearn.metrics import Evaluator
from tpulearn.models import SAGE
from tpulearn.segments import GSTTrainer, HistoryTable, SegmentModel


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("full", "segments", "checkpoint", "gst"), default="gst")
    p.add_argument("--data", type=Path, default=Path("/tmp/tpulearn-gst-vs-full"))
    p.add_argument("--train-graphs", type=int, default=48)
    p.add_argument("--valid-graphs", type=int, default=12)
    p.add_argument("--nodes", type=int, nargs=2, default=(1500, 3000))
    p.add_argument("--configs", type=int, nargs=2, default=(64, 128))
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--graphs-per-step", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--clip-grad-norm", type=float, help="clip the gradient norm to this")
    p.add_argument(
        "--finetune-head-steps",
        type=int,
        default=0,
        help="then train only the prediction head on every segment fresh (backbone frozen)",
    )
    p.add_argument("--segment-nodes", type=int, default=1000)
    p.add_argument("--method", choices=("contiguous", "metis"), default="metis")
    p.add_argument("--halo-hops", type=int, default=0, help="segment context hops (0: GST)")
    p.add_argument("--keep-prob", type=float, default=0.5)
    p.add_argument("--dropout-unit", choices=("entry", "segment"), default="entry")
    p.add_argument("--refresh", action="store_true", help="GST: rebuild the history every step")
    p.add_argument("--max-age", type=int, help="GST: recompute entries older than this")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[float]:
    args = parse(argv)
    if not (args.data / "npz").exists():
        write_layout_collection(
            args.data,
            "xla",
            "random",
            num_graphs={"train": args.train_graphs, "valid": args.valid_graphs},
            nodes=tuple(args.nodes),
            configs=tuple(args.configs),
            seed=0,
        )
    torch.manual_seed(args.seed)
    train = LayoutDataset(args.data, "xla", "random", "train", sampler=UniformSampler(32))
    train.node_normalizer = train.fit_normalizer(log=True)
    valid = LayoutDataset(
        args.data,
        "xla",
        "random",
        "valid",
        AllConfigsSampler(),
        node_normalizer=train.node_normalizer,
    )
    model = SegmentModel(
        SAGE("layout", hidden_channels=64, num_layers=2),
        max_segment_nodes=args.segment_nodes,
        method=args.method,
        enabled=args.mode != "full",
        checkpoint=args.mode == "checkpoint",
        halo_hops=args.halo_hops,
    )
    gst = GSTTrainer(
        model,
        args.keep_prob,
        seed=args.seed,
        dropout_unit=args.dropout_unit,
        max_age=args.max_age,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
        if args.schedule == "cosine"
        else None
    )
    loss_fn = PairwiseHingeLoss(0.1)

    def validate() -> float:
        model.eval()
        evaluator = Evaluator("layout:xla:random")
        with torch.no_grad():
            for i in range(len(valid)):
                data = valid[i]
                evaluator.add(data.stem, model(data), data.config_runtime)
        model.train()
        return evaluator.compute()["kendall_tau"]

    order: list[int] = []
    epoch, curve, start = 0, [], time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)

    def next_graphs() -> tuple[list[int], list]:
        nonlocal epoch, order
        picked = []
        while len(picked) < args.graphs_per_step:
            if not order:
                train.set_epoch(epoch)
                epoch += 1
                order = torch.randperm(len(train), generator=generator).tolist()
            picked.append(order.pop())
        return picked, [train[i] for i in picked]

    for step in range(1, args.steps + 1):
        picked, graphs = next_graphs()
        runtime = torch.stack([g.config_runtime for g in graphs])
        if args.mode == "gst":
            if args.refresh:
                gst.table = HistoryTable(model.device)
            scores = gst.step(graphs, [train.num_configs[i] for i in picked])
        else:
            scores = model(Batch.from_data_list(graphs))
        loss = loss_fn(scores, runtime)
        optimizer.zero_grad()
        loss.backward()
        if args.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if step % args.eval_every == 0 or step == args.steps:
            curve.append(validate())
            visits = step * args.graphs_per_step
            print(
                f"{args.mode} step {step} ({visits} graph visits): valid tau {curve[-1]:.3f}, "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
    if args.finetune_head_steps:
        # Prediction-head finetuning (GST paper): the backbone frozen, the head trained on
        # graph scores with every segment fresh, as inference computes them.
        head = model.model.head
        for param in model.parameters():
            param.requires_grad_(False)
        for param in head.parameters():
            param.requires_grad_(True)
        head_optimizer = torch.optim.Adam(head.parameters(), lr=args.lr)
        for _ in range(args.finetune_head_steps):
            _, graphs = next_graphs()
            runtime = torch.stack([g.config_runtime for g in graphs])
            loss = loss_fn(model(Batch.from_data_list(graphs)), runtime)
            head_optimizer.zero_grad()
            loss.backward()
            head_optimizer.step()
        curve.append(validate())
        print(
            f"after {args.finetune_head_steps} head-finetuning steps: valid tau {curve[-1]:.3f}, "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{vars(args)}\ncurve {[round(t, 3) for t in curve]}, peak RSS {peak:.0f} MB")
    return curve


if __name__ == "__main__":
    main()
