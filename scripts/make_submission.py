"""Merge per-collection submission files into one Kaggle submission and validate it.

    python scripts/make_submission.py --root DATA_ROOT --out submission.csv \
        outputs/*/submission_*.csv

Fails (exit 1) with every problem listed, each naming its row, when the merged file does
not cover every test graph of the root exactly once with valid config indices; then
nothing is written at ``--out``: the merged file is checked under a temporary name beside
it and only renamed to ``--out`` once valid.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tpulearn.submission import SubmissionError, merge_validated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="+", type=Path, help="per-collection submission CSVs")
    parser.add_argument(
        "--root", type=Path, required=True, help="data root with the test splits, or 'sample'"
    )
    parser.add_argument("--out", type=Path, default=Path("submission.csv"))
    args = parser.parse_args(argv)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        merged, report = merge_validated(args.parts, args.out, args.root)
    except (SubmissionError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    for collection, rows in sorted(report.items()):
        print(f"{collection}: {rows} rows")
    print(f"valid submission: {merged}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
