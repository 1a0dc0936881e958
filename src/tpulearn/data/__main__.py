"""``python -m tpulearn.data [ROOT]``: validate every file under a data root and summarise it.

With no argument it checks the bundled real sample. Exits non-zero on the first broken
file, printing the file, key and what was wrong.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .io import read_layout, read_tile
from .sample import sample_root
from .schema import COLLECTIONS, SPLITS, TpuGraphsFormatError, collection_dir


def summarise(root: Path, progress: bool = True) -> list[str]:
    """One line per present collection split: graphs, nodes, configs, labelled graphs."""
    lines = []
    for collection in COLLECTIONS:
        for split in SPLITS:
            folder = collection_dir(root, collection, split)
            files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
            if not files:
                continue
            reader = read_tile if collection.startswith("tile") else read_layout
            nodes = configs = labelled = 0
            for path in tqdm(files, desc=f"{collection} {split}", disable=not progress):
                rec = reader(path)
                nodes += rec.num_nodes
                configs += rec.num_configs
                labelled += rec.labelled
            lines.append(
                f"{collection:<20} {split:<6} {len(files):>6} graphs {nodes:>10} nodes "
                f"{configs:>10} configs {labelled:>6} labelled"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tpulearn.data", description=__doc__)
    parser.add_argument("root", nargs="?", type=Path, default=None, help="data root")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    root = args.root or sample_root()
    print(f"data root: {root}" + (" (bundled TpuGraphs sample)" if args.root is None else ""))
    try:
        lines = summarise(root, progress=not args.no_progress and sys.stderr.isatty())
    except TpuGraphsFormatError as exc:
        print(f"invalid file: {exc}", file=sys.stderr)
        return 1
    if not lines:
        print(f"no TpuGraphs npz files under {root}/npz", file=sys.stderr)
        return 1
    print("\n".join(lines))
    print("all files valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
