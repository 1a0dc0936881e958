"""Ranking quality on synthetic collections nobody tuned to: writes benchmarks/quality.md.

    python scripts/quality.py                                   # everything, 3 seeds
    python scripts/quality.py --recipes layout_fast --families roofline --seeds 0 1 2
    python scripts/quality.py --quick                           # tiny sizes; table in --work
    python scripts/quality.py --recipe "hinge=experiment=layout_fast loss=hinge"  # and yours

For every synthetic cost-model family (:data:`tpulearn.data.synthetic.LAYOUT_FAMILIES`) a
layout:xla:random collection is written from a data seed used nowhere else (train and valid
graphs from separate generator streams; ``--search default`` writes layout:xla:default
ones instead, the same graphs under configs that each move a few nodes from the
compiler's default), then each recipe trains on it once per seed with
``python train.py <recipe> data=synthetic data.root=... trainer.seed=<seed>`` in a process
of its own (wall time and peak RSS are that process's). Reported per family and recipe:
validation Kendall tau over every config of the valid graphs (the best checkpoint, chosen
by the recipe's selection metric), mean +- std over seeds; the ensemble of the seeds'
best checkpoints (mean rank per graph); and the family's oracle: its noise-free cost
ranked against the noisy runtimes, the ceiling a perfect model reaches. The valid graphs
also choose each run's checkpoint, so the same checkpoints, their ensemble and the oracle
are scored again on the collection's test split: 16 labelled graphs that neither training
nor checkpoint selection sees, written to a root of their own
(``<work>/data/layout-<family>-heldout``) that no run reads.

Tile: the tile recipe on each tile family; top-1/5/10 error, per seed and of the seeds'
ensemble, against the oracle's (a model that knows the cost function). Real: the quick
start and layout_fast on the bundled sample (train unet3d, validate unet_3d.4x4.bf16 on
the official indices) and on the same pair swapped (train unet_3d.4x4.bf16, validate
unet3d), a transfer a synthetic table cannot show.

``--work`` keeps the data and runs: a finished run is read back, not trained again, so
rerunning the same command after an interruption (or with another recipe added) trains
only what is missing and rewrites the whole table. A run is read back only when its
command line and data are this call's and its checkpoint's config is the one that command
composes now: an edited YAML (an experiment, a default) trains again exactly the runs it
changes. The code is not compared: after changing it, pass ``--retrain``. Each run records
the call that trained it (command line and start), and the table names the calls whose
runs it read back.

``--data-seed`` writes other collections of the same families and shape (seed + the
family's index; the committed table uses the default): try a change there first, with its
own ``--work`` and ``--out``, so that the table's collections stay ones no setting was
chosen on.

``--train-graphs N`` writes N layout train graphs per collection instead of the table's 12.
A graph depends only on the data seed, its split and its index, so two N write the same
valid graphs and the larger N's train graphs begin with the smaller's: tables of several N
(each with its own ``--out``) are a learning curve of a recipe. A run is read back only
on the data it trained on (the command line alone does not name the data), so a
``--work`` rewritten with another N or data seed trains again.

``--heldout-shape`` writes the layout collections at the shape of a held-out collection
(16 train / 4 valid graphs of 1,400-1,600 nodes, 300 configs) instead of the table's smaller
one: what a recipe reaches where it will be judged, at about 3x the time a run (give it its
own ``--work`` and ``--out``).

``--update`` rewrites only the rows of the recipes given, keeping the others from the
table's JSON (``--out`` with ``.json``): a changed recipe is measured again without the hour
the whole table takes, e.g. ``--update --recipes layout_fast``. A kept row must have been
measured the same way (seeds, runs at a time, data seed; its task's sizes) and compose the
config its recipe composes now (a digest of it, so an edited YAML drops the rows it
changes, while overrides rewritten to the same config keep them; a row from before digests
were recorded needs the same overrides); the table names the call that measured each kept
row.

``--recipe NAME=OVERRIDES`` defines a layout recipe of your own for this call: its Hydra
overrides (as on the ``train.py`` command line) train on the table's collections beside the
built-in recipes, over the same seeds, with the same ensembles and oracles, and its rows
record the overrides (the table lists them). Run it next to ``layout_fast`` to see whether
a setting ranks better on collections nobody tuned to; try it on another ``--data-seed``
first so that the committed table's collections stay unseen. Data, seeds and run folders
are the script's: overrides may not set ``data``, ``data.root``, ``trainer.seed`` or
``hydra.*``. ``--recipes`` names which recipes run (by default every built-in recipe and
every defined one).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from hydra.errors import HydraException
from omegaconf import OmegaConf

from tpulearn.data.sample import sample_root
from tpulearn.data.schema import collection_dir
from tpulearn.data.synthetic import (
    LAYOUT_FAMILIES,
    TILE_FAMILIES,
    oracle_metrics,
    write_layout_collection,
    write_tile_collection,
)
from tpulearn.leaderboard import (
    IGNORED_KEYS,
    compose,
    config_differences,
    flatten_config,
    shown_differences,
)
from tpulearn.metrics import Evaluator
from tpulearn.predict import Ensemble
from tpulearn.training.checkpoint import (
    CheckpointReadError,
    at_added_default,
    load_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]
# The committed table (--out's default; --quick writes into --work unless --out names it).
OUT = REPO / "benchmarks" / "quality.md"
WORK = Path("/tmp/tpulearn-quality")
# --search: the layout collections' search. random: every node takes a random layout;
# default: each config moves 2-20% of the nodes from the compiler's default, as in the
# release's default collections (the same graphs as random's, other configs).
SEARCHES = ("random", "default")

# Recipe name -> Hydra overrides. Each recipe keeps its own budget (configs and data).
# The recipe before its config-free attn gate and its graph unions (the variants below
# were measured on it).
# The recipe's earlier states train every config row, as they did before its data.dedup
# (no collection here repeats a config, so they train alike either way).
# They and the recipe before its patience of 12 validations stop after 6.
_LAYOUT_FAST_P6 = ["experiment=layout_fast", "trainer.patience=6"]
_LAYOUT_FAST_BEFORE = [*_LAYOUT_FAST_P6, "data.dedup=false"]
_LAYOUT_FAST_STATE = [*_LAYOUT_FAST_BEFORE, "model.attn_gate=state", "trainer.union_prob=0"]
LAYOUT_RECIPES = {
    "defaults": [],
    "layout_fast": ["experiment=layout_fast"],
    # The recipe before its patience of 12 validations (trainer.patience=12).
    "layout_fast_patience6": [*_LAYOUT_FAST_P6],
    # The recipe before its config-free attn gate: the gate reads each node's vector in
    # each config. The variants below are of this recipe (measured before the gate).
    "layout_fast_state": [*_LAYOUT_FAST_STATE],
    # The recipe before its graph unions (trainer.union_prob=0.5).
    "layout_fast_gate": [*_LAYOUT_FAST_BEFORE, "trainer.union_prob=0"],
    # layout_fast on ListMLE alone, the recipe's loss before ListMLE + 30 x the hinge.
    "layout_fast_listmle": [*_LAYOUT_FAST_STATE, "loss=listmle"],
    # The recipe before that: 3 message-passing layers, no layout_tiling, ListMLE.
    "layout_fast_3layers": [
        *_LAYOUT_FAST_STATE,
        "model.num_layers=3",
        "model.layout_tiling=false",
        "loss=listmle",
    ],
    # layout_fast fitted to each graph's standardised log runtimes (loss=zscore) instead
    # of ranking losses, at half the learning rate.
    "layout_fast_zscore": [*_LAYOUT_FAST_STATE, "loss=zscore", "optim.lr=5e-4"],
    # layout_fast on ListMLE whose layers also read each node's users and operands apart.
    "layout_fast_directed": [*_LAYOUT_FAST_STATE, "model.directed=true", "loss=listmle"],
    # The paper's GST setting (experiment=layout_gst), shrunk to this machine: 64 wide,
    # 8 graphs per step, segments of 400 nodes, lr 1e-3, 300 steps (200 epochs of 12 graphs).
    "gst_small": [
        "experiment=layout_gst",
        "model.model.hidden_channels=64",
        "model.model.opcode_dim=64",
        "model.max_segment_nodes=400",
        "trainer.graphs_per_batch=8",
        "trainer.max_steps=300",
        "trainer.max_epochs=null",
        "trainer.val_every=50",
        "optim.lr=1e-3",
    ],
}
# The bundled real sample (train unet3d, validate unet_3d.4x4.bf16, official indices).
REAL_RECIPES = {
    "real": [],
    "real_layout_fast": ["experiment=layout_fast"],
    "real_zscore": ["loss=zscore"],
}
# The same pair the other way round: train unet_3d.4x4.bf16, validate unet3d (on all its
# configs: the official indices list valid graphs only). One validation graph cannot rank
# recipes (untrained models score 0.013 +- 0.056 on unet_3d.4x4.bf16): a second one shows
# whether a recipe's transfer holds in both directions.
REAL_SWAPPED = {"train": "unet_3d.4x4.bf16", "valid": "unet3d"}
REAL_TRAIN_GRAPHS = 1  # either way round
REAL_COLLECTION = "layout:xla:default"
TILE_XLA = [
    "experiment=tile_xla",
    "trainer.max_steps=1500",
    "trainer.max_epochs=null",
    "trainer.val_every=250",
]
TILE_RECIPES = {
    "tile_xla": TILE_XLA,
    # The same with log-scaled, z-scored features (the paper min-max scales raw ones):
    # tile runtimes and shapes span orders of magnitude.
    "tile_xla_log": [*TILE_XLA, "data.log_features=true", "data.normalize=zscore"],
    # Tiles read along the root's minor-to-major order, log z-scores, ListMLE at
    # temperature 1, a weight average; its own budget of 6,400 steps (experiment=tile_fast).
    "tile_fast": ["experiment=tile_fast"],
}

# Data: smaller than a held-out collection of 16 x ~1,500-node graphs and 300 configs, so
# that the whole table runs in under an hour on 2 cores.
SIZES = {
    "full": {
        # Test: 16 labelled graphs that neither training nor checkpoint selection sees, in
        # a root of their own (write_heldout): the valid graphs select each run's checkpoint,
        # so their tau flatters it; these do not.
        "layout": {
            "train": 12,
            "valid": 4,
            "test": 16,
            "nodes": (800, 1200),
            "configs": (200, 200),
        },
        # Valid as large as the release's (~680 kernels): on 50, top-5 errors of ~0.001 are
        # a handful of kernels and select checkpoints by noise. Test: labelled kernels that
        # neither training nor checkpoint selection sees. Train: 1,600 kernels, over a
        # quarter of the release's ~5,700 (tile is data-bound: on 400, tile_fast's top-5
        # error was 2.8x the oracle's in as many steps).
        "tile": {"train": 1600, "valid": 500, "test": 500, "nodes": (5, 40), "configs": (20, 60)},
    },
    # --heldout-shape: the layout collections at the held-out collection's own shape (about
    # 3x the table's time a run); tile as in "full".
    "heldout": {
        "layout": {
            "train": 16,
            "valid": 4,
            "test": 16,
            "nodes": (1400, 1600),
            "configs": (300, 300),
        },
    },
    "quick": {
        "layout": {"train": 2, "valid": 2, "test": 2, "nodes": (60, 90), "configs": (20, 30)},
        "tile": {"train": 6, "valid": 3, "test": 4, "nodes": (5, 10), "configs": (8, 12)},
    },
}
# Each table's recipes, by the results' task key.
RECIPES = {"layout": LAYOUT_RECIPES, "tile": TILE_RECIPES, "real": REAL_RECIPES}
QUICK_OVERRIDES = ["trainer.max_steps=4", "trainer.max_epochs=null", "trainer.val_every=2"]
# The tile table's errors: the official top-K metric at K = 1, 5, 10.
ERRORS = ("top1_error", "top5_error", "top10_error")
# A row's numbers on its collection's test split (recipe_row).
HELD_OUT = {"test", "test_ensemble"}
# + family index: data nobody tuned a setting on. --data-seed writes other collections of
# the same shape, to try a change on before it meets the table's.
DATA_SEED = 2026


def write_data(
    work: Path,
    task: str,
    family: str,
    index: int,
    size: dict,
    data_seed: int = DATA_SEED,
    search: str = "random",
) -> Path:
    """The collection the runs of ``task`` on ``family`` train and select on, its root.

    Tile's labelled test kernels are written beside them; layout's test graphs are not
    (:func:`write_heldout`), so the root's ``written.json``, which a run is read back on,
    names only what the runs read.
    """
    if task == "layout":
        size = {k: v for k, v in size.items() if k != "test"}
    root = work / "data" / f"{task}-{family}{_search_suffix(search)}"
    return _write(root, task, family, data_seed + index, size, search)


def write_heldout(
    work: Path,
    family: str,
    index: int,
    size: dict,
    data_seed: int = DATA_SEED,
    search: str = "random",
) -> Path | None:
    """The layout collection's labelled test graphs in a root of their own (None without
    any): the graphs its test split holds (a graph depends only on the data seed, its split
    and its index), where no run, which reads ``data.root``, can see them."""
    if not size.get("test"):
        return None
    held_out = {**size, "train": 0, "valid": 0}
    root = work / "data" / f"layout-{family}{_search_suffix(search)}-heldout"
    return _write(root, "layout", family, data_seed + index, held_out, search)


def _search_suffix(search: str) -> str:
    """What a layout collection's folder names add for its search (random: nothing, so
    the folders of tables before --search are theirs)."""
    return "" if search == "random" else f"-{search}"


def layout_collection(search: str = "random") -> str:
    """The synthetic layout collections' name for ``search``."""
    return f"layout:xla:{search}"


