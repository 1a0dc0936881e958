"""Reading real and broken TpuGraphs files."""

from pathlib import Path

import numpy as np
import pytest

from tpulearn.data import (
    TpuGraphsFormatError,
    read_config_runtime,
    read_graph,
    read_layout,
    read_layout_graph,
    read_tile,
    sample_root,
)

ROOT = sample_root()
TILE = ROOT / "npz/tile/xla/train/retinanet.2x2.fp32_-342c949e14733d96.npz"
LAYOUT = ROOT / "npz/layout/xla/default/train/unet3d.npz"

# (file under npz/, nodes, edges, configs, configurable nodes, labelled) from the sample README.
REAL_FILES = [
    ("tile/xla/train/retinanet.2x2.fp32_-342c949e14733d96", 2, 1, 2, None, True),
    ("tile/xla/valid/inception_v3_batch_128_train_426e203f19335d17", 2, 1, 9, None, True),
    ("tile/xla/test/d6f5f54247bd1e58a10b9e7062c636ab", 2, 1, 25, None, False),
    ("layout/xla/default/train/unet3d", 2774, 4730, 1159, 56, True),
    ("layout/xla/default/valid/unet_3d.4x4.bf16", 3163, 5112, 1965, 62, True),
    ("layout/xla/default/test/cd708819d3f5103afd6460b15e74eaf3", 490, 749, 1000, 38, False),
    ("layout/xla/random/train/openai_v0_rnn_optimized", 1277, 2063, 20, 62, True),
    ("layout/xla/random/valid/unet_3d.4x4.bf16", 3163, 5112, 481, 62, True),
    ("layout/xla/random/test/cd708819d3f5103afd6460b15e74eaf3", 490, 749, 1000, 38, False),
    ("layout/nlp/random/test/23559853d9702baaaacbb0c83fd32266", 1096, 1688, 1000, 56, False),
    ("layout/nlp/default/test/3a0c5517a87df8d82fd637b83298a3ba", 21918, 36278, 1001, 848, False),
]


def test_sample_has_exactly_the_eleven_files():
    found = sorted(str(p.relative_to(ROOT / "npz"))[:-4] for p in ROOT.glob("npz/**/*.npz"))
    assert found == sorted(f[0] for f in REAL_FILES)
    assert "CC BY 4.0" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name,n,m,c,nc,labelled", REAL_FILES)
def test_real_files_read_with_documented_shapes_and_dtypes(name, n, m, c, nc, labelled):
    path = ROOT / "npz" / f"{name}.npz"
    rec = read_tile(path) if name.startswith("tile") else read_layout(path)
    assert rec.stem == path.stem
    assert rec.labelled is labelled
    assert rec.node_feat.shape == (n, 140) and rec.node_feat.dtype == np.float32
    assert rec.node_opcode.shape == (n,) and rec.node_opcode.dtype == np.int64
    assert rec.edge_index.shape == (m, 2) and rec.edge_index.dtype == np.int64
    # Nodes are topologically ordered: the consumer id is larger than the producer id.
    assert (rec.edge_index[:, 0] > rec.edge_index[:, 1]).all()
    assert rec.config_runtime.shape == (c,) and rec.config_runtime.dtype == np.int64
    if nc is None:
        assert rec.config_feat.shape == (c, 24) and rec.config_feat.dtype == np.float32
        assert rec.config_runtime_normalizers.dtype == np.int64
        if not labelled:
            assert (rec.config_runtime_normalizers == 1).all()
    else:
        assert rec.node_config_ids.shape == (nc,)
        assert rec.node_config_feat.shape == (c, nc, 18)
        assert rec.node_config_feat.dtype == np.float32
        assert rec.node_splits.ndim == 1
        assert rec.node_splits[0] == 0 and rec.node_splits[-1] == n
        assert np.isin(rec.node_opcode[rec.node_config_ids], [26, 34, 75]).all()


