"""Datasets and config samplers on the bundled sample."""

import re
import shutil
import warnings

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from tpulearn.data import (
    AllConfigsSampler,
    FastBiasedSampler,
    FixedIndicesSampler,
    LayoutDataset,
    TileDataset,
    UniformSampler,
    copy_of,
    dedup_configs,
    eval_indices_path,
    load_eval_indices,
    mean_of_copies,
    read_layout,
    read_tile,
    sample_root,
    tile_layout_features,
)

ROOT = sample_root()


def test_layout_item_holds_one_graph_and_a_config_sample():
    ds = LayoutDataset(ROOT, "xla", "default", "train", sampler=UniformSampler(16))
    assert len(ds) == 1 and ds.stems == ["unet3d"]
    data = ds[0]
    rec = read_layout(ds.files[0])
    assert data.num_nodes == 2774
    assert data.edge_index.shape == (2, 4730)
    # Stored rows [u, v] (u consumes v) become PyG columns (source u, target v).
    assert torch.equal(data.edge_index[:, 0], torch.from_numpy(rec.edge_index[0]))
    assert data.node_config_feat.shape == (16, 56, 18)
    rows = data.config_index.numpy()
    assert len(set(rows.tolist())) == 16
    np.testing.assert_array_equal(data.config_runtime.numpy(), rec.config_runtime[rows])
    np.testing.assert_array_equal(data.node_config_feat.numpy(), rec.node_config_feat[rows])
    assert data.node_opcode.dtype == torch.int64


def test_samples_are_deterministic_per_epoch_and_change_between_epochs():
    ds = LayoutDataset(ROOT, "xla", "default", "train", sampler=UniformSampler(8), seed=3)
    first = ds[0].config_index.tolist()
    assert ds[0].config_index.tolist() == first
    ds.set_epoch(1)
    assert ds[0].config_index.tolist() != first


def test_fast_biased_sampler_prefers_fast_configs():
    runtime = np.arange(1, 1001, dtype=np.int64)
    rng = np.random.default_rng(0)
    sampler = FastBiasedSampler(100, fast_share=0.5, fast_quantile=0.1)
    picked = sampler(np.arange(1000), runtime, rng, "g")
    assert len(set(picked.tolist())) == 100
    assert (runtime[picked] <= 100).sum() == 50  # half from the fastest 10%
    uniform = UniformSampler(100)(np.arange(1000), runtime, rng, "g")
    assert (runtime[uniform] <= 100).sum() < 25


def test_samplers_return_all_when_fewer_candidates():
    runtime = np.array([5, 3, 9], dtype=np.int64)
    rng = np.random.default_rng(0)
    for sampler in (UniformSampler(10), FastBiasedSampler(10)):
        assert sorted(sampler(np.arange(3), runtime, rng, "g").tolist()) == [0, 1, 2]


def test_official_validation_indices_select_the_official_configs():
    indices = load_eval_indices("layout:xla:default")
    assert len(indices["unet_3d.4x4.bf16"]) == 1000
    ds = LayoutDataset(
        ROOT,
        "xla",
        "default",
        "valid",
        sampler=FixedIndicesSampler(eval_indices_path("layout:xla:default")),
    )
    data = ds[0]
    assert data.config_index.tolist() == indices["unet_3d.4x4.bf16"]
    rec = read_layout(ds.files[0])
    np.testing.assert_array_equal(
        data.config_runtime.numpy(), rec.config_runtime[indices["unet_3d.4x4.bf16"]]
    )


def test_fixed_indices_for_an_unknown_graph_name_it():
    sampler = FixedIndicesSampler({"other": [0, 1]})
    ds = LayoutDataset(ROOT, "xla", "default", "valid", sampler=sampler)
    with pytest.raises(KeyError, match=r"unet_3d.4x4.bf16.*unlisted='all'\) takes every config"):
        ds[0]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: UniformSampler(2.5), "num_configs must be an integer >= 1, got 2.5"),
        (lambda: UniformSampler("32"), "num_configs must be an integer >= 1, got '32'"),
        (
            lambda: FastBiasedSampler(32, fast_share=2),
            "fast_share must be a number in [0, 1], got 2",
        ),
        (
            lambda: FastBiasedSampler(32, fast_quantile=0),
            "fast_quantile must be a number in (0, 1], got 0",
        ),
    ],
)
def test_sampler_arguments_are_checked_when_built(make, message):
    # UniformSampler(2.5) was accepted and failed at the first item it drew.
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_a_dataset_takes_negative_indices_as_a_list_does():
    ds = LayoutDataset(ROOT, "xla", "default", "valid", sampler=UniformSampler(4))
    assert ds[-1].config_index.shape == ds[len(ds) - 1].config_index.shape
    with pytest.raises(IndexError, match="graph index -2 out of range for 1 graphs"):
        ds[-2]