def synthetic_collection(task: str, search: str) -> str:
    """The collection a synthetic ``task``'s runs train and are scored on."""
    return layout_collection(search) if task == "layout" else "tile:xla"


def run_name(task: str, family: str, recipe: str, seed: int, search: str) -> str:
    """A synthetic run's folder under ``<work>/runs``: the default search's layout runs get
    folders of their own, so both searches can share a --work."""
    prefix = f"{family}{_search_suffix(search)}" if task == "layout" else f"tile-{family}"
    return f"{prefix}-{recipe}-{seed}"


def _write(
    root: Path, task: str, family: str, seed: int, size: dict, search: str = "random"
) -> Path:
    """Write ``family``'s collection of ``size`` at ``root`` from ``seed`` unless its
    ``written.json`` says it holds it already; test files are labelled."""
    marker = root / "written.json"
    # The search is recorded where it is not random, so random roots keep their marker.
    searched = {} if search == "random" else {"search": search}
    wanted = {"family": family, "seed": seed, **size, **searched}
    if marker.exists() and json.loads(marker.read_text()) == json.loads(json.dumps(wanted)):
        return root
    counts = {"train": size["train"], "valid": size["valid"], "test": size.get("test", 0)}
    kwargs = dict(
        num_graphs=counts, nodes=size["nodes"], configs=size["configs"], labelled_test=True
    )
    if task == "tile":
        write_tile_collection(root, family=family, seed=seed, **kwargs)
    else:
        write_layout_collection(root, "xla", search, family=family, seed=seed, **kwargs)
    marker.write_text(json.dumps(wanted))
    return root