def test_cache_memory_maps_config_features_with_identical_values(tmp_path):
    path = ROOT / "npz/layout/nlp/default/test/3a0c5517a87df8d82fd637b83298a3ba.npz"
    plain = read_layout(path)
    cached = read_layout(path, cache_dir=tmp_path)
    assert isinstance(cached.node_config_feat, np.memmap)
    assert np.array_equal(np.asarray(cached.node_config_feat), plain.node_config_feat)
    again = read_layout(path, cache_dir=tmp_path)  # served from the cache
    assert np.array_equal(again.node_config_feat[[5, 900]], plain.node_config_feat[[5, 900]])
    assert len(list(tmp_path.glob("*.npy"))) == 1


def test_stale_cache_is_rebuilt_when_the_source_changes(tmp_path):
    src = tmp_path / "g.npz"
    arrays = dict(np.load(LAYOUT))
    np.savez_compressed(src, **arrays)
    cache = tmp_path / "cache"
    first = read_layout(src, cache_dir=cache)
    assert float(first.node_config_feat[0, 0, 0]) == float(arrays["node_config_feat"][0, 0, 0])
    arrays["node_config_feat"] = arrays["node_config_feat"] + 1.0
    np.savez_compressed(src, **arrays)
    second = read_layout(src, cache_dir=cache)
    assert np.array_equal(np.asarray(second.node_config_feat), arrays["node_config_feat"])


def test_a_file_of_the_other_task_is_named_so(tmp_path):
    with pytest.raises(TpuGraphsFormatError, match=r"found keys .*: a tile file, which read_tile"):
        read_layout(TILE)
    with pytest.raises(TpuGraphsFormatError, match=r"found keys .*: a layout file, which read_la"):
        read_tile(LAYOUT)
    with pytest.raises(ValueError, match=r"cache_dir='.*' is a file: expected a folder"):
        read_layout(LAYOUT, cache_dir=TILE)


def test_read_graph_and_config_runtime_read_single_members():
    feat, opcode, edges = read_graph(LAYOUT)
    assert feat.shape == (2774, 140) and opcode.dtype == np.int64 and edges.shape == (4730, 2)
    assert read_config_runtime(LAYOUT).shape == (1159,)


def test_read_layout_graph_equals_read_layout_without_the_config_features(tmp_path):
    record = read_layout(LAYOUT)
    feat, opcode, edges, ids, runtime = read_layout_graph(LAYOUT)
    for ours, theirs in [
        (feat, record.node_feat),
        (opcode, record.node_opcode),
        (edges, record.edge_index),
        (ids, record.node_config_ids),
        (runtime, record.config_runtime),
    ]:
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    # The config features are never read: a file whose node_config_feat read_layout
    # rejects still gives its graph.
    a = _layout_arrays()
    path = _write(tmp_path, LAYOUT, node_config_feat=a["node_config_feat"][:, :, :17])
    _expect(path, "node_config_feat", "shape (1159, 56, 18)")
    assert read_layout_graph(path)[3].shape == (56,)


# ---------------------------------------------------------------- broken files


def _write(tmp_path: Path, src: Path, **changes) -> Path:
    """A copy of a real file with some keys replaced (value None deletes the key)."""
    arrays = dict(np.load(src))
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    out = tmp_path / src.name
    np.savez_compressed(out, **arrays)
    return out


def _layout_arrays():
    return dict(np.load(LAYOUT))


def _expect(path: Path, key: str | None, fragment: str, reader=read_layout):
    with pytest.raises(TpuGraphsFormatError) as info:
        reader(path)
    message = str(info.value)
    assert str(path) in message
    if key is not None:
        assert f"key '{key}'" in message and info.value.key == key
    assert fragment in message
    assert isinstance(info.value, ValueError)


def test_missing_key(tmp_path):
    _expect(_write(tmp_path, LAYOUT, node_splits=None), "node_splits", "keys")


def test_wrong_node_feature_width(tmp_path):
    a = _layout_arrays()
    path = _write(tmp_path, LAYOUT, node_feat=a["node_feat"][:, :139])
    _expect(path, "node_feat", "shape (*, 140)")


