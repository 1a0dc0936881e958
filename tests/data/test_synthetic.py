"""Synthetic TpuGraphs collections: schema, determinism, folder layout and learnability."""

import itertools
import os
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

import tpulearn
from tpulearn.data import synthetic
from tpulearn.data.io import read_layout, read_tile
from tpulearn.data.schema import collection_dir
from tpulearn.data.synthetic import (
    layout_cost,
    make_layout_graph,
    make_tile_graph,
    tile_cost,
    write_layout_collection,
    write_tile_collection,
)
from tpulearn.data.synthetic.__main__ import main as synthetic_main
from tpulearn.data.synthetic.writer import foreign_files

SAMPLE = Path(tpulearn.__file__).parent / "data/_sample/tpugraphs/npz"
REAL_LAYOUT = SAMPLE / "layout/xla/default/train/unet3d.npz"
REAL_TILE = SAMPLE / "tile/xla/train/retinanet.2x2.fp32_-342c949e14733d96.npz"
COUNTS = {"train": 3, "valid": 1, "test": 1}
TINY = {"num_graphs": COUNTS, "configs": (5, 12)}
LAYOUTS = [(source, search) for source in ("xla", "nlp") for search in ("default", "random")]


def _write_all(root: Path, seed: int = 0, **kwargs) -> list[Path]:
    paths = write_tile_collection(root, seed=seed, **TINY, **kwargs)
    for source, search in LAYOUTS:
        paths += write_layout_collection(
            root, source, search, seed=seed, nodes=(20, 60), **TINY, **kwargs
        )
    return paths


