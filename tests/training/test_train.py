"""The config-driven training and evaluation runs, on the bundled sample."""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tiny_runs import (
    CONFIG_DIR,
    SMALL_MODEL,
    compose_config,
    evaluate_cli,
    tiny_overrides,
    train_cli,
)

import tpulearn
from tpulearn.evaluation import evaluate
from tpulearn.submission import merge_submissions, validate_submission
from tpulearn.training import CheckpointMismatchError, load_checkpoint, train

REPO = Path(__file__).resolve().parents[2]


def make_cfg(name="config", overrides=()):
    return compose_config(name, overrides)


def tiny(tmp_path, *extra, steps=2):
    return make_cfg(overrides=[*tiny_overrides(tmp_path, steps), *extra])


def options(group):
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("model", options("model"))
def test_every_model_option_instantiates(model):
    for data in ("sample", "tile_xla"):
        cfg = make_cfg(overrides=[f"model={model}", f"data={data}", "data.root=sample"])
        net = instantiate(cfg.model)
        if model == "gst_sage":  # segments around a SAGE model
            assert net.max_segment_nodes == 1000
            net = net.model
        assert net.task == cfg.data.task
        assert type(net).__name__.lower() == model.removeprefix("gst_")


@pytest.mark.parametrize("data", options("data"))
def test_every_data_option_instantiates(data, tmp_path):
    root = "sample" if data != "synthetic" else str(tmp_path)
    cfg = make_cfg(overrides=[f"data={data}", f"data.root={root}"])
    collection = instantiate(cfg.data)
    assert collection.collection == cfg.data.collection
    assert collection.task == cfg.data.collection.split(":")[0]


@pytest.mark.parametrize("group", ["loss", "optim", "scheduler"])
def test_every_loss_optimizer_and_scheduler_option_instantiates(group):
    for option in options(group):
        cfg = make_cfg(overrides=[f"{group}={option}"])
        obj = instantiate(cfg[group]) if cfg.get(group) else None
        if group == "loss":
            scores = torch.tensor([[0.1, 0.5, 0.3]], requires_grad=True)
            value = obj(scores, torch.tensor([[10, 30, 20]]))
            assert torch.isfinite(value)
        elif group == "optim":
            assert isinstance(
                obj(params=[torch.nn.Parameter(torch.zeros(1))]), torch.optim.Optimizer
            )
        elif option != "none":
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
            assert hasattr(obj(optimizer=opt), "step")


@pytest.mark.parametrize("data", ["layout_nlp_random", "synthetic"])
def test_full_dataset_and_synthetic_configs_demand_a_root(monkeypatch, data):
    # data=synthetic once trained on the bundled sample when its root was not given.
    monkeypatch.delenv("TPUGRAPHS_ROOT", raising=False)
    cfg = make_cfg(overrides=[f"data={data}"])
    with pytest.raises(
        Exception, match="no data root given: pass data.root=DIR .* also read TPUGRAPHS_ROOT"
    ):
        instantiate(cfg.data)


def test_layout_run_on_the_sample_writes_checkpoints_and_tensorboard(tmp_path, capsys):
    result = train(tiny(tmp_path))
    # It reports the process's peak memory (of this test process here: at least torch's).
    peak = re.search(r"^peak memory: ([\d,]+) MB resident$", capsys.readouterr().out, re.M)
    assert peak and float(peak.group(1).replace(",", "")) == round(result["max_rss_mb"])
    assert result["max_rss_mb"] > 50
    best = result["best"]
    assert best["step"] == 2 and -1.0 <= best["kendall_tau"] <= 1.0
    assert best["num_graphs"] == 1  # unet_3d.4x4.bf16 with the official 1000 indices
    assert Path(result["checkpoints"]["best"]).is_file()
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    state = load_checkpoint(result["checkpoints"]["last"])
    assert state["step"] == 2 and state["normalizer"]["mode"] == "zscore"
    assert state["config"]["model"]["_target_"] == "tpulearn.models.SAGE"


def test_a_composed_config_without_out_dir_trains_into_a_new_outputs_folder(
    tmp_path, monkeypatch, capsys
):
    # Outside train.py there is no Hydra run folder for out_dir's default to name.
    monkeypatch.chdir(tmp_path)
    overrides = [o for o in tiny_overrides(tmp_path, 1) if not o.startswith("out_dir=")]
    result = train(make_cfg(overrides=overrides))
    best = Path(result["checkpoints"]["best"]).resolve()
    assert best.is_file()
    run = best.parents[1]
    assert run.parents[1] == tmp_path / "outputs"  # outputs/<date>/<time>/checkpoints/best.pt
    assert f"run folder: {run.relative_to(tmp_path)}" in capsys.readouterr().out


