"""Leaderboard reproduction on the bundled sample and on a synthetic five-collection root,
with CI-sized runs (tiny models, two training steps)."""

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import SMALL_MODEL, load_script

import tpulearn
from tpulearn.data import read_tile
from tpulearn.data.schema import COLLECTIONS
from tpulearn.data.synthetic import write_layout_collection, write_tile_collection
from tpulearn.leaderboard import PAPER_TOP_K_ERROR_PERCENT, run_leaderboard
from tpulearn.leaderboard.plan import _check_collections
from tpulearn.metrics import Evaluator, kaggle_score
from tpulearn.predict import Ensemble
from tpulearn.submission import ranking, validate_submission
from tpulearn.training import CheckpointMismatchError, load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "trainer.max_steps=2",
    "data.configs_per_graph=8",
    "trainer.graphs_per_batch=1",
    "data.eval_chunk=512",
]
TASK = {
    "tile": SMALL_MODEL,
    "layout": [
        "model.model.hidden_channels=8",
        "model.model.num_layers=1",
        "model.model.opcode_dim=4",
    ],
}
TRAINED_ON_SAMPLE = ("tile:xla", "layout:xla:default", "layout:xla:random")


def tiny_board(root, out, **kwargs):
    lines = []
    kwargs = {"overrides": TINY, "task_overrides": TASK, "log": lines.append, **kwargs}
    return run_leaderboard(root, out, **kwargs), lines


def table_rows(text, collection, section):
    """The cells of the table lines of one leaderboard.md section that start with a
    collection."""
    body = text.split(f"\n## {section}\n")[1].split("\n## ")[0]
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in body.splitlines()
        if line.startswith(f"| {collection} |")
    ]


def score_row(text, collection):
    (row,) = table_rows(text, collection, "Validation score")
    return row


def top_k_row(text, collection):
    (row,) = table_rows(text, collection, "Top-K error %, ours (valid) vs the paper (valid / test)")
    return row


def mean_std(values):
    a, b = values  # two seeds: sample std is |a - b| / sqrt(2)
    return (a + b) / 2, abs(a - b) / math.sqrt(2)


