"""Feature transforms on real sample files."""

import numpy as np
import pytest

from tpulearn.data import (
    FeatureNormalizer,
    read_layout,
    reencode_minor_to_major,
    sample_root,
    signed_log1p,
    tensor_rank,
)

VALID = sample_root() / "npz/layout/xla/default/valid/unet_3d.4x4.bf16.npz"


def test_tensor_rank_from_shape_dims():
    feat = np.zeros((3, 140), dtype=np.float32)
    feat[0, 21:24] = [4, 8, 2]  # rank 3
    feat[1, 21] = 7  # rank 1
    assert tensor_rank(feat).tolist() == [3, 1, 0]  # the third node is a tuple/scalar


def test_minor_to_major_reencoding_on_the_real_sample():
    feat = read_layout(VALID).node_feat
    out = reencode_minor_to_major(feat)
    rank = tensor_rank(feat)
    changed = out != feat
    # Only layout columns change, and exactly the padding positions (>= rank) change.
    assert not changed[:, :134].any()
    padding = np.arange(6)[None, :] >= rank[:, None]
    assert np.array_equal(changed[:, 134:], padding)
    assert (out[:, 134:][padding] == -1).all()
    # What the sample shows: 674 rank-0 nodes lose six ambiguous zeros each, rank-1 nodes
    # five; the kept entries of every node are a permutation of its dimensions.
    assert np.bincount(rank).tolist() == [674, 1287, 0, 4, 36, 1162]
    assert changed.sum() == int(padding.sum())
    for r in (1, 3, 4, 6):
        rows = out[rank == r, 134 : 134 + r]
        assert (np.sort(rows, axis=1) == np.arange(r)).all()
    # The input is not modified.
    assert not (feat[:, 134:] == -1).any()


def test_signed_log1p_keeps_sign_and_zero():
    x = np.array([-1e9, -1.0, 0.0, 1.0, 1e9])
    y = signed_log1p(x)
    assert y[2] == 0.0 and np.all(np.sign(y) == np.sign(x))
    assert y[4] == pytest.approx(np.log1p(1e9))


@pytest.mark.parametrize("mode", ["zscore", "minmax"])
def test_normalizer_streaming_fit_equals_one_shot(mode):
    rng = np.random.default_rng(0)
    parts = [rng.normal(5, 3, size=(n, 4)) for n in (10, 3, 25)]
    streamed = FeatureNormalizer(mode).fit(parts)
    whole = FeatureNormalizer(mode).fit([np.concatenate(parts)])
    np.testing.assert_allclose(streamed.shift, whole.shift, rtol=1e-6)
    np.testing.assert_allclose(streamed.scale, whole.scale, rtol=1e-5)
    out = whole.transform(np.concatenate(parts))
    if mode == "zscore":
        np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(out.std(0), 1, atol=1e-4)
    else:
        np.testing.assert_allclose(out.min(0), 0, atol=1e-6)
        np.testing.assert_allclose(out.max(0), 1, atol=1e-5)


def test_constant_columns_do_not_divide_by_zero():
    x = np.ones((6, 3)) * np.array([7.0, 0.0, 1e9])
    x[:, 1] = np.arange(6)
    norm = FeatureNormalizer("zscore").fit([x])
    out = norm.transform(x)
    assert np.isfinite(out).all()
    assert (out[:, 0] == 0).all() and (out[:, 2] == 0).all()


def test_log_normalizer_on_real_features_is_bounded_and_round_trips(tmp_path):
    feat = reencode_minor_to_major(read_layout(VALID).node_feat)
    norm = FeatureNormalizer("zscore", log=True).fit([feat])
    out = norm.transform(feat)
    assert np.isfinite(out).all()
    # Column 28 (shape product) spans orders of magnitude: check it against the formula.
    logged = np.log1p(feat[:, 28].astype(np.float64))
    expected = (logged - logged.mean()) / logged.std()
    np.testing.assert_allclose(out[:, 28], expected, atol=1e-4)
    norm.save(tmp_path / "stats.json")
    again = FeatureNormalizer.load(tmp_path / "stats.json")
    assert again.log and again.mode == "zscore"
    np.testing.assert_array_equal(again.transform(feat), out)


def test_normalizer_errors():
    with pytest.raises(ValueError, match="unknown normalisation mode"):
        FeatureNormalizer("rank")
    with pytest.raises(RuntimeError, match="before fit"):
        FeatureNormalizer().transform(np.zeros((1, 3)))
    norm = FeatureNormalizer().fit([np.zeros((2, 3))])
    with pytest.raises(ValueError, match="expected 3 features, got 4"):
        norm.transform(np.zeros((1, 4)))


def test_tile_layout_features_read_each_tile_along_the_root_minor_to_major_order():
    from tpulearn.data import tile_config_features, tile_layout_features

    node_feat = np.zeros((3, 140), dtype=np.float32)
    node_feat[1, 0] = 1.0  # the root (is_root), not the last node
    node_feat[1, 21:24] = [512, 8, 32]
    node_feat[1, 134:137] = [2, 1, 0]  # dim 2 is minor-most, then 1, then 0
    node_feat[2, 21:23] = [7, 9]  # the last node's shape is not read
    config_feat = np.zeros((2, 24), dtype=np.float32)
    config_feat[0, 8:11] = [1, 8, 32]
    config_feat[1, 8:11] = [128, 2, 5]
    out = tile_layout_features(node_feat, config_feat)
    assert out.shape == (2, 18) and out.dtype == np.float32
    tiles, dims, counts = out[:, :6], out[:, 6:12], out[:, 12:]
    assert tiles.tolist() == [[32, 8, 1, 0, 0, 0], [5, 2, 128, 0, 0, 0]]
    assert dims.tolist() == [[32, 8, 512, 0, 0, 0]] * 2
    assert counts.tolist() == [[1, 1, 512, 0, 0, 0], [7, 4, 4, 0, 0, 0]]
    # Without a flagged root the last node is the root; a rank-0 root gives zeros.
    node_feat[1, 0] = 0.0
    assert not tile_layout_features(node_feat, config_feat)[:, 3:6].any()
    node_feat[2, 21:23] = 0.0
    assert not tile_layout_features(node_feat, config_feat).any()
    # The 42 features a tile_layout model reads; off, the file's 24 as they are.
    both = tile_config_features(node_feat, config_feat, tile_layout=True)
    assert both.shape == (2, 42) and np.array_equal(both[:, :24], config_feat)
    assert tile_config_features(node_feat, config_feat) is config_feat
