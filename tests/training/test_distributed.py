"""Multi-process training (torchrun, gloo on CPU): graph ownership, batches that match a
one-process run, GST history per rank, checkpoints from rank 0, resume."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tpulearn.data.synthetic.writer import write_layout_collection
from tpulearn.segments import load_gst_state, merge_gst_states
from tpulearn.training.distributed import World, owned, rank_seed
from tpulearn.training.schedule import BatchSchedule, num_shards
from tpulearn.training.state import owned_stems

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data=synthetic",
    "data.configs_per_graph=8",
    "trainer.progress=false",
    "trainer.max_steps=6",
    "trainer.val_every=3",
    "trainer.graphs_per_batch=2",
]


# ------------------------------------------------------------------ batches


@pytest.mark.parametrize("num_graphs", [4, 5, 7])
def test_each_shard_visits_its_graphs_once_per_epoch(num_graphs):
    shards = 2
    schedule = BatchSchedule(graphs_per_batch=4, num_graphs=num_graphs, shards=shards, seed=3)
    for rank in range(shards):
        mine = owned(num_graphs, rank, shards)
        assert mine == [i for i in range(num_graphs) if i % shards == rank]
        pairs = [p for s in range(12) for p in schedule.graph_indices(s, [rank])]
        by_epoch = {}
        for epoch, idx in pairs:
            by_epoch.setdefault(epoch, []).append(idx)
        complete = [e for e, graphs in by_epoch.items() if len(graphs) == len(mine)]
        assert len(complete) >= 3
        for e in complete:
            assert sorted(by_epoch[e]) == mine, (rank, e)


def test_union_of_ranks_is_the_one_process_batch_with_shards():
    schedule = BatchSchedule(graphs_per_batch=4, num_graphs=9, shards=2, seed=0)
    for step in range(6):
        union = schedule.graph_indices(step)
        parts = [p for r in range(2) for p in schedule.graph_indices(step, [r])]
        assert union == parts
        assert Counter(idx % 2 for _, idx in union) == {0: 2, 1: 2}


def test_one_shard_is_the_epoch_permutation():
    schedule = BatchSchedule(graphs_per_batch=3, num_graphs=6, seed=5)
    pairs = [p for s in range(4) for p in schedule.graph_indices(s)]
    first, second = np.random.default_rng((5, 0)), np.random.default_rng((5, 1))
    expected = [(0, int(i)) for i in first.permutation(6)]
    expected += [(1, int(i)) for i in second.permutation(6)]
    assert pairs == expected


def test_batch_and_shard_errors():
    with pytest.raises(ValueError, match="multiple of the number of shards"):
        num_shards(2, graphs_per_batch=3, num_graphs=10, world=World())
    with pytest.raises(ValueError, match="3 training graphs cannot be shared by 4"):
        num_shards(4, graphs_per_batch=4, num_graphs=3, world=World())
    with pytest.raises(ValueError, match="trainer.shards=4 but 2 processes"):
        num_shards(4, graphs_per_batch=4, num_graphs=10, world=World(rank=0, size=2))
    assert num_shards(None, graphs_per_batch=4, num_graphs=10, world=World(rank=1, size=2)) == 2


def test_rank_seeds_keep_the_run_seed_on_rank_0_and_their_own_elsewhere():
    # Exact numbers: checkpoints of multi-process runs hold streams seeded with them.
    assert [rank_seed(7, r) for r in range(3)] == [7, 7_000_022, 7_000_023]


# ------------------------------------------------------------------ GST history per rank


def _state(keys, generator_seed):
    values = {k: torch.full((3, 2), float(i)) for i, k in enumerate(keys)}
    filled = {k: torch.ones(3, 2, dtype=torch.bool) for k in keys}
    return {
        "table": {"values": values, "filled": filled},
        "generator": torch.Generator().manual_seed(generator_seed).get_state(),
    }


def test_gst_states_merge_and_each_rank_reloads_only_its_graphs():
    from tpulearn.models import SAGE
    from tpulearn.segments import GSTTrainer, SegmentModel

    rank0 = _state(["g0:10:contiguous:4", "g2:10:contiguous:4"], 1)
    rank1 = _state(["g1:12:contiguous:4", "g3:9:contiguous:4"], 2)
    merged = merge_gst_states([rank0, rank1])
    assert sorted(merged["table"]["values"]) == sorted(
        [*rank0["table"]["values"], *rank1["table"]["values"]]
    )
    assert len(merged["generators"]) == 2

    stems = ["g0", "g1", "g2", "g3"]
    world = World(rank=1, size=2)
    gst = GSTTrainer(SegmentModel(SAGE("layout", hidden_channels=4), 4), seed=9)
    load_gst_state(gst, merged, world.rank, world.size, owned_stems(stems, world, 2))
    assert sorted(gst.table.values) == ["g1:12:contiguous:4", "g3:9:contiguous:4"]
    torch.testing.assert_close(
        gst.table.values["g3:9:contiguous:4"], rank1["table"]["values"]["g3:9:contiguous:4"]
    )
    assert torch.equal(gst.generator.get_state(), rank1["generator"])


# ------------------------------------------------------------------ torchrun runs


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_data")
    counts = {"train": 4, "valid": 2, "test": 1}
    write_layout_collection(root, num_graphs=counts, nodes=(30, 60), configs=(16, 32), seed=0)
    return root


def _run(args, cwd, nproc=1):
    env_prefix = [sys.executable]
    if nproc > 1:
        env_prefix += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    proc = subprocess.run(
        [*env_prefix, "train.py", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _losses(run_dir):
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("train/loss")]


def _params(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["trainer.union_prob=1.0"]], ids=["plain", "unions"])
def test_two_processes_match_one_process_with_the_same_global_batch(root, tmp_path, extra):
    # SGD: unlike Adam its updates scale with the gradient, so a wrong average over
    # processes (a sum, or a mean over the wrong count) would show in the curve. With
    # unions each rank joins its graph to its own graph of the step before, as the
    # one-process run joins the graph at the same place in its batch.
    base = [
        *TINY,
        f"data.root={root}",
        "model.hidden_channels=8",
        "model.num_layers=1",
        "model.opcode_dim=4",
        "model.dropout=0",
        "optim._target_=torch.optim.SGD",
        "optim.lr=0.05",
    ]
    common = [*base, *extra]
    two, one = tmp_path / "two", tmp_path / "one"
    out = _run([*common, f"hydra.run.dir={two}"], REPO, nproc=2)
    _run([*common, f"hydra.run.dir={one}", "trainer.shards=2"], REPO)
    assert out.count("best validation") == 1  # rank 0 alone reports

    curve_two, curve_one = _losses(two), _losses(one)
    assert [s for s, _ in curve_two] == list(range(1, 7))
    np.testing.assert_allclose([v for _, v in curve_two], [v for _, v in curve_one], rtol=1e-5)
    if extra:  # the unions took part: from step 2 on the losses are not a plain run's
        plain = tmp_path / "plain"
        _run([*base, f"hydra.run.dir={plain}", "trainer.shards=2"], REPO)
        curve_plain = _losses(plain)
        assert curve_plain[0] == curve_one[0]
        assert all(a != b for a, b in zip(curve_plain[1:], curve_one[1:], strict=True))
    a, b = _params(two), _params(one)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4)
    assert a["rng_ranks"] is not None and len(a["rng_ranks"]) == 2
    assert [h["step"] for h in a["history"]] == [0, 3, 6]
    # One writer: a single TensorBoard event file in the shared run folder.
    assert len(list((two / "tensorboard").glob("events.out.tfevents.*"))) == 1


@pytest.mark.slow
def test_two_process_gst_resume_equals_an_uninterrupted_run(root, tmp_path):
    common = [
        *TINY,
        f"data.root={root}",
        "trainer.val_every=2",
        "model=gst_sage",
        "model.max_segment_nodes=20",
        "model.model.hidden_channels=8",
        "model.model.num_layers=1",
        "model.model.opcode_dim=4",
    ]
    full, part = tmp_path / "full", tmp_path / "part"
    _run([*common, f"hydra.run.dir={full}"], REPO, nproc=2)
    _run([*common, f"hydra.run.dir={part}", "trainer.max_steps=4"], REPO, nproc=2)
    _run([*common, f"hydra.run.dir={part}", "trainer.resume=true"], REPO, nproc=2)
    a, b = _params(full), _params(part)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    # Rank 0's checkpoint holds both ranks' history entries: every training graph.
    stems = sorted(k.split(":")[0] for k in a["gst"]["table"]["values"])
    assert stems == [f"synthetic_xla_train_{i:03d}" for i in range(4)]
    assert len(a["gst"]["generators"]) == 2


@pytest.mark.slow
def test_a_time_limit_stops_every_process_after_the_same_step(root, tmp_path):
    # A limit that the data reading alone passes: both processes agree (an all-reduce of
    # the flag after each step) and stop after step 1, validated and checkpointed.
    run = tmp_path / "timed"
    out = _run(
        [*TINY, f"data.root={root}", f"hydra.run.dir={run}", "trainer.max_time=0.001"],
        REPO,
        nproc=2,
    )
    assert "stopped at step 1 of 6: the time limit (trainer.max_time=0.001s) was reached" in out
    state = _params(run)
    assert state["step"] == 1 and [h["step"] for h in state["history"]] == [0, 1]
