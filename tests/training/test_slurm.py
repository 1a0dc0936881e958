"""The Slurm launcher config (hydra/launcher=slurm) and the Slurm task environment."""

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import tpulearn
from tpulearn.training import distributed

CONFIG_DIR = Path(tpulearn.__file__).parent / "configs"
submitit = pytest.importorskip("submitit", reason="the slurm extra is not installed")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


def _launcher(*overrides):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=slurm", *overrides],
            return_hydra_config=True,
        )
    return cfg.hydra.launcher


def test_slurm_launcher_config_composes_into_an_sbatch_script(tmp_path, monkeypatch):
    # submitit's Slurm executor looks for `srun` on PATH; nothing is submitted here.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    launcher = _launcher("hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4")
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    params = OmegaConf.to_container(launcher, resolve=False)
    params.pop("_target_")
    params["submitit_folder"] = str(tmp_path / "%j")
    params["name"] = "tpulearn-test"
    # The mapping the Hydra plugin applies before handing the values to submitit: every
    # key must be a parameter submitit knows (it raises on unknown ones).
    executor = submitit.AutoExecutor(
        cluster="slurm",
        folder=params.pop("submitit_folder"),
        slurm_max_num_timeout=params.pop("max_num_timeout"),
    )
    base = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb"}
    base |= {"nodes", "name", "stderr_to_stdout"}
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python train.py", "uid")
    assert "#SBATCH --partition=gpu" in script
    assert "#SBATCH --gpus-per-node=4" in script
    assert "#SBATCH --time=1440" in script
    assert "#SBATCH --mem=64GB" in script


def test_the_documented_slurm_command_lets_a_requeued_job_continue():
    # A launcher config cannot set trainer keys, so its command passes trainer.resume=auto,
    # which a first launch (no last.pt) and a requeued job (last.pt) both accept.
    text = (CONFIG_DIR / "hydra" / "launcher" / "slurm.yaml").read_text()
    command = text.split("One job per sweep point")[0]
    assert "python train.py -m hydra/launcher=slurm" in command
    assert "trainer.resume=auto" in command


def test_misspelt_launcher_key_is_refused():
    with pytest.raises(Exception, match="partitio"):
        _launcher("hydra.launcher.partitio=gpu")


# What _slurm_env may export; each test restores them (set, then deleted, so that the
# monkeypatch records the original state and a later test never sees a stale world).
EXPORTED = (
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SUBMITIT_EXECUTOR",
)
BEFORE = {key: os.environ.get(key) for key in EXPORTED}


def _clean_environment(monkeypatch):
    for key in EXPORTED:
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)


def test_slurm_tasks_become_a_torch_distributed_world(monkeypatch):
    _clean_environment(monkeypatch)
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "4",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_PROCID": "3",
        "SLURM_LOCALID": "1",
    }
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    distributed._slurm_env()
    assert os.environ["WORLD_SIZE"] == "4"
    assert os.environ["RANK"] == "3"
    assert os.environ["LOCAL_RANK"] == "1"
    assert os.environ["MASTER_ADDR"] == "gpu07"
    assert 20000 <= int(os.environ["MASTER_PORT"]) <= 60000


def test_single_task_jobs_stay_one_process(monkeypatch):
    _clean_environment(monkeypatch)
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    distributed._slurm_env()
    assert "WORLD_SIZE" not in os.environ


def test_the_environment_is_restored_after_the_slurm_tests():
    # Runs after the tests above (file order): nothing they exported may leak into the
    # training tests, which would otherwise try to join a four-process group.
    assert {key: os.environ.get(key) for key in EXPORTED} == BEFORE
