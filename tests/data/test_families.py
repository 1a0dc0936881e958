"""Synthetic cost-model families: form, determinism, chunking, noise defaults, sidecar, oracle.

No test asserts a noisy quality number: every metric checked is either noise-free or of a
fixed seed, so a rerun gives the same value.
"""

import json

import numpy as np
import pytest

from tpulearn.data import synthetic
from tpulearn.data.io import read_layout
from tpulearn.data.synthetic import (
    DEFAULT_NOISE,
    LAYOUT_FAMILIES,
    SIDECAR_NAME,
    TILE_FAMILIES,
    layout_cost,
    make_layout_graph,
    make_tile_graph,
    oracle_metrics,
    oracle_scores,
    read_sidecar,
    write_layout_collection,
    write_tile_collection,
)
from tpulearn.data.synthetic import families as fam_mod
from tpulearn.data.synthetic import layout as layout_mod
from tpulearn.data.synthetic.__main__ import main
from tpulearn.metrics import kendall_tau

FAMILIES = sorted(LAYOUT_FAMILIES)
SMALL = {"num_graphs": {"train": 2, "valid": 1, "test": 1}, "nodes": (60, 120), "configs": (20, 40)}
# Non-configurable opcodes of different kinds, to rewrite neighbours with.
OTHER_OPCODES = np.array([2, 13, 20, 25, 32, 45, 57, 59, 81, 94, 95])


@pytest.fixture(scope="module")
def graph() -> dict[str, np.ndarray]:
    return make_layout_graph(np.random.default_rng(11), 300, 30, 64, noise=0.0)


def _neighbours(graph: dict[str, np.ndarray]) -> np.ndarray:
    """Non-configurable nodes adjacent to a configurable one."""
    ids = graph["node_config_ids"]
    edges = graph["edge_index"]
    touch = np.isin(edges, ids).any(axis=1)
    nodes = np.unique(edges[touch])
    return nodes[~np.isin(nodes, ids)]


def _variable(cost: np.ndarray) -> np.ndarray:
    """The config-dependent part: costs relative to config 0."""
    return cost - cost[0]


# --------------------------------------------------------------------------- registry


def test_registries_hold_the_families_with_their_documented_form():
    assert {"neighbour_vote", "edge_conversion", "roofline"} <= set(LAYOUT_FAMILIES)
    assert "tile_spill" in TILE_FAMILIES
    assert LAYOUT_FAMILIES["neighbour_vote"].cost is layout_cost
    assert TILE_FAMILIES["tile_spill"].cost is synthetic.tile_cost
    for name, family in {**LAYOUT_FAMILIES, **TILE_FAMILIES}.items():
        assert family.name == name
        assert family.task == ("tile" if name in TILE_FAMILIES else "layout")
        assert 0 < family.noise < 0.2
        assert family.summary


def test_every_public_name_is_exported():
    for name in synthetic.__all__:
        assert hasattr(synthetic, name), name


# ---------------------------------------------------------------------- cost functions


@pytest.mark.parametrize("name", FAMILIES)
def test_cost_is_deterministic_positive_finite_and_config_dependent(graph, name):
    cost = LAYOUT_FAMILIES[name].cost
    first, second = cost(graph), cost(dict(graph))
    assert first.dtype == np.float64 and first.shape == (64,)
    assert np.array_equal(first, second)
    assert np.isfinite(first).all() and (first > 0).all()
    assert len(np.unique(first)) > 50  # configs differ in cost
    again = make_layout_graph(np.random.default_rng(11), 300, 30, 64, noise=0.0)
    assert np.array_equal(cost(again), first)  # the same seed gives the same graph and cost


@pytest.mark.parametrize("name", FAMILIES)
def test_cost_accepts_a_record_and_explicit_configs(tmp_path, name):
    path = write_layout_collection(tmp_path, num_graphs={"train": 1}, nodes=(80, 80))[0]
    record = read_layout(path)
    cost = LAYOUT_FAMILIES[name].cost
    full = cost(record)
    assert np.array_equal(cost(record, record.node_config_feat[3:5]), full[3:5])


