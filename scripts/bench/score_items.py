"""Group ``score_items``: scoring every config of a real graph as validation,
``evaluate.py`` and ``Predictor`` do, in items of one chunk or in budgeted items.

:func:`tpulearn.training.score_dataset` hands a model whose configs score independently
items of up to :data:`tpulearn.data.ITEM_BYTES` of config features and lets it pass them
``chunk`` configs at a time (``config_chunk``): the config-free pass then runs once per
item, not once per chunk, and the scores are the same bit for bit (each chunk holds the
configs it held alone). The other way, items of one chunk each, is what a model that mixes
its configs (config attention) still gets; here the same model is wrapped so that it does
not say it scores configs apart. The model is ``experiment=layout_fast``'s (untrained: the
work does not depend on the weights); chunks of 64 (``data.eval_chunk``) and 256
(``Predictor``'s default). Each case runs in a fresh interpreter: its seconds per pass over
the graph and the RSS the first pass adds to the process (file reading included).
"""

from __future__ import annotations

import statistics

import torch

from .probe import reset_peak_rss, rss_mb, run_probe
from .timing import devices, result, sync, timed

NAME = "score_items"
COLUMNS = [
    ("seconds", "seconds_median", "{:.3g}"),
    ("RSS added MB", "rss_added_mb", "{:,.0f}"),
]
# (source, search, split, configs, label) of the bundled graphs scored.
GRAPHS = (
    ("xla", "default", "valid", 1965, "xla valid unet_3d.4x4.bf16 (3,163 nodes, 1,965 configs)"),
    ("nlp", "default", "test", 1001, "nlp default test graph (21,918 nodes, 1,001 configs)"),
)
CHUNKS = (64, 256)


class OneChunkItems(torch.nn.Module):
    """A model that does not say whether its configs score apart: items of one chunk."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, data):
        return self.model(data)


def items_probe(source, search, split, chunk, budgeted, repeats, device) -> dict:
    """Run in a fresh interpreter (:func:`.probe.run_probe`): score every config of the
    bundled graph ``repeats + 1`` times; the seconds of all but the first and the RSS the
    first added (MB)."""
    from hydra.utils import instantiate

    from tpulearn.data import AllConfigsSampler, LayoutDataset, sample_root
    from tpulearn.leaderboard.runs import compose
    from tpulearn.training import score_dataset

    ds = LayoutDataset(sample_root(), source, search, split, sampler=AllConfigsSampler())
    ds.node_normalizer = ds.fit_normalizer()
    torch.manual_seed(0)
    model = instantiate(compose("config", ["experiment=layout_fast"]).model).to(device).eval()
    scorer = model if budgeted else OneChunkItems(model)

    def score():
        graphs = list(score_dataset(scorer, ds, device, chunk))
        sync(device)
        return graphs

    reset_peak_rss()
    before = rss_mb()
    score()
    added = rss_mb("VmHWM") - before
    return {"seconds": timed(score, repeats, warmup=0), "rss_added_mb": added}


def run(args) -> list[dict]:
    """Per graph, chunk and device: items of one chunk against budgeted items."""
    repeats = 1 if args.quick else args.repeats
    graphs = GRAPHS[:1] if args.quick else GRAPHS
    rows = []
    for (source, search, split, configs, name), chunk, device in (
        (g, c, d) for g in graphs for c in CHUNKS for d in devices()
    ):
        for budgeted in (False, True):
            out = run_probe(
                "bench.score_items",
                "items_probe",
                [source, search, split, chunk, budgeted, repeats, device],
            )
            if "capped" in out:
                raise RuntimeError(f"scoring {name} was stopped: {out['capped']}")
            kind = "budgeted items" if budgeted else "items of one chunk"
            rows.append(
                result(
                    f"scoring all configs, {name}, layout_fast model, chunk {chunk}, {kind}",
                    "configs/s",
                    lambda t, n=configs: n / t,
                    out["seconds"],
                    device=device,
                    precision="fp32",
                    seconds_median=statistics.median(out["seconds"]),
                    rss_added_mb=out["rss_added_mb"],
                    config_chunk=chunk,
                    torch_threads=torch.get_num_threads(),
                )
            )
            print(rows[-1], flush=True)
    return rows
