"""Kaggle submission files: make rows from scores, write, merge and validate.

Longer than most modules: one idea, the submission file format; writing, merging and
validation share its ID grammar and row checks.

A submission is a CSV with header ``ID,TopConfigs``, one row per test graph.
``ID`` is ``tile:xla:<file stem>`` or ``layout:<xla|nlp>:<default|random>:<file stem>``;
``TopConfigs`` is config indices joined by ``;``, fastest first: every config
for layout, at least the top 5 for tile. Scores follow the library convention:
lower score = predicted faster.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tpulearn.data.sample import root_path
from tpulearn.data.schema import COLLECTIONS, parse_collection

HEADER = "ID,TopConfigs"
TILE_MIN_CONFIGS = 5
_MAX_LISTED_PROBLEMS = 20


class SubmissionError(ValueError):
    """A submission file breaks the format; ``problems`` lists every problem found."""

    def __init__(self, path: str | os.PathLike, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        shown = "\n  ".join(problems[:_MAX_LISTED_PROBLEMS])
        more = len(problems) - _MAX_LISTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{self.path}: {len(problems)} problem(s):\n  {shown}{tail}")


def make_id(collection: str, stem: str) -> str:
    """Submission ID of one graph, e.g. ``make_id("layout:nlp:random", "abc")``.

    Args:
        collection: one of :data:`~tpulearn.data.COLLECTIONS`.
        stem: the test file name without ``.npz``.
    """
    parse_collection(collection)
    if not stem or any(c in stem for c in ":,;"):
        raise ValueError(f"bad file stem {stem!r} for a submission ID")
    return f"{collection}:{stem}"


def parse_id(row_id: str) -> tuple[str, str]:
    """Splits a submission ID into ``(collection, stem)``.

    Raises:
        ValueError: if the ID does not start with a known collection.
    """
    collection, _, stem = row_id.rpartition(":")
    # Stems never contain ':', so the collection is everything before the last one.
    if collection in COLLECTIONS and stem:
        return collection, stem
    raise ValueError(
        f"bad ID {row_id!r}: expected 'tile:xla:<stem>' or "
        "'layout:<xla|nlp>:<default|random>:<stem>'"
    )


def ranking(scores: Any, top_k: int | None = None) -> np.ndarray:
    """Config indices sorted fastest first (lowest score first, ties by lower index).

    Args:
        scores: ``[num_configs]`` predicted scores (numpy, sequence or torch tensor).
        top_k: keep only the first ``top_k`` indices; None keeps all.

    Returns:
        ``[min(top_k, num_configs)]`` int64 indices.
    """
    if hasattr(scores, "detach"):  # torch tensor, without importing torch here
        scores = scores.detach().cpu().double().numpy()
    scores = np.asarray(scores)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    order = np.argsort(scores, kind="stable")
    return order if top_k is None else order[:top_k]


def make_rows(
    collection: str, scores: Mapping[str, Any], top_k: int | None = None
) -> dict[str, np.ndarray]:
    """Submission rows of one collection from per-graph scores.

    Args:
        collection: one of :data:`~tpulearn.data.COLLECTIONS`.
        scores: ``{file stem: [num_configs] scores}``, lower = faster.
        top_k: tile only: keep the ``top_k`` (>= 5) fastest configs; None keeps all.
            Layout rows always list every config once.

    Returns:
        ``{ID: ranking}`` ready for :func:`write_submission`.
    """
    task, _, _ = parse_collection(collection)
    if top_k is not None and (task == "layout" or top_k < TILE_MIN_CONFIGS):
        raise ValueError(
            f"top_k={top_k} is not allowed for {collection}: layout rows list every config, "
            f"tile rows need at least {TILE_MIN_CONFIGS}"
        )
    return {make_id(collection, stem): ranking(s, top_k) for stem, s in scores.items()}


def _format_row(row_id: str, indices: Any) -> str:
    parse_id(row_id)
    values = np.asarray(indices)
    if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "iu":
        raise ValueError(f"row {row_id!r}: TopConfigs must be a non-empty 1-D list of integers")
    if values.min() < 0:
        raise ValueError(f"row {row_id!r}: negative config index {values.min()}")
    return f"{row_id},{';'.join(map(str, values.tolist()))}"


def write_submission(path: str | os.PathLike, rows: Mapping[str, Any]) -> Path:
    """Writes a submission CSV atomically (temp file in the same folder, then rename),
    with the permissions the umask gives any new file.

    Args:
        path: output CSV path; its folder must exist.
        rows: ``{ID: config indices fastest first}``, written in the given order.

    Returns:
        The path written.

    Raises:
        ValueError: on a malformed ID or ranking; nothing is written then.
    """
    lines = [HEADER] + [_format_row(row_id, indices) for row_id, indices in rows.items()]
    path = Path(path)
    tmp = _write_temporary(path, "\n".join(lines) + "\n")
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_temporary(path: Path, text: str) -> Path:
    """Writes ``text`` to a new hidden file beside ``path`` and returns its path.

    Not ``tempfile.mkstemp``: its files are mode 0600 whatever the umask, and a
    submission is a file like any other (0644 under the usual umask 022).
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


