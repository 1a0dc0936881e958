"""Ensembles of checkpoints: the Ensemble predictor and ``evaluate.py ckpt=[A,B]`` combine
their members' scores per graph as :mod:`tpulearn.combine` says, refuse members of other
tasks by name, and write where they say."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tiny_runs import compose_config, evaluate_cli, tiny_overrides

from tpulearn.combine import combine_scores
from tpulearn.data import sample_root
from tpulearn.evaluation import evaluate, load_model
from tpulearn.metrics import Evaluator
from tpulearn.predict import Ensemble, Predictor
from tpulearn.training import CheckpointMismatchError, score_dataset, train

# A 2-step model scores its 9 configs apart (the test file's 25 configs all score alike).
TILE_FILE = sample_root() / "npz/tile/xla/valid/inception_v3_batch_128_train_426e203f19335d17.npz"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A 2-step tile run ``a`` (tile: its sample graphs score fast); ``b``,
    its copy with perturbed weights (a second member without a second training);
    ``layout``, a 2-step layout run (another task)."""
    out = tmp_path_factory.mktemp("ensemble")
    train(
        compose_config(overrides=["data=tile_xla", "data.root=sample", *tiny_overrides(out / "a")])
    )
    state = torch.load(out / "a/checkpoints/best.pt", weights_only=False)
    g = torch.Generator().manual_seed(0)
    state["model"] = {
        k: v + 0.3 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
        for k, v in state["model"].items()
    }
    (out / "b/checkpoints").mkdir(parents=True)
    torch.save(state, out / "b/checkpoints/best.pt")
    train(compose_config(overrides=tiny_overrides(out / "layout")))
    return {name: out / name / "checkpoints/best.pt" for name in ("a", "b", "layout")}


def test_an_ensemble_of_one_ranks_as_its_checkpoint(runs):
    single = Predictor.from_checkpoint(runs["a"])
    scores = single.score_file(TILE_FILE)
    for combine in ("rank", "zscore"):
        ensemble = Ensemble.from_checkpoints([runs["a"]], combine=combine)
        assert ensemble.task == "tile" and ensemble.names == [str(runs["a"])]
        np.testing.assert_array_equal(ensemble.rank_file(TILE_FILE), single.rank_file(TILE_FILE))
        np.testing.assert_array_equal(
            ensemble.score_file(TILE_FILE), combine_scores([scores], combine)
        )


def test_the_same_predictor_twice_is_one(runs):
    single = Predictor.from_checkpoint(runs["a"])
    for combine in ("rank", "zscore"):
        once = Ensemble([single], combine=combine).score_file(TILE_FILE)
        twice = Ensemble([single, single], combine=combine)
        np.testing.assert_array_equal(twice.score_file(TILE_FILE), once)


def test_a_checkpoint_named_twice_is_refused(runs, tmp_path, monkeypatch, capsys):
    # A run folder and its best.pt are one checkpoint: [a, a, b] would weigh a twice.
    run_a = runs["a"].parents[1]
    for paths in ([runs["a"], runs["a"]], [run_a, runs["b"], runs["a"]]):
        with pytest.raises(ValueError, match=r"names the checkpoint .*best.pt twice"):
            Ensemble.from_checkpoints(paths)
    ckpt = f"ckpt=[{run_a},{runs['b']},{runs['a']}]"
    code, _, err = evaluate_cli(monkeypatch, capsys, ckpt, f"out_dir={tmp_path}")
    assert code == 2
    assert f"twice ({run_a} and {runs['a']})" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_two_members_combine_their_scores_per_file(runs):
    members = [Predictor.from_checkpoint(runs[k]).score_file(TILE_FILE) for k in "ab"]
    assert not np.array_equal(np.argsort(members[0]), np.argsort(members[1]))
    for combine in ("rank", "zscore"):
        ensemble = Ensemble.from_checkpoints([runs["a"], runs["b"]], combine=combine)
        expected = combine_scores(members, combine)
        np.testing.assert_array_equal(ensemble.score_file(TILE_FILE), expected)
        np.testing.assert_array_equal(
            ensemble.rank_file(TILE_FILE), np.argsort(expected, kind="stable")
        )


def test_members_of_different_tasks_are_refused_by_name(runs):
    with pytest.raises(CheckpointMismatchError) as info:
        Ensemble.from_checkpoints([runs["a"], runs["layout"]])
    message = str(info.value)
    assert str(runs["a"]) in message and str(runs["layout"]) in message
    assert "a tile model" in message and "a layout model" in message
    with pytest.raises(ValueError, match="ensemble='mean'"):
        Ensemble.from_checkpoints([runs["a"]], combine="mean")
    with pytest.raises(TypeError, match="a list of checkpoints"):
        Ensemble.from_checkpoints(str(runs["a"]))


