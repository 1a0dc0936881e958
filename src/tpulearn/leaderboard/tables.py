"""The leaderboard's tables: ``leaderboard.md`` (next to the reference numbers) and
``leaderboard.json`` (every number at full precision)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..data.schema import COLLECTIONS, SPLITS
from ..metrics import kaggle_score
from .records import Leaderboard, Row
from .reference import (
    KAGGLE_BEST_PRIVATE,
    KAGGLE_SOURCE,
    KAGGLE_STRONG_SINGLE_MODEL,
    KAGGLE_TF_BASELINE,
    PAPER_SOURCE,
    PAPER_TOP_K_ERROR_PERCENT,
)


def fmt(row: Row, metric: str, scale: float = 1.0, digits: int = 4) -> str:
    """``mean ± std`` of a metric over a row's seeds (``n/a`` without values)."""
    mean, std = row.mean(metric), row.std(metric)
    if mean is None:
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    return text if std is None else f"{text} ± {std * scale:.{digits}f}"


def ensemble_fmt(row: Row, metric: str, scale: float = 1.0, digits: int = 4) -> str:
    """The ensemble's valid value of a metric (``n/a`` without one)."""
    value = (row.ensemble_valid or {}).get(metric)
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


def ensemble_kaggle(rows: Sequence[Row]) -> float | None:
    """The Kaggle-style score of the ensembles' valid scores; None unless all five have one."""
    scores = {r.collection: r.ensemble_valid["score"] for r in rows if r.ensemble_valid}
    return kaggle_score(scores) if set(scores) == set(COLLECTIONS) else None


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
    if s.get("ensemble"):
        lines.append(
            f"- Ensemble (`--ensemble {s['ensemble']}`): each collection's test split is scored "
            f"by the ensemble of its seeds' best checkpoints (ensemble={s['ensemble']}: "
            + (
                "mean rank per config"
                if s["ensemble"] == "rank"
                else "mean z-scored score per config"
            )
            + "); its valid metrics are in the ensemble columns"
        )
    return lines


def markdown(board: Leaderboard, out: Path) -> str:
    """The leaderboard as Markdown: settings, valid scores, top-K errors next to the
    paper's, every run, the submission's parts. ``out``: the folder paths are shown from."""
    lines = ["# tpulearn leaderboard", "", *_settings_lines(board), ""]
    lines += _score_section(board)
    lines += _top_k_section(board)
    lines += _runs_section(board, out)
    lines += _submission_section(board, out)
    lines += ["## Sources", "", f"- Paper: {PAPER_SOURCE}.", f"- Kaggle: {KAGGLE_SOURCE}.", ""]
    return "\n".join(lines)


def _score_section(board: Leaderboard) -> list[str]:
    """Each collection's valid score (and its ensemble's) beside Kaggle's references, and
    the Kaggle-style score over the five."""
    lines = [
        "## Validation score",
        "",
        "Kaggle metric: Kendall tau for layout, 1 - top-5 error for tile; ours on the valid "
        "split of the root with the configs each run's data config selects (layout: the "
        "official 1000-config subsets; all configs of graphs they do not list).",
        "",
    ]
    ensemble = bool(board.settings.get("ensemble"))
    header = ["collection", "graphs train / valid / test", "seeds", "score (ours)"]
    header += ["score (ensemble)"] if ensemble else []
    header += ["strong single model", "TF baseline", "model"]
    body = []
    for r in board.rows:
        line = [r.collection, " / ".join(str(r.graphs[s]) for s in SPLITS), len(r.runs)]
        line += [fmt(r, "score")] + ([ensemble_fmt(r, "score")] if ensemble else [])
        line += [KAGGLE_STRONG_SINGLE_MODEL[r.collection], KAGGLE_TF_BASELINE[r.collection]]
        body.append([*line, r.note or "trained on the collection's train split"])
    lines += _table(header, body)
    if any(r.transfer_from for r in board.rows):
        lines += [
            "",
            "A transfer row is scored by the model trained on the named collection (the layout "
            "collections share one feature schema); its valid metrics, where shown, are that "
            "model's on this collection.",
        ]
    score = f"{board.kaggle_score:.4f}" if board.kaggle_score is not None else "n/a"
    lines += ["", f"**Kaggle-style score: {score}** ({board.kaggle_note}).", ""]
    if ensemble:
        value = ensemble_kaggle(board.rows)
        text = "n/a (it needs the ensembles' valid scores of all five collections)"
        lines += [
            f"Kaggle-style score of the ensembles: {text if value is None else f'{value:.4f}'}.",
            "",
        ]
    return lines + [f"Kaggle reference ({KAGGLE_BEST_PRIVATE}, on the test set).", ""]


def _top_k_section(board: Leaderboard) -> list[str]:
    """Top-K errors per task, ours (and the ensemble's) beside the paper's."""
    lines = ["## Top-K error %, ours (valid) vs the paper (valid / test)", ""]
    ensemble = bool(board.settings.get("ensemble"))
    for task, ks in (("tile", (1, 5, 10)), ("layout", (1, 10, 100))):
        rows = [r for r in board.rows if r.collection.startswith(task)]
        if not rows:
            continue
        header = ["collection"]
        for k in ks:
            header += [f"top-{k} (ours)", f"top-{k} (paper)"]
            header += [f"top-{k} (ensemble)"] if ensemble else []
        body = []
        for r in rows:
            line = [r.collection]
            for k in ks:
                paper = PAPER_TOP_K_ERROR_PERCENT[r.collection][k]
                line += [fmt(r, f"top{k}_error", 100.0, 3), f"{paper[0]} / {paper[1]}"]
                line += [ensemble_fmt(r, f"top{k}_error", 100.0, 3)] if ensemble else []
            body.append(line)
        lines += _table(header, body) + [""]
    return lines


def _runs_section(board: Leaderboard, out: Path) -> list[str]:
    """One line per training run: its status, best step, valid score and checkpoint."""
    header = ["collection", "seed", "status", "model from", "best step", "valid score"]
    body = [
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
    ]
    return ["## Runs", "", *_table([*header, "checkpoint"], body)]


def _submission_section(board: Leaderboard, out: Path) -> list[str]:
    """How the test submission was made, and which run (or ensemble) wrote each part."""
    lines = ["", "## Test submission", "", f"{board.submission_note}.", ""]
    parts = [r for r in board.rows if r.submission_part]
    if not parts:
        return lines
    body = [
        [
            r.collection,
            r.submission_seed
            if r.submission_seed is not None
            else ", ".join(str(x.seed) for x in r.runs),
            r.submission_why,
            f"`{_rel(r.submission_part, out)}`",
        ]
        for r in parts
    ]
    return lines + _table(["collection", "seed", "chosen by", "part"], body) + [""]


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
                "ensemble_valid": r.ensemble_valid,
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
