"""What a user who hands the wrong thing to evaluate.py or the Predictor is told: one line
naming the file and the problem, never a traceback; and where evaluation's files go."""

import shutil
import sys
from pathlib import Path

import pytest
import torch
from tiny_runs import compose_config, evaluate_cli, tiny_overrides

import tpulearn.evaluation
from tpulearn.data import sample_root
from tpulearn.models import SAGE
from tpulearn.predict import Predictor
from tpulearn.training import CheckpointMismatchError, train

TILE_FILE = sample_root() / "npz/tile/xla/test/d6f5f54247bd1e58a10b9e7062c636ab.npz"
LAYOUT_FILE = sample_root() / "npz/layout/xla/default/valid/unet_3d.4x4.bf16.npz"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """The folder of a 2-step layout run on the sample (``checkpoints/best.pt`` in it)."""
    out = tmp_path_factory.mktemp("run")
    train(compose_config(overrides=tiny_overrides(out)))
    return out


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("size", [100, 5000], ids=["no-zip-directory", "cut-mid-file"])
def test_a_truncated_checkpoint_is_one_line_naming_it(run, tmp_path, monkeypatch, capsys, size):
    # torch raises RuntimeError for the first and "OSError: [Errno 22]" for the second.
    cut = tmp_path / "cut.pt"
    cut.write_bytes((run / "checkpoints/best.pt").read_bytes()[:size])
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt={cut}")
    line = one_error_line(err)
    assert code == 2 and str(cut) in line and "truncated" in line


def test_a_data_file_given_as_checkpoint_is_one_line(monkeypatch, capsys):
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt={TILE_FILE}")
    line = one_error_line(err)
    assert code == 2 and str(TILE_FILE) in line and "numpy .npz data file" in line


