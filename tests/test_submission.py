"""Tests for tpulearn.submission: rows, atomic writing, merging and validation."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import load_script

import tpulearn
from tpulearn.submission import (
    HEADER,
    SubmissionError,
    expected_test_graphs,
    make_id,
    make_rows,
    merge_submissions,
    merge_validated,
    parse_id,
    ranking,
    read_submission,
    validate_submission,
    write_submission,
)

SAMPLE = Path(tpulearn.__file__).parent / "data/_sample/tpugraphs"
TILE_ID = "tile:xla:d6f5f54247bd1e58a10b9e7062c636ab"
XLA_ID = "layout:xla:default:cd708819d3f5103afd6460b15e74eaf3"
SAMPLE_TEST_GRAPHS = {
    TILE_ID: 25,
    XLA_ID: 1000,
    "layout:xla:random:cd708819d3f5103afd6460b15e74eaf3": 1000,
    "layout:nlp:default:3a0c5517a87df8d82fd637b83298a3ba": 1001,
    "layout:nlp:random:23559853d9702baaaacbb0c83fd32266": 1000,
}


def sample_rows(tile_top_k=None):
    """Rows for every sample test graph from random scores."""
    rng = np.random.default_rng(0)
    rows = {}
    for row_id, num_configs in SAMPLE_TEST_GRAPHS.items():
        collection, stem = parse_id(row_id)
        top_k = tile_top_k if collection == "tile:xla" else None
        rows |= make_rows(collection, {stem: rng.random(num_configs)}, top_k=top_k)
    return rows


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ids_round_trip():
    assert make_id("tile:xla", "abc") == "tile:xla:abc"
    assert make_id("layout:nlp:random", "abc") == "layout:nlp:random:abc"
    assert parse_id("layout:xla:default:unet_3d.4x4.bf16") == (
        "layout:xla:default",
        "unet_3d.4x4.bf16",
    )
    with pytest.raises(ValueError, match="bad ID 'layout:xla:abc'"):
        parse_id("layout:xla:abc")
    with pytest.raises(ValueError, match="unknown collection"):
        make_id("layout:xla", "abc")
    with pytest.raises(ValueError, match="bad file stem"):
        make_id("tile:xla", "a;b")


def test_ranking_is_fastest_first_with_stable_ties():
    assert ranking([0.3, 0.1, 0.2, 0.1]).tolist() == [1, 3, 2, 0]
    assert ranking(torch.tensor([0.3, 0.1, 0.2]), top_k=2).tolist() == [1, 2]
    with pytest.raises(ValueError, match="NaN or inf"):
        ranking([0.1, float("nan")])


def test_make_rows_layout_lists_every_config_and_tile_honours_top_k():
    rows = make_rows("layout:xla:random", {"g": [0.5, 0.1, 0.9]})
    assert rows["layout:xla:random:g"].tolist() == [1, 0, 2]
    tile = make_rows("tile:xla", {"k": np.arange(10.0)[::-1]}, top_k=5)
    assert tile["tile:xla:k"].tolist() == [9, 8, 7, 6, 5]
    with pytest.raises(ValueError, match="top_k=4 is not allowed for tile:xla"):
        make_rows("tile:xla", {"k": [1.0]}, top_k=4)
    with pytest.raises(ValueError, match="top_k=5 is not allowed for layout:nlp:default"):
        make_rows("layout:nlp:default", {"g": [1.0]}, top_k=5)


def test_write_submission_format_and_no_temp_files(tmp_path):
    out = write_submission(tmp_path / "sub.csv", {TILE_ID: [3, 0, 1], XLA_ID: np.array([1, 0])})
    assert out.read_text() == f"{HEADER}\n{TILE_ID},3;0;1\n{XLA_ID},1;0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]
    assert read_submission(out) == {TILE_ID: [3, 0, 1], XLA_ID: [1, 0]}


def test_write_submission_failure_keeps_the_old_file(tmp_path):
    path = write_submission(tmp_path / "sub.csv", {TILE_ID: [0]})
    with pytest.raises(ValueError, match="bad ID 'nonsense'"):
        write_submission(path, {TILE_ID: [1], "nonsense": [0]})
    with pytest.raises(ValueError, match="negative config index -1"):
        write_submission(path, {TILE_ID: [-1]})
    assert path.read_text() == f"{HEADER}\n{TILE_ID},0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]


def test_merge_submissions(tmp_path):
    a = write_submission(tmp_path / "a.csv", {TILE_ID: [0, 1]})
    b = write_submission(tmp_path / "b.csv", {XLA_ID: [1, 0]})
    merged = merge_submissions([a, b], tmp_path / "all.csv")
    assert read_submission(merged) == {TILE_ID: [0, 1], XLA_ID: [1, 0]}
    c = write_submission(tmp_path / "c.csv", {XLA_ID: [0, 1]})
    with pytest.raises(ValueError, match=f"'{XLA_ID}' is in both .*b.csv and .*c.csv"):
        merge_submissions([a, b, c], tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_expected_test_graphs_reads_the_sample_root():
    assert expected_test_graphs(SAMPLE) == SAMPLE_TEST_GRAPHS
    # As data.root=sample names it (scripts/make_submission.py --root sample).
    assert expected_test_graphs("sample") == SAMPLE_TEST_GRAPHS


def test_sample_submission_validates(tmp_path):
    path = write_submission(tmp_path / "sub.csv", sample_rows())
    report = validate_submission(path, SAMPLE)
    assert report == {
        "tile:xla": 1,
        "layout:xla:default": 1,
        "layout:xla:random": 1,
        "layout:nlp:default": 1,
        "layout:nlp:random": 1,
    }
    # Tile rows may be cut to the top 5.
    short = write_submission(tmp_path / "short.csv", sample_rows(tile_top_k=5))
    assert validate_submission(short, SAMPLE)["tile:xla"] == 1


def test_validator_rejects_missing_graph(tmp_path):
    rows = sample_rows()
    del rows[TILE_ID]
    path = write_submission(tmp_path / "sub.csv", rows)
    with pytest.raises(SubmissionError, match=f"missing row for {TILE_ID} \\(25 configs\\)"):
        validate_submission(path, SAMPLE)


def _bad_row(tmp_path, row_id, indices):
    """A sample submission with ``row_id`` replaced, and the row's line number."""
    rows = sample_rows()
    rows[row_id] = indices
    line = list(rows).index(row_id) + 2  # line 1 is the header
    return write_submission(tmp_path / "sub.csv", rows), line


