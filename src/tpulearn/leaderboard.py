"""Leaderboard reproduction: the experiment config of each collection, over several seeds,
next to the paper's numbers, plus a validated Kaggle submission.

    from tpulearn.leaderboard import run_leaderboard
    board = run_leaderboard("sample", "outputs/leaderboard", seeds=[0, 1, 2])
    board.markdown  # outputs/leaderboard/leaderboard.md

For each requested collection and seed, ``configs/experiment/<collection>.yaml`` (e.g.
``layout_xla_default``) is composed with Hydra and trained into ``OUT/<name>/seed<k>/``;
a finished run there whose stored config matches is reused, an interrupted one resumed.
Each best checkpoint is evaluated on valid; the seed with the best valid score scores the
test split. A layout collection without a train split in the root (the bundled sample's
nlp collections) is scored by the model of another layout collection of the root (they
share the feature schema) and marked as such; its valid metrics are those of that
transferred model, or n/a without a valid split.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .data import sample_root
from .data.schema import COLLECTIONS, SPLITS, parse_collection
from .evaluate import kaggle_score
from .submission import merge_submissions, validate_submission

CONFIG_DIR = Path(__file__).parent / "configs"

PAPER_SOURCE = (
    "TpuGraphs paper (Phothilimthana et al., arXiv 2308.13490), as transcribed in "
    "TPUGRAPHS.md: layout = GraphSAGE with graph segment training, tile = EarlyJoin SAGE "
    "with ListMLE"
)
# Top-K error in percent, (validation, test), from the paper's tables.
PAPER_TOP_K_ERROR_PERCENT: dict[str, dict[int, tuple[float, float]]] = {
    "tile:xla": {1: (10.0, 10.0), 5: (3.2, 4.3), 10: (2.1, 2.9)},
    "layout:xla:default": {1: (1.7, 1.6), 10: (0.5, 0.5), 100: (0.1, 0.1)},
    "layout:xla:random": {1: (24.3, 25.3), 10: (6.4, 10.4), 100: (0.4, 1.2)},
    "layout:nlp:default": {1: (2.3, 3.0), 10: (0.2, 0.2), 100: (0.1, 0.1)},
    "layout:nlp:random": {1: (23.7, 24.5), 10: (7.4, 8.0), 100: (1.8, 2.7)},
}
KAGGLE_SOURCE = (
    "Kaggle 'Fast or Slow? Predict AI Model Runtime', as summarised in TPUGRAPHS.md: strong "
    "single models' validation scores, and the official TF baseline's Kendall tau"
)
# Validation score (Kendall tau; tile: 1 - top-5 error) of strong single models.
KAGGLE_STRONG_SINGLE_MODEL = {
    "tile:xla": "about 0.975",
    "layout:xla:default": "0.37 - 0.46",
    "layout:xla:random": "0.67 - 0.71",
    "layout:nlp:default": "0.51 - 0.55",
    "layout:nlp:random": "0.93 - 0.96",
}
KAGGLE_TF_BASELINE = {
    "tile:xla": "n/a",
    "layout:xla:default": "0.12",
    "layout:xla:random": "0.18",
    "layout:nlp:default": "0.32",
    "layout:nlp:random": "0.72",
}
KAGGLE_BEST_PRIVATE = "1st place: best single model 0.714 private, ensemble 0.736"

# Keys the leaderboard sets for every run itself.
RESERVED = ("experiment", "data", "data.root", "data.collection", "trainer.seed", "out_dir")
RESERVED += ("trainer.resume",)
# Config keys that do not change what a run trains: ignored when reusing a checkpoint.
IGNORED_KEYS = {
    "out_dir",
    "trainer.progress",
    "trainer.log_every",
    "trainer.resume",
    "trainer.device",
    "data.eval_chunk",
    "data.cache_dir",
    "model.segments_per_batch",
}


def experiment_name(collection: str) -> str:
    """``"layout:xla:default"`` -> ``"layout_xla_default"`` (also the run folder name)."""
    return collection.replace(":", "_")


@dataclass
class Run:
    """One (collection, seed): a trained or reused model, or a transferred one."""

    collection: str
    seed: int
    status: str  # trained | resumed | reused | transfer
    run_dir: Path
    checkpoint: Path
    model_from: str  # the collection whose train split the model learned from
    best_step: int | None = None
    valid: dict | None = None  # evaluate() metrics on valid; None without a valid split


@dataclass
class Row:
    """One collection of the leaderboard: its runs and the test submission part."""

    collection: str
    runs: list[Run]
    graphs: dict[str, int]  # npz files per split in the root
    note: str = ""
    submission_seed: int | None = None
    submission_part: Path | None = None
    submission_why: str = ""

    @property
    def transfer_from(self) -> str | None:
        source = self.runs[0].model_from
        return source if source != self.collection else None

    def values(self, metric: str) -> list[float]:
        return [r.valid[metric] for r in self.runs if r.valid and metric in r.valid]

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        """Sample standard deviation over seeds (ddof 1); None for fewer than 2 seeds."""
        values = self.values(metric)
        return statistics.stdev(values) if len(values) > 1 else None


@dataclass
class Leaderboard:
    """What :func:`run_leaderboard` made: rows, runs, the Kaggle-style score (None and
    ``kaggle_note`` saying why when absent), the merged submission and the tables."""

    rows: list[Row]
    runs: list[Run]  # every trained run, transfer sources included
    kaggle_score: float | None
    kaggle_note: str
    submission: Path | None
    submission_note: str
    markdown: Path
    json: Path
    settings: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------ inputs


def resolve_root(root: str | Path | None) -> tuple[Path, str]:
    """``(folder, value for data.root)``; ``"sample"``/None is the bundled sample."""
    if root is None or str(root) == "sample":
        return sample_root(), "sample"
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"--root {root}: no such folder; expected a TpuGraphs data root holding "
            "npz/{tile,layout}/..., or 'sample' for the bundled files"
        )
    if not (path / "npz").is_dir():
        raise FileNotFoundError(f"--root {root}: no npz/ folder in it; not a TpuGraphs data root")
    return path, str(path)


def split_counts(root: Path, collection: str) -> dict[str, int]:
    """``{split: number of npz files}`` of one collection under a data root."""
    folder = Path(root, "npz", *collection.split(":"))
    return {s: len(list((folder / s).glob("*.npz"))) for s in SPLITS}


def _check_collections(collections: Sequence[str]) -> list[str]:
    if not collections:
        raise ValueError("--collections: name at least one collection")
    for name in collections:
        if name not in COLLECTIONS:
            raise ValueError(
                f"--collections: unknown collection {name!r}; choose from {COLLECTIONS}"
            )
    if len(set(collections)) != len(collections):
        raise ValueError(f"--collections: repeated collection in {list(collections)}")
    return [c for c in COLLECTIONS if c in collections]  # the paper's order


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds) or any(int(s) != s or s < 0 for s in seeds):
        raise ValueError(f"--seeds: expected distinct non-negative integers, got {list(seeds)}")
    return [int(s) for s in seeds]


def _check_overrides(overrides: Sequence[str], option: str) -> list[str]:
    for item in overrides:
        key, eq, _ = item.partition("=")
        key = key.lstrip("+~")
        if not eq or not key:
            raise ValueError(f"{option}: expected KEY=VALUE, got {item!r}")
        if key in RESERVED or key.startswith("hydra"):
            raise ValueError(
                f"{option} {item!r}: {key} is set by the leaderboard for each run "
                "(use --root, --seeds, --out, --collections)"
            )
    return list(overrides)


def plan_sources(root: Path, collections: Sequence[str]) -> dict[str, str]:
    """``{collection: collection whose trained model scores it}``.

    A collection with train and valid files trains its own model. A layout collection
    without train files borrows one from the root: another layout collection of the same
    source, else of the same search, else any, that has train and valid files.

    Raises:
        ValueError: a collection with no files, train files without a valid split, or
            nothing to borrow a model from.
    """
    counts = {c: split_counts(root, c) for c in COLLECTIONS}
    trainable = [c for c in COLLECTIONS if counts[c]["train"] and counts[c]["valid"]]
    sources = {}
    for name in collections:
        n = counts[name]
        where = f"{root}/npz/{name.replace(':', '/')}"
        if not any(n.values()):
            raise ValueError(
                f"{name}: no npz files under {where}/{{train,valid,test}}; "
                "leave it out with --collections"
            )
        if n["train"] and not n["valid"]:
            raise ValueError(
                f"{name}: {n['train']} train files but no valid split ({where}/valid/*.npz): "
                "training selects its checkpoint on valid"
            )
        if n["train"]:
            sources[name] = name
            continue
        task, source, search = parse_collection(name)
        donors = [c for c in trainable if c.startswith(f"{task}:")]
        donors.sort(key=lambda c: (parse_collection(c)[1] != source, c.split(":")[2] != search))
        if not donors:
            raise ValueError(
                f"{name}: no train split in {root} and no other {task} collection there with "
                "train and valid files to borrow a model from"
            )
        sources[name] = donors[0]
    return sources


# ------------------------------------------------------------------------------ runs


def compose(name: str, overrides: Sequence[str]):
    """A Hydra config composed from the package's configs (``config`` or ``eval``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(name, overrides=list(overrides))


