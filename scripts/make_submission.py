"""Merge per-collection submission files into one Kaggle submission and validate it.

    python scripts/make_submission.py --root DATA_ROOT --out submission.csv \
        RUN_TILE RUN_XLA_DEFAULT RUN_XLA_RANDOM RUN_NLP_DEFAULT RUN_NLP_RANDOM

Each part is a submission CSV or a folder: a run folder (or any folder above the
``eval/test/`` ones ``evaluate.py split=test`` writes) gives every ``submission_*.csv``
beneath it. Fails (exit 1) with every problem listed, each naming its row, when the merged
file does not cover every test graph of the root exactly once with valid config indices;
then nothing is written at ``--out``: the merged file is checked under a temporary name
beside it and only renamed to ``--out`` once valid.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tpulearn.submission import SubmissionError, merge_validated


def submission_files(parts: list[Path]) -> list[Path]:
    """The CSVs the parts name: a file as given, a folder's ``submission_*.csv`` at any
    depth (sorted).

    Raises:
        FileNotFoundError: a part that does not exist, or a folder holding no such file.
    """
    files = []
    for part in parts:
        if part.is_dir():
            found = sorted(part.rglob("submission_*.csv"))
            if not found:
                raise FileNotFoundError(
                    f"{part} is a folder without submission_*.csv files beneath it (evaluate.py "
                    "ckpt=RUN split=test writes them into RUN/eval/test/)"
                )
            files += found
        elif part.exists():
            files.append(part)
        else:
            glob = " (a pattern the shell did not expand: nothing matched it)"
            raise FileNotFoundError(
                f"no such submission file or folder: {part}"
                + (glob if any(c in str(part) for c in "*?[") else "")
            )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "parts",
        nargs="+",
        type=Path,
        help="per-collection submission CSVs, or folders: every submission_*.csv beneath each",
    )
    parser.add_argument(
        "--root", type=Path, required=True, help="data root with the test splits, or 'sample'"
    )
    parser.add_argument("--out", type=Path, default=Path("submission.csv"))
    args = parser.parse_args(argv)
    if args.out.is_dir():
        raise SystemExit(f"error: --out {args.out} is a folder; name the CSV file to write")
    try:
        parts = submission_files(args.parts)
        for path in parts:
            print(f"part: {path}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        merged, report = merge_validated(parts, args.out, args.root)
    except (SubmissionError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    for collection, rows in sorted(report.items()):
        print(f"{collection}: {rows} rows")
    print(f"valid submission: {merged}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