@pytest.mark.parametrize("name", FAMILIES)
def test_cost_does_not_depend_on_how_configs_are_chunked(graph, monkeypatch, name):
    cost = LAYOUT_FAMILIES[name].cost
    whole = cost(graph)
    nc = graph["node_config_ids"].size
    for module in (fam_mod, layout_mod):  # a few configs per chunk instead of all
        monkeypatch.setattr(module, "_CHUNK_ELEMENTS", 18 * nc * 3)
    chunked = cost(graph)
    assert np.array_equal(chunked, whole)


@pytest.mark.parametrize("name", FAMILIES)
def test_cost_depends_on_the_neighbours_opcodes(graph, name):
    # Rewriting only non-configurable neighbours' opcodes changes how configs compare,
    # not only the config-independent base: the neighbourhood matters.
    cost = LAYOUT_FAMILIES[name].cost
    rng = np.random.default_rng(0)
    changed = dict(graph, node_opcode=graph["node_opcode"].copy())
    nodes = _neighbours(graph)
    changed["node_opcode"][nodes] = rng.choice(OTHER_OPCODES, nodes.size)
    assert np.ptp(_variable(cost(changed)) - _variable(cost(graph))) > 0


@pytest.mark.parametrize("name", FAMILIES)
def test_cost_depends_on_the_neighbours_layouts(graph, name):
    cost = LAYOUT_FAMILIES[name].cost
    feat = graph["node_feat"].copy()
    rank = (feat[:, 21:27] > 0).sum(axis=1)
    for node in _neighbours(graph):
        r = rank[node]
        feat[node, 134 : 134 + r] = feat[node, 134 : 134 + r][::-1]  # another permutation
    changed = dict(graph, node_feat=feat)
    assert np.ptp(_variable(cost(changed)) - _variable(cost(graph))) > 0


def test_roofline_depends_on_the_operands_shapes(graph):
    # Short minor rows of an operand waste bandwidth: the producers' dims matter.
    feat = graph["node_feat"].copy()
    nodes = _neighbours(graph)
    feat[nodes, 21:27] = np.where(feat[nodes, 21:27] > 0, 2.0, 0.0)
    changed = dict(graph, node_feat=feat)
    cost = synthetic.roofline_cost
    assert np.ptp(_variable(cost(changed)) - _variable(cost(graph))) > 0


def test_propagation_reads_nodes_two_hops_away(graph):
    # A layout travels through elementwise-like consumers: ops no configurable node
    # touches, one hop further, change how configs compare.
    ids = graph["node_config_ids"]
    edges = graph["edge_index"]
    first = _neighbours(graph)
    touch = np.isin(edges, first).any(axis=1)
    second = np.setdiff1d(np.unique(edges[touch]), np.concatenate([first, ids]))
    assert second.size
    cost = synthetic.propagation_cost
    changed = dict(graph, node_opcode=graph["node_opcode"].copy())
    flipped = np.flatnonzero(fam_mod._TRANSPARENT[OTHER_OPCODES])
    kept = np.flatnonzero(~fam_mod._TRANSPARENT[OTHER_OPCODES])
    assert flipped.size and kept.size
    # Every such op swaps whether it keeps a layout.
    transparent = fam_mod._TRANSPARENT[graph["node_opcode"][second]]
    changed["node_opcode"][second] = np.where(
        transparent, OTHER_OPCODES[kept[0]], OTHER_OPCODES[flipped[0]]
    )
    assert np.ptp(_variable(cost(changed)) - _variable(cost(graph))) > 0


def test_propagation_spills_past_a_threshold_of_the_whole_graph(graph, monkeypatch):
    # Without the spill (capacity out of reach) the cost drops by a config-dependent amount
    # in some configs and not at all in others: a threshold, not a per-node sum.
    cost = synthetic.propagation_cost
    with_spill = cost(graph)
    monkeypatch.setattr(fam_mod, "_SPILL_CAPACITY", 1e9)
    without = cost(graph)
    saved = with_spill - without
    assert (saved >= 0).all()
    assert (saved == 0).any() and (saved > 0).any()


