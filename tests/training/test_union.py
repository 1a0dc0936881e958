"""trainer.union_prob: steps that train on the disjoint union of two graphs, whose runtime
is the sum of theirs; what a union is, which steps take one, and runs with them."""

import pytest
import torch
from hydra.utils import instantiate
from tiny_runs import compose_config, tiny_overrides

from tpulearn.data.synthetic import write_layout_collection
from tpulearn.models import SAGE
from tpulearn.training import Trainer, load_checkpoint, train
from tpulearn.training.union import graph_union, union_drawn, with_unions


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("union_data")
    counts = {"train": 4, "valid": 2, "test": 1}
    write_layout_collection(root, num_graphs=counts, nodes=(30, 60), configs=(16, 32), seed=0)
    return root


def synthetic_overrides(root, out_dir, steps):
    return [
        *tiny_overrides(out_dir, steps),
        "data=synthetic",
        f"data.root={root}",
        "trainer.max_epochs=null",
    ]


@pytest.fixture(scope="module")
def train_set(root):
    overrides = ["data=synthetic", f"data.root={root}", "data.configs_per_graph=8"]
    cfg = compose_config(overrides=overrides)
    return instantiate(cfg.data).train_set()


def test_a_union_is_both_graphs_side_by_side_with_the_runtimes_summed(train_set):
    a, b = train_set[0], train_set[1]
    u = graph_union(a, b)
    n = a.num_nodes
    assert u.num_nodes == n + b.num_nodes
    assert torch.equal(u.edge_index, torch.cat([a.edge_index, b.edge_index + n], dim=1))
    assert torch.equal(u.node_config_ids, torch.cat([a.node_config_ids, b.node_config_ids + n]))
    assert torch.equal(u.node_config_feat, torch.cat([a.node_config_feat, b.node_config_feat], 1))
    assert torch.equal(u.node_feat, torch.cat([a.node_feat, b.node_feat]))
    assert torch.equal(u.node_opcode, torch.cat([a.node_opcode, b.node_opcode]))
    assert torch.equal(u.config_runtime, a.config_runtime + b.config_runtime)
    assert torch.equal(u.config_index, a.config_index)
    assert u.stem == f"{a.stem}+{b.stem}"


def test_a_model_that_sums_over_nodes_scores_a_union_as_the_sum_of_its_graphs(train_set):
    # No edge joins the two graphs and config i of the union sets config i of each, so a
    # sum readout into a linear head scores it as the two graphs' scores less one bias.
    torch.manual_seed(0)
    model = SAGE("layout", hidden_channels=8, num_layers=2, readout="sum", head="linear").eval()
    a, b = train_set[0], train_set[2]
    with torch.no_grad():
        joint, sa, sb = model(graph_union(a, b)), model(a), model(b)
    torch.testing.assert_close(joint, sa + sb - model.head.bias, rtol=1e-4, atol=1e-4)


def test_graphs_with_other_config_counts_are_refused_a_union(train_set):
    a, b = train_set[0], train_set[1]
    short = b.clone()
    short.node_config_feat = short.node_config_feat[:3]
    short.config_runtime = short.config_runtime[:3]
    with pytest.raises(ValueError, match="same number of configs"):
        graph_union(a, short)
    # In a step such a graph, and a graph whose step before was itself, stays alone.
    out = with_unions([(0, a), (1, b)], [(5, short), (1, b)])
    assert out[0][1] is a and out[1][1] is b
    joined = with_unions([(0, a)], [(1, b)])
    assert joined[0][1].num_nodes == a.num_nodes + b.num_nodes


def test_which_steps_take_unions():
    assert not any(union_drawn(0, s, 0.0) for s in range(100))
    assert all(union_drawn(0, s, 1.0) for s in range(1, 100))
    assert not union_drawn(0, 0, 1.0)  # the first step has no step before it
    drawn = [union_drawn(3, s, 0.5) for s in range(1, 2001)]
    assert drawn == [union_drawn(3, s, 0.5) for s in range(1, 2001)]  # fixed by (seed, step)
    assert 0.45 < sum(drawn) / len(drawn) < 0.55
    assert drawn != [union_drawn(4, s, 0.5) for s in range(1, 2001)]


def weights(result, key="model"):
    return load_checkpoint(result["checkpoints"]["last"])[key]


def test_unions_change_the_training_from_the_second_step(root, tmp_path):
    def run(name, steps, prob):
        overrides = [*synthetic_overrides(root, tmp_path / name, steps)]
        return train(compose_config(overrides=[*overrides, f"trainer.union_prob={prob}"]))

    plain1, union1 = run("p1", 1, 0.0), run("u1", 1, 1.0)
    assert all(torch.equal(v, weights(union1)[k]) for k, v in weights(plain1).items())
    plain3, union3 = run("p3", 3, 0.0), run("u3", 3, 1.0)
    assert any(not torch.equal(v, weights(union3)[k]) for k, v in weights(plain3).items())
    # The step's graph count (configs) is that of one graph: a union is one graph.
    assert union3["history"][-1]["loss"] != plain3["history"][-1]["loss"]


def test_a_resumed_run_takes_the_unions_of_an_uninterrupted_one(root, tmp_path):
    def run(out, steps, *extra):
        overrides = [*synthetic_overrides(root, out, steps), "trainer.union_prob=0.5"]
        return train(compose_config(overrides=[*overrides, "trainer.val_every=2", *extra]))

    whole = run(tmp_path / "whole", 6)
    run(tmp_path / "split", 3)
    resumed = run(tmp_path / "split", 6, "trainer.resume=true")
    # The resumed run's first step (index 3) takes a union: its partner, the graph of
    # the step before the resume, is read again.
    assert union_drawn(0, 3, 0.5)
    a, b = weights(whole), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unions_are_refused_on_tile_collections_and_under_gst(tmp_path):
    tile = [*tiny_overrides(tmp_path / "t", 1), "data=tile_xla", "data.root=sample"]
    with pytest.raises(ValueError, match=r"trainer.union_prob=1.0 needs a layout collection"):
        train(compose_config(overrides=[*tile, "trainer.union_prob=1.0"]))
    gst = [f"out_dir={tmp_path / 'g'}", "trainer.max_steps=1", "trainer.progress=false"]
    gst += ["model=gst_sage", "trainer.union_prob=0.5"]
    with pytest.raises(ValueError, match="cannot train by GST"):
        train(compose_config(overrides=gst))
    assert not (tmp_path / "t" / "checkpoints").exists()
    assert not (tmp_path / "g" / "checkpoints").exists()


@pytest.mark.parametrize("prob", [-0.1, 1.5])
def test_a_probability_outside_the_unit_interval_is_refused(prob):
    with pytest.raises(ValueError, match=r"trainer.union_prob must lie in \[0, 1\]"):
        Trainer(max_steps=1, union_prob=prob)
