"""The leaderboard's inputs, checked, and its plan: the data root, the collections, seeds
and overrides, and which collection's trained model scores each collection."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..data import sample_root
from ..data.download import COLLECTION_NAMES, resolve_collections
from ..data.schema import COLLECTIONS, SPLITS, parse_collection

# Keys the leaderboard sets for every run itself.
RESERVED = ("experiment", "data", "data.root", "data.collection", "trainer.seed", "out_dir")
RESERVED += ("trainer.resume",)


def experiment_name(collection: str) -> str:
    """``"layout:xla:default"`` -> ``"layout_xla_default"`` (also the run folder name)."""
    return collection.replace(":", "_")


def root_folder_and_override(root: str | Path | None) -> tuple[Path, str]:
    """``(folder, value for data.root)``; ``"sample"``/None is the bundled sample."""
    if root is None or str(root) == "sample":
        return sample_root(), "sample"
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"--root {root}: no such folder; expected a TpuGraphs data root holding "
            "npz/{tile,layout}/..., or 'sample' for the bundled files"
        )
    if not (path / "npz").is_dir():
        raise FileNotFoundError(f"--root {root}: no npz/ folder in it; not a TpuGraphs data root")
    return path, str(path)


def split_counts(root: Path, collection: str) -> dict[str, int]:
    """``{split: number of npz files}`` of one collection under a data root."""
    folder = Path(root, "npz", *collection.split(":"))
    return {s: len(list((folder / s).glob("*.npz"))) for s in SPLITS}


def _check_collections(collections: Sequence[str]) -> list[str]:
    """The named collections in the paper's order. The download script's names (``tile``,
    ``layout-xla``, ``all`` ...) are taken too, so one spelling serves both tools."""
    if not collections:
        raise ValueError("--collections: name at least one collection")
    named = []
    for name in collections:
        try:
            named += resolve_collections([name])
        except ValueError:
            raise ValueError(
                f"--collections: unknown collection {name!r}; choose from "
                f"{', '.join(COLLECTIONS)} or {', '.join(COLLECTION_NAMES)}"
            ) from None
    if len(set(named)) != len(named):
        raise ValueError(f"--collections: repeated collection in {list(collections)}")
    return [c for c in COLLECTIONS if c in named]  # the paper's order


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds) or any(int(s) != s or s < 0 for s in seeds):
        raise ValueError(f"--seeds: expected distinct non-negative integers, got {list(seeds)}")
    return [int(s) for s in seeds]


def _check_overrides(overrides: Sequence[str], option: str) -> list[str]:
    for item in overrides:
        key, eq, _ = item.partition("=")
        key = key.lstrip("+~")
        if not eq or not key:
            raise ValueError(f"{option}: expected KEY=VALUE, got {item!r}")
        if key in RESERVED or key.startswith("hydra"):
            raise ValueError(
                f"{option} {item!r}: {key} is set by the leaderboard for each run "
                "(use --root, --seeds, --out, --collections)"
            )
    return list(overrides)


def plan_sources(root: Path, collections: Sequence[str]) -> dict[str, str]:
    """``{collection: collection whose trained model scores it}``.

    A collection with train and valid files trains its own model. A layout collection
    without train files borrows one from the root: another layout collection of the same
    source, else of the same search, else any, that has train and valid files.

    Raises:
        ValueError: a collection with no files, train files without a valid split, or
            nothing to borrow a model from.
    """
    counts = {c: split_counts(root, c) for c in COLLECTIONS}
    trainable = [c for c in COLLECTIONS if counts[c]["train"] and counts[c]["valid"]]
    sources = {}
    for name in collections:
        n = counts[name]
        where = f"{root}/npz/{name.replace(':', '/')}"
        if not any(n.values()):
            raise ValueError(
                f"{name}: no npz files under {where}/{{train,valid,test}}; "
                "leave it out with --collections"
            )
        if n["train"] and not n["valid"]:
            raise ValueError(
                f"{name}: {n['train']} train files but no valid split ({where}/valid/*.npz): "
                "training selects its checkpoint on valid"
            )
        if n["train"]:
            sources[name] = name
            continue
        task, source, search = parse_collection(name)
        donors = [c for c in trainable if c.startswith(f"{task}:")]
        donors.sort(key=lambda c: (parse_collection(c)[1] != source, c.split(":")[2] != search))
        if not donors:
            raise ValueError(
                f"{name}: no train split in {root} and no other {task} collection there with "
                "train and valid files to borrow a model from"
            )
        sources[name] = donors[0]
    return sources