@pytest.fixture(scope="module")
def sample_board(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample_lb")
    board, lines = tiny_board("sample", out, seeds=[0, 1])
    return board, lines, out


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    counts = {"train": 2, "valid": 1, "test": 1}
    write_tile_collection(root, num_graphs=counts, nodes=(30, 60), configs=(16, 32))
    for collection in COLLECTIONS[1:]:
        _, source, search = collection.split(":")
        write_layout_collection(
            root, source, search, num_graphs=counts, nodes=(30, 60), configs=(16, 32)
        )
    return root


@pytest.mark.slow
def test_sample_table_shows_each_collection_with_its_runs_metrics(sample_board):
    board, lines, out = sample_board
    text = (out / "leaderboard.md").read_text()
    assert [r.collection for r in board.rows] == list(COLLECTIONS)
    for collection in TRAINED_ON_SAMPLE:
        runs = [r for r in board.runs if r.collection == collection]
        assert [r.seed for r in runs] == [0, 1] and {r.status for r in runs} == {"trained"}
        for run in runs:
            # The valid evaluation of best.pt equals the trainer's own validation of it.
            stored = load_checkpoint(run.checkpoint)["best"]
            assert run.valid["score"] == pytest.approx(stored["score"], abs=1e-9)
        scores, top_k = score_row(text, collection), top_k_row(text, collection)
        mean, std = mean_std([r.valid["score"] for r in runs])
        assert scores[1:4] == ["1 / 1 / 1", "2", f"{mean:.4f} ± {std:.4f}"]
        mean, std = mean_std([r.valid["top1_error"] for r in runs])
        assert top_k[1] == f"{100 * mean:.3f} ± {100 * std:.3f}"
        valid_pct, test_pct = PAPER_TOP_K_ERROR_PERCENT[collection][1]
        assert top_k[2] == f"{valid_pct} / {test_pct}"
        assert len(table_rows(text, collection, "Runs")) == 2
    assert top_k_row(text, "layout:xla:random")[2] == "24.3 / 25.3"
    assert top_k_row(text, "tile:xla")[4] == "3.2 / 4.3"  # top-5, paper val / test
    for collection, source in (
        ("layout:nlp:default", "layout:xla:default"),
        ("layout:nlp:random", "layout:xla:random"),
    ):
        scores = score_row(text, collection)
        assert scores[1:4] == ["0 / 0 / 1", "2", "n/a"]
        assert top_k_row(text, collection)[1] == "n/a"
        assert f"transfer from {source}: no train split in sample" in scores[-1]
        assert "no valid split" in scores[-1]
    assert "**Not the paper's settings**" in text and f"`{' '.join(TINY)}`" in text
    assert f"`{' '.join(TASK['layout'])}`" in text
    assert "**Kaggle-style score: n/a** (absent" in text
    assert "layout:nlp:default has no valid split in the root" in text
    assert board.kaggle_score is None
    # One line when a run starts and one when it finishes; one per transfer.
    assert sum("training in" in line for line in lines) == 6
    assert sum(": trained in" in line for line in lines) == 6
    assert sum(": transfer of" in line for line in lines) == 4


@pytest.mark.slow
def test_sample_submission_is_merged_and_validated(sample_board):
    board, _, out = sample_board
    assert board.submission == out / "submission.csv"
    assert validate_submission(board.submission, tpulearn.data.sample_root()) == {
        c: 1 for c in COLLECTIONS
    }
    rows = {r.collection: r for r in board.rows}
    for collection in TRAINED_ON_SAMPLE:
        scores = {r.seed: r.valid["score"] for r in rows[collection].runs}
        assert rows[collection].submission_seed == max(scores, key=lambda s: (scores[s], -s))
    # Without valid labels the transfer uses the seed chosen on its source.
    assert rows["layout:nlp:default"].submission_seed == rows["layout:xla:default"].submission_seed
    part = rows["layout:nlp:default"].submission_part
    assert (
        part.parent
        == out / "layout_nlp_default" / f"seed{rows['layout:nlp:default'].submission_seed}" / "test"
    )
    text = board.markdown.read_text()
    assert "submission.csv validated against the root's test files" in text


@pytest.mark.slow
def test_a_second_invocation_reuses_the_checkpoints(sample_board, tmp_path):
    board, _, out = sample_board
    copy = tmp_path / "lb"
    shutil.copytree(out, copy)  # checkpoints are reused from a moved folder too
    ckpts = sorted(copy.glob("*/seed*/checkpoints/*.pt"))
    assert len(ckpts) == 12  # best and last of 3 collections x 2 seeds
    mtimes = [p.stat().st_mtime_ns for p in ckpts]
    again, lines = tiny_board("sample", copy, seeds=[0, 1])
    assert [p.stat().st_mtime_ns for p in ckpts] == mtimes
    assert not any("training" in line for line in lines)
    assert sum(": reused, valid score" in line for line in lines) == 6
    assert [r.valid for r in again.runs] == [r.valid for r in board.runs]
    # The same table; only the runs' status changed.
    before = (out / "leaderboard.md").read_text().replace("| trained |", "| reused |")
    assert (copy / "leaderboard.md").read_text() == before

    with pytest.raises(CheckpointMismatchError, match="trainer.max_steps.*--retrain"):
        tiny_board(
            "sample", copy, collections=["tile:xla"], overrides=[*TINY, "trainer.max_steps=3"]
        )
    retrained, lines = tiny_board("sample", copy, collections=["tile:xla"], seeds=[0], retrain=True)
    assert retrained.runs[0].status == "trained" and any("training in" in line for line in lines)
    assert (copy / "tile_xla/seed0/checkpoints/best.pt").stat().st_mtime_ns not in mtimes
    # A run of one collection leaves the full board's table and submission as they were.
    assert (copy / "leaderboard.md").read_text() == before
    assert retrained.submission == copy / "submission_partial.csv"
    assert (copy / "leaderboard_partial.md").is_file() and (copy / "submission.csv").is_file()


def test_an_interrupted_run_resumes(tmp_path, monkeypatch):
    from tpulearn.training.trainer import Trainer

    original, calls = Trainer._step, {"n": 0}

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(Trainer, "_step", interrupted)
    out = tmp_path / "a folder, with=odd characters"  # paths reach Hydra quoted
    with pytest.raises(KeyboardInterrupt):
        tiny_board("sample", out, collections=["tile:xla"])
    assert load_checkpoint(out / "tile_xla/seed0/checkpoints/last.pt")["step"] == 1
    monkeypatch.setattr(Trainer, "_step", original)
    board, lines = tiny_board("sample", out, collections=["tile:xla"])
    assert board.runs[0].status == "resumed" and any(": resuming in" in x for x in lines)
    assert load_checkpoint(board.runs[0].checkpoint)["step"] == 2
    # Only tile rows: the other test graphs of the sample are not covered.
    assert "not validated" in board.submission_note and board.submission.is_file()


@pytest.mark.slow
def test_synthetic_root_trains_all_five_and_gets_a_kaggle_score(synthetic_root, tmp_path):
    board, _ = tiny_board(synthetic_root, tmp_path, seeds=[3])
    assert [(r.collection, r.status, r.model_from) for r in board.runs] == [
        (c, "trained", c) for c in COLLECTIONS
    ]
    scores = {r.collection: r.valid["score"] for r in board.runs}
    assert board.kaggle_score == pytest.approx(sum(scores.values()) / 5, abs=1e-12)
    assert board.kaggle_score == kaggle_score(scores)
    text = board.markdown.read_text()
    assert f"**Kaggle-style score: {board.kaggle_score:.4f}**" in text
    for collection in COLLECTIONS:
        row = score_row(text, collection)
        assert row[1:4] == ["2 / 1 / 1", "1", f"{scores[collection]:.4f}"]
        assert row[-1] == "trained on the collection's train split"
    assert validate_submission(board.submission, synthetic_root) == {c: 1 for c in COLLECTIONS}


def test_a_collection_with_valid_but_no_train_split_is_scored_by_transfer(tmp_path):
    root = tmp_path / "root"
    small = {"nodes": (30, 60), "configs": (16, 32)}
    write_layout_collection(
        root, "xla", "default", num_graphs={"train": 1, "valid": 1, "test": 1}, **small
    )
    write_layout_collection(root, "nlp", "default", num_graphs={"valid": 2, "test": 1}, **small)
    board, _ = tiny_board(
        root, tmp_path / "out", collections=["layout:nlp:default", "layout:xla:default"]
    )
    nlp = board.rows[1]
    assert nlp.collection == "layout:nlp:default" and nlp.transfer_from == "layout:xla:default"
    assert nlp.runs[0].valid["num_graphs"] == 2  # the transferred model, on nlp's valid split
    row = score_row(board.markdown.read_text(), "layout:nlp:default")
    assert row[1:4] == ["0 / 2 / 1", "1", f"{nlp.runs[0].valid['score']:.4f}"]
    assert row[-1] == f"transfer from layout:xla:default: no train split in {root}"
    assert "tile:xla not run (--collections)" in board.kaggle_note
    assert validate_submission(board.submission, root) == {
        "layout:xla:default": 1,
        "layout:nlp:default": 1,
    }


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown collection 'tile:nlp'; choose from"):
        run_leaderboard("sample", tmp_path, collections=["tile:nlp"])
    with pytest.raises(FileNotFoundError, match="--root .*nope: no such folder"):
        run_leaderboard(tmp_path / "nope", tmp_path)
    with pytest.raises(ValueError, match="trainer.seed is set by the leaderboard"):
        run_leaderboard("sample", tmp_path, overrides=["trainer.seed=3"])
    with pytest.raises(ValueError, match="--seeds: expected distinct"):
        run_leaderboard("sample", tmp_path, seeds=[0, 0])
    # Checked before training: the device was once first used by the evaluation after it.
    with pytest.raises(ValueError, match="device='tpu' is not a device"):
        run_leaderboard("sample", tmp_path, device="tpu")
    # A tile key given to every run does not exist in the layout (segment model) configs;
    # every config is composed before any training starts.
    with pytest.raises(
        ValueError, match="layout:xla:default: model.hidden_channels is not a setting"
    ):
        run_leaderboard("sample", tmp_path, overrides=["model.hidden_channels=8"])
    assert not list(tmp_path.iterdir())
    root = tmp_path / "root"
    write_layout_collection(root, "xla", "random", num_graphs={"train": 1, "valid": 1, "test": 1})
    with pytest.raises(ValueError, match="tile:xla: no npz files under .*--collections"):
        run_leaderboard(root, tmp_path / "out")
    write_layout_collection(root, "nlp", "random", num_graphs={"train": 1, "test": 1})
    with pytest.raises(ValueError, match="layout:nlp:random: 1 train files but no valid split"):
        run_leaderboard(root, tmp_path / "out", collections=["layout:nlp:random"])


def test_a_misspelt_override_names_the_key_meant_in_one_line(tmp_path):
    """Hydra's advice, to append the key with +KEY, fails once training starts: the error
    names the key of this config likely meant instead, for a +KEY too, before any run."""
    meant = {
        "model.hidden_channels": "model.model.hidden_channels",
        "trainer.max_step": "trainer.max_steps",
    }
    for override, task, collection in (
        ("model.hidden_channels=8", "layout", "layout:xla:default"),
        ("+model.hidden_channels=8", "layout", "layout:xla:default"),
        ("trainer.max_step=2", "tile", "tile:xla"),
    ):
        with pytest.raises(ValueError) as info:
            run_leaderboard("sample", tmp_path, task_overrides={task: [override]})
        key = override.lstrip("+").split("=")[0]
        assert str(info.value) == (
            f"{collection}: {key} is not a setting of this config; did you mean {meant[key]}? "
            f"(python train.py experiment={collection.replace(':', '_')} --cfg job prints "
            "every key)"
        )
    assert not list(tmp_path.iterdir())


def test_collections_take_the_download_script_s_names_too():
    assert _check_collections(["layout-xla", "tile"]) == [
        "tile:xla",
        "layout:xla:default",
        "layout:xla:random",
    ]
    assert _check_collections(["all"]) == list(COLLECTIONS)
    with pytest.raises(ValueError, match="repeated collection"):
        _check_collections(["tile", "tile:xla"])
    with pytest.raises(ValueError) as info:
        _check_collections(["tiles"])
    assert "unknown collection 'tiles'; choose from tile:xla, " in str(info.value)
    assert "or tile, layout-xla-default" in str(info.value)


def load_leaderboard():
    return load_script("leaderboard")


def test_help_shows_the_examples_and_the_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        load_leaderboard().main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    # The tiny sample run, as the docstring writes it (not reflowed into a paragraph).
    assert "\n    python scripts/leaderboard.py --root sample --out /tmp/lb " in out
    assert "trainer.max_steps=2 \\\n        --tile-override" in out
    assert "(default: outputs/leaderboard)" in out and "layout-xla" in out


def test_script_error_for_a_misspelt_override_is_one_line(tmp_path, capsys):
    script = load_leaderboard()
    args = ["--root", "sample", "--out", str(tmp_path)]
    assert script.main([*args, "--layout-override", "model.hidden_channels=8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: layout:xla:default: model.hidden_channels is not a setting")
    assert "did you mean model.model.hidden_channels?" in err and err.count("\n") == 1


def test_ctrl_c_in_the_script_is_one_line_saying_how_to_continue(tmp_path, monkeypatch, capsys):
    script = load_leaderboard()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(script, "run_leaderboard", interrupted)
    assert script.main(["--root", "sample", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted; the same command continues") and err.count("\n") == 1


@pytest.mark.slow
def test_script_runs_and_reports_errors_in_one_line(tmp_path, capsys):
    script = load_leaderboard()
    argv = ["--root", "sample", "--out", str(tmp_path), "--collections", "tile:xla"]
    args = [*argv, "--override", *TINY, "--tile-override", *TASK["tile"]]
    assert script.main(args) == 0
    out = capsys.readouterr().out
    assert "[1/1] tile:xla seed 0: trained in" in out and "Kaggle-style score: n/a" in out
    assert (
        "`model.hidden_channels=8 model.num_layers=1 model.opcode_dim=4`"
        in (tmp_path / "leaderboard_partial.md").read_text()
    )
    assert script.main([*argv[:4], "--collections", "layout:tpu:default"]) == 2
    assert capsys.readouterr().err.startswith("error: --collections: unknown collection")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/leaderboard.py"), "--root", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: --root") and "no such folder" in proc.stderr


def test_ensemble_scores_test_and_joins_the_table(tmp_path):
    # Tile only: two 2-step tile runs take seconds, so this runs by default.
    board, lines = tiny_board(
        "sample", tmp_path, collections=["tile:xla"], seeds=[0, 1], ensemble="rank"
    )
    (row,) = board.rows
    ckpts = [r.checkpoint for r in row.runs]
    ensemble = Ensemble.from_checkpoints(ckpts)
    # The ensemble's valid metrics: the Ensemble predictor's scores of the valid file.
    (valid,) = (tpulearn.data.sample_root() / "npz/tile/xla/valid").glob("*.npz")
    evaluator = Evaluator("tile:xla")
    evaluator.add(valid.stem, ensemble.score_file(valid), read_tile(valid).config_runtime)
    assert row.ensemble_valid == pytest.approx(evaluator.compute())
    assert any(line.startswith("ensemble tile:xla: 2 seeds (rank), valid score") for line in lines)
    text = board.markdown.read_text()
    (scores,) = table_rows(text, "tile:xla", "Validation score")
    mean, std = mean_std([r.valid["score"] for r in row.runs])
    assert scores[3:5] == [f"{mean:.4f} ± {std:.4f}", f"{row.ensemble_valid['score']:.4f}"]
    top_k = top_k_row(text, "tile:xla")
    assert top_k[3] == f"{100 * row.ensemble_valid['top1_error']:.3f}"  # after ours, paper
    assert "`--ensemble rank`" in text
    # The test part is the ensemble's ranking of every test config.
    assert row.submission_seed is None and "ensemble=rank" in row.submission_why
    assert row.submission_part == tmp_path / "tile_xla/ensemble/test/submission_tile_xla.csv"
    (test,) = (tpulearn.data.sample_root() / "npz/tile/xla/test").glob("*.npz")
    written = row.submission_part.read_text().splitlines()[1].split(",")[1]
    assert written == ";".join(map(str, ranking(ensemble.score_file(test))))
    assert table_rows(text, "tile:xla", "Test submission")[0][1] == "0, 1"
    with pytest.raises(ValueError, match="ensemble='mean'"):
        run_leaderboard("sample", tmp_path / "no", ensemble="mean")
    with pytest.raises(SystemExit, match="2"):  # argparse: one usage line and the choices
        load_leaderboard().main(["--root", "sample", "--ensemble", "mean"])