def _expected_metrics(ckpts, combine):
    """The valid metrics of the members' combined scores, computed here step by step."""
    per_member = []
    for ckpt in ckpts:
        model, config, features = load_model(ckpt)
        data = instantiate(config.data)
        data.load_feature_state(features)
        per_member.append(list(score_dataset(model, data.eval_set("valid"), "cpu", 512)))
    evaluator = Evaluator(data.collection)
    for i, g in enumerate(per_member[0]):
        scores = combine_scores([graphs[i].scores for graphs in per_member], combine)
        evaluator.add(g.stem, scores, g.config_runtime)
    return evaluator.compute()


def test_evaluate_with_two_members_prints_both_and_writes_beside_the_first(
    runs, monkeypatch, capsys
):
    members = f"ckpt=[{runs['a']},{runs['b']}]"
    code, out, _ = evaluate_cli(monkeypatch, capsys, members, "ensemble=zscore")
    assert code == 0
    assert f"  member 1: {runs['a']}\n  member 2: {runs['b']}\n" in out
    assert "ensemble of 2 checkpoints, combined by ensemble=zscore" in out
    (folder,) = (runs["a"].parent.parent / "eval").glob("ensemble-*")
    csv = folder / "valid/per_graph_valid.csv"
    assert csv.is_file() and f"per-graph metrics: {csv}" in out
    recorded = json.loads((folder / "valid/ensemble.json").read_text())
    assert recorded == {"members": [str(runs["a"]), str(runs["b"])], "ensemble": "zscore"}

    cfg = compose_config("eval", [members, "ensemble=rank", f"out_dir={folder / 'rank'}"])
    result = evaluate(cfg)
    assert result["members"] == [str(runs["a"]), str(runs["b"])]
    assert result["metrics"] == pytest.approx(_expected_metrics([runs["a"], runs["b"]], "rank"))


def test_evaluate_prints_a_line_per_graph_where_no_terminal_shows_a_bar(runs, monkeypatch, capsys):
    # Captured output is no terminal: progress=auto prints lines, and no tqdm redraws.
    valid_graphs = len(instantiate(load_model(runs["a"])[1].data).eval_set("valid"))
    members = f"ckpt=[{runs['a']},{runs['b']}]"
    code, out, err = evaluate_cli(monkeypatch, capsys, members, f"out_dir={runs['a'].parent}/x")
    lines = [line for line in out.splitlines() if " graphs: " in line]
    assert code == 0 and "\r" not in err and len(lines) == 2 * valid_graphs
    assert lines[0].startswith("member 1: scored 1/") and lines[-1].startswith("member 2: ")
    code, _, err = evaluate_cli(monkeypatch, capsys, members, "progress=maybe")
    assert code == 2 and err.startswith("error: progress must be auto, true or false")


def test_evaluate_of_a_list_of_one_is_the_checkpoint(runs, tmp_path):
    one = evaluate(compose_config("eval", [f"ckpt=[{runs['a']}]", f"out_dir={tmp_path}/1"]))
    plain = evaluate(compose_config("eval", [f"ckpt={runs['a']}", f"out_dir={tmp_path}/p"]))
    assert one == {**plain, "per_graph_csv": one["per_graph_csv"]} and "members" not in one


def test_evaluate_ensemble_test_split_writes_submission_rows(runs, tmp_path):
    cfg = compose_config(
        "eval", [f"ckpt=[{runs['a']},{runs['b']}]", "split=test", f"out_dir={tmp_path}"]
    )
    result = evaluate(cfg)
    assert Path(result["submission"]).is_file() and result["ensemble"] == "rank"


def test_evaluate_refuses_mixed_tasks_in_one_line(runs, monkeypatch, capsys):
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt=[{runs['a']},{runs['layout']}]")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("error: ensemble members disagree on the task")
    assert str(runs["a"]) in lines[0] and str(runs["layout"]) in lines[0]
    code, _, err = evaluate_cli(monkeypatch, capsys, f"ckpt=[{runs['a']}]", "ensemble=mean")
    assert code == 2 and err.startswith("error: ensemble='mean': expected one of rank, zscore")


def test_a_predictor_and_an_ensemble_say_what_they_are(runs):
    # What a notebook shows for them: the task, the model, the members and how they combine.
    single = Predictor.from_checkpoint(runs["a"])
    text = repr(single)
    assert text.startswith("Predictor(tile, SAGE(task=tile,") and "device=cpu" in text
    assert "node normaliser" in text
    pair = Ensemble.from_checkpoints([runs["a"], runs["b"]], combine="zscore")
    assert repr(pair) == (f"Ensemble(tile, 2 members, combine=zscore: {runs['a']}, {runs['b']})")


def test_the_layout_cache_of_the_environment_is_no_tile_warning(runs, tmp_path, monkeypatch):
    # eval.yaml reads $TPULEARN_CACHE for layout files; a tile checkpoint has no use for it.
    monkeypatch.setenv("TPULEARN_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(compose_config("eval", [f"ckpt={runs['a']}", f"out_dir={tmp_path}/e"]))
    asked = [f"ckpt={runs['a']}", f"out_dir={tmp_path}/f", f"data.cache_dir={tmp_path}"]
    with pytest.warns(UserWarning, match="data.cache_dir=.* has no effect: tile data"):
        evaluate(compose_config("eval", asked))