def test_validator_rejects_repeated_index(tmp_path):
    path, line = _bad_row(tmp_path, TILE_ID, [0, 1, 2, 3, 3])
    with pytest.raises(SubmissionError, match=f"line {line} \\({TILE_ID}\\): index 3 is repeated"):
        validate_submission(path, SAMPLE)


def test_validator_rejects_out_of_range_index(tmp_path):
    path, line = _bad_row(tmp_path, XLA_ID, list(range(1, 1001)))
    with pytest.raises(SubmissionError) as info:
        validate_submission(path, SAMPLE)
    assert info.value.problems == [
        f"line {line} ({XLA_ID}): index 1000 out of range [0, 1000)",
    ]
    assert isinstance(info.value, ValueError)


def test_validator_rejects_short_rows(tmp_path):
    path, line = _bad_row(tmp_path, TILE_ID, [0, 1, 2, 3])
    with pytest.raises(SubmissionError, match=f"line {line} .*need at least 5 configs, got 4"):
        validate_submission(path, SAMPLE)
    path, line = _bad_row(tmp_path, XLA_ID, list(range(999)))
    with pytest.raises(SubmissionError, match=f"line {line} .*rank all 1000 configs, got 999"):
        validate_submission(path, SAMPLE)


def test_validator_lists_every_problem(tmp_path):
    good = write_submission(tmp_path / "ok.csv", sample_rows()).read_text().splitlines()
    lines = [
        "id,configs",
        *good[1:],
        f"{TILE_ID},0;1;2;3;4",
        "tile:xla:nosuchgraph,0;1;2;3;4",
        "layout:xla:default",
        f"{XLA_ID.replace('default', 'random')}x,1;a",
    ]
    path = write_lines(tmp_path / "bad.csv", lines)
    with pytest.raises(SubmissionError) as info:
        validate_submission(path, SAMPLE)
    assert info.value.problems == [
        "line 1: header must be 'ID,TopConfigs', got 'id,configs'",
        "line 9: expected 2 comma-separated fields, got 1",
        "line 7 (tile:xla:d6f5f54247bd1e58a10b9e7062c636ab): repeated ID, first on line 2",
        "line 8 (tile:xla:nosuchgraph): unknown ID, no such test graph",
        "line 10 (layout:xla:random:cd708819d3f5103afd6460b15e74eaf3x): unknown ID, "
        "no such test graph",
    ]
    assert str(info.value).startswith(f"{path}: 5 problem(s):")