def write_swapped(work: Path) -> Path:
    """A data root holding the bundled layout:xla:default pair with train and valid swapped
    (:data:`REAL_SWAPPED`); a file is copied whole or not at all."""
    root = work / "data" / "real-swapped"
    for split, name in REAL_SWAPPED.items():
        target = collection_dir(root, REAL_COLLECTION, split) / f"{name}.npz"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        other = "valid" if split == "train" else "train"
        source = collection_dir(sample_root(), REAL_COLLECTION, other) / f"{name}.npz"
        part = target.with_name(target.name + ".part")
        shutil.copyfile(source, part)
        part.replace(target)
    return root


def written(root: Path) -> dict:
    """What :func:`write_data` wrote into ``root`` (its ``written.json``)."""
    return json.loads((root / "written.json").read_text())


def run_overrides(
    task: str,
    recipe: list[str],
    root: Path | str | None,
    seed: int,
    extra: list[str],
    search: str = "random",
) -> list[str]:
    """A run's ``train.py`` overrides: the recipe's, its data (synthetic layout and tile
    collections at ``root``, a layout one of ``search``; the bundled sample for ``real``),
    the seed, ``extra``."""
    layout = ["data=synthetic", f"data.root={root}"]
    if search != "random":  # data=synthetic is layout:xla:random
        layout.append(f"data.collection={layout_collection(search)}")
    data = {"layout": layout, "tile": [f"data.root={root}"]}
    return [*recipe, *data.get(task, []), f"trainer.seed={seed}", *extra]


# What train() adds to every run's overrides, besides its folder.
PROCESS = ["trainer.progress=false", "trainer.overwrite=true"]
# Keys in which the runs of one row differ (data, seed, folder): not in its config key.
PER_RUN = {"data.root", "trainer.seed", "out_dir"}
# Hydra's compose uses global state, and runs are started from several threads.
_COMPOSING = threading.Lock()


def composed(overrides: list[str], resolve: bool = True) -> dict:
    """The config ``train.py`` composes from ``overrides`` (``hydra.*`` left out) as a
    checkpoint stores it (resolved; ``out_dir``, a run's folder, set to ``.``).

    Raises:
        ValueError: the overrides do not compose, naming them and Hydra's reason.
    """
    plain = [o for o in overrides if not o.lstrip("+~").startswith("hydra.")]
    try:
        with _COMPOSING:
            cfg = compose("config", [*plain, "out_dir=."])
    except HydraException as err:
        raise ValueError(f"the overrides {plain} do not compose: {err}") from None
    return OmegaConf.to_container(cfg, resolve=resolve)