def test_tile_run_on_the_sample(tmp_path):
    result = train(tiny(tmp_path, "experiment=tile_xla", "data.root=sample"))
    assert result["best"]["num_graphs"] == 1
    assert 0.0 <= result["best"]["top5_error"] <= 1.0
    state = load_checkpoint(result["checkpoints"]["last"])
    # Tile config features are min-max scaled with train statistics, as the official code.
    assert state["config_normalizer"]["mode"] == "minmax"
    assert state["config"]["loss"]["_target_"] == "tpulearn.losses.CombinedLoss"


def test_tile_layout_run_scores_alike_through_the_predictor_and_evaluation(tmp_path):
    from tpulearn.data import read_tile
    from tpulearn.metrics import top_k_error
    from tpulearn.predict import Predictor

    layout = ["data.tile_layout=true", "model.tile_layout=true", "data.root=sample"]
    result = train(tiny(tmp_path, "experiment=tile_xla", *layout))
    state = load_checkpoint(result["checkpoints"]["best"])
    assert len(state["config_normalizer"]["shift"]) == 42  # fitted on the 42 features
    predictor = Predictor.from_checkpoint(result["checkpoints"]["best"])
    assert predictor.tile_layout
    path = next((tpulearn.data.sample_root() / "npz/tile/xla/valid").glob("*.npz"))
    scores = predictor.score_file(path)
    runtime = read_tile(path).config_runtime
    assert scores.shape == runtime.shape and np.isfinite(scores).all()
    expected = top_k_error(scores, runtime, 5)
    assert result["best"]["top5_error"] == pytest.approx(expected, abs=1e-6)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    every = ["trainer.val_every=3", "trainer.val_at_start=true"]
    whole = train(tiny(tmp_path / "whole", *every, steps=6))
    train(tiny(tmp_path / "split", *every, steps=3))
    second = tiny(tmp_path / "split", *every, "trainer.resume=true", steps=6)
    resumed = train(second)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    # The resumed run keeps the step-0 validation and does not validate step 0 again.
    assert [h["step"] for h in resumed["history"]] == [0, 3, 6]
    a = load_checkpoint(whole["checkpoints"]["last"])["model"]
    b = load_checkpoint(resumed["checkpoints"]["last"])["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gst_settings_of_a_whole_graph_run_warn(tmp_path):
    with pytest.warns(UserWarning, match=r"GST settings \{'keep_prob': 1.0\} have no effect"):
        train(tiny(tmp_path, "model=sage", "gst.keep_prob=1", steps=1))


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    train(tiny(tmp_path))
    other = tiny(tmp_path, "model=gcn", "trainer.resume=true", steps=4)
    with pytest.raises(CheckpointMismatchError, match="_target_"):
        train(other)


@pytest.mark.slow  # trains and scores five collections (~9 s)
def test_evaluate_and_a_five_collection_submission_validate(tmp_path):
    layout = train(tiny(tmp_path / "layout"))["checkpoints"]["best"]
    tile = train(tiny(tmp_path / "tile", "data=tile_xla", "data.root=sample"))["checkpoints"][
        "best"
    ]
    valid = evaluate(make_cfg("eval", [f"ckpt={layout}", f"out_dir={tmp_path / 'ev'}"]))
    assert valid["metrics"]["num_graphs"] == 1
    assert (tmp_path / "ev" / "per_graph_valid.csv").read_text().startswith("graph,")
    parts = []
    for collection in (
        "layout:xla:default",
        "layout:xla:random",
        "layout:nlp:default",
        "layout:nlp:random",
    ):
        cfg = make_cfg(
            "eval",
            [
                f"ckpt={layout}",
                "split=test",
                f"out_dir={tmp_path / 'sub'}",
                f"data.collection={collection}",
            ],
        )
        parts.append(evaluate(cfg)["submission"])
    cfg = make_cfg("eval", [f"ckpt={tile}", "split=test", f"out_dir={tmp_path / 'sub'}"])
    parts.append(evaluate(cfg)["submission"])
    merged = merge_submissions(parts, tmp_path / "submission.csv")
    report = validate_submission(merged, tpulearn.data.sample_root())
    assert report == {c: 1 for c in report} and len(report) == 5


def test_train_script_help_and_config_print(monkeypatch, capsys):
    code, out, _ = train_cli(monkeypatch, capsys, "--cfg", "job", "model=gat")
    assert code == 0
    assert "_target_: tpulearn.models.GAT" in out and "collection: layout:xla:default" in out
    code, helped, _ = train_cli(monkeypatch, capsys, "--help")
    assert code == 0
    assert "model: " + ", ".join(options("model")) in helped


def test_bad_data_root_is_one_clear_line(tmp_path, monkeypatch, capsys):
    code, _, err = train_cli(
        monkeypatch,
        capsys,
        "data=layout_xla_random",
        f"data.root={tmp_path / 'nope'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert code == 2
    assert err.strip().startswith("error: data root") and "\n" not in err.strip()
    assert not (tmp_path / "run").exists()  # a refused run leaves no folder behind


@pytest.mark.parametrize("below", ["", "sub/run"])
def test_a_run_folder_under_a_file_is_one_clear_line(tmp_path, monkeypatch, capsys, below):
    # Hydra creates the folder before the task runs: it once failed there in a traceback.
    (tmp_path / "afile").write_text("not a folder")
    run_dir = tmp_path / "afile" / below if below else tmp_path / "afile"
    code, _, err = train_cli(monkeypatch, capsys, f"hydra.run.dir={run_dir}")
    assert code == 2
    assert (
        err.strip()
        == f"error: hydra.run.dir={run_dir}: {tmp_path / 'afile'} is a file, not a folder"
    )
    assert (tmp_path / "afile").read_text() == "not a folder"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # Each once ran into a traceback (torch's, numpy's or Hydra's), trained a whole run
        # before failing, or trained on nonsense (a negative loss weight or margin).
        ("optim.lr=-1", "optim (torch.optim.Adam; optim.lr=-1 optim.weight_decay=0.0): "),
        ("optim.lr=abc", "optim (torch.optim.Adam; optim.lr='abc' "),
        ("trainer.device=tpu", "trainer.device='tpu' is not a device"),
        ("trainer.seed=-1", "trainer.seed must be an integer >= 0, got -1"),
        ("trainer.precision=fp8", "trainer.precision must be one of ('fp32', 'bf16')"),
        ("trainer.select_metric=tau", "trainer.select_metric='tau' is not a validation metric"),
        ("model.dropout=1.5", "model.dropout must be a number in [0, 1), got 1.5"),
        ("loss.terms.1.weight=-30", "loss.terms.1.weight must be a number >= 0, got -30"),
        ("loss.terms.1.loss.margin=-1", "loss.terms.1.loss.margin must be a number >= 0, got -1"),
        ("model.attn_heads=0", "model.attn_heads must be 1 or more, got 0"),
    ],
)
def test_bad_settings_are_refused_in_one_line_before_the_run_starts(
    tmp_path, monkeypatch, capsys, override, message
):
    code, _, err = train_cli(
        monkeypatch,
        capsys,
        "loss=listmle_hinge",
        "trainer.max_steps=2",
        "trainer.val_at_start=false",
        *SMALL_MODEL,
        override,
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert code == 2
    assert err.strip().startswith(f"error: {message}") and "\n" not in err.strip()
    assert not (tmp_path / "run").exists()


@pytest.mark.filterwarnings("ignore:layout_.* has no effect. task='tile'")
def test_a_layout_recipe_on_tile_data_is_refused_naming_the_collection(
    tmp_path, monkeypatch, capsys
):
    # layout_fast selects on Kendall tau, which tile validation does not report: the run
    # once trained up to its first validation and failed there.
    code, _, err = train_cli(
        monkeypatch,
        capsys,
        "experiment=layout_fast",
        "data=tile_xla",
        "data.root=sample",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert code == 2
    assert err.strip().startswith(
        "error: trainer.select_metric='kendall_tau' is not a validation metric of tile:xla "
        "(kendall_tau is a layout metric: a layout experiment?); choose one of "
        "['num_graphs', 'score', 'top10_error', 'top1_error', 'top5_error', "
    )
    assert not (tmp_path / "run").exists()


def test_warnings_of_a_run_are_one_line_each():
    # train.py / evaluate.py print each warning as one line: a setting's warning is raised
    # through Hydra's instantiate, whose file and source line said nothing to a user.
    from tpulearn import cli

    def run(cfg):
        return [
            warnings.formatwarning("data.x has no effect", UserWarning, "/h/_inst.py", 129),
            warnings.formatwarning("old", DeprecationWarning, "/a.py", 3),
        ]

    assert cli._run(run, None) == [
        "warning: data.x has no effect\n",
        "warning: old (DeprecationWarning, /a.py:3)\n",
    ]
    assert warnings.formatwarning is not cli._warning_line  # put back after the run


def test_a_train_split_with_nothing_to_rank_stops_after_an_epoch(tmp_path, monkeypatch, capsys):
    # The bundled xla random train graph measures one config 20 times: under data.dedup it
    # is one config, every step's loss 0. The run once trained its whole budget on it.
    with pytest.warns(UserWarning, match="openai_v0_rnn_optimized.npz: 20 measured configs"):
        code, _, err = train_cli(
            monkeypatch,
            capsys,
            "experiment=layout_fast",
            "data=layout_xla_random",
            "data.root=sample",
            "trainer.val_at_start=false",
            "trainer.progress=false",
            *SMALL_MODEL,
            f"hydra.run.dir={tmp_path / 'run'}",
        )
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: nothing to rank in ") and "layout/xla/random/train" in last
    assert last.endswith(
        "none of the 8 steps of an epoch (1 train graph(s)) sampled two configs of different "
        "runtimes: openai_v0_rnn_optimized.npz (20 measured configs but 1 distinct under "
        "dedup='mean')"
    )
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()


def test_a_train_split_whose_every_graph_is_excluded_is_refused_naming_them(
    tmp_path, monkeypatch, capsys
):
    # Every train graph measures one config: the dataset excludes them all. The run once
    # failed on "0 training graphs cannot be shared by 1 shards".
    from tpulearn.data.synthetic import write_layout_collection

    root = tmp_path / "data"
    counts = {"train": 2, "valid": 1, "test": 0}
    write_layout_collection(root, num_graphs=counts, nodes=(20, 30), configs=(1, 1))
    with pytest.warns(UserWarning, match="2 graph\\(s\\) excluded, too few configs to rank"):
        code, _, err = train_cli(
            monkeypatch,
            capsys,
            "experiment=layout_fast",
            "data=synthetic",
            f"data.root={root}",
            *SMALL_MODEL,
            f"hydra.run.dir={tmp_path / 'run'}",
        )
    assert code == 2
    last = err.strip().splitlines()[-1]
    folder = root / "npz" / "layout" / "xla" / "random" / "train"
    assert last == (
        f"error: no graph to train on in {folder}: all 2 of its graph(s) were excluded, too "
        "few configs to rank: synthetic_xla_train_000.npz (1 measured configs < 2); "
        "synthetic_xla_train_001.npz (1 measured configs < 2)"
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_configs_a_model_cannot_tell_apart_are_named_in_a_warning(tmp_path, monkeypatch, capsys):
    # Without data.dedup the bundled xla random train graph's 20 measurements (461.34 -
    # 461.44 ms) have two runtimes but one config: every score equal, the loss constant,
    # the gradient rounding noise. The bundled tile train kernel's two configs have all-zero
    # features and runtimes 18% apart. Both runs (every collection's smoke run on the sample,
    # as scripts/leaderboard.py makes them) train on, and say so once.
    for name, args, advice in (
        ("layout", ["data=layout_xla_random"], "data.dedup=mean trains each distinct config"),
        ("tile", ["experiment=tile_xla"], "(tile config features do not tell every config"),
    ):
        code, out, _ = train_cli(
            monkeypatch,
            capsys,
            *args,
            "data.root=sample",
            "trainer.max_steps=3",
            "trainer.val_at_start=false",
            "trainer.progress=false",
            *SMALL_MODEL,
            f"hydra.run.dir={tmp_path / name}",
        )
        assert code == 0 and (tmp_path / name / "checkpoints" / "best.pt").is_file()
        warned = [line for line in out.splitlines() if line.startswith("warning: nothing to")]
        assert len(warned) == 1 and advice in warned[0], out
        assert f"{'layout/xla/random' if name == 'layout' else 'tile/xla'}/train" in warned[0]


def test_a_missing_cuda_device_is_one_clear_line(tmp_path, monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code, _, err = train_cli(
        monkeypatch, capsys, "trainer.device=cuda", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert code == 2
    assert err.strip() == (
        "error: trainer.device='cuda' but no CUDA device is available; use 'cpu' or 'auto'"
    )
    assert not (tmp_path / "run").exists()


def test_predictor_scores_any_file_like_evaluation(tmp_path):
    from tpulearn.predict import Predictor

    ckpt = train(tiny(tmp_path))["checkpoints"]["best"]
    predictor = Predictor.from_checkpoint(ckpt, chunk=300)
    path = tpulearn.data.sample_root() / "npz/layout/xla/default/valid/unet_3d.4x4.bf16.npz"
    scores = predictor.score_file(path)
    assert scores.shape == (1965,) and np.isfinite(scores).all()
    order = predictor.rank_file(path)
    assert sorted(order.tolist()) == list(range(1965))
    assert scores[order[0]] == scores.min()
    cfg = make_cfg("eval", [f"ckpt={ckpt}", "data.valid_indices=all", f"out_dir={tmp_path / 'e'}"])
    per_graph = (tmp_path / "e").joinpath("per_graph_valid.csv")
    result = evaluate(cfg)
    assert per_graph.is_file()
    # Scoring all 1965 configs through the evaluation path ranks them identically.
    from tpulearn.data import read_layout
    from tpulearn.metrics import kendall_tau

    runtime = read_layout(path).config_runtime
    assert result["metrics"]["kendall_tau"] == pytest.approx(kendall_tau(scores, runtime), abs=1e-6)


def test_make_submission_script_rejects_an_incomplete_submission(tmp_path):
    from tpulearn.submission import write_submission

    part = write_submission(
        tmp_path / "part.csv", {"tile:xla:d6f5f54247bd1e58a10b9e7062c636ab": list(range(25))}
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts/make_submission.py"),
            str(part),
            "--root",
            str(tpulearn.data.sample_root()),
            "--out",
            str(tmp_path / "s.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "missing row for layout:nlp:default:3a0c5517a87df8d82fd637b83298a3ba" in proc.stderr


@pytest.mark.slow  # a Hydra sweep of several runs
def test_multirun_runs_each_job_in_its_own_folder(tmp_path, monkeypatch, capsys):
    code, _, err = train_cli(
        monkeypatch,
        capsys,
        "-m",
        "model=sage,gcn",
        "trainer.max_steps=1",
        "trainer.val_every=1",
        "data.configs_per_graph=4",
        "trainer.progress=false",
        *SMALL_MODEL,
        f"hydra.sweep.dir={tmp_path}",
    )
    assert code == 0, err[-2000:]
    for job in ("0", "1"):
        assert (tmp_path / job / "checkpoints" / "best.pt").is_file()
    assert "tpulearn.models.GCN" in (tmp_path / "1" / ".hydra" / "config.yaml").read_text()


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_instantiates(experiment):
    cfg = make_cfg(overrides=[f"experiment={experiment}", "data.root=sample"])
    net = instantiate(cfg.model)
    data = instantiate(cfg.data)
    assert data.task == ("tile" if experiment.startswith("tile") else "layout")
    assert data.configs_per_graph == (10 if experiment.startswith("tile") else 32)
    if experiment == "tile_fast":  # tiles along the root's layout: data and model agree
        assert data.tile_layout and net.config_encoder.tile_layout and not net.l2_normalize
        assert cfg.loss.terms[0].loss.temperature == 1.0 and cfg.trainer.ema_decay == 0.99
    if experiment == "layout_fast":  # whole graphs, any layout collection (data= picks it)
        assert type(net).__name__ == "SAGE" and net.config_encoder.layout_shape
        assert net.config_encoder.layout_relations and net.readout == ("attn",)
        assert isinstance(net.head, torch.nn.Linear)
        assert net.hidden_channels == 64 and cfg.optim.lr == 1e-3
        # ListMLE + 30 x the pairwise hinge (loss/listmle_hinge.yaml)
        terms = [(t.weight, t.loss._target_.rsplit(".", 1)[1]) for t in cfg.loss.terms]
        assert terms == [(1.0, "ListMLELoss"), (30.0, "PairwiseHingeLoss")]
    elif experiment.startswith("layout"):
        assert type(net).__name__ == "SegmentModel" and net.max_segment_nodes == 1000
        assert net.model.hidden_channels == 256 and cfg.optim.lr == 1e-4
        if experiment != "layout_gst":  # the shared base keeps the default data
            name = experiment[len("layout_") :].replace("_", ":")
            assert cfg.data.collection == "layout:" + name


@pytest.mark.parametrize("experiment", options("experiment"))
def test_a_loss_on_the_command_line_replaces_the_experiments(experiment):
    # Each experiment chooses its loss as a group option, not by merging keys into it,
    # so loss=... gives exactly that loss (no key of another left behind).
    cfg = make_cfg(overrides=[f"experiment={experiment}", "data.root=sample", "loss=zscore"])
    assert OmegaConf.to_container(cfg.loss) == {
        "_target_": "tpulearn.losses.MSELoss",
        "target": "zscore",
    }
    loss = instantiate(cfg.loss)
    assert type(loss).__name__ == "MSELoss" and loss.target == "zscore"


@pytest.mark.slow  # two GST runs of train() each (tests/segments test the GST step itself)
@pytest.mark.parametrize(
    "options", [[], ["model.halo_hops=2", "gst.max_age=1"]], ids=["reference", "halo-age"]
)
def test_gst_run_checkpoints_its_history_table_and_resumes(tmp_path, options):
    small = [
        *options,
        "experiment=layout_xla_default",
        "data.root=sample",
        "model.max_segment_nodes=1000",
        "model.model.hidden_channels=8",
        "model.model.opcode_dim=4",
        "model.model.num_layers=1",
        "trainer.graphs_per_batch=1",
        "data.configs_per_graph=8",
        "trainer.progress=false",
    ]

    def run(folder, steps, *extra):
        overrides = [f"out_dir={folder}", f"trainer.max_steps={steps}", "trainer.val_every=2"]
        return train(make_cfg(overrides=[*small, *overrides, *extra]))

    whole = run(tmp_path / "whole", 4)
    state = load_checkpoint(whole["checkpoints"]["last"])
    table = state["gst"]["table"]
    assert state["config"]["model"]["_target_"] == "tpulearn.segments.SegmentModel"
    assert table["values"], "the GST history table is saved"
    assert table["clock"] == 4  # one tick per step: entry ages survive a resume
    run(tmp_path / "split", 2)
    resumed = run(tmp_path / "split", 4, "trainer.resume=true")
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]


def test_synthetic_cli_writes_a_collection_the_synthetic_data_config_trains_on(tmp_path):
    root = tmp_path / "syn"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tpulearn.data.synthetic",
            str(root),
            "--train",
            "3",
            "--valid",
            "2",
            "--test",
            "1",
            "--nodes",
            "20",
            "40",
            "--configs",
            "10",
            "20",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert len(list((root / "npz/layout/xla/random/train").glob("*.npz"))) == 3
    cfg = make_cfg(
        overrides=[
            f"out_dir={tmp_path / 'run'}",
            "data=synthetic",
            f"data.root={root}",
            "trainer.max_steps=2",
            "trainer.val_every=2",
            "trainer.progress=false",
            *SMALL_MODEL,
        ]
    )
    result = train(cfg)
    assert result["best"]["num_graphs"] == 2


def test_evaluate_without_a_checkpoint_is_one_clear_line(tmp_path, monkeypatch, capsys):
    code, _, err = evaluate_cli(monkeypatch, capsys, f"hydra.run.dir={tmp_path}")
    assert code == 2
    assert err.strip() == "error: ckpt is required: pass ckpt=..."


def test_a_refused_setting_is_named_by_its_full_key_where_it_is_unique():
    from omegaconf import OmegaConf

    from tpulearn.training.run import _named

    node = OmegaConf.create(
        {"readout": "attn", "config_node_readout": True, "terms": [{"weight": 1}, {"weight": 2}]}
    )
    assert _named("readout must be one of", "model", node) == "model.readout must be one of"
    assert _named("terms.1.weight must be", "loss", node) == "loss.terms.1.weight must be"
    # Two keys of that name (terms.0.weight, terms.1.weight): which one is not known.
    assert _named("weight must be", "loss", node) == "loss: weight must be"
    assert _named("the gate needs", "model", node) == "model: the gate needs"
    assert _named("model.x is wrong", "model", node) == "model.x is wrong"
