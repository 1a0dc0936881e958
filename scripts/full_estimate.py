"""How long a recipe takes on the full layout collections, from real-shape synthetic graphs.

    python scripts/full_estimate.py                                  # experiment=layout_fast
    python scripts/full_estimate.py --override experiment=layout_gst --steps 10

For each layout source, synthetic graphs of the real collection's average and largest size
(nodes from ../TPUGRAPHS.md's table, 5% configurable, as many configs as a validation
scores) are written, the recipe trains on them for ``--steps`` steps in a ``train.py``
process of its own, and its seconds per step and per validated config are read from the
run's output. The full run's time is then: the recipe's budget in steps (its epochs x the
collection's train graphs, or its ``max_steps``) x seconds per step, plus its validations
(every valid graph, 1000 configs each) x seconds per config. Measured on this machine's
CPU: a GPU only shortens it. The peak resident memory of each ``train.py`` process (which
also validates 1000 configs of its graph) says what the largest graph needs. Writes the
table to stdout (and ``--out``, markdown).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from tpulearn.data.synthetic import write_layout_collection
from tpulearn.training.budget import Cadence, step_budget

REPO = Path(__file__).resolve().parents[1]
# The release (TPUGRAPHS.md): train graphs (80% of the graphs), valid graphs, nodes
# per graph (average, largest).
SOURCES = {
    "xla": {"train": 61, "valid": 7, "nodes": (14_105, 43_615)},
    "nlp": {"train": 198, "valid": 20, "nodes": (5_659, 21_919)},
}
VALID_CONFIGS = 1000  # the official validation subset per graph


def budget(overrides: list[str], train_graphs: int, collection: str) -> dict:
    """The recipe's composed budget on a collection of ``train_graphs`` graphs."""
    with initialize_config_dir(str(REPO / "configs"), version_base=None):
        cfg = compose("config", [*overrides, f"data={collection}", "data.root=/nonexistent"])
    t = cfg.trainer
    plan = step_budget(t.max_steps, t.max_epochs, train_graphs, t.graphs_per_batch)
    cadence = Cadence.of(t.val_every, plan)
    # Every period's end validates, and the last step does in any case.
    validations = cadence.count(0, plan.steps) + (not cadence.due(plan.steps))
    return {"steps": plan.steps, "validations": validations}


def measure(overrides: list[str], source: str, nodes: int, steps: int, work: Path) -> dict:
    root = work / f"{source}-{nodes}"
    write_layout_collection(
        root,
        source,
        "random",
        num_graphs={"train": 2, "valid": 1, "test": 0},
        nodes=(nodes, nodes),
        configurable_fraction=0.05,
        configs=(VALID_CONFIGS, VALID_CONFIGS),
        seed=5,
    )
    cmd = [sys.executable, "train.py", *overrides, "data=synthetic", f"data.root={root}"]
    cmd += [f"data.collection=layout:{source}:random", f"trainer.max_steps={steps}"]
    cmd += ["trainer.max_epochs=null", f"trainer.val_every={steps}", "trainer.val_at_start=false"]
    cmd += [f"trainer.log_every={steps}", "trainer.progress=false", "trainer.patience=0"]
    cmd += [f"hydra.run.dir={work / 'runs' / f'{source}-{nodes}'}", "trainer.overwrite=true"]
    print("$", shlex.join(cmd[1:]), flush=True)
    log = work / f"{source}-{nodes}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this process alone
    text = log.read_text()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"train.py failed:\n{text[-3000:]}")
    step = re.search(r"\| ([0-9.]+) s/step", text)
    valid = re.search(rf"valid step {steps} \(([0-9.]+) s\)", text)
    if not (step and valid):
        raise RuntimeError(f"no step or validation time in the output:\n{text[-2000:]}")
    seconds = float(valid.group(1))
    return {
        "s_per_step": float(step.group(1)),
        "s_per_config": seconds / VALID_CONFIGS,
        "rss_mb": usage.ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--override", nargs="+", default=["experiment=layout_fast"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per graph size")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    lines = [
        f"Recipe `{' '.join(args.override)}`, timed on this machine's CPU ({args.steps} steps "
        "per size, synthetic layout random graphs of the release's average and largest size, "
        "5% configurable).",
        "",
        "| source | budget steps | validations | s/step avg / largest graph | "
        "s per valid config | train h (avg graphs) | validation h | total h | "
        "peak RSS MB avg / largest graph |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for source, shape in SOURCES.items():
            plan = budget(args.override, shape["train"], f"layout_{source}_random")
            avg = measure(args.override, source, shape["nodes"][0], args.steps, Path(tmp))
            big = measure(args.override, source, shape["nodes"][1], args.steps, Path(tmp))
            train_h = plan["steps"] * avg["s_per_step"] / 3600
            valid_h = (
                plan["validations"] * shape["valid"] * VALID_CONFIGS * avg["s_per_config"] / 3600
            )
            lines.append(
                f"| {source} | {plan['steps']:,} | {plan['validations']:,} | "
                f"{avg['s_per_step']:.3f} / {big['s_per_step']:.3f} | "
                f"{avg['s_per_config'] * 1e3:.2f} ms | {train_h:.2f} | {valid_h:.2f} | "
                f"{train_h + valid_h:.2f} | {avg['rss_mb']:,.0f} / {big['rss_mb']:,.0f} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