def test_wrong_layout_config_feature_width(tmp_path):
    a = _layout_arrays()
    path = _write(tmp_path, LAYOUT, node_config_feat=a["node_config_feat"][:, :, :17])
    _expect(path, "node_config_feat", "shape (1159, 56, 18)")


def test_wrong_tile_config_feature_width(tmp_path):
    a = dict(np.load(TILE))
    path = _write(tmp_path, TILE, config_feat=a["config_feat"][:, :20])
    _expect(path, "config_feat", "shape (2, 24)", reader=read_tile)


def test_config_count_mismatch_between_keys(tmp_path):
    a = _layout_arrays()
    path = _write(tmp_path, LAYOUT, config_runtime=a["config_runtime"][:-1])
    _expect(path, "node_config_feat", "found shape (1159, 56, 18)")


def test_tile_normalizer_count_mismatch(tmp_path):
    a = dict(np.load(TILE))
    path = _write(tmp_path, TILE, config_runtime_normalizers=a["config_runtime_normalizers"][:1])
    _expect(path, "config_runtime_normalizers", "2 configs", reader=read_tile)


def test_zero_normalizer_in_a_labelled_tile_file(tmp_path):
    norms = dict(np.load(TILE))["config_runtime_normalizers"].copy()
    norms[1] = 0
    path = _write(tmp_path, TILE, config_runtime_normalizers=norms)
    _expect(path, "config_runtime_normalizers", "0 at config 1", reader=read_tile)


def test_zero_normalizers_in_an_unlabelled_tile_file_are_read(tmp_path):
    # An unlabelled file ranks nothing by its normalizers (the featurizer writes the default
    # config's runtime there, 0 when nothing was measured).
    a = dict(np.load(TILE))
    path = _write(
        tmp_path,
        TILE,
        config_runtime=np.zeros_like(a["config_runtime"]),
        config_runtime_normalizers=np.zeros_like(a["config_runtime_normalizers"]),
    )
    rec = read_tile(path)
    assert not rec.labelled
    assert (rec.config_runtime_normalizers == 0).all()


def test_edge_id_out_of_range(tmp_path):
    a = _layout_arrays()
    edges = a["edge_index"].copy()
    edges[3, 0] = 2774
    _expect(_write(tmp_path, LAYOUT, edge_index=edges), "edge_index", "value 2774")


def test_negative_edge_id(tmp_path):
    a = _layout_arrays()
    edges = a["edge_index"].copy()
    edges[0, 1] = -1
    _expect(_write(tmp_path, LAYOUT, edge_index=edges), "edge_index", "value -1")


def test_node_config_ids_unsorted(tmp_path):
    ids = _layout_arrays()["node_config_ids"][::-1].copy()
    _expect(_write(tmp_path, LAYOUT, node_config_ids=ids), "node_config_ids", "increasing")


def test_node_config_ids_out_of_range(tmp_path):
    ids = _layout_arrays()["node_config_ids"].copy()
    ids[-1] = 99999
    path = _write(tmp_path, LAYOUT, node_config_ids=ids)
    _expect(path, "node_config_ids", "value 99999")
    _expect(path, "node_config_ids", "value 99999", reader=read_layout_graph)


def test_node_splits_not_ending_at_num_nodes(tmp_path):
    splits = np.array([[0, 100, 2000]])
    _expect(_write(tmp_path, LAYOUT, node_splits=splits), "node_splits", "from 0 to 2774")


def test_non_finite_node_features(tmp_path):
    feat = _layout_arrays()["node_feat"].copy()
    feat[10, 5] = np.nan
    _expect(_write(tmp_path, LAYOUT, node_feat=feat), "node_feat", "index [10, 5]")


