"""Download the official TpuGraphs npz archives into the layout tpulearn reads.

Interrupted downloads resume when the same command is run again; finished splits
are skipped. See ``tpulearn.data.download`` for the details.

Example:
    python scripts/download_tpugraphs.py --collections tile layout-xla --root data/tpugraphs
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tpulearn.data.download import (
    COLLECTION_NAMES,
    OFFICIAL_BASE_URL,
    DownloadError,
    download_collections,
)
from tpulearn.data.schema import SPLITS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; collection names are checked by the library."""
    parser = argparse.ArgumentParser(
        description="Download TpuGraphs npz archives and unpack them into "
        "<root>/npz/tile/xla/<split> and <root>/npz/layout/<source>/<search>/<split>.",
    )
    parser.add_argument(
        "--collections",
        nargs="+",
        required=True,
        metavar="NAME",
        help=f"one or more of: {', '.join(COLLECTION_NAMES)}",
    )
    parser.add_argument("--root", required=True, help="dataset root folder (created if missing)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument(
        "--base-url",
        default=OFFICIAL_BASE_URL,
        help="folder holding the .tar archives: an http(s):// or file:// URL, or a local "
        "folder (default: the official release)",
    )
    parser.add_argument(
        "--keep-archives", action="store_true", help="keep the .tar files after unpacking"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    # The root, or the nearest of its parents that exists, must be a folder to write into.
    root = Path(args.root)
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not existing.is_dir():
        parser.error(f"--root {args.root}: {existing} is a file; expected a folder")
    return args


def main(argv: list[str] | None = None) -> None:
    """Download, then print one finished split folder per line."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folders = download_collections(
            args.root,
            args.collections,
            splits=args.splits,
            base_url=args.base_url,
            progress=not args.no_progress,
            keep_archives=args.keep_archives,
        )
    except (DownloadError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    except KeyboardInterrupt:
        raise SystemExit("interrupted: rerun the same command to resume") from None
    for folder in folders:
        print(folder)


if __name__ == "__main__":
    main()