def test_the_families_rank_configs_differently(graph):
    costs = {name: LAYOUT_FAMILIES[name].cost(graph) for name in FAMILIES}
    for a in FAMILIES:
        for b in FAMILIES:
            if a < b:
                # Fixed seed, no noise: deterministic. Different forms, different orders.
                assert kendall_tau(costs[a], costs[b]) < 0.9, (a, b)


@pytest.mark.parametrize("name", FAMILIES)
def test_an_all_default_config_costs_the_nodes_own_layouts(graph, name):
    # An all -1 block leaves the layout to the compiler: the node's own output layout
    # (node features 134-139), the same as spelling it out.
    cost = LAYOUT_FAMILIES[name].cost
    default = np.full((1, *graph["node_config_feat"].shape[1:]), -1.0, np.float32)
    feat = graph["node_feat"][graph["node_config_ids"]]
    rank = (feat[:, 21:27] > 0).sum(axis=1)
    spelled = default.copy()
    spelled[0, :, :6] = np.where(np.arange(6) < rank[:, None], feat[:, 134:140], -1.0)
    assert np.array_equal(cost(graph, default), cost(graph, spelled))


# --------------------------------------------------------------------- writer and noise


def test_no_family_keeps_the_legacy_model_and_noise(tmp_path):
    legacy = write_layout_collection(tmp_path / "a", num_graphs={"train": 1}, seed=3)
    named = write_layout_collection(
        tmp_path / "b",
        num_graphs={"train": 1},
        seed=3,
        family="neighbour_vote",
        noise=DEFAULT_NOISE,
    )
    with np.load(legacy[0]) as a, np.load(named[0]) as b:
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key
    side = read_sidecar(tmp_path / "a", "layout:xla:random")["splits"]["train"]
    assert (side["family"], side["noise"], side["seed"]) == ("neighbour_vote", DEFAULT_NOISE, 3)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_named_family_defaults_to_its_own_noise(tmp_path, name):
    write_layout_collection(tmp_path, num_graphs={"train": 1}, family=name)
    side = read_sidecar(tmp_path, "layout:xla:random")["splits"]["train"]
    assert side["family"] == name
    assert side["noise"] == LAYOUT_FAMILIES[name].noise


def test_in_memory_graphs_take_a_family():
    for name in FAMILIES:
        g = make_layout_graph(np.random.default_rng(2), 100, 10, 20, family=name, noise=0.0)
        assert np.array_equal(g["config_runtime"], np.rint(LAYOUT_FAMILIES[name].cost(g)))
    t = make_tile_graph(np.random.default_rng(2), 20, 30, family="tile_spill", noise=0.0)
    assert np.array_equal(t["config_runtime"], np.rint(synthetic.tile_cost(t)))


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("search", ["random", "default"])
def test_noise_free_files_give_an_oracle_tau_of_one(tmp_path, name, search):
    write_layout_collection(tmp_path, "xla", search, family=name, noise=0.0, **SMALL)
    collection = f"layout:xla:{search}"
    metrics = oracle_metrics(tmp_path, collection, "train")
    assert metrics["kendall_tau"] == 1.0
    assert metrics["opa"] == 1.0
    assert metrics["top1_error"] == 0.0
    scores = oracle_scores(tmp_path, collection, "train")
    assert len(scores) == 2  # the labelled files
    for cost, runtime in scores.values():
        assert np.array_equal(np.rint(cost), runtime)
    assert oracle_scores(tmp_path, collection, "test") == {}  # unlabelled


def test_noise_free_tile_files_give_zero_oracle_errors(tmp_path):
    write_tile_collection(tmp_path, family="tile_spill", noise=0.0, num_graphs={"valid": 4})
    metrics = oracle_metrics(tmp_path, "tile:xla", "valid")
    assert metrics["top1_error"] == metrics["top5_error"] == metrics["top10_error"] == 0.0