@pytest.fixture(scope="module")
def collections(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("synthetic")
    return root, _write_all(root)


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


def _is_layout(path: Path) -> bool:
    return "/layout/" in path.as_posix()


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    return float(kendalltau(a, b).statistic)


# --------------------------------------------------------------------------- schema


def test_files_have_exactly_the_keys_dtypes_and_ranks_of_real_files(collections):
    _, paths = collections
    real = {"tile": _load(REAL_TILE), "layout": _load(REAL_LAYOUT)}
    for path in paths:
        arrays = _load(path)
        ref = real["layout" if _is_layout(path) else "tile"]
        assert list(arrays) == list(ref), path
        for key, value in arrays.items():
            assert value.dtype == ref[key].dtype, (path, key)
            assert value.ndim == ref[key].ndim, (path, key)
        assert arrays["node_feat"].shape[1] == 140
        assert arrays["edge_index"].shape[1] == 2
        if _is_layout(path):
            assert arrays["node_config_feat"].shape[2] == 18
            assert arrays["node_splits"].shape[0] == 1
        else:
            assert arrays["config_feat"].shape[1] == 24


def test_every_file_reads_back_with_the_library_readers(collections):
    _, paths = collections
    for path in paths:
        record = read_layout(path) if _is_layout(path) else read_tile(path)
        assert record.stem == path.stem
        assert record.num_configs == len(_load(path)["config_runtime"])


def test_folder_layout_is_the_released_one_and_leaves_no_temporary_files(collections):
    root, paths = collections
    expected = {
        f"npz/tile/xla/{split}/synthetic_{split}_{i:04d}.npz"
        for split, count in COUNTS.items()
        for i in range(count)
    }
    for source, search in LAYOUTS:
        expected |= {
            f"npz/layout/{source}/{search}/{split}/synthetic_{source}_{split}_{i:03d}.npz"
            for split, count in COUNTS.items()
            for i in range(count)
        }
    # Each collection folder also holds its sidecar (family, noise, seed, sizes).
    sidecars = {"npz/tile/xla/synthetic.json"} | {
        f"npz/layout/{source}/{search}/synthetic.json" for source, search in LAYOUTS
    }
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk == expected | sidecars
    assert {p.relative_to(root).as_posix() for p in paths} == expected


def test_test_split_is_unlabelled_and_others_are_labelled(collections):
    _, paths = collections
    for path in paths:
        arrays = _load(path)
        runtime = arrays["config_runtime"]
        if "/test/" in path.as_posix():
            assert not runtime.any(), path
            if not _is_layout(path):
                assert (arrays["config_runtime_normalizers"] == 1).all()
        else:
            assert (runtime > 0).all(), path
            if not _is_layout(path):
                # The normalizer is the runtime of the default config, row 0.
                assert (arrays["config_runtime_normalizers"] == runtime[0]).all()


@pytest.mark.parametrize("write", [write_tile_collection, write_layout_collection])
def test_labelled_test_split_adds_runtimes_and_changes_no_other_file(tmp_path, write):
    plain = write(tmp_path / "plain", seed=3, nodes=(5, 12), **TINY)
    labelled = write(tmp_path / "labelled", seed=3, nodes=(5, 12), **TINY, labelled_test=True)
    assert [p.relative_to(tmp_path / "plain") for p in plain] == [
        p.relative_to(tmp_path / "labelled") for p in labelled
    ]
    for a, b in zip(plain, labelled, strict=True):
        if "/test/" not in a.as_posix():
            assert a.read_bytes() == b.read_bytes(), a
            continue
        runtime = _load(b)["config_runtime"]
        assert not _load(a)["config_runtime"].any() and (runtime > 0).all(), b
        for key in ("node_feat", "edge_index"):
            assert np.array_equal(_load(a)[key], _load(b)[key]), (b, key)


def test_edges_are_topological_and_unique(collections):
    _, paths = collections
    for path in paths:
        edges = _load(path)["edge_index"]
        assert (edges[:, 0] > edges[:, 1]).all(), path
        assert len(np.unique(edges, axis=0)) == len(edges)


def test_configurable_nodes_are_exactly_the_sorted_conv_dot_reshape_nodes(collections):
    _, paths = collections
    for path in filter(_is_layout, paths):
        arrays = _load(path)
        ids, opcode = arrays["node_config_ids"], arrays["node_opcode"]
        assert (np.diff(ids) > 0).all()
        assert set(opcode[ids].tolist()) <= {26, 34, 75}
        assert np.array_equal(ids, np.flatnonzero(np.isin(opcode, (26, 34, 75))))


def test_layout_config_blocks_are_padded_permutations(collections):
    _, paths = collections
    for path in filter(_is_layout, paths):
        arrays = _load(path)
        feat = arrays["node_config_feat"]
        assert set(np.unique(feat).tolist()) <= {-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0}
        rank = (arrays["node_feat"][arrays["node_config_ids"], 21:27] > 0).sum(axis=1)
        for block in feat.reshape(len(feat), -1, 3, 6).transpose(1, 2, 0, 3).reshape(-1, 6):
            valid = block[block >= 0]
            assert np.array_equal(np.sort(valid), np.arange(valid.size))
            assert (block[valid.size :] == -1).all()
        # The output block is the node's own rank, unless left at the default.
        out = feat[..., :6]
        chosen = (out >= 0).sum(axis=-1)
        assert ((chosen == rank) | (chosen == 0)).all()


def test_node_features_follow_the_real_encoding(collections):
    _, paths = collections
    for path in paths:
        arrays = _load(path)
        feat, opcode = arrays["node_feat"], arrays["node_opcode"]
        assert ((opcode >= 1) & (opcode <= 107)).all()
        assert (feat[:, 2:21].sum(axis=1) == 1).all()  # one element type each
        dims = feat[:, 21:27]
        rank = (dims > 0).sum(axis=1)
        assert (dims[np.arange(6)[None, :] >= rank[:, None]] == 0).all()  # trailing padding
        assert np.allclose(feat[:, 27], dims.sum(axis=1))
        assert np.allclose(feat[:, 28], np.where(dims > 0, dims, 1).prod(axis=1))
        for r, layout in zip(rank, feat[:, 134:140], strict=True):
            assert np.array_equal(np.sort(layout[:r]), np.arange(r))
            assert (layout[r:] == 0).all()  # zero padded, as the release
        roots = np.flatnonzero(feat[:, 0])
        if _is_layout(path):
            assert np.array_equal(roots, arrays["node_splits"][0, 1:] - 1)
        else:
            assert np.array_equal(roots, [len(opcode) - 1])


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_arrays_and_another_seed_differs(collections, tmp_path):
    root, paths = collections
    again = _write_all(tmp_path / "again")
    other = _write_all(tmp_path / "other", seed=1)
    for first, second, third in zip(paths, again, other, strict=True):
        a, b, c = _load(first), _load(second), _load(third)
        for key in a:
            assert a[key].tobytes() == b[key].tobytes(), (first, key)
        assert a["node_feat"].shape != c["node_feat"].shape or not np.array_equal(
            a["node_feat"], c["node_feat"]
        )


def test_default_and_random_searches_share_graphs_but_not_configs(collections):
    root, _ = collections
    for split in COUNTS:
        base = root / f"npz/layout/xla/{{}}/{split}/synthetic_xla_{split}_000.npz"
        default, random = (
            _load(Path(str(base).format("default"))),
            _load(Path(str(base).format("random"))),
        )
        for key in ("node_feat", "node_opcode", "edge_index", "node_config_ids", "node_splits"):
            assert np.array_equal(default[key], random[key])
        assert default["node_config_feat"].shape != random["node_config_feat"].shape or (
            not np.array_equal(default["node_config_feat"], random["node_config_feat"])
        )


def test_a_config_seed_draws_other_configs_on_the_same_graphs(tmp_path):
    def write(name, **kwargs):
        counts = {"train": 2, "valid": 1, "test": 0}
        return write_layout_collection(
            tmp_path / name, num_graphs=counts, nodes=(30, 50), configs=(6, 12), **kwargs
        )

    own = write("own", family="roofline", seed=4)
    fresh = write("fresh", family="roofline", seed=4, config_seed=1)
    again = write("again", family="roofline", seed=4, config_seed=1)
    other = write("other", family="roofline", seed=4, config_seed=2)
    assert [p.name for p in own] == [p.name for p in fresh]
    for a, b, c, d in zip(own, fresh, again, other, strict=True):
        a, b, c, d = _load(a), _load(b), _load(c), _load(d)
        for key in ("node_feat", "node_opcode", "edge_index", "node_config_ids", "node_splits"):
            assert np.array_equal(a[key], b[key])
        assert a["node_config_feat"].shape != b["node_config_feat"].shape or not np.array_equal(
            a["node_config_feat"], b["node_config_feat"]
        )
        assert all(np.array_equal(b[key], c[key]) for key in b)  # a function of its seeds
        assert not np.array_equal(b["config_runtime"], d["config_runtime"])
    splits = synthetic.read_sidecar(tmp_path / "fresh", "layout:xla:random")["splits"]
    assert {split["config_seed"] for split in splits.values()} == {1}
    splits = synthetic.read_sidecar(tmp_path / "own", "layout:xla:random")["splits"]
    assert all("config_seed" not in split for split in splits.values())
    with pytest.raises(ValueError, match="config_seed must be >= 0"):
        write("bad", config_seed=-1)
    assert not (tmp_path / "bad").exists()


def test_in_memory_graphs_have_the_requested_sizes():
    rng = np.random.default_rng(3)
    layout = make_layout_graph(rng, 40, 6, 9)
    assert layout["node_feat"].shape == (40, 140)
    assert layout["node_config_feat"].shape == (9, 6, 18)
    assert layout["config_runtime"].shape == (9,)
    tile = make_tile_graph(rng, 7, 11)
    assert tile["node_feat"].shape == (7, 140)
    assert tile["config_feat"].shape == (11, 24)


# --------------------------------------------------------------------------- cost model


def test_noise_free_files_store_exactly_the_cost_model(tmp_path):
    counts = {"train": 2}
    for path in write_layout_collection(tmp_path, num_graphs=counts, noise=0.0):
        record = read_layout(path)
        assert np.array_equal(np.rint(layout_cost(record)), record.config_runtime)
    for path in write_tile_collection(tmp_path, num_graphs=counts, noise=0.0):
        record = read_tile(path)
        assert np.array_equal(np.rint(tile_cost(record)), record.config_runtime)


def test_cost_model_ranks_perfectly_and_a_config_blind_model_scores_zero():
    graph = make_layout_graph(np.random.default_rng(0), 200, 20, 300, noise=0.0)
    runtime = graph["config_runtime"]
    assert len(np.unique(runtime)) > 250  # runtimes vary with the config
    assert _tau(np.rint(layout_cost(graph)), runtime) == 1.0
    # One score for every config: no pair is concordant or discordant. scipy calls that
    # undefined (nan); ranking metrics count it as 0.
    assert np.nan_to_num(_tau(np.zeros(len(runtime)), runtime)) == 0.0


def test_no_single_config_column_ranks_a_layout_graph():
    graph = make_layout_graph(np.random.default_rng(1), 300, 30, 300)
    runtime = graph["config_runtime"]
    columns = graph["node_config_feat"].reshape(len(runtime), -1)
    best = max(
        abs(_tau(columns[:, i], runtime)) for i in range(columns.shape[1]) if np.ptp(columns[:, i])
    )
    assert best < 0.7  # measured 0.25 - 0.5 over many graphs
    assert _tau(layout_cost(graph), runtime) > 0.8  # the noise (0.2%) costs little


def test_tile_runtime_needs_the_kernel_not_only_the_config():
    rng = np.random.default_rng(2)
    best_column, model = [], []
    for _ in range(10):
        kernel = make_tile_graph(rng, int(rng.integers(5, 41)), 100)
        runtime, config = kernel["config_runtime"], kernel["config_feat"]
        best_column.append(
            max(abs(_tau(config[:, i], runtime)) for i in range(24) if np.ptp(config[:, i]))
        )
        model.append(_tau(tile_cost(kernel), runtime))
    assert np.mean(best_column) < 0.85  # measured ~0.7
    assert np.mean(model) > 0.95


def test_changing_one_configurable_nodes_layout_changes_the_runtime():
    graph = make_layout_graph(np.random.default_rng(4), 120, 12, 1, noise=0.0)
    rank = (graph["node_feat"][graph["node_config_ids"], 21:27] > 0).sum(axis=1)
    for node, r in enumerate(rank):
        perms = list(itertools.permutations(range(r)))
        configs = np.repeat(graph["node_config_feat"][:1], len(perms), axis=0)
        configs[:, node, :6] = -1
        configs[:, node, :r] = perms
        assert np.ptp(layout_cost(graph, configs)) > 0, f"configurable node {node}"


def test_the_cheapest_layout_depends_on_the_graph():
    # If every node of a rank preferred the same output layout, a model blind to the graph
    # could learn it from the config columns alone.
    cheapest = set()
    for seed in range(6):
        graph = make_layout_graph(np.random.default_rng(seed), 150, 15, 1, noise=0.0)
        rank = (graph["node_feat"][graph["node_config_ids"], 21:27] > 0).sum(axis=1)
        for node in np.flatnonzero(rank == 2):
            configs = np.repeat(graph["node_config_feat"][:1], 2, axis=0)
            configs[:, node, :6] = [[0, 1, -1, -1, -1, -1], [1, 0, -1, -1, -1, -1]]
            cost = layout_cost(graph, configs)
            if cost[0] != cost[1]:
                cheapest.add(int(np.argmin(cost)))
    assert cheapest == {0, 1}


def test_neighbour_opcodes_decide_the_preferred_output_layout():
    # Rewriting only the opcodes of a configurable node's neighbours flips which plain order
    # (row- or column-major) is cheaper for it, the same way for every node of every graph:
    # a rule message passing can learn, invisible to a model that sees each node alone.
    row_major_cheaper: dict[int, list[bool]] = {}
    for seed in range(8):
        graph = make_layout_graph(np.random.default_rng(seed), 150, 15, 1, noise=0.0)
        ids, edges = graph["node_config_ids"], graph["edge_index"]
        rank = (graph["node_feat"][ids, 21:27] > 0).sum(axis=1)
        for node, node_id in enumerate(ids):
            neighbours = np.r_[edges[edges[:, 0] == node_id, 1], edges[edges[:, 1] == node_id, 0]]
            if np.isin(neighbours, ids).any():
                continue  # keep configurable neighbours' own choices out of the comparison
            configs = np.repeat(graph["node_config_feat"][:1], 2, axis=0)
            configs[:, node, :6] = -1
            configs[0, node, : rank[node]] = np.arange(rank[node])[::-1]  # row-major
            configs[1, node, : rank[node]] = np.arange(rank[node])  # column-major
            for opcode in (2, 20, 32, 45, 63, 95):  # add, compare, ..., parameter, ...
                rewritten = dict(graph, node_opcode=graph["node_opcode"].copy())
                rewritten["node_opcode"][neighbours] = opcode
                cost = layout_cost(rewritten, configs)
                row_major_cheaper.setdefault(opcode, []).append(bool(cost[0] < cost[1]))
    share = [np.mean(cheaper) for cheaper in row_major_cheaper.values()]
    assert min(len(cheaper) for cheaper in row_major_cheaper.values()) >= 10
    assert all(s <= 0.1 or s >= 0.9 for s in share)  # one direction per opcode
    assert min(share) <= 0.1 and max(share) >= 0.9  # and both directions occur


def test_duplicate_rows_are_measured_again(tmp_path):
    graph = make_layout_graph(np.random.default_rng(5), 60, 6, 50, duplicate_fraction=0.3)
    rows = graph["node_config_feat"].reshape(50, -1)
    _, first, counts = np.unique(rows, axis=0, return_index=True, return_counts=True)
    dup = np.flatnonzero((rows == rows[first[counts > 1][0]]).all(axis=1))
    assert len(dup) >= 2
    assert len(np.unique(graph["config_runtime"][dup])) > 1


# --------------------------------------------------------------------------- files


def test_a_split_written_again_with_fewer_graphs_keeps_only_those(tmp_path):
    # Layout: 3 train graphs, then 1; the valid split (not written again) and a file of
    # another name in the train folder stay.
    small = dict(nodes=(6, 8), configs=(3, 4), seed=5)
    write_layout_collection(tmp_path, num_graphs={"train": 3, "valid": 2}, **small)
    train = collection_dir(tmp_path, "layout:xla:random", "train")
    (train / "mine.npz").write_bytes(b"not ours")
    first = np.load(train / "synthetic_xla_train_000.npz")["config_runtime"]
    write_layout_collection(tmp_path, num_graphs={"train": 1}, **small)
    assert sorted(f.name for f in train.glob("*.npz")) == [
        "mine.npz",
        "synthetic_xla_train_000.npz",
    ]
    np.testing.assert_array_equal(
        np.load(train / "synthetic_xla_train_000.npz")["config_runtime"], first
    )
    valid = collection_dir(tmp_path, "layout:xla:random", "valid")
    assert len(list(valid.glob("*.npz"))) == 2
    # Tile: the same rule.
    write_tile_collection(tmp_path, num_graphs={"train": 3}, nodes=(5, 6), configs=(3, 4))
    write_tile_collection(tmp_path, num_graphs={"train": 2}, nodes=(5, 6), configs=(3, 4))
    tile = collection_dir(tmp_path, "tile:xla", "train")
    assert sorted(f.name for f in tile.glob("*.npz")) == [
        "synthetic_train_0000.npz",
        "synthetic_train_0001.npz",
    ]


def test_interrupted_write_keeps_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    first = write_tile_collection(tmp_path, num_graphs={"train": 1})[0]
    before = first.read_bytes()

    def crash(fh, **arrays):
        fh.write(b"PK half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic.np, "savez_compressed", crash)
    with pytest.raises(KeyboardInterrupt):
        write_tile_collection(tmp_path, num_graphs={"train": 1}, seed=7)
    assert first.read_bytes() == before
    assert os.listdir(first.parent) == [first.name]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda root: write_tile_collection(root, num_graphs={"training": 1}), "unknown splits"),
        (lambda root: write_layout_collection(root, "tpu"), "unknown collection"),
        (lambda root: write_layout_collection(root, search="greedy"), "unknown collection"),
        (lambda root: write_tile_collection(root, nodes=(9, 3)), "nodes must be a range"),
        (lambda root: write_layout_collection(root, nodes=(2, 5)), "at least 3 nodes"),
        (lambda root: write_layout_collection(root, configs=(0, 4)), "configs must be a range"),
        (
            lambda root: write_layout_collection(root, num_configurable=(3, 1)),
            "num_configurable must be a range",
        ),
        (
            lambda root: write_tile_collection(root, num_graphs={"train": -1}),
            r"num_graphs\['train'\] must be an integer >= 0, got -1",
        ),
        (lambda root: make_layout_graph(np.random.default_rng(0), 5, 4, 3), "num_configurable"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        call(tmp_path)
    assert not any(tmp_path.iterdir())  # refused before a folder was made


@pytest.mark.slow
def test_benchmark_scale_graph_is_generated_in_seconds():
    start = time.perf_counter()
    graph = synthetic.benchmark_layout_graph(seed=0)
    elapsed = time.perf_counter() - start
    assert graph["node_feat"].shape == (20_000, 140)
    assert graph["node_config_feat"].shape == (2_000, 1_000, 18)
    assert elapsed < 20  # ~1.3 s on a 2-core machine


# --------------------------------------------------------------------------- command line


def test_cli_help_keeps_the_examples_apart_and_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        synthetic_main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert (
        "\n    python -m tpulearn.data.synthetic /tmp/syn --family roofline --noise 0.05\n" in out
    )
    assert "noise (default: 0)" in " ".join(out.split())


def test_cli_refuses_split_folders_holding_files_it_did_not_write(tmp_path, capsys):
    """Training reads every npz of a split: synthetic files beside real ones would join
    them. Its own files are rewritten; --into-existing writes beside the others."""
    args = ["--train", "1", "--valid", "1", "--test", "0", "--nodes", "20", "30"]
    valid = collection_dir(tmp_path, "layout:xla:random", "valid")
    valid.mkdir(parents=True)
    (valid / "unet3d.npz").write_bytes(b"a real file")
    with pytest.raises(SystemExit) as info:
        synthetic_main([str(tmp_path), *args])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert info.value.code == 2
    assert err.endswith(
        f"error: {valid} holds .npz files this command did not write (unet3d.npz); training "
        "would read them with the synthetic ones: choose another root, or pass --into-existing"
    )
    assert [p.name for p in tmp_path.rglob("*.npz")] == ["unet3d.npz"]  # nothing written
    assert synthetic_main([str(tmp_path), *args, "--into-existing"]) == 0
    assert sorted(p.name for p in valid.glob("*.npz")) == [
        "synthetic_xla_valid_000.npz",
        "unet3d.npz",
    ]
    # A root of its own files only is written again as before, also for tile.
    for collection in ("layout:xla:random", "tile"):
        for _ in range(2):
            assert synthetic_main([str(tmp_path / "own"), *args, "--collections", collection]) == 0
    assert foreign_files(tmp_path / "own", "tile:xla") == []
    assert foreign_files(tmp_path, "layout:xla:random") == [valid / "unet3d.npz"]