@dataclass(frozen=True)
class _Row:
    line: int
    row_id: str
    text: str  # the TopConfigs field, unparsed


def _read_rows(path: Path) -> tuple[list[_Row], list[str]]:
    """Reads the rows of a submission with their line numbers, plus format problems."""
    rows, problems = [], []
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    if not lines or lines[0].strip() != HEADER:
        first = lines[0] if lines else ""
        problems.append(f"line 1: header must be {HEADER!r}, got {first!r}")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != 2:
            problems.append(f"line {number}: expected 2 comma-separated fields, got {len(fields)}")
            continue
        rows.append(_Row(number, fields[0].strip(), fields[1].strip()))
    return rows, problems


def read_submission(path: str | os.PathLike) -> dict[str, list[int]]:
    """Reads a submission into ``{ID: config indices}``.

    Raises:
        SubmissionError: on a bad header, malformed line, non-integer index or repeated ID.
    """
    rows, problems = _read_rows(Path(path))
    result: dict[str, list[int]] = {}
    for row in _first_of_each_id(rows, problems):
        indices = _parse_indices(row, problems)
        if indices is not None:
            result[row.row_id] = indices
    if problems:
        raise SubmissionError(path, problems)
    return result


def _first_of_each_id(rows, problems: list[str], seen: dict[str, int] | None = None):
    """Yield each row whose ID was not seen before; report repeats into ``problems``.
    ``seen`` (ID -> line) is filled as rows pass."""
    seen = {} if seen is None else seen
    for row in rows:
        if row.row_id in seen:
            problems.append(_repeated_id(row, seen))
            continue
        seen[row.row_id] = row.line
        yield row


def _repeated_id(row: _Row, seen: Mapping[str, int]) -> str:
    return f"line {row.line} ({row.row_id}): repeated ID, first on line {seen[row.row_id]}"


def _parse_indices(row: _Row, problems: list[str]) -> list[int] | None:
    try:
        return [int(v) for v in row.text.split(";")]
    except ValueError:
        problems.append(
            f"line {row.line} ({row.row_id}): TopConfigs must be integers joined by ';'"
        )
        return None