def test_chunks_cover_every_config_once_in_order(tmp_path):
    ds = LayoutDataset(ROOT, "xla", "default", "valid", cache_dir=tmp_path)
    chunks = list(ds.chunks(0, 500))
    assert [c.config_index.numel() for c in chunks] == [500, 500, 500, 465]
    assert torch.equal(torch.cat([c.config_index for c in chunks]), torch.arange(1965))


def test_dedup_keeps_the_fastest_of_repeated_configs():
    rec = read_layout(ROOT / "npz/layout/xla/default/train/unet3d.npz")
    keep = dedup_configs(rec.node_config_feat, rec.config_runtime)
    assert keep.shape[0] == 1159 - 478  # 478 repeated rows in this graph
    flat = rec.node_config_feat.reshape(1159, -1)
    assert np.unique(flat[keep], axis=0).shape[0] == keep.shape[0]
    # Every dropped row has a kept twin that is at least as fast.
    kept_by_row = {flat[k].tobytes(): k for k in keep}
    for row in np.setdiff1d(np.arange(1159), keep)[:50]:
        twin = kept_by_row[flat[row].tobytes()]
        assert rec.config_runtime[twin] <= rec.config_runtime[row]
    ds = LayoutDataset(ROOT, "xla", "default", "train", sampler=AllConfigsSampler(), dedup=True)
    assert ds[0].config_index.tolist() == keep.tolist()


@pytest.mark.parametrize("mode", ["min", "mean"])
def test_a_graph_of_one_config_repeated_is_named_when_dedup_leaves_nothing_to_rank(mode):
    # The bundled xla random train graph measures one config 20 times.
    ds = LayoutDataset(ROOT, "xla", "random", "train", sampler=AllConfigsSampler(), dedup=mode)
    with pytest.warns(UserWarning) as caught:
        item = ds[0]
    assert item.config_index.numel() == 1
    (warning,) = caught
    message = str(warning.message)
    assert "openai_v0_rnn_optimized.npz: 20 measured configs but 1 distinct" in message
    assert f"under dedup={mode!r}, fewer than 2: its items have nothing to rank" in message
    assert [(p.name, why) for p, why in ds.too_few_distinct] == [
        ("openai_v0_rnn_optimized.npz", f"20 measured configs but 1 distinct under dedup={mode!r}")
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds[0]  # once per graph
        # Without dedup its 20 rows are sampled; evaluation (min_configs=1) ranks one config.
        LayoutDataset(ROOT, "xla", "random", "train", sampler=AllConfigsSampler())[0]
        LayoutDataset(
            ROOT, "xla", "random", "train", sampler=AllConfigsSampler(), dedup=mode, min_configs=1
        )[0]
        # A graph with distinct configs is not named.
        LayoutDataset(ROOT, "xla", "default", "train", sampler=AllConfigsSampler(), dedup=mode)[0]


def test_dedup_reads_the_config_cache_alike(tmp_path):
    # With a cache the rows are fingerprinted from the memory map, a chunk at a time.
    plain = LayoutDataset(ROOT, "xla", "default", "train", sampler=AllConfigsSampler(), dedup=True)
    cached = LayoutDataset(
        ROOT, "xla", "default", "train", sampler=AllConfigsSampler(), dedup=True, cache_dir=tmp_path
    )
    assert cached[0].config_index.tolist() == plain[0].config_index.tolist()
    assert cached[0].config_index.numel() == 681


def test_dedup_does_not_depend_on_how_rows_are_chunked():
    # Copies of one config land in different chunks (and at different places in one);
    # a floating-point fingerprint rounded some of them apart (782 rows kept at 7 rows a
    # chunk), so repeated configs stayed in.
    rec = read_layout(ROOT / "npz/layout/xla/default/train/unet3d.npz")
    whole = dedup_configs(rec.node_config_feat, rec.config_runtime)
    for chunk_rows in (1, 7, 100):
        got = dedup_configs(rec.node_config_feat, rec.config_runtime, chunk_rows=chunk_rows)
        np.testing.assert_array_equal(got, whole)


def test_dedup_merges_every_exact_copy_and_nothing_else():
    rng = np.random.default_rng(0)
    distinct = rng.integers(-1, 5, (40, 3, 18)).astype(np.float32)
    distinct[1] = -0.0 * distinct[0]  # zeros of both signs compare equal
    distinct[0] = np.abs(distinct[0]) * 0.0
    distinct[2] = distinct[3]
    distinct[2, 1, 5] += 1.0  # one element apart from row 3: stays
    rows = rng.integers(0, 40, 500)
    feat = distinct[rows]
    runtime = rng.permutation(500) + 1
    keep = dedup_configs(feat, runtime, chunk_rows=9)
    canon = np.where(rows == 1, 0, rows)  # rows 0 and 1 are one config
    assert sorted(canon[keep].tolist()) == sorted(set(canon.tolist()))
    for k in keep:  # the fastest of its copies
        assert runtime[k] == runtime[canon == canon[k]].min()


def test_an_unmeasured_copy_never_stands_for_a_measured_config():
    # Rows 0 and 2 are one config; row 0 was not measured (runtime 0). Standing for the
    # config, it would be filtered out as unmeasured and the config lost with it.
    feat = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [5.0, 6.0]], dtype=np.float32)
    runtime = np.array([0, 9, 7, 0])
    assert copy_of(feat, runtime).tolist() == [2, 1, 2, 3]
    assert dedup_configs(feat, runtime).tolist() == [1, 2, 3]


