"""The leaderboard's entry point, :func:`run_leaderboard`, and its Kaggle-style score."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..combine import check_combine
from ..data.schema import COLLECTIONS
from ..metrics import kaggle_score
from .plan import _check_collections, _check_overrides, _check_seeds
from .records import Leaderboard, Row
from .runs import _Reproduction
from .tables import markdown, write_json


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
    ensemble: str | None = None,
) -> Leaderboard:
    """Train (or reuse) each collection's experiment over ``seeds``, evaluate on valid,
    write the test submission and ``OUT/leaderboard.md`` / ``leaderboard.json``.

    Args:
        root: data root, or ``"sample"`` / None for the bundled sample.
        out: output folder: ``<name>/seed<k>/`` per run (``checkpoints/``, ``valid/``,
            ``test/``, logs), ``submission.csv``, ``leaderboard.md``, ``leaderboard.json``.
        collections: any of :data:`~tpulearn.data.schema.COLLECTIONS`, or of the download
            script's names (:data:`~tpulearn.data.download.COLLECTION_NAMES`: ``tile``,
            ``layout-xla``, ``all`` ...).
        seeds: ``trainer.seed`` of each run.
        overrides: Hydra overrides applied to every run (``trainer.max_steps=2``); they
            are written into the table.
        task_overrides: ``{"tile" | "layout": overrides}`` for one task's runs only (the
            layout experiments wrap SAGE in a segment model: ``model.model.*``).
        retrain: delete existing run folders and train afresh.
        device: evaluation device, ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.
        log: receives one progress line per run started, reused or finished.
        ensemble: None, or ``"rank"`` / ``"zscore"``: each collection's test split is
            scored by that ensemble of its seeds' best checkpoints (not the best seed
            alone), and the ensemble's valid metrics join the table, in
            ``OUT/<name>/ensemble/``.

    Raises:
        FileNotFoundError: no such root.
        ValueError: unknown collection, bad seeds or overrides (a key the run's config
            does not have names the key likely meant), a collection the root cannot train
            or score.
        CheckpointMismatchError: a run folder holds a checkpoint of another config.
    """
    collections = _check_collections(collections)
    seeds = _check_seeds(seeds)
    if ensemble is not None:
        check_combine(ensemble)
    overrides = _check_overrides(overrides, "--override")
    per_task = {}
    for task, items in (task_overrides or {}).items():
        if task not in ("tile", "layout"):
            raise ValueError(f"task overrides: unknown task {task!r}; expected tile or layout")
        per_task[task] = _check_overrides(items, f"--{task}-override")
    every = {c: [*overrides, *per_task.get(c.split(":")[0], [])] for c in COLLECTIONS}
    rep = _Reproduction(root, out, collections, seeds, every, retrain, device, log, ensemble)
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
        markdown=rep.output("leaderboard.md"),
        json=rep.output("leaderboard.json"),
        settings={
            "root": rep.root_value,
            "collections": collections,
            "seeds": seeds,
            "overrides": overrides,
            "task_overrides": per_task,
            "device": rep.device,
            "ensemble": ensemble,
        },
    )
    board.markdown.write_text(markdown(board, rep.out))
    write_json(board, rep.out)
    log(f"leaderboard: {board.markdown}")
    return board
