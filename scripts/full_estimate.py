"""How long a recipe takes on the full layout collections, from real-shape synthetic graphs.

    python scripts/full_estimate.py                                  # experiment=layout_fast
    python scripts/full_estimate.py --override experiment=layout_gst --steps 10

For each layout source, synthetic graphs of the real collection's average and largest size
(nodes per graph as the release's statistics give them, in ``SOURCES`` below; 5%
configurable, as many configs as a validation scores) are written, the recipe trains on
them for ``--steps`` steps in a ``train.py`` process of its own, and its seconds per step
and per validated config are read from the run's output, with the peak resident memory the
process reports of itself.

A real file holds far more configs than a step samples (the random searches average 11,648
configs per xla graph and 66,089 per nlp graph), and without ``data.cache_dir`` an item
decompresses that graph's whole ``node_config_feat`` to sample 32 rows of it. So a graph
of the average size with the average number of configs is written too, and building one
training item from it is timed without the cache and from the memory-mapped cache (after
its one-time fill); what that costs beyond the 1000-config file's item is added to every
step and to every validated graph. A recipe that de-duplicates its train graphs' configs
(``data.dedup``) makes one more pass over each train graph's config features, when it is
first drawn: timed from the filled cache, it is added once per train graph.

The full run's time is then: the recipe's budget in steps (its epochs x the collection's
train graphs, or its ``max_steps``) x seconds per step, plus its validations (every valid
graph, 1000 configs each) x seconds per config, once without and once with the cache.
Measured on this machine's CPU: a GPU only shortens the model's part. Writes the table to
stdout (and ``--out``, markdown); ``benchmarks/full_estimate.md`` is layout_fast's, and the
README's "Getting the full dataset" quotes it.
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from tpulearn.data import LayoutDataset, UniformSampler
from tpulearn.data.synthetic import write_layout_collection
from tpulearn.training.budget import Cadence, step_budget

REPO = Path(__file__).resolve().parents[1]
# The release's layout collections (78 xla and 244 nlp graphs, split 80/10/10): train
# graphs, valid graphs, nodes per graph (average, largest), configs per graph of the random
# search (average).
SOURCES = {
    "xla": {"train": 61, "valid": 7, "nodes": (14_105, 43_615), "configs": 11_648},
    "nlp": {"train": 198, "valid": 20, "nodes": (5_659, 21_919), "configs": 66_089},
}
VALID_CONFIGS = 1000  # the official validation subset per graph
CONFIGURABLE = 0.05


def budget(overrides: list[str], train_graphs: int, collection: str) -> dict:
    """The recipe's composed budget on a collection of ``train_graphs`` graphs, and its
    ``data.dedup``."""
    with initialize_config_dir(str(REPO / "configs"), version_base=None):
        cfg = compose("config", [*overrides, f"data={collection}", "data.root=/nonexistent"])
    t = cfg.trainer
    plan = step_budget(
        t.max_steps, t.max_epochs, train_graphs, t.graphs_per_batch, 1, t.min_epoch_graphs
    )
    cadence = Cadence.of(t.val_every, plan)
    # Every period's end validates, and the last step does in any case.
    validations = cadence.count(0, plan.steps) + (not cadence.due(plan.steps))
    return {"steps": plan.steps, "validations": validations, "dedup": cfg.data.dedup}


def measure(overrides: list[str], source: str, nodes: int, steps: int, work: Path) -> dict:
    root = work / f"{source}-{nodes}"
    write_graphs(root, source, nodes, VALID_CONFIGS, {"train": 2, "valid": 1, "test": 0})
    cmd = [sys.executable, "train.py", *overrides, "data=synthetic", f"data.root={root}"]
    cmd += [f"data.collection=layout:{source}:random", f"trainer.max_steps={steps}"]
    cmd += ["trainer.max_epochs=null", f"trainer.val_every={steps}", "trainer.val_at_start=false"]
    cmd += [f"trainer.log_every={steps}", "trainer.progress=false", "trainer.patience=0"]
    cmd += [f"hydra.run.dir={work / 'runs' / f'{source}-{nodes}'}", "trainer.overwrite=true"]
    print("$", shlex.join(cmd[1:]), flush=True)
    log = work / f"{source}-{nodes}.log"
    with open(log, "w") as out:
        code = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode
    text = log.read_text()
    if code:
        raise RuntimeError(f"train.py failed:\n{text[-3000:]}")
    step = re.search(r"\| ([0-9.]+) s/step", text)
    valid = re.search(rf"valid step {steps} \(([0-9.]+) s\)", text)
    # The process's own peak (wait4's would also hold this script's, inherited via exec).
    peak = re.search(r"^peak memory: ([\d,]+) MB", text, re.MULTILINE)
    if not (step and valid and peak):
        raise RuntimeError(f"no step time, validation time or peak memory in:\n{text[-2000:]}")
    return {
        "s_per_step": float(step.group(1)),
        "s_per_config": float(valid.group(1)) / VALID_CONFIGS,
        "rss_mb": float(peak.group(1).replace(",", "")),
    }


def write_graphs(root: Path, source: str, nodes: int, configs: int, graphs: dict) -> None:
    write_layout_collection(
        root,
        source,
        "random",
        num_graphs=graphs,
        nodes=(nodes, nodes),
        configurable_fraction=CONFIGURABLE,
        configs=(configs, configs),
        seed=5,
    )


def item_seconds(
    root: Path, source: str, cache: Path | None, repeats: int = 3, dedup: bool | str = False
) -> dict:
    """Seconds to build one training item (32 configs drawn uniformly) of the one train
    graph under ``root``: the first read (which fills the cache, and de-duplicates the
    graph's configs with ``dedup``) and the median of the next ``repeats``."""
    ds = LayoutDataset(
        root, source, "random", "train", sampler=UniformSampler(32), cache_dir=cache, dedup=dedup
    )
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        ds[0]
        times.append(time.perf_counter() - start)
    feat = ds.read(0).node_config_feat
    return {
        "first": times[0],
        "median": statistics.median(times[1:]),
        "gb": feat.size * feat.itemsize / 1e9,
    }


def read_cost(source: str, nodes: int, configs: int, work: Path, dedup: bool | str = False) -> dict:
    """What reading a graph of ``configs`` configs costs beyond one of VALID_CONFIGS.

    Returns seconds per item without the cache (``plain``) and from the filled cache
    (``cached``), each minus the item of the VALID_CONFIGS-config graph that the timed
    steps read; the cache's one-time fill (``fill``); the one-time de-duplication of the
    graph's configs under ``dedup`` (``dedup``: its first item from the filled cache less
    a later one; 0 without it), and ``node_config_feat``'s size in GB (what an item
    without the cache holds in memory, and the cache's file on disk).
    """
    base = work / f"read-{source}-{VALID_CONFIGS}"
    real = work / f"read-{source}-{configs}"
    one = {"train": 1, "valid": 0, "test": 0}
    write_graphs(base, source, nodes, VALID_CONFIGS, one)
    write_graphs(real, source, nodes, configs, one)
    small = item_seconds(base, source, None)["median"]
    plain = item_seconds(real, source, None)
    cached = item_seconds(real, source, work / "cache")
    deduped = item_seconds(real, source, work / "cache", dedup=dedup) if dedup else None
    return {
        "plain": plain["median"] - small,
        "cached": cached["median"] - small,
        "fill": cached["first"],
        "dedup": deduped["first"] - deduped["median"] if deduped else 0.0,
        "gb": plain["gb"],
    }


def check_overrides(overrides: list[str]) -> str | None:
    """Why ``train.py`` would refuse ``overrides``, in one line (None: it would not),
    before any graph is written: a misspelt key gets the key likely meant."""
    from hydra.errors import HydraException

    from tpulearn.cli import key_hints

    try:
        budget(overrides, 1, "layout_xla_random")
    except HydraException as exc:
        hints = key_hints("config", overrides)
        if not hints:  # Hydra's message (an unknown experiment lists the known ones)
            return " ".join(str(exc).split("Config search path")[0].split())
        unknown = {line.split(" ")[0] for line in hints}
        known = [o for o in overrides if o.partition("=")[0].lstrip("+~") not in unknown]
        command = shlex.join(["python", "train.py", *known, "--cfg", "job"])
        return f"{'; '.join(hints)} ({command} prints every key)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--override",
        nargs="+",
        default=["experiment=layout_fast"],
        metavar="KEY=VALUE",
        help="train.py overrides: the recipe timed (default: experiment=layout_fast)",
    )
    parser.add_argument(
        "--steps", type=int, default=20, help="timed steps per graph size (default: 20)"
    )
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    problem = check_overrides(args.override)
    if problem:
        parser.error(f"--override: {problem}")
    lines = [
        f"Recipe `{' '.join(args.override)}`, timed on this machine's CPU ({args.steps} steps "
        "per size, synthetic layout random graphs of the release's average and largest size, "
        f"{CONFIGURABLE:.0%} configurable, {VALID_CONFIGS} configs). Reading a file of the "
        "release's average number of configs (random search) adds to every step and every "
        "validated graph what the read columns say: without `data.cache_dir` the whole "
        "`node_config_feat` is decompressed for each item; with it, a memory-mapped copy "
        "is filled once per graph (the fill column, per graph) and items read only their rows. "
        "A recipe with `data.dedup` makes one pass over each train graph's config features "
        "when it is first drawn (the dedup column, per train graph; in both totals).",
        "",
        "| source | budget steps | validations | s/step avg / largest graph | "
        "s per valid config | peak RSS MB avg / largest graph | configs per graph | "
        "node_config_feat GB | read s/item, no cache / cache (fill) | dedup s | "
        "total h, no cache | total h, cache |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for source, shape in SOURCES.items():
            plan = budget(args.override, shape["train"], f"layout_{source}_random")
            avg = measure(args.override, source, shape["nodes"][0], args.steps, Path(tmp))
            big = measure(args.override, source, shape["nodes"][1], args.steps, Path(tmp))
            read = read_cost(source, shape["nodes"][0], shape["configs"], Path(tmp), plan["dedup"])
            train_s = plan["steps"] * avg["s_per_step"]
            valid_s = plan["validations"] * shape["valid"] * VALID_CONFIGS * avg["s_per_config"]
            reads = plan["steps"] + plan["validations"] * shape["valid"]
            dedups = shape["train"] * read["dedup"]
            plain_h = (train_s + valid_s + reads * read["plain"] + dedups) / 3600
            fills = (shape["train"] + shape["valid"]) * read["fill"]
            cached_h = (train_s + valid_s + reads * read["cached"] + fills + dedups) / 3600
            lines.append(
                f"| {source} | {plan['steps']:,} | {plan['validations']:,} | "
                f"{avg['s_per_step']:.3f} / {big['s_per_step']:.3f} | "
                f"{avg['s_per_config'] * 1e3:.2f} ms | "
                f"{avg['rss_mb']:,.0f} / {big['rss_mb']:,.0f} | {shape['configs']:,} | "
                f"{read['gb']:.2f} | {read['plain']:+.2f} / {read['cached']:+.3f} "
                f"({read['fill']:.1f}) | {read['dedup']:.1f} | {plain_h:.1f} | {cached_h:.1f} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