def quote(value) -> str:
    """A path as a quoted Hydra override value (spaces, commas and ``=`` are safe)."""
    return "'" + str(value).replace("'", "\\'") + "'"


def _run_config(collection, seed, run_dir, root_value, overrides):
    from hydra.errors import HydraException

    args = [
        f"experiment={experiment_name(collection)}",
        *overrides,
        f"data.root={quote(root_value)}",
        f"trainer.seed={seed}",
        f"out_dir={quote(run_dir)}",
    ]
    try:
        return compose("config", args)
    except HydraException as exc:
        raise ValueError(
            f"{collection}: the overrides {list(overrides)} do not apply to "
            f"experiment={experiment_name(collection)}: {exc}"
        ) from None


def _flatten(tree: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(stored: Mapping, wanted: Mapping) -> list[str]:
    """Keys (dotted) whose values differ, ignoring those of :data:`IGNORED_KEYS`."""
    a, b = _flatten(stored), _flatten(wanted)
    return [
        f"{k}: checkpoint {a.get(k)!r} vs requested {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if k not in IGNORED_KEYS and a.get(k) != b.get(k)
    ]


def existing_run(run_dir: Path, wanted: Mapping) -> tuple[str, int | None]:
    """What to do with a run folder, and the step of its best checkpoint: ``"train"``
    (no checkpoint), ``"reuse"`` (finished, same config) or ``"resume"`` (interrupted,
    same config).

    Raises:
        CheckpointMismatchError: a checkpoint there was made with another config.
    """
    from .training import CheckpointMismatchError, load_checkpoint

    best, last = run_dir / "checkpoints" / "best.pt", run_dir / "checkpoints" / "last.pt"
    states = {p: load_checkpoint(p) for p in (best, last) if p.is_file()}
    for path, state in states.items():
        diff = config_differences(state.get("config", {}), wanted)
        if diff:
            shown = "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5 else "")
            raise CheckpointMismatchError(
                f"{path} was made with another config ({shown}); pass --retrain to replace "
                "it, or --out for another folder"
            )
    if last in states:
        state, trainer = states[last], wanted["trainer"]
        stopped = trainer.get("patience") and state["bad"] >= trainer["patience"]
        if state["step"] < trainer["max_steps"] and not stopped:
            return "resume", None
    return ("reuse", states[best]["step"]) if best in states else ("train", None)


def _best_seed(runs: Sequence[Run]) -> int | None:
    """The seed with the best valid score (the lowest seed on ties); None without scores."""
    scored = [(r.valid["score"], -r.seed) for r in runs if r.valid]
    return -max(scored)[1] if scored else None


class _Reproduction:
    """One leaderboard invocation: checked settings in, runs and table rows out."""

    def __init__(self, root, out, collections, seeds, overrides, retrain, device, log):
        self.root, self.root_value = resolve_root(root)
        self.collections, self.seeds = collections, seeds
        self.overrides, self.retrain, self.log = overrides, retrain, log
        self.out = Path(out).expanduser().resolve()
        self.sources = plan_sources(self.root, collections)
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.runs: dict[tuple[str, int], Run] = {}

    def run_dir(self, collection: str, seed: int) -> Path:
        return self.out / experiment_name(collection) / f"seed{seed}"

    def evaluate(self, ckpt: Path, split: str, collection: str, run_dir: Path) -> dict:
        """``evaluate()`` of a checkpoint on one split; its prints go to ``eval.log``."""
        from .training import evaluate

        cfg = compose(
            "eval",
            [
                f"ckpt={quote(ckpt)}",
                f"split={split}",
                f"out_dir={quote(run_dir / split)}",
                f"data.root={quote(self.root_value)}",
                f"data.collection={collection}",
                f"device={self.device}",
            ],
        )
        with open(run_dir / "eval.log", "a") as fp, contextlib.redirect_stdout(fp):
            return evaluate(cfg)

    def run(self) -> list[Row]:
        # Every config is composed before any training: a bad override fails at once.
        trained = [c for c in COLLECTIONS if c in self.sources.values()]
        configs = {
            (c, s): _run_config(c, s, self.run_dir(c, s), self.root_value, self.overrides[c])
            for c in trained
            for s in self.seeds
        }
        transfers = [c for c in self.collections if self.sources[c] != c]
        total = len(configs) + len(transfers) * len(self.seeds)
        for number, ((c, s), cfg) in enumerate(configs.items(), start=1):
            self.train(c, s, cfg, f"[{number}/{total}] {c} seed {s}")
        number = len(configs)
        for c in transfers:
            for s in self.seeds:
                number += 1
                self.transfer(c, s, f"[{number}/{total}] {c} seed {s}")
        rows = []
        for c in self.collections:
            row = Row(c, [self.runs[c, s] for s in self.seeds], split_counts(self.root, c))
            if row.transfer_from:
                row.note = f"transfer from {row.transfer_from}: no train split in {self.root_value}"
                if not row.values("score"):
                    row.note += "; no valid split: valid metrics n/a"
            self.test(row)
            rows.append(row)
        return rows

    def train(self, collection: str, seed: int, cfg, prefix: str) -> None:
        """Train, resume or reuse one run, then evaluate its best checkpoint on valid."""
        from omegaconf import OmegaConf

        from .training import train

        here = self.run_dir(collection, seed)
        if self.retrain and here.exists():
            shutil.rmtree(here)
        ckpt = here / "checkpoints" / "best.pt"
        action, step = existing_run(here, OmegaConf.to_container(cfg, resolve=True))
        start = time.perf_counter()
        if action == "reuse":
            status = "reused"
        else:
            resume = action == "resume"
            OmegaConf.update(cfg, "trainer.resume", resume)
            status = "resumed" if resume else "trained"
            here.mkdir(parents=True, exist_ok=True)
            self.log(f"{prefix}: {'resuming' if resume else 'training'} in {here} (log: train.log)")
            with open(here / "train.log", "a") as fp, contextlib.redirect_stdout(fp):
                step = train(cfg)["best"]["step"]
        valid = self.evaluate(ckpt, "valid", collection, here)["metrics"]
        self.runs[collection, seed] = Run(
            collection, seed, status, here, ckpt, collection, step, valid
        )
        took = f" in {time.perf_counter() - start:.1f} s" if status != "reused" else ""
        self.log(
            f"{prefix}: {status}{took}, valid score {valid['score']:.4f} (best step {step}, {ckpt})"
        )

    def transfer(self, collection: str, seed: int, prefix: str) -> None:
        """Score a collection without a train split with another collection's model."""
        donor = self.runs[self.sources[collection], seed]
        here = self.run_dir(collection, seed)
        here.mkdir(parents=True, exist_ok=True)
        valid = None
        if split_counts(self.root, collection)["valid"]:
            valid = self.evaluate(donor.checkpoint, "valid", collection, here)["metrics"]
        self.runs[collection, seed] = Run(
            collection, seed, "transfer", here, donor.checkpoint, donor.collection, valid=valid
        )
        self.runs[collection, seed].best_step = donor.best_step
        text = f"valid score {valid['score']:.4f}" if valid else "no valid split: valid n/a"
        self.log(
            f"{prefix}: transfer of {donor.checkpoint} ({donor.collection}; no train split in "
            f"the root), {text}"
        )

    def test(self, row: Row) -> None:
        """Score the test split with the best-on-valid seed's checkpoint."""
        if not row.graphs["test"]:
            row.note = "; ".join(filter(None, [row.note, "no test split: no submission rows"]))
            return
        seed, why = _best_seed(row.runs), "best valid score"
        if seed is None:  # a transfer without valid labels: the source's choice
            seed = _best_seed([self.runs[row.transfer_from, s] for s in self.seeds])
            why = f"the seed chosen on {row.transfer_from}'s valid score"
        run = self.runs[row.collection, seed]
        result = self.evaluate(run.checkpoint, "test", row.collection, run.run_dir)
        row.submission_seed, row.submission_why = seed, why
        row.submission_part = Path(result["submission"])
        self.log(f"test {row.collection}: seed {seed} ({why}), {result['graphs']} graphs scored")

    def merge(self, rows: Sequence[Row]) -> tuple[Path | None, str]:
        """The merged submission, validated when it covers every test graph of the root."""
        parts = [r.submission_part for r in rows if r.submission_part]
        if not parts:
            return None, f"no submission: the root has no test files for {self.collections}"
        merged = merge_submissions(parts, self.out / "submission.csv")
        in_root = [c for c in COLLECTIONS if split_counts(self.root, c)["test"]]
        left_out = [c for c in in_root if c not in self.collections]
        if left_out:
            return merged, (
                f"{merged.name} covers {self.collections} only; not validated, since "
                f"validate_submission needs every test graph of the root (also {left_out})"
            )
        report = validate_submission(merged, self.root)
        counts = ", ".join(f"{c} {n}" for c, n in report.items())
        return merged, f"{merged.name} validated against the root's test files (rows: {counts})"


def kaggle(rows: Sequence[Row]) -> tuple[float | None, str]:
    """The Kaggle-style score of the rows' mean valid scores, or None and why not."""
    scores = {r.collection: r.mean("score") for r in rows}
    reasons = [
        f"{c} not run (--collections)" if c not in scores else f"{c} has no valid split in the root"
        for c in COLLECTIONS
        if scores.get(c) is None
    ]
    if reasons:
        return None, "absent: it needs valid scores of all five collections; " + "; ".join(reasons)
    note = "mean of the five collections' mean valid scores"
    transferred = [r.collection for r in rows if r.transfer_from]
    if transferred:
        note += f" (with transferred models for {', '.join(transferred)})"
    return kaggle_score(scores), note


def run_leaderboard(
    root: str | Path | None,
    out: str | Path,
    collections: Sequence[str] = COLLECTIONS,
    seeds: Sequence[int] = (0,),
    overrides: Sequence[str] = (),
    task_overrides: Mapping[str, Sequence[str]] | None = None,
    retrain: bool = False,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> Leaderboard:
    """Train (or reuse) each collection's experiment over ``seeds``, evaluate on valid,
    write the test submission and ``OUT/leaderboard.md`` / ``leaderboard.json``.

    Args:
        root: data root, or ``"sample"`` / None for the bundled sample.
        out: output folder: ``<name>/seed<k>/`` per run (``checkpoints/``, ``valid/``,
            ``test/``, logs), ``submission.csv``, ``leaderboard.md``, ``leaderboard.json``.
        collections: any of :data:`~tpulearn.data.schema.COLLECTIONS`.
        seeds: ``trainer.seed`` of each run.
        overrides: Hydra overrides applied to every run (``trainer.max_steps=2``); they
            are written into the table.
        task_overrides: ``{"tile" | "layout": overrides}`` for one task's runs only (the
            layout experiments wrap SAGE in a segment model: ``model.model.*``).
        retrain: delete existing run folders and train afresh.
        device: evaluation device, ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.
        log: receives one progress line per run started, reused or finished.

    Raises:
        FileNotFoundError: no such root.
        ValueError: unknown collection, bad seeds or overrides, a collection the root
            cannot train or score.
        CheckpointMismatchError: a run folder holds a checkpoint of another config.
    """
    collections = _check_collections(collections)
    seeds = _check_seeds(seeds)
    overrides = _check_overrides(overrides, "--override")
    per_task = {}
    for task, items in (task_overrides or {}).items():
        if task not in ("tile", "layout"):
            raise ValueError(f"task overrides: unknown task {task!r}; expected tile or layout")
        per_task[task] = _check_overrides(items, f"--{task}-override")
    every = {c: [*overrides, *per_task.get(c.split(":")[0], [])] for c in COLLECTIONS}
    rep = _Reproduction(root, out, collections, seeds, every, retrain, device, log)
    rows = rep.run()
    submission, submission_note = rep.merge(rows)
    log(f"submission: {submission_note}")
    score, kaggle_note = kaggle(rows)
    order = sorted(rep.runs, key=lambda k: (COLLECTIONS.index(k[0]), k[1]))
    board = Leaderboard(
        rows=rows,
        runs=[rep.runs[k] for k in order],
        kaggle_score=score,
        kaggle_note=kaggle_note,
        submission=submission,
        submission_note=submission_note,
        markdown=rep.out / "leaderboard.md",
        json=rep.out / "leaderboard.json",
        settings={
            "root": rep.root_value,
            "collections": collections,
            "seeds": seeds,
            "overrides": overrides,
            "task_overrides": per_task,
            "device": rep.device,
        },
    )
    board.markdown.write_text(markdown(board, rep.out))
    write_json(board, rep.out)
    log(f"leaderboard: {board.markdown}")
    return board


# ------------------------------------------------------------------------------ tables


def fmt(row: Row, metric: str, scale: float = 1.0, digits: int = 4) -> str:
    """``mean ± std`` of a metric over a row's seeds (``n/a`` without values)."""
    mean, std = row.mean(metric), row.std(metric)
    if mean is None:
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    return text if std is None else f"{text} ± {std * scale:.{digits}f}"


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(map(str, line)) + " |" for line in lines]


def _settings_lines(board: Leaderboard) -> list[str]:
    s = board.settings
    root = s["root"]
    if root == "sample":
        root = (
            "`sample`, the bundled TpuGraphs sample (a graph or two per collection, see the "
            "graph counts): these numbers say nothing about the models at full scale"
        )
    else:
        root = f"`{root}`"
    lines = [
        f"- Data root: {root}",
        f"- Seeds: {', '.join(map(str, s['seeds']))}; mean ± std over seeds, std the sample "
        "standard deviation (n - 1), none for one seed",
        "- Runs: `configs/experiment/<collection>.yaml` (e.g. `layout_xla_default`), the "
        "paper's settings, with `trainer.seed`, `data.root` and `out_dir` set per run",
    ]
    every = [*s["overrides"]]
    per_task = {t: v for t, v in s["task_overrides"].items() if v}
    if every or per_task:
        lines.append("- **Not the paper's settings**: the runs used these overrides")
        if every:
            lines.append(f"  - every run: `{' '.join(every)}`")
        for task, items in per_task.items():
            lines.append(f"  - {task} runs: `{' '.join(items)}`")
    else:
        lines.append("- Overrides: none")
    return lines


def markdown(board: Leaderboard, out: Path) -> str:
    """The leaderboard as Markdown: settings, valid scores, top-K errors next to the
    paper's, every run, the submission's parts."""
    lines = ["# tpulearn leaderboard", "", *_settings_lines(board), ""]
    lines += [
        "## Validation score",
        "",
        "Kaggle metric: Kendall tau for layout, 1 - top-5 error for tile; ours on the valid "
        "split of the root with the configs each run's data config selects (layout: the "
        "official 1000-config subsets; all configs of graphs they do not list).",
        "",
    ]
    lines += _table(
        [
            "collection",
            "graphs train / valid / test",
            "seeds",
            "score (ours)",
            "strong single model",
            "TF baseline",
            "model",
        ],
        [
            [
                r.collection,
                " / ".join(str(r.graphs[split]) for split in SPLITS),
                len(r.runs),
                fmt(r, "score"),
                KAGGLE_STRONG_SINGLE_MODEL[r.collection],
                KAGGLE_TF_BASELINE[r.collection],
                r.note or "trained on the collection's train split",
            ]
            for r in board.rows
        ],
    )
    if any(r.transfer_from for r in board.rows):
        lines += [
            "",
            "A transfer row is scored by the model trained on the named collection (the layout "
            "collections share one feature schema); its valid metrics, where shown, are that "
            "model's on this collection.",
        ]
    score = f"{board.kaggle_score:.4f}" if board.kaggle_score is not None else "n/a"
    lines += ["", f"**Kaggle-style score: {score}** ({board.kaggle_note}).", ""]
    lines += [f"Kaggle reference ({KAGGLE_BEST_PRIVATE}, on the test set).", ""]
    lines += ["## Top-K error %, ours (valid) vs the paper (valid / test)", ""]
    for task, ks in (("tile", (1, 5, 10)), ("layout", (1, 10, 100))):
        rows = [r for r in board.rows if r.collection.startswith(task)]
        if not rows:
            continue
        header = ["collection"]
        for k in ks:
            header += [f"top-{k} (ours)", f"top-{k} (paper)"]
        body = []
        for r in rows:
            line = [r.collection]
            for k in ks:
                paper = PAPER_TOP_K_ERROR_PERCENT[r.collection][k]
                line += [fmt(r, f"top{k}_error", 100.0, 3), f"{paper[0]} / {paper[1]}"]
            body.append(line)
        lines += _table(header, body) + [""]
    lines += ["## Runs", ""]
    lines += _table(
        ["collection", "seed", "status", "model from", "best step", "valid score", "checkpoint"],
        [
            [
                r.collection,
                r.seed,
                r.status,
                r.model_from,
                r.best_step,
                f"{r.valid['score']:.4f}" if r.valid else "n/a",
                f"`{_rel(r.checkpoint, out)}`",
            ]
            for r in board.runs
        ],
    )
    lines += ["", "## Test submission", "", f"{board.submission_note}.", ""]
    parts = [r for r in board.rows if r.submission_part]
    if parts:
        lines += _table(
            ["collection", "seed", "chosen by", "part"],
            [
                [
                    r.collection,
                    r.submission_seed,
                    r.submission_why,
                    f"`{_rel(r.submission_part, out)}`",
                ]
                for r in parts
            ],
        )
        lines.append("")
    lines += ["## Sources", "", f"- Paper: {PAPER_SOURCE}.", f"- Kaggle: {KAGGLE_SOURCE}.", ""]
    return "\n".join(lines)


def _rel(path: Path, out: Path) -> str:
    try:
        return str(Path(path).relative_to(out))
    except ValueError:
        return str(path)


def write_json(board: Leaderboard, out: Path) -> Path:
    """Every number of the table at full precision, with each run's metrics."""
    metrics = sorted({k for r in board.runs if r.valid for k in r.valid})
    data = {
        "settings": board.settings,
        "kaggle_score": board.kaggle_score,
        "kaggle_note": board.kaggle_note,
        "submission": _rel(board.submission, out) if board.submission else None,
        "submission_note": board.submission_note,
        "rows": [
            {
                "collection": r.collection,
                "model_from": r.runs[0].model_from,
                "note": r.note,
                "graphs": r.graphs,
                "mean": {m: r.mean(m) for m in metrics if r.values(m)},
                "std": {m: r.std(m) for m in metrics if len(r.values(m)) > 1},
                "submission_seed": r.submission_seed,
            }
            for r in board.rows
        ],
        "runs": [
            {
                "collection": r.collection,
                "seed": r.seed,
                "status": r.status,
                "model_from": r.model_from,
                "best_step": r.best_step,
                "checkpoint": _rel(r.checkpoint, out),
                "valid": r.valid,
            }
            for r in board.runs
        ],
    }
    board.json.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return board.json