def test_tile_copies_stand_by_the_ranked_ratio_not_the_raw_runtime():
    # Rows 0 and 1 are one config: 10 / 1 is slower than 20 / 4, the ratio that is ranked.
    feat = np.array([[1.0], [1.0], [2.0]], dtype=np.float32)
    runtime = np.array([10, 20, 7])
    norms = np.array([1, 4, 1])
    assert copy_of(feat, runtime).tolist() == [0, 0, 2]
    assert copy_of(feat, runtime, normalizers=norms).tolist() == [1, 1, 2]
    assert dedup_configs(feat, runtime, normalizers=norms).tolist() == [1, 2]


def test_mean_of_copies_labels_the_standing_row_with_its_measured_copies_mean():
    feat = np.array([[1.0], [1.0], [2.0], [1.0], [3.0], [3.0]], dtype=np.float32)
    runtime = np.array([20, 10, 5, 0, 0, 0])  # row 3 unmeasured; config 3.0 never measured
    rep = copy_of(feat, runtime)
    assert rep.tolist() == [1, 1, 2, 1, 4, 4]
    assert mean_of_copies(rep, runtime).tolist() == [20, 15, 5, 0, 0, 0]
    # Tile: the ranked ratio runtime / normalizer is averaged, written back under the
    # standing row's normalizer: (20 / 4 + 10 / 1) / 2 = 7.5 -> 7.5 * 1.
    norms = np.array([4, 1, 1, 1, 1, 1])
    assert mean_of_copies(rep, runtime, norms).tolist() == [20, 8, 5, 0, 0, 0]


def test_dedup_mean_keeps_the_same_rows_and_labels_them_with_the_copies_mean():
    rec = read_layout(ROOT / "npz/layout/xla/default/train/unet3d.npz")
    flat = rec.node_config_feat.reshape(rec.num_configs, -1)

    def make(mode):
        return LayoutDataset(
            ROOT, "xla", "default", "train", sampler=AllConfigsSampler(), dedup=mode
        )

    fastest, mean = make(True)[0], make("mean")[0]
    assert mean.config_index.tolist() == fastest.config_index.tolist()
    assert make("min")[0].config_runtime.tolist() == fastest.config_runtime.tolist()
    changed = 0
    for k, got in zip(mean.config_index.tolist(), mean.config_runtime.tolist(), strict=True):
        copies = rec.config_runtime[(flat == flat[k]).all(axis=1)]
        assert got == np.rint(copies.mean())
        changed += got != copies.min()
    assert changed > 0  # unet3d repeats configs with other runtimes
    with pytest.raises(ValueError, match="dedup must be one of"):
        make("median")


