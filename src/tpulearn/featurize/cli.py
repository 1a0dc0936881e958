"""``tpulearn-featurize``: an XLA protobuf file -> a TpuGraphs npz file.

    tpulearn-featurize module.pb -o graph.npz            # one layout graph
    tpulearn-featurize op_tuning_data.pb -o tiles/       # a TuningData: one npz per kernel

Inputs: an ``xla.HloModuleProto``, an ``xla.HloProto`` (``XLA_FLAGS=--xla_dump_to=DIR
--xla_dump_hlo_as_proto`` writes them as ``*.hlo.pb``), a ``tpu_graphs.ModuleTuningData``
or a ``tpu_graphs.TuningData``; ``--kind`` skips the detection. Files are written atomically
and read back with :func:`tpulearn.data.read_layout` / :func:`~tpulearn.data.read_tile`, so a
written file is a valid dataset file. Exit status: 0 on success, 1 when the input cannot be
featurized (the message names the file, the field and what was expected), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .._pipes import closed_pipe_exits
from ..data.io import read_layout, read_tile
from ..data.schema import TpuGraphsFormatError
from .records import featurize, write_npz
from .wire import FeaturizeError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tpulearn-featurize",
        description="Featurize an XLA HLO module or TpuGraphs tuning protobuf into npz.",
    )
    parser.add_argument("input", type=Path, help="the protobuf file")
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        required=True,
        help="the .npz file to write (a folder for a TuningData of tile kernels)",
    )
    parser.add_argument(
        "--kind",
        choices=("auto", "module", "hlo", "tuning", "tile"),
        default="auto",
        help="the message type: HloModuleProto, HloProto, ModuleTuningData, TuningData",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return parser


@closed_pipe_exits
def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = featurize(args.input, args.kind)
            if isinstance(result, list):
                if args.out.suffix == ".npz":
                    print(
                        f"tpulearn-featurize: error: {args.input} holds {len(result)} tile "
                        "kernels; give a folder for -o",
                        file=sys.stderr,
                    )
                    return 2
                lines = []
                for record in result:
                    out = write_npz(record, args.out / f"{record.stem}.npz")
                    back = read_tile(out)
                    lines.append(f"{out}: {back.num_nodes} nodes, {back.num_configs} configs")
            else:
                if args.out.suffix != ".npz":
                    print(
                        f"tpulearn-featurize: error: -o {args.out}: expected a file name "
                        "ending in .npz",
                        file=sys.stderr,
                    )
                    return 2
                out = write_npz(result, args.out)
                back = read_layout(out)
                lines = [
                    f"{out}: {back.num_nodes} nodes, {back.edge_index.shape[0]} edges, "
                    f"{back.node_config_ids.shape[0]} configurable nodes, "
                    f"{back.num_configs} config(s)" + ("" if back.labelled else ", unlabelled")
                ]
        except (FeaturizeError, TpuGraphsFormatError, OSError) as exc:
            print(f"tpulearn-featurize: error: {exc}", file=sys.stderr)
            return 1
    for w in caught:
        print(f"tpulearn-featurize: warning: {w.message}", file=sys.stderr)
    if not args.quiet:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
