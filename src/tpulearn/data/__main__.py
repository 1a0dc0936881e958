"""``python -m tpulearn.data [ROOT]``: validate every file under a data root and summarise it.

With no argument it checks the bundled real sample. Every file is read: each broken one
gets a line naming the file, the key and what was wrong, the summary counts the valid ones,
and the exit status is non-zero if any file was broken (so one pass lists every file of a
download to fetch again).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .._pipes import closed_pipe_exits
from .io import read_layout, read_tile
from .sample import is_sample_root, root_path
from .schema import COLLECTIONS, SPLITS, TpuGraphsFormatError, collection_dir, root_above


def summarise(root: Path, progress: bool = True, problems: list[str] | None = None) -> list[str]:
    """One line per present collection split: graphs, nodes, configs, labelled graphs.

    Args:
        problems: where each broken file's error goes (that file is then left out of the
            counts, and its split's line says how many were); None: the first one raises.

    Raises:
        TpuGraphsFormatError: a broken file, when ``problems`` is None.
    """
    lines = []
    for collection in COLLECTIONS:
        for split in SPLITS:
            folder = collection_dir(root, collection, split)
            files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
            if not files:
                continue
            reader = read_tile if collection.startswith("tile") else read_layout
            nodes = configs = labelled = broken = 0
            for path in tqdm(files, desc=f"{collection} {split}", disable=not progress):
                try:
                    rec = reader(path)
                except TpuGraphsFormatError as exc:
                    if problems is None:
                        raise
                    problems.append(str(exc))
                    broken += 1
                    continue
                nodes += rec.num_nodes
                configs += rec.num_configs
                labelled += rec.labelled
            lines.append(
                f"{collection:<20} {split:<6} {len(files) - broken:>6} graphs {nodes:>10} nodes "
                f"{configs:>10} configs {labelled:>6} labelled"
                + (f" ({broken} invalid, left out)" if broken else "")
            )
    return lines


@closed_pipe_exits
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tpulearn.data", description=__doc__)
    parser.add_argument(
        "root",
        nargs="?",
        default=None,
        help="data root; 'sample' (or none) for the bundled files, as data.root=sample",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    root = root_path(args.root)
    bundled = is_sample_root(root)
    print(f"data root: {root}" + (" (bundled TpuGraphs sample)" if bundled else ""))
    if not root.is_dir():
        why = "is not a folder" if root.exists() else "does not exist"
        print(f"error: data root {root} {why}", file=sys.stderr)
        return 1
    above = root_above(root)
    if above is not None:
        print(
            f"error: {root} is (or is inside) the dataset's npz/ folder; the data root is the "
            f"folder that holds npz/: python -m tpulearn.data {above}",
            file=sys.stderr,
        )
        return 1
    problems: list[str] = []
    lines = summarise(root, not args.no_progress and sys.stderr.isatty(), problems)
    if not lines:
        print(f"no TpuGraphs npz files under {root}/npz", file=sys.stderr)
        return 1
    print("\n".join(lines), flush=True)
    for problem in problems:
        print(f"invalid file: {problem}", file=sys.stderr)
    if problems:
        count = len(problems)
        print(f"{count} invalid file{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    print("all files valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