def test_non_finite_config_features_also_caught_through_the_cache(tmp_path):
    feat = _layout_arrays()["node_config_feat"].copy()
    feat[7, 0, 0] = np.inf
    path = _write(tmp_path, LAYOUT, node_config_feat=feat)
    _expect(path, "node_config_feat", "finite")
    with pytest.raises(TpuGraphsFormatError, match="node_config_feat"):
        read_layout(path, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.npy"))  # nothing half-written kept


def test_negative_runtime(tmp_path):
    runtime = _layout_arrays()["config_runtime"].copy()
    runtime[0] = -5
    _expect(_write(tmp_path, LAYOUT, config_runtime=runtime), "config_runtime", "value -5")


def test_float_runtime_rejected(tmp_path):
    runtime = _layout_arrays()["config_runtime"].astype(np.float64)
    _expect(_write(tmp_path, LAYOUT, config_runtime=runtime), "config_runtime", "integer")


def test_opcode_outside_vocabulary(tmp_path):
    opcode = _layout_arrays()["node_opcode"].astype(np.int64)
    opcode[0] = 200
    _expect(_write(tmp_path, LAYOUT, node_opcode=opcode), "node_opcode", "[0, 128)")


def test_node_opcode_length_mismatch(tmp_path):
    opcode = _layout_arrays()["node_opcode"][:-1]
    _expect(_write(tmp_path, LAYOUT, node_opcode=opcode), "node_opcode", "shape (2774)")


def test_truncated_file(tmp_path):
    data = LAYOUT.read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[: len(data) // 2])
    _expect(path, None, "expected an npz (zip) archive")


def test_file_damaged_inside_a_member(tmp_path):
    # Flip bytes in the middle of the compressed data: the zip directory is intact, the
    # member is not.
    data = bytearray(LAYOUT.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(TpuGraphsFormatError) as info:
        read_layout(path)
    assert str(path) in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    _expect(path, None, "an empty file")


def test_not_a_zip(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("node_feat,node_opcode\n1,2\n")
    _expect(path, None, "expected an npz (zip) archive, found a file that starts with b'node_feat,")
    # An error page saved under the file's name: named by its first bytes, not as a pickle.
    path.write_text("<!DOCTYPE html><html>Not Found</html>")
    _expect(path, None, "found a file that starts with b'<!DOCTYPE html><html>Not Found</'")


def test_a_zip_that_is_not_an_npz_archive(tmp_path):
    import zipfile

    path = tmp_path / "other.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not an array")
    _expect(path, "node_feat", "expected keys node_feat")


def test_wrong_extension(tmp_path):
    path = tmp_path / "graph.npy"
    path.write_bytes(LAYOUT.read_bytes())
    _expect(path, None, "extension '.npy'")


def test_directory_given_as_file(tmp_path):
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    _expect(folder, None, "a directory")


def test_missing_file(tmp_path):
    _expect(tmp_path / "absent.npz", None, "no such file")


def test_zero_configs(tmp_path):
    a = _layout_arrays()
    path = _write(
        tmp_path,
        LAYOUT,
        config_runtime=a["config_runtime"][:0],
        node_config_feat=a["node_config_feat"][:0],
    )
    _expect(path, "config_runtime", "at least one config")


def test_config_feat_nbytes_reads_the_header_only(tmp_path):
    from tpulearn.data.config_cache import config_feat_nbytes

    path = ROOT / "npz/layout/nlp/default/test/3a0c5517a87df8d82fd637b83298a3ba.npz"
    assert config_feat_nbytes(path) == read_layout(path).node_config_feat.nbytes == 61_117_056
    # A float64 member counts as the float32 array it is read into.
    feat = _layout_arrays()["node_config_feat"]
    wide = _write(tmp_path, LAYOUT, node_config_feat=feat.astype(np.float64))
    assert np.load(wide)["node_config_feat"].dtype == np.float64
    assert config_feat_nbytes(wide) == feat.nbytes == 1159 * 56 * 18 * 4
    ints = _write(tmp_path, LAYOUT, node_config_feat=feat.astype(np.int64))
    _expect(ints, "node_config_feat", "a floating-point array", reader=config_feat_nbytes)
    missing = _write(tmp_path, LAYOUT, node_config_feat=None)
    _expect(missing, "node_config_feat", "a readable array", reader=config_feat_nbytes)