def test_plots_without_matplotlib_fail_before_any_work(run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError

    def no_work(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before matplotlib was checked")

    monkeypatch.setattr(tpulearn.evaluation, "load_model", no_work)
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt={run}", "plots=true")
    line = one_error_line(err)
    assert code == 2 and "matplotlib" in line and "tpulearn[notebooks]" in line


@pytest.mark.parametrize("where", ["a_file", "a_file/sub"])
def test_an_out_dir_that_cannot_be_a_folder_is_one_line(run, tmp_path, monkeypatch, capsys, where):
    # Once a FileExistsError / NotADirectoryError traceback.
    (tmp_path / "a_file").write_text("")
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt={run}", f"out_dir={tmp_path / where}")
    line = one_error_line(err)
    assert code == 2 and line.startswith(f"error: out_dir={tmp_path / where} cannot be made")


@pytest.mark.parametrize(("device", "why"), [("tpu", "is not a device"), ("cuda:0", "CUDA")])
def test_a_device_evaluation_cannot_use_is_one_line(run, monkeypatch, capsys, device, why):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    # Once torch's AssertionError ("Torch not compiled with CUDA enabled") or RuntimeError.
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt={run}", f"device={device}")
    line = one_error_line(err)
    assert code == 2 and line.startswith(f"error: device='{device}'") and why in line
    with pytest.raises(ValueError, match=f"device='{device}'"):
        Predictor.from_checkpoint(run, device=device)


def test_ctrl_c_during_evaluation_is_one_line(run, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # Once the scoring loop's traceback.
    monkeypatch.setattr(tpulearn.evaluation, "score_dataset", interrupted)
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt={run}")
    assert code == 130
    assert err.strip() == "evaluation interrupted; run the command again to evaluate"


def test_a_run_folder_is_its_best_checkpoint(run):
    best = Predictor.from_checkpoint(run / "checkpoints/best.pt").model.state_dict()
    for folder in (run, run / "checkpoints"):
        loaded = Predictor.from_checkpoint(folder).model.state_dict()
        assert all(torch.equal(loaded[k], best[k]) for k in best)


def test_a_folder_without_a_checkpoint_is_called_a_folder(tmp_path, monkeypatch, capsys):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} is a folder without"):
        Predictor.from_checkpoint(tmp_path)
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt={tmp_path}")
    assert code == 2 and "is a folder" in one_error_line(err)


def test_a_multirun_folder_says_how_to_ensemble_its_runs(tmp_path, monkeypatch, capsys):
    # `python train.py -m trainer.seed=0,1,...` leaves multirun/<date>/<time>/<job>/.
    for job in ("10", "2", "0", "notes"):
        (tmp_path / job / "checkpoints").mkdir(parents=True)
    for job in ("10", "2", "0"):
        (tmp_path / job / "checkpoints" / "best.pt").write_bytes(b"")
    expected = (
        f"; it holds 3 training run(s), as a multirun folder does: "
        f"ckpt=[{tmp_path}/0,{tmp_path}/2,{tmp_path}/10] scores them as an ensemble"
    )
    with pytest.raises(FileNotFoundError) as info:
        Predictor.from_checkpoint(tmp_path)
    assert str(info.value).endswith(expected)
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt={tmp_path}")
    assert code == 2 and one_error_line(err).endswith(expected)


def test_a_file_of_the_other_task_names_both_tasks(run):
    layout = Predictor.from_checkpoint(run)
    with pytest.raises(
        CheckpointMismatchError,
        match="is a tile file but the checkpoint's model is a layout model",
    ):
        layout.score_file(TILE_FILE)
    # No tile model needs training: the file is refused before the model runs.
    model = SAGE("tile", hidden_channels=8, num_layers=1, opcode_dim=4)
    tile = Predictor(model, "tile", None)
    with pytest.raises(
        CheckpointMismatchError,
        match="is a layout file but the checkpoint's model is a tile model",
    ):
        tile.score_file(LAYOUT_FILE)


def test_evaluation_writes_beside_the_run_and_prints_every_path(run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    # A copy: other tests read the run folder, this one writes into it.
    copy = tmp_path / "run"
    shutil.copytree(run / "checkpoints", copy / "checkpoints")
    # A composed config, no Hydra run: out_dir must not need HydraConfig.
    cfg = compose_config("eval", [f"ckpt={copy / 'checkpoints/best.pt'}", "plots=true"])
    result = tpulearn.evaluation.evaluate(cfg)
    out = capsys.readouterr().out
    expected = copy / "eval/valid/per_graph_valid.csv"
    assert result["per_graph_csv"] == str(expected) and expected.is_file()
    written = [result["per_graph_csv"], *result["plots"]]
    assert len(written) == 3 and all(Path(p).is_file() and p in out for p in written)


def test_another_collection_is_evaluated_into_its_own_folder(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run / "checkpoints", copy / "checkpoints")
    cfg = compose_config(
        "eval", [f"ckpt={copy}", "split=test", "data.collection=layout:xla:random"]
    )
    result = tpulearn.evaluation.evaluate(cfg)
    path = copy / "eval/test-layout_xla_random/submission_layout_xla_random.csv"
    assert result["submission"] == str(path) and path.is_file()
    assert str(path) in capsys.readouterr().out


def test_last_checkpoint_is_evaluated_into_its_own_folder(run, tmp_path, capsys):
    # Scoring last.pt used to rewrite the CSV best.pt's evaluation had written.
    copy = tmp_path / "run"
    shutil.copytree(run / "checkpoints", copy / "checkpoints")
    best = tpulearn.evaluation.evaluate(compose_config("eval", [f"ckpt={copy}"]))
    last = copy / "checkpoints/last.pt"
    result = tpulearn.evaluation.evaluate(compose_config("eval", [f"ckpt={last}"]))
    assert result["per_graph_csv"] == str(copy / "eval/last/valid/per_graph_valid.csv")
    assert best["per_graph_csv"] == str(copy / "eval/valid/per_graph_valid.csv")
    assert Path(best["per_graph_csv"]).is_file() and Path(result["per_graph_csv"]).is_file()


def test_a_relative_data_root_of_the_checkpoint_is_named_with_where_it_was_read(
    tmp_path, monkeypatch, capsys
):
    # Trained from tmp_path with data.root=rel, then scored from elsewhere.
    shutil.copytree(sample_root(), tmp_path / "rel")
    monkeypatch.chdir(tmp_path)
    train(compose_config(overrides=[*tiny_overrides(tmp_path / "run"), "data.root=rel"]))
    monkeypatch.chdir(tmp_path / "run")
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt={tmp_path / 'run'}")
    line = one_error_line(err)
    assert code == 2 and "data.root=rel, is not a folder (relative to " in line
    assert line.endswith("pass data.root=DIR, the folder that holds npz/")
    code, _, _ = evaluate_cli(monkeypatch, capsys, f"ckpt={tmp_path / 'run'}", "data.root=../rel")
    assert code == 0


def test_a_collection_of_the_other_task_names_the_checkpoints_task(run, monkeypatch, capsys):
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt={run}", "data.collection=tile:xla")
    line = one_error_line(err)
    assert code == 2 and line == (
        f"error: checkpoint {run / 'checkpoints/best.pt'} holds a layout model; "
        "data.collection=tile:xla is a tile collection: score it with a checkpoint of that task"
    )