def test_validator_needs_test_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no test npz files under"):
        validate_submission(tmp_path / "sub.csv", tmp_path)


def test_read_submission_rejects_non_integers(tmp_path):
    path = write_lines(tmp_path / "sub.csv", [HEADER, f"{TILE_ID},0;1.5"])
    with pytest.raises(
        SubmissionError, match=f"line 2 \\({TILE_ID}\\): TopConfigs must be integers"
    ):
        read_submission(path)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_submission_files_follow_the_umask(tmp_path, umask_022):
    # A submission is handed on like any file: 0644 under umask 022, not mkstemp's 0600.
    part = write_submission(tmp_path / "part.csv", {TILE_ID: [0, 1]})
    merged = merge_submissions([part], tmp_path / "merged.csv")
    full = write_submission(tmp_path / "full.csv", sample_rows())
    checked, _ = merge_validated([full], tmp_path / "checked.csv", SAMPLE)
    for path in (part, merged, checked):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_merge_validated_writes_only_a_valid_submission(tmp_path):
    (tmp_path / "parts").mkdir()
    full = write_submission(tmp_path / "parts/full.csv", sample_rows())
    out, report = merge_validated([full], tmp_path / "submission.csv", SAMPLE)
    assert out.read_text() == full.read_text() and len(report) == 5
    tile_only = write_submission(tmp_path / "parts/tile.csv", {TILE_ID: list(range(25))})
    bad = tmp_path / "bad.csv"
    with pytest.raises(SubmissionError, match=r"bad.csv \(not written\): 4 problem") as info:
        merge_validated([tile_only], bad, SAMPLE)
    assert any(p.startswith("missing row for layout:") for p in info.value.problems)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts", "submission.csv"]


def run_script(*argv):
    """scripts/make_submission.py's main(argv) in this process: (exit code, message)."""
    module = load_script("make_submission")
    try:
        return module.main([str(a) for a in argv]), ""
    except SystemExit as exc:
        return 1, str(exc.code)


def test_make_submission_leaves_nothing_at_out_when_validation_fails(tmp_path, umask_022):
    tile_only = write_submission(tmp_path / "tile.csv", {TILE_ID: list(range(25))})
    out = tmp_path / "sub" / "submission.csv"
    code, message = run_script(tile_only, "--root", SAMPLE, "--out", out)
    assert code == 1 and f"error: {out} (not written)" in message
    assert "missing row for layout:nlp:default" in message
    assert list(out.parent.iterdir()) == []  # neither the file nor a temporary one
    full = write_submission(tmp_path / "full.csv", sample_rows())
    assert run_script(full, "--root", SAMPLE, "--out", out) == (0, "")
    assert out.read_text() == full.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_make_submission_takes_folders_and_names_what_it_cannot_use(tmp_path, umask_022):
    # A run folder stands for the submission_*.csv files evaluate.py wrote beneath it.
    rows = sample_rows()
    tile = {k: v for k, v in rows.items() if k.startswith("tile:")}
    run_tile = tmp_path / "runs/tile"
    (run_tile / "eval/test").mkdir(parents=True)
    write_submission(run_tile / "eval/test/submission_tile_xla.csv", tile)
    rest = tmp_path / "layout.csv"
    write_submission(rest, {k: v for k, v in rows.items() if k not in tile})
    out = tmp_path / "submission.csv"
    assert run_script(run_tile, rest, "--root", SAMPLE, "--out", out) == (0, "")
    assert sorted(read_submission(out)) == sorted(rows)
    # The same rows twice (the folder above holds the tile run's file too): both named.
    code, message = run_script(tmp_path / "runs", run_tile, rest, "--root", SAMPLE, "--out", out)
    assert code == 1 and "is in both" in message and "submission_tile_xla.csv" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    code, message = run_script(empty, "--root", SAMPLE, "--out", out)
    assert code == 1 and f"{empty} is a folder without submission_*.csv" in message
    code, message = run_script(tmp_path / "out*/x.csv", "--root", SAMPLE, "--out", out)
    assert code == 1 and "the shell did not expand" in message
    code, message = run_script(rest, "--root", SAMPLE, "--out", tmp_path / "runs")
    assert code == 1 and f"--out {tmp_path / 'runs'} is a folder" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "empty",
        "layout.csv",
        "runs",
        "submission.csv",
    ]
