"""``tpulearn-featurize``: protobuf in, a dataset file out (written atomically)."""

import numpy as np
import pytest
from featurize_inputs import LAYOUT_NPZ, LAYOUT_PB, TILE_PB, len_field, small_module

from tpulearn.data import LayoutDataset, read_layout, read_tile
from tpulearn.data.sampling import AllConfigsSampler
from tpulearn.featurize.cli import main


def test_layout_pb_to_a_valid_npz(tmp_path, capsys):
    out = tmp_path / "graph.npz"
    assert main([str(LAYOUT_PB), "-o", str(out)]) == 0
    assert "3163 nodes, 5112 edges, 62 configurable nodes, 112 config(s)" in capsys.readouterr().out
    record, released = read_layout(out), read_layout(LAYOUT_NPZ)
    assert np.array_equal(record.node_feat, released.node_feat)
    assert np.array_equal(record.edge_index, released.edge_index)
    assert [p.name for p in tmp_path.iterdir()] == ["graph.npz"]  # no temporary file left
    # The released file layout: datasets read it like any other graph.
    dataset = LayoutDataset(
        tmp_path, "xla", "default", "test", sampler=AllConfigsSampler(), files=[out]
    )
    item = dataset[0]
    assert item.node_config_feat.shape == (112, 62, 18) and item.num_nodes == 3163


def test_hlo_dump_without_runs_becomes_an_unlabelled_graph(tmp_path, capsys):
    dump = tmp_path / "module.hlo.pb"
    dump.write_bytes(len_field(1, small_module()))  # an HloProto
    out = tmp_path / "small.npz"
    assert main([str(dump), "-o", str(out), "--kind", "hlo"]) == 0
    assert (
        "10 nodes, 9 edges, 2 configurable nodes, 1 config(s), unlabelled"
        in capsys.readouterr().out
    )
    record = read_layout(out)
    assert record.config_runtime.tolist() == [0] and (record.node_config_feat == -1).all()


def test_tile_pb_to_a_folder_of_kernels(tmp_path):
    assert main([str(TILE_PB), "-o", str(tmp_path / "tiles"), "-q"]) == 0
    files = sorted((tmp_path / "tiles").glob("*.npz"))
    assert len(files) == 15
    assert all(read_tile(f).labelled for f in files)


def test_bad_input_fails_cleanly_and_keeps_the_old_output(tmp_path, capsys):
    out = tmp_path / "graph.npz"
    assert main([str(LAYOUT_PB), "-o", str(out), "-q"]) == 0
    before = out.read_bytes()
    broken = tmp_path / "broken.pb"
    broken.write_bytes(LAYOUT_PB.read_bytes()[:5000])
    assert main([str(broken), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tpulearn-featurize: error: ") and "broken.pb" in err
    assert "bytes of payload" in err
    assert out.read_bytes() == before


def test_usage_errors(tmp_path, capsys):
    assert main([str(LAYOUT_PB), "-o", str(tmp_path / "graph.bin")]) == 2
    assert "ending in .npz" in capsys.readouterr().err
    assert main([str(TILE_PB), "-o", str(tmp_path / "one.npz")]) == 2
    assert "15 tile kernels" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_an_hlo_text_dump_is_named_as_text(tmp_path, capsys):
    text = tmp_path / "module.hlo.txt"
    text.write_text("HloModule jit_f, entry_computation_layout={(f32[8]{0})->f32[8]{0}}\n")
    assert main([str(text), "-o", str(tmp_path / "g.npz")]) == 1
    err = capsys.readouterr().err
    assert "(binary protobuf: XLA_FLAGS='--xla_dump_to=DIR --xla_dump_hlo_as_proto'" in err
    assert err.rstrip().endswith("found text starting 'HloModule jit_f, entry_computation_layou'")


def test_python_m_runs_the_command():
    import runpy
    import sys

    argv, sys.argv = sys.argv, ["tpulearn.featurize", "--help"]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_module("tpulearn.featurize", run_name="__main__")
    finally:
        sys.argv = argv
    assert done.value.code == 0
