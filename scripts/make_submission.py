"""Merge per-collection submission files into one Kaggle submission and validate it.

    python scripts/make_submission.py --root DATA_ROOT --out submission.csv \
        outputs/*/submission_*.csv

Fails (exit 1) with every problem listed, each naming its row, when the merged file does
not cover every test graph of the root exactly once with valid config indices.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tpulearn.submission import SubmissionError, merge_submissions, validate_submission


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="+", type=Path, help="per-collection submission CSVs")
    parser.add_argument("--root", type=Path, required=True, help="data root with the test splits")
    parser.add_argument("--out", type=Path, default=Path("submission.csv"))
    args = parser.parse_args(argv)
    try:
        merged = merge_submissions(args.parts, args.out)
        report = validate_submission(merged, args.root)
    except (SubmissionError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    for collection, rows in sorted(report.items()):
        print(f"{collection}: {rows} rows")
    print(f"valid submission: {merged}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