def bundled_tile_valid() -> dict:
    """The arrays of the bundled tile valid kernel, to edit."""
    with np.load(TileDataset(ROOT, "valid").files[0]) as npz:
        return dict(npz)


def write_tile_valid(root, arrays: dict) -> None:
    """``arrays`` as the one tile valid file under ``root``, named as the bundled one."""
    folder = root / "npz" / "tile" / "xla" / "valid"
    folder.mkdir(parents=True)
    np.savez(folder / TileDataset(ROOT, "valid").files[0].name, **arrays)


def test_tile_dedup_mean_averages_the_ranked_ratio_under_each_row_normalizer(tmp_path):
    # The bundled valid kernel measures one tile config twice, under one normalizer; give
    # the second copy another, so that averaging runtimes and averaging ratios differ.
    arrays = bundled_tile_valid()
    arrays["config_runtime_normalizers"][-1] *= 3
    write_tile_valid(tmp_path, arrays)
    ds = TileDataset(tmp_path, "valid", sampler=AllConfigsSampler(), dedup="mean")
    rec = read_tile(ds.files[0])
    data = ds[0]
    runtime, norms = rec.config_runtime, rec.config_runtime_normalizers
    ratio = runtime / norms
    merged = 0
    for k, got in zip(data.config_index.tolist(), data.config_runtime.tolist(), strict=True):
        copies = (rec.config_feat == rec.config_feat[k]).all(axis=1)
        assert got == np.rint(ratio[copies].mean() * norms[k])
        merged += int(np.unique(norms[copies]).size > 1)
    assert merged == 1


def test_tile_dedup_keeps_the_copy_of_least_ratio_not_of_least_runtime(tmp_path):
    # The bundled valid kernel's repeated config: rows 0 and 8 (the last), 8911 and 8521
    # under one normalizer. Halving row 8's normalizer makes it the slower copy in ratio.
    arrays = bundled_tile_valid()
    assert arrays["config_runtime"][[0, -1]].tolist() == [8911, 8521]
    arrays["config_runtime_normalizers"][-1] //= 2
    write_tile_valid(tmp_path, arrays)
    kept = TileDataset(tmp_path, "valid", sampler=AllConfigsSampler(), dedup="min")[0]
    last = arrays["config_runtime"].shape[0] - 1
    assert 0 in kept.config_index.tolist() and last not in kept.config_index.tolist()
    assert kept.config_index.numel() == last


def test_tile_dataset_item():
    ds = TileDataset(ROOT, "valid", sampler=UniformSampler(4))
    data = ds[0]
    assert data.config_feat.shape == (4, 24)
    assert data.config_runtime_normalizers.shape == (4,)
    assert data.node_feat.shape == (2, 140)


def test_tile_layout_items_carry_42_config_features_normalised_on_train():
    plain = TileDataset(ROOT, "valid", sampler=UniformSampler(4))
    ds = TileDataset(ROOT, "valid", sampler=UniformSampler(4), tile_layout=True)
    raw = ds[0].config_feat
    assert raw.shape == (4, 42) and torch.equal(raw[:, :24], plain[0].config_feat)
    norm = ds.fit_config_normalizer("zscore", log=True)
    assert norm.shift.shape == (42,)
    ds.config_normalizer = norm
    data, rec = ds[0], ds.read(0)
    rows = data.config_index.numpy()
    extra = tile_layout_features(rec.node_feat, rec.config_feat[rows])
    expected = norm.transform(np.concatenate([rec.config_feat[rows], extra], axis=1))
    np.testing.assert_array_equal(data.config_feat.numpy(), expected)


def test_unlabelled_test_split_is_kept_and_flagged():
    ds = LayoutDataset(ROOT, "nlp", "default", "test", sampler=UniformSampler(4))
    assert ds.labelled == [False] and ds.num_configs == [1001]
    assert ds[0].config_runtime.eq(0).all()