def test_noisy_files_score_below_the_noise_free_oracle(tmp_path):
    # Fixed seed: the stored runtimes are deterministic, so this value is too.
    write_layout_collection(tmp_path, family="roofline", noise=0.5, seed=1, **SMALL)
    assert oracle_metrics(tmp_path, "layout:xla:random", "train")["kendall_tau"] < 1.0


def test_bad_family_or_noise_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown layout family 'greedy'"):
        write_layout_collection(tmp_path, family="greedy")
    with pytest.raises(ValueError, match="unknown tile family 'roofline'"):
        write_tile_collection(tmp_path, family="roofline")
    with pytest.raises(ValueError, match="noise must be"):
        write_layout_collection(tmp_path, family="roofline", noise=-0.1)


# ---------------------------------------------------------------------------- sidecar


def test_sidecar_round_trips_and_keeps_other_splits(tmp_path):
    write_layout_collection(
        tmp_path, num_graphs={"train": 2}, family="roofline", noise=0.0, seed=5, nodes=(40, 50)
    )
    write_layout_collection(
        tmp_path, num_graphs={"valid": 1}, family="edge_conversion", seed=6, nodes=(40, 50)
    )
    path = tmp_path / "npz/layout/xla/random" / SIDECAR_NAME
    side = json.loads(path.read_text())
    assert side == read_sidecar(tmp_path, "layout:xla:random")
    assert side["collection"] == "layout:xla:random"
    train, valid = side["splits"]["train"], side["splits"]["valid"]
    assert (train["family"], train["noise"], train["seed"]) == ("roofline", 0.0, 5)
    assert train["num_graphs"] == 2 and train["nodes"] == [40, 50]
    assert (valid["family"], valid["seed"]) == ("edge_conversion", 6)
    assert valid["noise"] == LAYOUT_FAMILIES["edge_conversion"].noise
    # The oracle reads the family of each split from the sidecar...
    assert oracle_metrics(tmp_path, "layout:xla:random", "train")["kendall_tau"] == 1.0
    # ...and an explicit family overrides it (another model ranks the files worse).
    other = oracle_metrics(tmp_path, "layout:xla:random", "train", family="neighbour_vote")
    assert other["kendall_tau"] < 1.0
    assert not list(path.parent.glob(".*.tmp"))


def test_oracle_without_a_sidecar_asks_for_the_family(tmp_path):
    write_tile_collection(tmp_path, num_graphs={"train": 1}, noise=0.0)
    (tmp_path / "npz/tile/xla" / SIDECAR_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="pass family="):
        oracle_metrics(tmp_path, "tile:xla", "train")
    assert oracle_metrics(tmp_path, "tile:xla", "train", family="tile_spill")["top1_error"] == 0


def test_readers_ignore_the_sidecar(tmp_path):
    from tpulearn.data.__main__ import summarise
    from tpulearn.data.datasets import LayoutDataset

    write_layout_collection(tmp_path, num_graphs={"train": 2}, nodes=(40, 50), family="roofline")
    assert (tmp_path / "npz/layout/xla/random" / SIDECAR_NAME).is_file()
    assert len(LayoutDataset(tmp_path, "xla", "random", "train")) == 2
    (line,) = summarise(tmp_path, progress=False)
    assert line.split()[:4] == ["layout:xla:random", "train", "2", "graphs"]


# -------------------------------------------------------------------------------- CLI


def _assert_cli_wrote_the_api_s(paths, api, cli):
    """Each file the writer wrote under ``api`` is, array for array, the CLI's under ``cli``."""
    for path in paths:
        with np.load(path) as a, np.load(cli / path.relative_to(api)) as b:
            assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_cli_writes_the_family_and_noise(tmp_path, capsys):
    args = ["--train", "1", "--valid", "1", "--test", "0", "--nodes", "40", "60"]
    assert main([str(tmp_path / "cli"), *args, "--family", "roofline", "--noise", "0"]) == 0
    assert "layout:xla:random" in capsys.readouterr().out
    side = read_sidecar(tmp_path / "cli", "layout:xla:random")["splits"]
    assert {s["family"] for s in side.values()} == {"roofline"}
    assert {s["noise"] for s in side.values()} == {0.0}
    expected = write_layout_collection(
        tmp_path / "api",
        num_graphs={"train": 1, "valid": 1, "test": 0},
        nodes=(40, 60),
        family="roofline",
        noise=0.0,
    )
    _assert_cli_wrote_the_api_s(expected, tmp_path / "api", tmp_path / "cli")


