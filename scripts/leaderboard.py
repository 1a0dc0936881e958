r"""Reproduce the leaderboard: train (or reuse) each collection's experiment config over
several seeds, evaluate on valid, and write leaderboard.md next to the paper's numbers
with a validated test submission.

    python scripts/leaderboard.py --root ~/data/tpugraphs --seeds 0 1 2 --out outputs/lb
    python scripts/leaderboard.py --root ~/data/tpugraphs --seeds 0 1 2 --ensemble  # rank
    python scripts/leaderboard.py --root sample --out /tmp/lb --override trainer.max_steps=2 \
        --tile-override model.hidden_channels=8 --layout-override model.model.hidden_channels=8

The last is a tiny run on the bundled sample (about half a minute on 2 CPU cores): a check
of the whole pipeline, not a result. Collections are named as the dataset does (tile:xla,
layout:xla:default ...) or as scripts/download_tpugraphs.py does (tile, layout-xla, all ...).
The logic lives in tpulearn.leaderboard (run_leaderboard); this is its command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tpulearn.cli import USER_ERRORS
from tpulearn.combine import COMBINES
from tpulearn.data.download import COLLECTION_NAMES
from tpulearn.data.schema import COLLECTIONS
from tpulearn.leaderboard import run_leaderboard


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", required=True, help="data root, or 'sample' (bundled files)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/leaderboard"),
        help="runs and tables go here (default: outputs/leaderboard)",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], metavar="SEED", help="default: 0"
    )
    parser.add_argument(
        "--collections",
        nargs="+",
        default=list(COLLECTIONS),
        metavar="NAME",
        help=f"any of {', '.join(COLLECTIONS)}, or of {', '.join(COLLECTION_NAMES)} "
        "(default: all five)",
    )
    parser.add_argument(
        "--override", nargs="+", default=[], metavar="KEY=VALUE", help="Hydra overrides, all runs"
    )
    for task in ("tile", "layout"):
        parser.add_argument(
            f"--{task}-override", nargs="+", default=[], metavar="KEY=VALUE", help=f"{task} runs"
        )
    parser.add_argument("--retrain", action="store_true", help="train even where runs exist")
    parser.add_argument("--device", default="auto", help="evaluation device: auto, cpu, cuda")
    parser.add_argument(
        "--ensemble",
        nargs="?",
        const="rank",
        choices=COMBINES,
        help="score test with the ensemble of the seeds' best checkpoints (default combine: "
        "rank, mean rank per config; or zscore) and add its valid metrics to the table",
    )
    args = parser.parse_args(argv)
    try:
        board = run_leaderboard(
            args.root,
            args.out,
            collections=args.collections,
            seeds=args.seeds,
            overrides=args.override,
            task_overrides={"tile": args.tile_override, "layout": args.layout_override},
            retrain=args.retrain,
            device=args.device,
            ensemble=args.ensemble,
        )
    except KeyboardInterrupt:  # one line, not the training loop's traceback
        print(
            "interrupted; the same command continues: finished runs are reused, an "
            "interrupted one resumes from its last checkpoint",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # instantiate wraps constructor errors: report the user's one
        cause = exc
        while cause is not None and not isinstance(cause, USER_ERRORS):
            cause = cause.__cause__
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 2
    score = "n/a" if board.kaggle_score is None else f"{board.kaggle_score:.4f}"
    print(f"Kaggle-style score: {score} ({board.kaggle_note})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