def test_graphs_with_too_few_configs_are_reported_not_silently_dropped(tmp_path):
    src = ROOT / "npz/tile/xla/train/retinanet.2x2.fp32_-342c949e14733d96.npz"
    folder = tmp_path / "npz/tile/xla/train"
    folder.mkdir(parents=True)
    shutil.copy(src, folder / src.name)
    with pytest.warns(UserWarning, match="retinanet.2x2.fp32_-342c949e14733d96"):
        ds = TileDataset(tmp_path, "train", min_configs=3)
    assert len(ds) == 0
    assert ds.excluded[0][0].name == src.name and "2 measured configs < 3" in ds.excluded[0][1]


def test_missing_split_says_which_folder_and_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        LayoutDataset(tmp_path, "nlp", "random", "train")
    message = str(info.value)
    assert str(tmp_path / "npz/layout/nlp/random/train") in message
    assert "download_tpugraphs.py --collections layout-nlp-random" in message


def test_a_split_the_bundled_sample_lacks_says_what_it_holds_not_to_download_into_it():
    # It once said to download into the sample's folder, inside the installed package.
    with pytest.raises(FileNotFoundError) as info:
        LayoutDataset(ROOT, "nlp", "random", "train")
    message = str(info.value)
    assert str(ROOT / "npz/layout/nlp/random/train") in message
    assert message.endswith(
        "the bundled sample holds layout:nlp:random's test split only; train on the released "
        "files: `python scripts/download_tpugraphs.py --collections layout-nlp-random --root "
        "DIR`, then data.root=DIR"
    )


def test_empty_split_folder_is_an_error(tmp_path):
    (tmp_path / "npz/tile/xla/valid").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no .npz files"):
        TileDataset(tmp_path, "valid")


def test_normalizer_fitted_on_train_is_applied_to_items():
    train = LayoutDataset(ROOT, "xla", "default", "train", sampler=UniformSampler(4))
    norm = train.fit_normalizer(log=True)
    valid = LayoutDataset(
        ROOT, "xla", "default", "valid", sampler=UniformSampler(4), node_normalizer=norm
    )
    data = valid[0]
    rec = read_layout(valid.files[0])
    from tpulearn.data import reencode_minor_to_major

    expected = norm.transform(reencode_minor_to_major(rec.node_feat))
    np.testing.assert_array_equal(data.node_feat.numpy(), expected)


def test_layout_items_with_equal_config_counts_batch():
    ds = LayoutDataset(ROOT, "xla", "random", "valid", sampler=UniformSampler(8))
    a, b = ds[0], ds[0]
    batch = Batch.from_data_list([a, b])
    assert batch.node_config_feat.shape == (8, 124, 18)
    assert batch.node_config_ids[62:].tolist() == (a.node_config_ids + 3163).tolist()
    assert batch.config_runtime.shape == (16,)


def test_memory_does_not_grow_with_the_number_of_graphs(tmp_path):
    import tracemalloc

    from tpulearn.data.synthetic import write_layout_collection

    files = write_layout_collection(
        tmp_path,
        "nlp",
        "random",
        num_graphs={"train": 40},
        nodes=(300, 400),
        num_configurable=(30, 40),
        configs=(200, 300),
        seed=0,
    )
    sizes = []
    for path in files:
        with np.load(path) as npz:
            sizes.append(sum(npz[k].nbytes for k in npz.files))
    ds = LayoutDataset(tmp_path, "nlp", "random", "train", sampler=UniformSampler(32))
    assert len(ds) == 40

    def peak_over(indices):
        tracemalloc.reset_peak()
        for i in indices:
            data = ds[i]
            assert data.node_config_feat.shape[0] == 32
            del data
        return tracemalloc.get_traced_memory()[1]

    tracemalloc.start()
    try:
        first = peak_over(range(5))
        everything = peak_over(range(40))
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # The collection decompresses to many times the largest graph; iterating all of it
    # peaks at about one graph's worth, the same as iterating the first five.
    assert sum(sizes) > 20 * max(sizes)
    assert everything < 3 * max(sizes)
    assert everything < 2 * first
    assert after < max(sizes)