def test_cli_config_seed_is_the_writer_s(tmp_path):
    args = ["--train", "1", "--valid", "0", "--test", "0", "--nodes", "30", "40"]
    assert main([str(tmp_path / "cli"), *args, "--config-seed", "3"]) == 0
    expected = write_layout_collection(
        tmp_path / "api",
        num_graphs={"train": 1, "valid": 0, "test": 0},
        nodes=(30, 40),
        config_seed=3,
    )
    own = write_layout_collection(
        tmp_path / "own", num_graphs={"train": 1, "valid": 0, "test": 0}, nodes=(30, 40)
    )
    _assert_cli_wrote_the_api_s(expected, tmp_path / "api", tmp_path / "cli")
    with np.load(expected[0]) as a, np.load(own[0]) as c:
        assert not np.array_equal(a["config_runtime"], c["config_runtime"])


@pytest.mark.parametrize("collection", ["layout:xla:random", "tile"])
def test_cli_labelled_test_is_the_writer_s(tmp_path, collection):
    # Test graphs with runtimes: graphs no run trained on or selected a checkpoint on.
    args = ["--collections", collection, "--train", "0", "--valid", "0"]
    args += ["--test", "2", "--nodes", "30", "40", "--configs", "5", "8"]
    assert main([str(tmp_path / "cli"), *args, "--labelled-test"]) == 0
    assert main([str(tmp_path / "plain"), *args]) == 0
    write = write_tile_collection if collection == "tile" else write_layout_collection
    expected = write(
        tmp_path / "api",
        num_graphs={"train": 0, "valid": 0, "test": 2},
        nodes=(30, 40),
        configs=(5, 8),
        labelled_test=True,
    )
    assert len(expected) == 2
    _assert_cli_wrote_the_api_s(expected, tmp_path / "api", tmp_path / "cli")
    for path in expected:
        with (
            np.load(path) as a,
            np.load(tmp_path / "plain" / path.relative_to(tmp_path / "api")) as c,
        ):
            assert (a["config_runtime"] > 0).all()
            assert not c["config_runtime"].any()


def test_cli_tile_family_and_default_noise(tmp_path):
    root = tmp_path / "t"
    assert main([str(root), "--collections", "tile", "--tile-family", "tile_spill"]) == 0
    side = read_sidecar(root, "tile:xla")["splits"]["train"]
    assert (side["family"], side["noise"]) == ("tile_spill", TILE_FAMILIES["tile_spill"].noise)
    assert main([str(root / "legacy"), "--collections", "tile"]) == 0
    assert read_sidecar(root / "legacy", "tile:xla")["splits"]["train"]["noise"] == DEFAULT_NOISE


def test_cli_rejects_an_unknown_family(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--family", "greedy"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train", "-1"], "--train must be >= 0, got -1"),
        # The tile collection is valid, the layout one is not: neither is written.
        (
            ["--collections", "tile", "layout:xla:random", "--nodes", "2", "5"],
            "layout:xla:random: layout graphs need at least 3 nodes, got nodes=(2, 5)",
        ),
        (["--configs", "4", "2"], "configs must be a range (lo, hi) with 1 <= lo <= hi"),
        (["--config-seed", "-1"], "--config-seed must be >= 0, got -1"),
        (
            ["--collections", "tile", "--config-seed", "1"],
            "tile:xla: --config-seed applies to layout collections only",
        ),
    ],
)
def test_cli_checks_every_collection_before_writing_any(tmp_path, capsys, args, message):
    # Before, a negative count wrote the other splits, and a bad range a traceback.
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "root"), *args])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "root").exists()
