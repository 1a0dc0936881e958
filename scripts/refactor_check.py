"""Record, then compare, the numbers a behaviour-preserving refactor must keep bit for bit.

    OMP_NUM_THREADS=1 python scripts/refactor_check.py record REF.pt
    OMP_NUM_THREADS=1 python scripts/refactor_check.py compare REF.pt

What is recorded (every tensor compared with ``torch.equal``, every float with ``==``):

- scores and every parameter's gradient of one forward/backward pass, for each layer type
  x ``prune`` on/off x ``distinct_states`` on/off on a fixed random layout batch, plus
  option sets (jk cat/max, late join, configurable-node pool, readouts, context hops as
  the data transform, config attention, layer norm, residual, dropout in train mode) and
  a tile batch;
- a GST run with a 2-hop halo and fresh context (losses per step, final weights);
- three tiny ``train(cfg)`` runs on the bundled sample (layout SAGE, tile, GST SAGE with a
  halo): validation metrics, final weights, and the scores ``Predictor`` gives a file.

Run with one thread: parallel scatter reductions on CPU are not reproducible otherwise.
Validations are keyed by their step (a reference keyed by position is read by step too),
and values a new run records that the reference lacks (a metric or a validation added
since) are listed as ``new:`` lines, not counted as differences: what was recorded must
stay, what is added cannot be compared.
The keys of the training runs' configs are the only place this script names the config
layout; when a refactor renames a key, it renames it here too (the numbers stay).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch_geometric.data import Batch

from tpulearn.data import TpuGraphData, sample_root


def layout_graph(seed: int, num_nodes: int = 120, num_configs: int = 10) -> TpuGraphData:
    """A random DAG-like graph, 15 configurable nodes, configs repeating layouts."""
    g = torch.Generator().manual_seed(seed)
    dst = torch.randint(0, num_nodes - 1, (3 * num_nodes,), generator=g)
    src = dst + 1 + torch.randint(0, 6, dst.shape, generator=g)
    keep = src < num_nodes
    edges = torch.stack([src[keep], dst[keep]]).unique(dim=1)
    ids = torch.randperm(num_nodes, generator=g)[:15].sort().values
    options = torch.randint(-1, 4, (3, 15, 18), generator=g).float()
    pick = torch.randint(0, 3, (num_configs, 15), generator=g)
    feat = options[pick, torch.arange(15)]
    return TpuGraphData(
        node_feat=torch.randn(num_nodes, 140, generator=g),
        node_opcode=torch.randint(1, 120, (num_nodes,), generator=g),
        edge_index=edges,
        config_runtime=torch.randint(1, 10_000, (num_configs,), generator=g),
        config_index=torch.arange(num_configs),
        node_config_ids=ids,
        node_config_feat=feat,
        num_nodes=num_nodes,
    )


def tile_graph(seed: int, num_nodes: int = 60, num_configs: int = 6) -> TpuGraphData:
    g = torch.Generator().manual_seed(seed)
    dst = torch.randint(0, num_nodes - 1, (2 * num_nodes,), generator=g)
    src = torch.minimum(dst + 1 + torch.randint(0, 4, dst.shape, generator=g), dst.new_tensor(59))
    return TpuGraphData(
        node_feat=torch.randn(num_nodes, 140, generator=g),
        node_opcode=torch.randint(1, 120, (num_nodes,), generator=g),
        edge_index=torch.stack([src, dst]).unique(dim=1),
        config_feat=torch.randn(num_configs, 24, generator=g),
        config_runtime=torch.randint(1, 10_000, (num_configs,), generator=g),
        num_nodes=num_nodes,
    )


def forward_backward(cls, task: str, data, train: bool = False, **kwargs) -> dict:
    torch.manual_seed(0)
    model = cls(task, hidden_channels=16, num_layers=3, opcode_dim=8, **kwargs)
    model.train(train)
    scores = model(data)
    weights = torch.linspace(-1.0, 1.0, scores.numel()).view_as(scores)
    (scores * weights).sum().backward()
    out = {"scores": scores.detach().clone()}
    for name, p in model.named_parameters():
        if p.grad is not None:
            out[f"grad/{name}"] = p.grad.clone()
    return out


def model_records() -> dict:
    from tpulearn.graph import ConfigContext
    from tpulearn.models import GAT, GCN, GIN, MLP, SAGE, ResGCN

    layout = Batch.from_data_list([layout_graph(1), layout_graph(2)])
    tile = Batch.from_data_list([tile_graph(3), tile_graph(4)])
    rec = {}
    for cls in (SAGE, GCN, ResGCN, GAT, GIN, MLP):
        for prune in (True, False):
            for distinct in (True, False):
                key = f"{cls.__name__}/prune={prune}/distinct={distinct}"
                rec[key] = forward_backward(
                    cls, "layout", layout, prune=prune, distinct_states=distinct
                )
        rec[f"{cls.__name__}/sparse=False"] = forward_backward(
            cls, "layout", layout, sparse_aggregation=False, distinct_states=False
        )
        rec[f"{cls.__name__}/tile"] = forward_backward(cls, "tile", tile, readout="sum+max")
    options = {
        "jk_cat": {"jk": "cat"},
        "jk_max": {"jk": "max", "distinct_states": False},
        "late": {"join": "late", "readout": "mean+max"},
        "config_node_readout": {"config_node_readout": True, "readout": "sum+max"},
        "attention": {"config_attention": True, "attention_heads": 2},
        "norm_residual": {"norm": "layer", "residual": True, "l2_normalize": True},
        "readout_l2_gelu": {"readout_l2": True, "act": "gelu", "edge_direction": "stored"},
        "prelu_reversed": {"act": "prelu", "edge_direction": "reversed"},
        # experiment=layout_fast's model options (layout_agreement and layout_tiling, which
        # read arrays these random graphs lack, in its training run below), then other
        # readout and layer ones.
        "layout_fast": {
            "layout_shape": True,
            "layout_relations": True,
            "readout": "attn",
            "head": "linear",
        },
        "directed_pre_heads": {
            "directed": True,
            "pre_layers": 1,
            "readout": "attn+max",
            "attn_heads": 2,
        },
    }
    for name, kwargs in options.items():
        for cls in (SAGE, GAT):
            rec[f"option/{name}/{cls.__name__}"] = forward_backward(cls, "layout", layout, **kwargs)
    # Context hops are a data transform (data.context_hops): each graph cut, then batched.
    context = Batch.from_data_list([ConfigContext(1)(layout_graph(s)) for s in (1, 2)])
    for cls in (SAGE, GAT):
        rec[f"option/context_hops/{cls.__name__}"] = forward_backward(cls, "layout", context)
    rec["option/dropout_train/SAGE"] = forward_backward(
        SAGE, "layout", layout, train=True, dropout=0.3
    )
    rec["option/dropout_train/tile"] = forward_backward(
        SAGE, "tile", tile, train=True, dropout=0.3, l2_normalize=True
    )
    return rec


def gst_records() -> dict:
    from tpulearn.models import SAGE
    from tpulearn.segments import GSTTrainer, SegmentModel

    torch.manual_seed(0)
    inner = SAGE("layout", hidden_channels=16, num_layers=2, opcode_dim=8, readout="mean+max")
    model = SegmentModel(inner, max_segment_nodes=40, halo_hops=2)
    gst = GSTTrainer(model, keep_prob=0.5, max_age=0, seed=5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    graphs = [layout_graph(s) for s in (11, 12, 13)]
    for g, stem in zip(graphs, ("a", "b", "c"), strict=True):
        g.stem = stem
    losses = []
    for step in range(6):
        batch = [graphs[step % 3], graphs[(step + 1) % 3]]
        scores = gst.step(batch)
        loss = (scores * torch.linspace(-1, 1, scores.shape[-1])).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach().clone())
    rec = {"losses": torch.stack(losses)}
    rec.update({f"weight/{k}": v.clone() for k, v in model.state_dict().items()})
    model.eval()
    with torch.no_grad():
        rec["eval_scores"] = model(Batch.from_data_list(graphs))
    return {"gst_halo": rec}


TRAIN_RUNS = {
    "train_sage": [
        "model=sage",
        "model.hidden_channels=16",
        "model.num_layers=2",
        "model.opcode_dim=8",
    ],
    "train_tile": [
        "experiment=tile_xla",
        f"data.root={sample_root()}",
        "model.hidden_channels=16",
        "model.num_layers=2",
        "model.opcode_dim=8",
        "trainer.graphs_per_batch=1",
    ],
    "train_layout_fast": [
        "experiment=layout_fast",
        "model.hidden_channels=16",
        "model.opcode_dim=8",
    ],
    "train_gst": [
        "model=gst_sage",
        "model.max_segment_nodes=400",
        "model.halo_hops=2",
        "model.model.hidden_channels=16",
        "model.model.num_layers=2",
        "model.model.opcode_dim=8",
        "gst.max_age=0",
    ],
}


def train_records() -> dict:
    from hydra import compose, initialize_config_dir

    import tpulearn
    from tpulearn.predict import Predictor
    from tpulearn.training import train

    config_dir = Path(tpulearn.__file__).parent / "configs"
    files = {
        "layout": sample_root() / "npz/layout/xla/default/valid/unet_3d.4x4.bf16.npz",
        "tile": next((sample_root() / "npz/tile/xla/valid").glob("*.npz")),
    }
    rec = {}
    for name, overrides in TRAIN_RUNS.items():
        with tempfile.TemporaryDirectory() as tmp:
            common = [
                f"out_dir={tmp}",
                "trainer.max_steps=4",
                "trainer.val_every=2",
                "data.configs_per_graph=8",
                "trainer.progress=false",
                "data.eval_chunk=512",
            ]
            with initialize_config_dir(str(config_dir), version_base="1.3"):
                cfg = compose("config", overrides=overrides + common)
            result = train(cfg)
            # Keyed by step, not position: a validation added before the recorded ones
            # (the step-0 validation of the untrained model) leaves their keys as they are.
            run = {
                f"history/step={h['step']}/{k}": v
                for h in result["history"]
                for k, v in h.items()
                if isinstance(v, float | int)
            }
            best = torch.load(result["checkpoints"]["best"], weights_only=False)
            last = torch.load(result["checkpoints"]["last"], weights_only=False)
            run.update({f"best/{k}": v.clone() for k, v in best["model"].items()})
            run.update({f"last/{k}": v.clone() for k, v in last["model"].items()})
            task = "tile" if name == "train_tile" else "layout"
            predictor = Predictor.from_checkpoint(result["checkpoints"]["best"])
            run["predict"] = torch.as_tensor(predictor.score_file(files[task]))
            rec[name] = run
    return rec


def record_all() -> dict:
    torch.use_deterministic_algorithms(False)
    out = {}
    for group in (model_records, gst_records, train_records):
        for key, value in group().items():
            out[key] = value
            print(f"recorded {key}", file=sys.stderr)
    return out


def equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a == b


def by_step(group: dict) -> dict:
    """A group with ``history/<index>/<name>`` keys (references recorded before the keys
    named steps) renamed ``history/step=<step>/<name>``, the step of that entry."""
    out = {}
    for name, value in group.items():
        parts = name.split("/")
        if parts[0] == "history" and parts[1].isdigit():
            name = f"history/step={group[f'history/{parts[1]}/step']}/{parts[2]}"
        out[name] = value
    return out


def compare(ref: dict, new: dict) -> tuple[list[str], list[str]]:
    """Differences (values changed or missing in the new run), and values the new run
    records that the reference does not have (added since: reported, not differences)."""
    problems, added = [], []
    for key in sorted(set(ref) | set(new)):
        if key not in new or key not in ref:
            (problems if key in ref else added).append(
                f"{key}: only in {'reference' if key in ref else 'new run'}"
            )
            continue
        a, b = by_step(ref[key]), by_step(new[key])
        for name in sorted(set(a) | set(b)):
            if name not in a or name not in b:
                where = "reference" if name in a else "new run"
                (problems if name in a else added).append(f"{key}/{name}: only in {where}")
            elif not equal(a[name], b[name]):
                diff = ""
                if isinstance(a[name], torch.Tensor) and a[name].shape == b[name].shape:
                    delta = (a[name].double() - b[name].double()).abs().max().item()
                    diff = f" (max abs diff {delta:.3g})"
                problems.append(f"{key}/{name}: differs{diff}")
    return problems, added


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("record", "compare"))
    parser.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if torch.get_num_threads() != 1:
        print("run with OMP_NUM_THREADS=1 (multi-threaded CPU reductions are not reproducible)")
        return 2
    new = record_all()
    if args.mode == "record":
        torch.save(new, args.path)
        print(f"recorded {len(new)} groups to {args.path}")
        return 0
    problems, added = compare(torch.load(args.path, weights_only=False), new)
    for line in added:
        print(f"new: {line}")
    for line in problems:
        print(line)
    total = sum(len(v) for v in new.values())
    print(
        f"{len(problems)} differences in {total} recorded values ({len(new)} groups); "
        f"{len(added)} values not in the reference"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
