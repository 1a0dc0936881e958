"""Group ``scoring``: scoring every config of a real graph, exact pruning on and off."""

from __future__ import annotations

import itertools
import statistics

import torch

from .timing import devices, parameters, result, timed

NAME = "scoring"
COLUMNS = [
    ("parameters", "parameters", "{:,}"),
    ("seconds", "seconds_median", "{:.3g}"),
    ("max rel. diff vs unpruned", "max_rel_diff_vs_unpruned", "{:.1e}"),
]


def _cases():
    """(label, every config of the graph as one ``Data``) for a mid-size and a big graph."""
    from tpulearn.data import AllConfigsSampler, LayoutDataset, sample_root

    root = sample_root()
    for source, search, split, name in (
        ("xla", "default", "valid", "xla valid unet_3d.4x4.bf16 (3,163 nodes, 1,965 configs)"),
        ("nlp", "default", "test", "nlp default test graph (21,918 nodes, 1,001 configs)"),
    ):
        ds = LayoutDataset(root, source, search, split, sampler=AllConfigsSampler())
        ds.node_normalizer = ds.fit_normalizer()
        yield name, ds[0]


def run(args) -> list[dict]:
    """Scoring every config of a real graph: exact pruning (with distinct states) vs C full
    copies, fp32 and bf16, at two model sizes: SAGE 3x64 and SAGE 2x256 (the size of the
    Kaggle 1st place's model, hidden 256 and 2 SAGE blocks)."""
    from tpulearn.models import SAGE

    rows = []
    for name, data in _cases():
        num_configs = data.config_runtime.numel()
        big_graph = data.num_nodes > 10_000
        for device, (hidden, layers) in itertools.product(devices(), ((64, 3), (256, 2))):
            torch.manual_seed(0)
            model = SAGE("layout", hidden_channels=hidden, num_layers=layers)
            model = model.to(device).eval()
            params = parameters(model)
            data_dev = data.to(device)
            reference = None
            for prune in (False, True):
                for precision in ("fp32", "bf16"):
                    if precision == "bf16" and device == "cpu" and not args.bf16_cpu:
                        continue
                    # The naive path on the big graph takes minutes per run on 2 cores.
                    slow = not prune and big_graph and device == "cpu"
                    if slow and (args.quick or hidden > 64):
                        continue
                    model.prune = prune
                    # C full copies hold [chunk, N, H]: keep their chunk small.
                    chunk = args.config_chunk if prune else min(args.config_chunk, 50)

                    def score(model=model, data_dev=data_dev, precision=precision, chunk=chunk):
                        with (
                            torch.inference_mode(),
                            torch.autocast(
                                data_dev.node_feat.device.type,
                                torch.bfloat16,
                                enabled=precision == "bf16",
                            ),
                        ):
                            out = model(data_dev, config_chunk=chunk)
                        if data_dev.node_feat.is_cuda:
                            torch.cuda.synchronize()
                        return out

                    extra = {}
                    if precision == "fp32":
                        scores = score().float()
                        if prune and reference is not None:
                            diff = (scores - reference).abs().max() / reference.abs().max()
                            extra["max_rel_diff_vs_unpruned"] = float(diff)
                        elif not prune:
                            reference = scores
                    warmup = 0 if slow or args.quick or precision == "fp32" else 1
                    times = timed(score, 1 if slow else args.repeats, warmup=warmup)
                    rows.append(
                        result(
                            f"scoring all configs, {name}, SAGE {layers}x{hidden}, "
                            f"pruning {'on' if prune else 'off'}, {precision}",
                            "configs/s",
                            lambda t, c=num_configs: c / t,
                            times,
                            device=device,
                            parameters=params,
                            seconds_median=statistics.median(times),
                            config_chunk=chunk,
                            **extra,
                        )
                    )
                    print(rows[-1], flush=True)
    return rows