def merge_submissions(paths: Iterable[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Merges per-collection submission files into one.

    Args:
        paths: submission CSVs, e.g. one per collection.
        out: merged CSV path (written atomically).

    Returns:
        The path written.

    Raises:
        ValueError: naming both files when an ID appears in two of them.
        SubmissionError: when an input file is malformed.
    """
    merged: dict[str, list[int]] = {}
    source: dict[str, Path] = {}
    for path in map(Path, paths):
        for row_id, indices in read_submission(path).items():
            if row_id in merged:
                raise ValueError(f"ID {row_id!r} is in both {source[row_id]} and {path}")
            merged[row_id] = indices
            source[row_id] = path
    return write_submission(out, merged)


def merge_validated(
    paths: Iterable[str | os.PathLike], out: str | os.PathLike, root: str | os.PathLike
) -> tuple[Path, dict[str, int]]:
    """Merges submission files and puts the result at ``out`` only if it validates.

    The merged file is written beside ``out`` under a hidden temporary name, checked with
    :func:`validate_submission`, and renamed to ``out`` when it passes; on any failure
    nothing is left at ``out`` (a file already there stays as it was) and the temporary
    file is removed, so an invalid submission is never where one would upload it.

    Returns:
        ``(out, {collection: number of rows checked})``.

    Raises:
        SubmissionError: an input is malformed, or the merged file fails validation (the
            problems name ``out``, which is not written).
        ValueError: an ID is in two inputs.
        FileNotFoundError: an input or the root's test files are missing.
    """
    out = Path(out)
    tmp = _write_temporary(out, "")
    try:
        merge_submissions(paths, tmp)
        try:
            report = validate_submission(tmp, root)
        except SubmissionError as exc:
            raise SubmissionError(f"{out} (not written)", exc.problems) from None
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, report


def expected_test_graphs(root: str | os.PathLike) -> dict[str, int]:
    """``{ID: num_configs}`` of every test graph under a data root.

    Args:
        root: folder holding ``npz/tile/xla/test/*.npz`` and
            ``npz/layout/{xla,nlp}/{default,random}/test/*.npz``; ``"sample"`` for the
            bundled files, as ``data.root=sample``.

    Raises:
        FileNotFoundError: if the root holds no test file at all.
    """
    root = root_path(root)
    expected: dict[str, int] = {}
    for collection in COLLECTIONS:
        # layout:xla:default lives in npz/layout/xla/default/test, tile:xla in npz/tile/xla/test.
        folder = Path(root, "npz", *collection.split(":"), "test")
        for file in sorted(folder.glob("*.npz")):
            # Only config_runtime is read: npz members load lazily, the graph stays on disk.
            with np.load(file) as npz:
                expected[make_id(collection, file.stem)] = int(npz["config_runtime"].shape[0])
    if not expected:
        raise FileNotFoundError(f"no test npz files under {Path(root, 'npz')}")
    return expected


def validate_submission(path: str | os.PathLike, root: str | os.PathLike) -> dict[str, int]:
    """Checks a submission against the test files of a data root.

    Every test graph must have exactly one row, no ID may be unknown, indices must
    be integers in ``[0, num_configs)`` without repeats, layout rows must be full
    permutations and tile rows must hold at least ``min(5, num_configs)`` indices.

    Args:
        path: submission CSV.
        root: data root, see :func:`expected_test_graphs`.

    Returns:
        ``{collection: number of rows checked}`` for the collections under ``root``.

    Raises:
        SubmissionError: listing every problem, each naming the line and ID.
    """
    expected = expected_test_graphs(root)
    rows, problems = _read_rows(Path(path))
    seen: dict[str, int] = {}
    for row in _first_of_each_id(rows, problems, seen):
        if row.row_id not in expected:
            problems.append(f"line {row.line} ({row.row_id}): unknown ID, no such test graph")
            continue
        indices = _parse_indices(row, problems)
        if indices is not None:
            problems.extend(_check_row(row, indices, expected[row.row_id]))
    problems.extend(
        f"missing row for {row_id} ({n} configs)"
        for row_id, n in expected.items()
        if row_id not in seen
    )
    if problems:
        raise SubmissionError(path, problems)
    report: dict[str, int] = {}
    for row_id in expected:
        collection = parse_id(row_id)[0]
        report[collection] = report.get(collection, 0) + 1
    return report


def _check_row(row: _Row, indices: Sequence[int], num_configs: int) -> list[str]:
    where = f"line {row.line} ({row.row_id})"
    problems = []
    out_of_range = [i for i in indices if not 0 <= i < num_configs]
    if out_of_range:
        problems.append(
            f"{where}: index {out_of_range[0]} out of range [0, {num_configs})"
            + (f" and {len(out_of_range) - 1} more" if len(out_of_range) > 1 else "")
        )
    values, counts = np.unique(np.asarray(indices), return_counts=True)
    if (counts > 1).any():
        problems.append(f"{where}: index {values[counts > 1][0]} is repeated")
    if row.row_id.startswith("layout:") and len(indices) != num_configs:
        problems.append(
            f"{where}: layout rows must rank all {num_configs} configs, got {len(indices)}"
        )
    needed = min(TILE_MIN_CONFIGS, num_configs)
    if row.row_id.startswith("tile:") and len(indices) < needed:
        problems.append(f"{where}: tile rows need at least {needed} configs, got {len(indices)}")
    return problems