def config_key(
    task: str, recipe: list[str], extra: list[str], train_graphs: int | None = None
) -> str:
    """A digest of the config a recipe's runs compose, less the keys its runs differ in
    (:data:`PER_RUN`) and those that do not change what a run trains (``IGNORED_KEYS``):
    rows of one key were trained alike. Unresolved, so no environment variable enters.
    A model option added since rows were measured is left out at the value that trains
    what configs without it did (``at_added_default``), so those rows keep their key; so
    is an epoch floor that does not bind on the table's ``train_graphs``
    (:func:`floor_unbound`)."""
    overrides = [*run_overrides(task, recipe, "ROOT", 0, extra), *PROCESS]
    flat = flatten_config(composed(overrides, resolve=False))
    kept = {
        k: v
        for k, v in flat.items()
        if k not in PER_RUN
        and k not in IGNORED_KEYS
        and not at_added_default(k, v)
        and not floor_unbound(flat, k, v, train_graphs)
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def floor_unbound(flat: dict, key: str, value, train_graphs: int | None) -> bool:
    """Whether ``key`` is ``trainer.min_epoch_graphs`` at a floor no higher than the
    ``train_graphs`` every graph of a one-process run is trained on (no folds, one shard):
    the budget is then the same function of the graphs as without it, and the run trains
    what it trained before the option existed."""
    return (
        key == "trainer.min_epoch_graphs"
        and train_graphs is not None
        and isinstance(value, int)
        and value <= train_graphs
        and flat.get("data.folds") is None
        and flat.get("trainer.shards") in (None, 1)
    )


def table_train_graphs(task: str, sizes: dict) -> int:
    """Train graphs of each run of a table's ``task`` (the real pairs: one)."""
    return REAL_TRAIN_GRAPHS if task == "real" else sizes[task]["train"]


def config_changed(run_dir: Path, overrides: list[str]) -> str | None:
    """Why the finished run in ``run_dir`` is not what ``overrides`` compose now (its last
    checkpoint's config against theirs), or None when it is."""
    try:
        stored = load_checkpoint(run_dir / "checkpoints" / "last.pt").get("config")
    except (FileNotFoundError, CheckpointReadError) as err:
        return f"its checkpoint cannot be read: {err}"
    if stored is None:
        return "its checkpoint holds no config"
    diff = config_differences(stored, composed(overrides))
    if not diff:
        return None
    return "its config is not the one its command composes now: " + shown_differences(diff, 3)


def train(
    run_dir: Path,
    overrides: list[str],
    threads: int,
    log,
    retrain: bool = False,
    data: dict | None = None,
    call: dict | None = None,
) -> dict:
    """One ``train.py`` process: its best validation metrics, wall time and peak RSS.

    A run folder holding a finished run of the same command on the same data (``data``:
    what :func:`write_data` wrote, its ``written.json``) whose checkpoint's config is the
    one the command composes now is read, not trained again (``retrain`` trains anyway),
    so an interrupted table resumes where it stopped, a run on collections another
    ``--data-seed`` or ``--train-graphs`` wrote into the same ``--work`` trains again, and
    so does one whose YAML changed since (said in the log). The code is not compared: after
    editing it, retrain. A run trained here records ``call`` (this quality.py call's
    ``command`` and ``started``) as its ``trained_by``; a run read back keeps its own.
    """
    cmd = [sys.executable, "train.py", *overrides, PROCESS[0]]
    cmd += [f"hydra.run.dir={run_dir}", PROCESS[1]]
    done = run_dir / "quality.json"
    if done.exists() and not retrain:
        row = json.loads(done.read_text())
        if row.get("command") == cmd[1:] and row.get("data") == data:
            why = config_changed(run_dir, cmd[2:])
            if why is None:
                return row
            log(f"  {run_dir.name} trains again: {why}")
    log(f"  $ {shlex.join(cmd[1:])}")
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with open(run_dir / "quality.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
        proc.wait()
    wall = time.perf_counter() - start
    output = (run_dir / "quality.log").read_text()
    if proc.returncode != 0:
        tail = output.splitlines()[-15:]
        raise RuntimeError(f"train.py failed in {run_dir}:\n" + "\n".join(tail))
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    last = state["history"][-1] if state["history"] else {}
    row = {
        "command": cmd[1:],
        "data": data,
        "best": dict(state["best"] or {}),
        "last_step": last.get("step"),
        "wall_s": wall,
        "rss_mb": peak_memory(output, run_dir / "quality.log"),
        "threads": threads,
        "trained_by": call,
    }
    done.write_text(json.dumps(row))
    return row


def peak_memory(output: str, where: Path) -> float:
    """The peak resident memory (MB) a train.py process reports of itself. (What wait4
    reports for it also holds this script's own peak, which a child inherits through
    exec.)"""
    found = re.search(r"^peak memory: ([\d,]+) MB", output, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no 'peak memory:' line in the output of train.py ({where})")
    return float(found.group(1).replace(",", ""))


def ensemble_metrics(root: Path, collection: str, runs: list[Path], split: str = "valid") -> dict:
    """Metrics of the mean-rank ensemble of the runs' best checkpoints (one run: its own)."""
    ensemble = Ensemble.from_checkpoints([r / "checkpoints" / "best.pt" for r in runs])
    evaluator = Evaluator(collection)
    for path in sorted(collection_dir(root, collection, split).glob("*.npz")):
        runtime = np.load(path)["config_runtime"]
        evaluator.add(path.stem, ensemble.score_file(path), runtime)
    return evaluator.compute()


def summarise(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def read_previous(path: Path, measured_as: dict) -> dict:
    """``--update``: the table at ``path``, refused unless measured as this call measures.

    Read before anything trains, so a table that cannot be updated costs no runs.
    ``measured_as`` holds this call's seeds, sizes and runs at a time.
    """
    if not path.exists():
        raise SystemExit(f"--update: {path} does not exist; run the table once without --update")
    try:
        old = json.loads(path.read_text())
        old_meta = old["meta"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise SystemExit(
            f"--update: {path} is not a table written by this script ({err!r})"
        ) from None
    for key, value in measured_as.items():
        # Tables from before --data-seed and --search were measured on the committed
        # table's data seed and on random searches.
        old_value = old_meta.get(key, {"data_seed": DATA_SEED, "search": "random"}.get(key))
        if json.loads(json.dumps(old_value)) != json.loads(json.dumps(value)):
            raise SystemExit(
                f"--update: {path} was measured with {key} {old_value!r}, this call "
                f"uses {value!r}; rows measured differently cannot share a table: run "
                "every recipe without --update"
            )
    return old


def defined_recipes(definitions: list[str]) -> dict[str, list[str]]:
    """``--recipe NAME=OVERRIDES`` values as {name: overrides}; a bad one raises ValueError
    naming it and what was expected."""
    builtin = {*LAYOUT_RECIPES, *TILE_RECIPES, *REAL_RECIPES}
    defined: dict[str, list[str]] = {}
    for text in definitions:
        name, sep, rest = text.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(
                f"--recipe {text!r}: expected NAME=OVERRIDES, a name of letters, digits, "
                "'_', '.' or '-' (e.g. --recipe 'hinge=experiment=layout_fast loss=hinge')"
            )
        if name in builtin or name in defined:
            what = "a built-in recipe" if name in builtin else "defined twice"
            raise ValueError(f"--recipe {text!r}: {name!r} is {what}; choose another name")
        try:
            overrides = shlex.split(rest)
        except ValueError as err:
            raise ValueError(f"--recipe {text!r}: its overrides do not split ({err})") from None
        for override in overrides:
            key = override.split("=", 1)[0].lstrip("+~")
            if key in ("data", "data.root", "trainer.seed") or key.startswith("hydra."):
                raise ValueError(
                    f"--recipe {text!r}: {override!r} sets {key}, which the script sets "
                    "(its collections, seeds and run folders)"
                )
        defined[name] = overrides
    return defined


def keep_previous(
    old: dict, results: dict, log, recipes: dict | None = None, extra: list[str] | None = None
) -> None:
    """``--update``: add to ``results`` the rows of the ``old`` table this call did not run.

    A row is kept only where it measures what its recipe measures now: its table's sizes
    for its task equal this call's (so new tile sizes cost the tile rows alone), its
    recorded config key (:func:`config_key`) is the one its recipe's overrides compose now,
    so an edited YAML drops the rows it changes (overrides rewritten to compose the same
    config keep them, the row then recording the new ones). A row from before overrides
    were recorded is kept by name, one from before config keys were by its overrides
    (equal to the recipe's), each said so. The code is not compared: after editing it,
    name every recipe it touches. Anything not kept is named in the log,
    never dropped silently. ``recipes``: this call's recipes per task (:data:`RECIPES` and
    the ``--recipe`` ones); a defined recipe's row is kept only when this call defines it
    again (composing the same config). ``extra``: the overrides every run of this call adds
    (``--quick``'s).
    """
    recipes = recipes or RECIPES
    keys: dict = {}

    def key_now(task: str, overrides: list[str]) -> str | None:
        """The recipe's config key now; None when its overrides no longer compose."""
        at = (task, *overrides)
        if at not in keys:
            try:
                keys[at] = config_key(task, overrides, extra or [], table_train_graphs(task, sizes))
            except ValueError as err:
                log(f"  {err}")
                keys[at] = None
        return keys[at]

    old_meta = old["meta"]
    measured = {"command": old_meta.get("command"), "started": old_meta.get("started")}

    def split_sizes(table_sizes: dict, task: str) -> tuple[dict, int]:
        """A task's sizes apart from its test split's, and that split's count."""
        task_sizes = dict(json.loads(json.dumps(table_sizes.get(task) or {})))
        return task_sizes, task_sizes.pop("test", 0)

    sizes = results["meta"]["sizes"]
    sized, same_test = {}, {}
    for task in ("layout", "tile"):
        old_sizes, old_test = split_sizes(old_meta.get("sizes", {}), task)
        new_sizes, new_test = split_sizes(sizes, task)
        # The runs read train and valid alone: a row measured on other test graphs is
        # kept without its numbers on them.
        sized[task], same_test[task] = old_sizes == new_sizes, old_test == new_test

    def keep(name: str, row: dict, current: list[str] | None, task: str) -> bool:
        if current is None:
            log(f"  not kept: {name} (no such recipe now)")
            return False
        if task in sized and not sized[task]:
            log(f"  not kept: {name} (measured on other {task} sizes: run it again)")
            return False
        if "config" in row and row["config"] != key_now(task, current):
            log(f"  not kept: {name} (the config its overrides compose changed: run it again)")
            return False
        if "overrides" in row and row["overrides"] != current:
            if "config" not in row:
                log(f"  not kept: {name} (its overrides changed: run it again)")
                return False
            # Other overrides that compose the config it was measured with.
            log(f"  kept: {name} (its overrides now spell the config it was measured with)")
            row["overrides"] = list(current)
        if not same_test.get(task, True) and HELD_OUT.intersection(row):
            log(f"  kept without its test-split numbers: {name} (measured on other test graphs)")
            for key in HELD_OUT:
                row.pop(key, None)
        if "overrides" not in row:
            log(f"  kept by name: {name} (measured before overrides were recorded)")
        elif "config" not in row:
            log(f"  kept by overrides: {name} (measured before config keys were recorded)")
        row.setdefault("measured", measured)
        return True

    for task in ("layout", "tile"):
        known = recipes[task]
        for family, entry in old.get(task, {}).items():
            new = results[task].get(family)
            for recipe, row in entry["recipes"].items():
                if new is not None and recipe in new["recipes"]:
                    continue  # measured by this call
                if keep(f"{task} {family} {recipe}", row, known.get(recipe), task):
                    if new is None:  # the family's oracles, without its rows
                        new = results[task][family] = {**entry, "recipes": {}}
                        if not same_test[task]:
                            new.pop("test_oracle", None)
                    new["recipes"][recipe] = row
        # Families and recipes in the order the script defines them.
        order = list(LAYOUT_FAMILIES if task == "layout" else TILE_FAMILIES)
        ranked = sorted(results[task].items(), key=lambda kv: order.index(kv[0]))
        for _, entry in ranked:
            entry["recipes"] = {r: entry["recipes"][r] for r in known if r in entry["recipes"]}
        results[task] = dict(ranked)
    for recipe, row in old.get("real", {}).items():
        current = REAL_RECIPES.get(recipe)
        if recipe not in results["real"] and keep(f"real {recipe}", row, current, "real"):
            results["real"][recipe] = row
    results["real"] = {r: results["real"][r] for r in REAL_RECIPES if r in results["real"]}


def _threads(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def fmt(s: dict, digits: int = 3) -> str:
    return f"{s['mean']:.{digits}f} +- {s['std']:.{digits}f}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--families",
        nargs="+",
        default=list(LAYOUT_FAMILIES),
        metavar="FAMILY",
        help=f"layout cost-model families (default: every one: {', '.join(LAYOUT_FAMILIES)})",
    )
    parser.add_argument(
        "--tile-families",
        nargs="+",
        default=list(TILE_FAMILIES),
        metavar="FAMILY",
        help=f"tile cost-model families (default: every one: {', '.join(TILE_FAMILIES)})",
    )
    parser.add_argument(
        "--recipes", nargs="+", help="the recipes to run (default: every one, defined too)"
    )
    parser.add_argument(
        "--recipe",
        action="append",
        default=[],
        metavar="NAME=OVERRIDES",
        help="define a layout recipe: NAME and its train.py overrides (repeatable)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        metavar="SEED",
        help="trainer.seed of each recipe's runs (default: 0 1 2)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=WORK,
        help=f"data and runs, kept: a rerun reads finished runs back (default: {WORK})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"the table; its JSON beside it (default: {OUT.relative_to(REPO)}, the committed "
        "table; with --quick, quality.md in --work)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny data and 4 steps: checks the script"
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train every run again, also those --work holds a finished run of",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="rewrite only these recipes' rows; keep the others from the table's JSON",
    )
    parser.add_argument(
        "--data-seed",
        type=int,
        default=DATA_SEED,
        help=f"collections' data seed (+ the family's index); {DATA_SEED}: the committed table's",
    )
    parser.add_argument(
        "--train-graphs",
        type=int,
        default=None,
        metavar="N",
        help="layout train graphs per collection (default: the table's); the first graphs "
        "and the valid ones stay the same, so tables of several N are a learning curve",
    )
    parser.add_argument(
        "--heldout-shape",
        action="store_true",
        help="layout collections of a held-out collection's shape: 16 train / 4 valid graphs "
        "of 1,400-1,600 nodes, 300 configs (about 3x the table's time a run)",
    )
    parser.add_argument(
        "--search",
        choices=SEARCHES,
        default="random",
        help="the layout collections' search: random (every node takes a random layout) or "
        "default (each config moves 2-20%% of the nodes from the compiler's default; the "
        "same graphs, other configs)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at a time (each gets cores / jobs threads)"
    )
    return parser


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict, dict, list[str]]:
    """The call's options, checked (argparse's exit 2 on a bad one): the arguments, the
    recipes by task (the defined ones among the layout recipes), the data sizes by task, and
    the overrides every run adds."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        defined = defined_recipes(args.recipe)
    except ValueError as err:
        parser.error(str(err))
    recipes = {"layout": {**LAYOUT_RECIPES, **defined}, "tile": TILE_RECIPES, "real": REAL_RECIPES}
    every = [*recipes["layout"], *TILE_RECIPES, *REAL_RECIPES]
    if args.recipes is None:
        args.recipes = every
    unknown = set(args.recipes) - set(every)
    if unknown:
        parser.error(
            f"unknown recipes {sorted(unknown)}; known: {', '.join(every)} (define one "
            "with --recipe NAME=OVERRIDES)"
        )
    for names, known in ((args.families, LAYOUT_FAMILIES), (args.tile_families, TILE_FAMILIES)):
        for name in names:
            if name not in known:
                parser.error(f"unknown family {name!r}; known: {', '.join(known)}")
    if args.quick and args.heldout_shape:
        parser.error("--quick and --heldout-shape choose two sizes; pass one")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if len(set(args.seeds)) < len(args.seeds):
        # One run folder a seed: a repeated seed would train it twice at once and count it
        # twice in the mean, the spread and the ensemble.
        parser.error(f"--seeds must be distinct, got {args.seeds}")
    size = SIZES["quick" if args.quick else "full"]
    if args.heldout_shape:
        size = {**size, "layout": SIZES["heldout"]["layout"]}
    if args.train_graphs is not None:
        if args.train_graphs < 1:
            parser.error(f"--train-graphs must be >= 1, got {args.train_graphs}")
        size = {**size, "layout": {**size["layout"], "train": args.train_graphs}}
    if args.out is None:
        # A smoke table must not replace the committed one unless --out names it.
        args.out = args.work / OUT.name if args.quick else OUT
    extra = QUICK_OVERRIDES if args.quick else []
    return args, recipes, size, extra


def log(line: str) -> None:
    print(line, flush=True)


def plan(
    args: argparse.Namespace, recipes: dict, size: dict, extra: list[str]
) -> tuple[list, dict, dict, dict]:
    """The runs of this call, the data written first, in order.

    Returns:
        ``jobs``: ``(key, run folder name, overrides, data)`` per run, keyed ``(task,
        family, recipe, seed)``; ``roots``: each synthetic collection's data root by
        ``(task, family)``; ``tests``: the root holding its labelled test split, where it
        has one (tile: the same root; layout: :func:`write_heldout`'s); ``chosen``: the
        recipes that run, by task.
    """
    chosen = {task: [r for r in args.recipes if r in recipes[task]] for task in recipes}
    jobs, roots, tests = [], {}, {}
    for family in args.families if chosen["layout"] else []:
        index = list(LAYOUT_FAMILIES).index(family)  # the data seed follows the family
        root = roots["layout", family] = write_data(
            args.work, "layout", family, index, size["layout"], args.data_seed, args.search
        )
        held_out = write_heldout(
            args.work, family, index, size["layout"], args.data_seed, args.search
        )
        if held_out is not None:
            tests["layout", family] = held_out
        data = written(root)
        for recipe, seed in itertools.product(chosen["layout"], args.seeds):
            overrides = run_overrides(
                "layout", recipes["layout"][recipe], root, seed, extra, args.search
            )
            name = run_name("layout", family, recipe, seed, args.search)
            jobs.append((("layout", family, recipe, seed), name, overrides, data))
    for family in args.tile_families if chosen["tile"] else []:
        index = list(TILE_FAMILIES).index(family)
        root = roots["tile", family] = write_data(
            args.work, "tile", family, index, size["tile"], args.data_seed
        )
        if size["tile"].get("test"):
            tests["tile", family] = root
        data = written(root)
        for recipe, seed in itertools.product(chosen["tile"], args.seeds):
            overrides = run_overrides("tile", TILE_RECIPES[recipe], root, seed, extra)
            name = run_name("tile", family, recipe, seed, args.search)
            jobs.append((("tile", family, recipe, seed), name, overrides, data))
    swapped = write_swapped(args.work) if chosen["real"] else None
    for recipe, seed in itertools.product(chosen["real"], args.seeds):
        name = f"real-{seed}" if recipe == "real" else f"{recipe}-{seed}"
        overrides = run_overrides("real", REAL_RECIPES[recipe], None, seed, extra)
        jobs.append((("real", None, recipe, seed), name, overrides, None))
        # The pair swapped: the same overrides on the root holding it.
        name = f"{recipe}-swapped-{seed}"
        overrides = [*overrides, f"data.root={swapped}"]
        jobs.append((("real", "swapped", recipe, seed), name, overrides, {"swapped": REAL_SWAPPED}))
    return jobs, roots, tests, chosen


def run_all(jobs: list, args: argparse.Namespace, call: dict) -> tuple[dict, int]:
    """Train (or read back) every run, ``args.jobs`` at a time; returns each run's row by
    its key and the threads each run had."""
    threads = max(1, (os.cpu_count() or 1) // args.jobs)

    def run(job):
        key, name, overrides, data = job
        row = train(args.work / "runs" / name, overrides, threads, log, args.retrain, data, call)
        metric = "top5_error" if key[0] == "tile" else "kendall_tau"
        log(
            f"  {name}: {metric} {row['best'].get(metric, float('nan')):.4f}, "
            f"{row['wall_s']:.0f} s, {row['rss_mb']:.0f} MB"
        )
        return key, row

    log(f"{len(jobs)} runs, {args.jobs} at a time ({_threads(threads)} each)")
    with ThreadPoolExecutor(args.jobs) as pool:
        done = dict(pool.map(run, jobs))
    return done, threads


def recipe_row(
    task: str,
    family: str,
    recipe: str,
    root: Path,
    rows: list[dict],
    args,
    test_root: Path | None = None,
) -> dict:
    """A synthetic collection's row of one recipe: its seeds' metrics (``rows``), their
    spread, and the ensemble of their best checkpoints; the same on the labelled test split
    at ``test_root``, where the collection has one."""
    work, seeds = args.work, args.seeds
    collection = synthetic_collection(task, args.search)
    summary = {
        "wall_s": summarise([r["wall_s"] for r in rows]),
        "rss_mb": max(r["rss_mb"] for r in rows),
        "steps": [r["last_step"] for r in rows],
        "trained_by": [r.get("trained_by") for r in rows],
    }
    # The mean-rank ensemble of the seeds' best checkpoints (the run folders of jobs).
    runs = [work / "runs" / run_name(task, family, recipe, seed, args.search) for seed in seeds]
    ensemble = ensemble_metrics(root, collection, runs) if len(runs) > 1 else None
    if task == "layout":
        summary["tau"] = summarise([r["best"]["kendall_tau"] for r in rows])
        summary["ensemble_tau"] = ensemble and ensemble["kendall_tau"]
        summary["best_member_tau"] = max(summary["tau"]["values"])
    else:
        for k in ERRORS:
            summary[k] = summarise([r["best"][k] for r in rows])
        summary["ensemble"] = ensemble and {k: ensemble[k] for k in ERRORS}
    if test_root is not None:
        # The same checkpoints on the test split, which neither training nor checkpoint
        # selection saw.
        metrics = ("kendall_tau",) if task == "layout" else ERRORS
        tests = [ensemble_metrics(test_root, collection, [r], "test") for r in runs]
        summary["test"] = {k: summarise([t[k] for t in tests]) for k in metrics}
        if len(runs) > 1:
            ens = ensemble_metrics(test_root, collection, runs, "test")
            summary["test_ensemble"] = {k: ens[k] for k in metrics}
    return summary


def real_row(rows: list[dict], swapped: list[dict]) -> dict:
    """A real-sample recipe's row: its seeds on the bundled pair and on the pair swapped."""
    return {
        "tau": summarise([r["best"]["kendall_tau"] for r in rows]),
        "wall_s": summarise([r["wall_s"] for r in rows]),
        "rss_mb": max(r["rss_mb"] for r in rows),
        "trained_by": [r.get("trained_by") for r in rows],
        "swapped": {
            "tau": summarise([r["best"]["kendall_tau"] for r in swapped]),
            "trained_by": [r.get("trained_by") for r in swapped],
        },
    }


def main(argv: list[str] | None = None) -> int:
    try:
        return build(argv)
    except KeyboardInterrupt:  # Ctrl-C reaches the runs too: each saves and stops
        print(
            "interrupted; the same command continues: finished runs are read back, the "
            "others train again",
            file=sys.stderr,
        )
        return 130


def build(argv: list[str] | None) -> int:
    """Train (or read back) the runs of this call and write the table; see the module
    docstring."""
    args, recipes, size, extra = parse(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    command = shlex.join(["python", "scripts/quality.py", *(argv or sys.argv[1:])])
    call = {"command": command, "started": started}
    previous = None
    if args.update:
        # Sizes are checked per task, row by row (keep_previous).
        measured_as = {
            "seeds": args.seeds,
            "jobs": args.jobs,
            "data_seed": args.data_seed,
            "search": args.search,
        }
        previous = read_previous(args.out.with_suffix(".json"), measured_as)
    jobs, roots, tests, chosen = plan(args, recipes, size, extra)
    done, threads = run_all(jobs, args, call)

    # Each recipe's config key, composed once (a layout recipe's rows share it).
    config_keys = {
        (task, r): config_key(task, recipes[task][r], extra, table_train_graphs(task, size))
        for task in chosen
        for r in chosen[task]
    }
    results: dict = {"layout": {}, "tile": {}, "real": {}}
    for (task, family), root in roots.items():
        collection = synthetic_collection(task, args.search)
        entry = {"oracle": oracle_metrics(root, collection, "valid"), "recipes": {}}
        test_root = tests.get((task, family))
        if test_root is not None:
            entry["test_oracle"] = oracle_metrics(test_root, collection, "test")
        for recipe in chosen[task]:
            rows = [done[task, family, recipe, seed] for seed in args.seeds]
            row = recipe_row(task, family, recipe, root, rows, args, test_root)
            entry["recipes"][recipe] = {
                "overrides": recipes[task][recipe],
                "config": config_keys[task, recipe],
                **row,
            }
        results[task][family] = entry
    for recipe in chosen["real"]:
        rows = [done["real", None, recipe, seed] for seed in args.seeds]
        swapped = [done["real", "swapped", recipe, seed] for seed in args.seeds]
        results["real"][recipe] = {
            "overrides": REAL_RECIPES[recipe],
            "config": config_keys["real", recipe],
            **real_row(rows, swapped),
        }

    results["meta"] = {
        "started": started,
        "seeds": args.seeds,
        "jobs": args.jobs,
        "threads": threads,
        "sizes": size,
        "data_seed": args.data_seed,
        "search": args.search,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "command": command,
    }
    if previous is not None:
        keep_previous(previous, results, log, recipes, extra)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    args.out.write_text(render(results))
    log(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


def table_rows(results: dict) -> list[tuple[str, dict]]:
    """Every row of the table, named as the header names it ("family recipe")."""
    rows = [
        (f"{family} {recipe}", row)
        for task in ("layout", "tile")
        for family, entry in results[task].items()
        for recipe, row in entry["recipes"].items()
    ]
    return rows + [(f"real {recipe}", row) for recipe, row in results["real"].items()]


def kept_lines(results: dict) -> list[str]:
    """The header's account of rows an ``--update`` kept: which call measured which rows."""
    calls: dict[tuple, list[str]] = {}
    for name, row in table_rows(results):
        if "measured" in row:
            call = (row["measured"]["command"], row["measured"]["started"])
            calls.setdefault(call, []).append(name)
    return [
        f"\nKept from `{command}`, {started} (`--update`): {', '.join(names)}."
        for (command, started), names in calls.items()
    ]


def read_back_lines(results: dict) -> list[str]:
    """The header's account of runs read back from ``--work``: which earlier call trained
    them (a row's runs trained by the call that measured it go unnamed)."""
    meta = results["meta"]
    calls: dict[tuple | None, list[str]] = {}
    for name, row in table_rows(results):
        measured = row.get("measured", meta)  # a swapped sub-row shares its row's call
        parts = [(name, row), *([(f"{name} swapped", row["swapped"])] if "swapped" in row else [])]
        for part_name, part in parts:
            if "trained_by" not in part:  # a row from before runs recorded their call
                continue
            seeds: dict[tuple | None, list[str]] = {}
            for seed, by in zip(meta["seeds"], part["trained_by"], strict=True):
                call = None if by is None else (by["command"], by["started"])
                if call != (measured["command"], measured["started"]):
                    seeds.setdefault(call, []).append(str(seed))
            for call, which in seeds.items():
                label = "seed" if len(which) == 1 else "seeds"
                calls.setdefault(call, []).append(f"{part_name} ({label} {', '.join(which)})")
    lines = []
    for call, names in calls.items():
        trained = (
            "trained before runs recorded their call"
            if call is None
            else f"trained by `{call[0]}`, {call[1]}"
        )
        lines.append(f"\nRead back from `--work`, {trained}: {', '.join(names)}.")
    return lines


def tau_cells(tau: dict | None) -> tuple[str, str]:
    """A real row's tau cells: mean +- std, and the seeds' values (blank without a tau)."""
    if tau is None:
        return "", ""
    return fmt(tau), ", ".join(f"{v:.3f}" for v in tau["values"])


def tile_cells(errors: dict, ensemble: dict | None, oracle: dict) -> str:
    """A tile row's error cells: mean +- std per K, the ensemble's, the oracle's, top-5 ratio."""
    top5 = errors["top5_error"]["mean"]
    ratio = top5 / oracle["top5_error"] if oracle["top5_error"] else float("inf")
    ens = "" if ensemble is None else " / ".join(f"{ensemble[k]:.4f}" for k in ERRORS)
    return (
        " | ".join(fmt(errors[k], 4) for k in ERRORS)
        + f" | {ens} | {' / '.join(f'{oracle[k]:.4f}' for k in ERRORS)} | {ratio:.2f}x"
    )


def layout_held_out_lines(results: dict) -> list[str]:
    """The layout table's rows on the collections' test graphs (none without any)."""
    tested = [
        (family, entry, recipe, r)
        for family, entry in results["layout"].items()
        for recipe, r in entry["recipes"].items()
        if "test" in r and "test_oracle" in entry
    ]
    if not tested:
        return []
    untested = [
        f"{family} {recipe}"
        for family, entry in results["layout"].items()
        for recipe, r in entry["recipes"].items()
        if "test" not in r
    ]
    test = results["meta"]["sizes"]["layout"]["test"]
    lines = [
        "",
        f"Layout, held out: the same checkpoints on {test} more labelled graphs of each "
        "collection (its test split, written where no run reads) that neither training nor "
        "checkpoint selection saw. Valid tau also chose each checkpoint; this one did not. "
        "best seed: the seed best here; ensemble - best seed: what the seeds' ensemble adds "
        "to it.",
        *(
            [
                "Rows without numbers here (measured before the table had them, or on other "
                f"test graphs): {', '.join(untested)}."
            ]
            if untested
            else []
        ),
        "",
        "| family | recipe | tau | % of oracle | best seed | ensemble tau | ensemble - best seed "
        "| oracle tau |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for family, entry, recipe, r in tested:
        oracle = entry["test_oracle"]["kendall_tau"]
        tau = r["test"]["kendall_tau"]
        best = max(tau["values"])
        ens = (r.get("test_ensemble") or {}).get("kendall_tau")
        ens_cells = " | |" if ens is None else f"{ens:.3f} | {ens - best:+.3f} |"
        lines.append(
            f"| {family} | {recipe} | {fmt(tau)} | {100 * tau['mean'] / oracle:.0f}% | "
            f"{best:.3f} | {ens_cells} {oracle:.3f} |"
        )
    return lines


def render(results: dict) -> str:
    meta = results["meta"]
    lay, tile = meta["sizes"]["layout"], meta["sizes"]["tile"]
    lines = [
        "# Ranking quality on synthetic collections (scripts/quality.py)",
        "",
        f"`{meta['command']}`, {meta['started']}, {meta['machine']}; seeds {meta['seeds']}.",
        *kept_lines(results),
        *read_back_lines(results),
        "",
        f"Layout: {layout_collection(meta.get('search', 'random'))}, "
        f"{lay['train']} train / {lay['valid']} valid graphs of "
        f"{lay['nodes'][0]}-{lay['nodes'][1]} nodes, {lay['configs'][1]} configs, one collection "
        f"per cost-model family (data seed {meta.get('data_seed', DATA_SEED)} + the family's "
        "index). tau: validation Kendall "
        "tau over every config of the valid graphs, best checkpoint, mean +- std over seeds; "
        "ensemble: the seeds' best checkpoints, mean rank per graph; oracle: the family's "
        "noise-free cost against its noisy runtimes (the ceiling). Wall and peak RSS: one "
        f"`train.py` process (mean wall, max RSS), {meta['jobs']} at a time with "
        f"{_threads(meta['threads'])} each.",
        "",
        "| family | recipe | tau | % of oracle | best seed | ensemble tau | oracle tau | wall s | "
        "peak RSS MB | steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family, entry in results["layout"].items():
        oracle = entry["oracle"]["kendall_tau"]
        for recipe, r in entry["recipes"].items():
            ens = "" if r["ensemble_tau"] is None else f"{r['ensemble_tau']:.3f}"
            lines.append(
                f"| {family} | {recipe} | {fmt(r['tau'])} | {100 * r['tau']['mean'] / oracle:.0f}%"
                f" | {r['best_member_tau']:.3f} | {ens} | {oracle:.3f} | "
                f"{r['wall_s']['mean']:.0f} | {r['rss_mb']:.0f} | "
                f"{', '.join(str(s) for s in r['steps'])} |"
            )
    lines += layout_held_out_lines(results)
    defined = {
        recipe: r["overrides"]
        for entry in results["layout"].values()
        for recipe, r in entry["recipes"].items()
        if recipe not in LAYOUT_RECIPES and "overrides" in r
    }
    if defined:
        lines += ["", "Recipes defined on the command line (`--recipe`):", ""]
        lines += [f"- `{name}`: `{shlex.join(o)}`" for name, o in defined.items()]
    if results["tile"]:
        lines += [
            "",
            f"Tile: {tile['train']} train / {tile['valid']} valid kernels of "
            f"{tile['nodes'][0]}-{tile['nodes'][1]} nodes, {tile['configs'][0]}-"
            f"{tile['configs'][1]} configs. Errors as the official metric (lower is better), "
            "best checkpoint, mean +- std over seeds; ensemble: the seeds' best checkpoints, "
            "mean rank per graph; oracle: ranking by the noise-free cost (a model that knows "
            "the cost function).",
            "",
            "| family | recipe | top-1 error | top-5 error | top-10 error | ensemble top-1 / 5 / "
            "10 | oracle top-1 / 5 / 10 | top-5 / oracle | wall s | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for family, entry in results["tile"].items():
            o = entry["oracle"]
            for recipe, r in entry["recipes"].items():
                lines.append(
                    f"| {family} | {recipe} | {tile_cells(r, r.get('ensemble'), o)} | "
                    f"{r['wall_s']['mean']:.0f} | {r['rss_mb']:.0f} |"
                )
        tested = [
            (family, entry, recipe, r)
            for family, entry in results["tile"].items()
            for recipe, r in entry["recipes"].items()
            if "test" in r and "test_oracle" in entry
        ]
        if tested:
            lines += [
                "",
                f"Tile, held out: the same checkpoints on {tile['test']} more labelled kernels of "
                "each family that neither training nor checkpoint selection saw: the tile goal's "
                "measure.",
                "",
                "| family | recipe | top-1 error | top-5 error | top-10 error | ensemble top-1 / 5 "
                "/ 10 | oracle top-1 / 5 / 10 | top-5 / oracle |",
                "|---|---|---|---|---|---|---|---|",
            ]
        for family, entry, recipe, r in tested:
            cells = tile_cells(r["test"], r.get("test_ensemble"), entry["test_oracle"])
            lines.append(f"| {family} | {recipe} | {cells} |")
    if results["real"]:
        lines += [
            "",
            "Real sample (transfer): train unet3d, validate unet_3d.4x4.bf16 on the official "
            "1000 indices (`real`: `python train.py`, the quick start); swapped: train "
            "unet_3d.4x4.bf16, validate unet3d on all its configs. One validation graph "
            "each: a mean of 3 seeds moves by ~0.03 with the initialisation alone.",
            "",
            "| recipe | tau | per seed | swapped: tau | per seed | wall s | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for recipe, r in results["real"].items():
            # Rows measured before the swapped pair have no "swapped": blank cells.
            cells = [*tau_cells(r["tau"]), *tau_cells(r.get("swapped", {}).get("tau"))]
            lines.append(
                f"| {recipe} | {' | '.join(cells)} | {r['wall_s']['mean']:.0f} | "
                f"{r['rss_mb']:.0f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
