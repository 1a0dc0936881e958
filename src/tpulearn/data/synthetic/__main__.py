r"""``python -m tpulearn.data.synthetic DIR``: write synthetic collections under a data root.

    python -m tpulearn.data.synthetic /tmp/syn                       # layout xla random
    python -m tpulearn.data.synthetic /tmp/syn --collections tile layout:nlp:default \
        --train 64 --valid 16 --test 8 --nodes 40 80 --configs 64 128 --seed 1
    python -m tpulearn.data.synthetic /tmp/syn --family roofline --noise 0.05
    python -m tpulearn.data.synthetic /tmp/fresh --family roofline --config-seed 1 \
        --valid 0 --test 0     # the same train graphs, other configs
    python -m tpulearn.data.synthetic /tmp/unseen --family roofline --train 0 --valid 0 \
        --test 16 --labelled-test    # new graphs to score a trained run on (split=test)

``--family`` picks the layout cost model and ``--tile-family`` the tile one (see
:mod:`tpulearn.data.synthetic.families`); ``--noise`` overrides the family's default
noise. Without a family the original models and their small legacy noise are used.
``--labelled-test`` keeps the test files' runtimes (the release's test files have none):
graphs of the same seed and family that no run trained on or selected its checkpoint on,
``python evaluate.py ckpt=RUN data.root=/tmp/unseen split=test``.

A split folder that holds ``.npz`` files this command did not write (real ones, say) is
refused: training reads every file of a split, so the synthetic ones would join them. Its
own files (``synthetic_*``) are rewritten; ``--into-existing`` writes beside the others.

Then ``python train.py data=synthetic data.root=/tmp/syn``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..._pipes import closed_pipe_exits
from ..schema import COLLECTIONS, parse_collection
from .families import LAYOUT_FAMILIES, TILE_FAMILIES
from .writer import check_sizes, foreign_files, write_layout_collection, write_tile_collection


@closed_pipe_exits
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tpulearn.data.synthetic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", type=Path, help="data root: files go to ROOT/npz/...")
    parser.add_argument(
        "--collections",
        nargs="+",
        default=["layout:xla:random"],
        metavar="NAME",
        help=f"'tile' or any of {', '.join(COLLECTIONS)} (default: layout:xla:random)",
    )
    for split, count in (("train", 8), ("valid", 2), ("test", 2)):
        parser.add_argument(
            f"--{split}", type=int, default=count, help=f"{split} graphs (default: {count})"
        )
    for size in ("nodes", "configs"):
        parser.add_argument(
            f"--{size}",
            type=int,
            nargs=2,
            default=None,
            metavar=("MIN", "MAX"),
            help=f"{size} per graph, drawn from MIN..MAX (default: the task's)",
        )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of graphs, configs and noise (default: 0)"
    )
    parser.add_argument(
        "--family",
        choices=sorted(LAYOUT_FAMILIES),
        default=None,
        help="layout cost-model family (default: neighbour_vote with the legacy noise)",
    )
    parser.add_argument(
        "--tile-family",
        choices=sorted(TILE_FAMILIES),
        default=None,
        help="tile cost-model family (default: tile_spill with the legacy noise)",
    )
    parser.add_argument(
        "--noise", type=float, default=None, help="relative noise std (default: the family's)"
    )
    parser.add_argument(
        "--config-seed",
        type=int,
        default=None,
        help="layout: the same graphs with another draw of configs and noise",
    )
    parser.add_argument(
        "--labelled-test",
        action="store_true",
        help="write the test files with their runtimes (default: unlabelled, as released)",
    )
    parser.add_argument(
        "--into-existing",
        action="store_true",
        help="write even where a split folder holds .npz files of other names (default: "
        "refuse: training would read both)",
    )
    args = parser.parse_args(argv)
    if args.noise is not None and args.noise < 0:
        parser.error(f"--noise must be >= 0, got {args.noise}")
    if args.config_seed is not None and args.config_seed < 0:
        parser.error(f"--config-seed must be >= 0, got {args.config_seed}")
    counts = {"train": args.train, "valid": args.valid, "test": args.test}
    for split, count in counts.items():
        if count < 0:
            parser.error(f"--{split} must be >= 0, got {count}")
    sizes = {k: tuple(v) for k, v in (("nodes", args.nodes), ("configs", args.configs)) if v}
    names = ["tile:xla" if name == "tile" else name for name in args.collections]
    collections = {}
    for name in names:  # every collection is checked before any is written
        try:
            collections[name] = parse_collection(name)
            check_sizes(collections[name][0], **sizes)
        except ValueError as exc:
            parser.error(f"{name}: {exc}")
        if args.config_seed is not None and collections[name][0] == "tile":
            parser.error(f"{name}: --config-seed applies to layout collections only")
        foreign = [] if args.into_existing else foreign_files(args.root, name)
        if foreign:
            shown = ", ".join(p.name for p in foreign[:3])
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            parser.error(
                f"{foreign[0].parent} holds .npz files this command did not write ({shown}"
                f"{more}); training would read them with the synthetic ones: choose another "
                "root, or pass --into-existing"
            )
    for name, (task, source, search) in collections.items():
        if task == "tile":
            files = write_tile_collection(
                args.root,
                num_graphs=counts,
                seed=args.seed,
                family=args.tile_family,
                noise=args.noise,
                labelled_test=args.labelled_test,
                **sizes,
            )
        else:
            files = write_layout_collection(
                args.root,
                source,
                search,
                num_graphs=counts,
                seed=args.seed,
                family=args.family,
                noise=args.noise,
                config_seed=args.config_seed,
                labelled_test=args.labelled_test,
                **sizes,
            )
        print(f"{name}: {len(files)} files under {args.root / 'npz'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
