"""What a run may do with its folder: continue the run there (``trainer.resume``), start
afresh over it (``trainer.overwrite``), or start in a folder that holds no run;
``trainer.resume=auto`` does the first when the folder holds a run's ``last.pt`` and the
last otherwise (a requeued cluster job runs the same command as its first launch). Anything
else is refused before the run writes a byte, so a finished run's checkpoints are never
replaced by accident."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from .state import resume_path

# What a run writes into its folder (the Trainer's part; the entry point adds its log).
RUN_PARTS = ("checkpoints", "tensorboard")


# What a resumed run may set otherwise than the run it continues: its budget and patience,
# what it logs, where it runs and reads its files, and a weight average (which starts from
# the resumed weights). Any other key changes what the run trains on or how.
RESUME_FREE_KEYS = {
    "out_dir",
    "trainer.resume",
    "trainer.overwrite",
    "trainer.progress",
    "trainer.log_every",
    "trainer.device",
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.max_time",
    "trainer.patience",
    "trainer.val_every",
    "trainer.val_at_start",
    "trainer.ema_decay",
    "data.root",
    "data.cache_dir",
    "data.eval_chunk",
    "model.segments_per_batch",
}


class RunFolderError(ValueError):
    """A run would replace another run's checkpoints, or has nothing to resume from."""


def run_checkpoints(out_dir: Path) -> list[Path]:
    """The checkpoints of a run in ``out_dir`` (``last.pt``, ``best.pt``), those present."""
    paths = (out_dir / "checkpoints" / f"{name}.pt" for name in ("last", "best"))
    return [p for p in paths if p.is_file()]


def resume_checkpoint(out_dir: Path, resume: bool | str, overwrite: bool) -> Path | None:
    """The checkpoint a run continues from, once its folder is checked.

    Args:
        out_dir: the run folder.
        resume: ``trainer.resume``: true (the folder's ``last.pt``), ``"auto"`` (that
            ``last.pt`` when it exists, else a fresh run), a checkpoint path, or false.
        overwrite: ``trainer.overwrite``: a run already in ``out_dir`` may be replaced.

    Returns:
        The checkpoint to restore, or None for a fresh run.

    Raises:
        RunFolderError: both flags set; ``resume=true`` on a folder without ``last.pt``;
            or a fresh run in a folder holding a run's checkpoints without ``overwrite``.
    """
    if resume and overwrite:
        raise RunFolderError(
            "trainer.resume and trainer.overwrite are both set: resume continues the run in "
            f"{out_dir}, overwrite replaces it; pass one"
        )
    own = out_dir / "checkpoints" / "last.pt"
    if resume == "auto":
        resume = own.is_file()
    path = resume_path(resume, out_dir)
    if path == own and not own.is_file():
        # A resume without hydra.run.dir lands in a new timestamped folder: say so.
        raise RunFolderError(
            f"trainer.resume=true continues the run in its folder, but {out_dir} holds no "
            "checkpoints/last.pt (without hydra.run.dir a run gets a new folder): pass the "
            "run's folder, hydra.run.dir=<run folder>"
        )
    existing = run_checkpoints(out_dir)
    continues = path is not None and path.resolve().parent == (out_dir / "checkpoints").resolve()
    if existing and not (overwrite or continues):
        raise RunFolderError(
            f"{out_dir} already holds a run ({', '.join(p.name for p in existing)}): continue "
            "it with trainer.resume=true, or start afresh in a new folder (hydra.run.dir=...) "
            "or over it with trainer.overwrite=true"
        )
    return path


def clear_run(out_dir: Path) -> bool:
    """Remove the checkpoints and TensorBoard events of a run in ``out_dir`` (for
    ``trainer.overwrite``), and what ``evaluate.py`` wrote of them (``eval/``), so that
    none of the replaced run mixes with the new one.

    Returns:
        Whether there was anything to remove.
    """
    names = (*RUN_PARTS, "eval")
    parts = [out_dir / name for name in names if (out_dir / name).exists()]
    for part in parts:
        shutil.rmtree(part)
    return bool(parts)


def flatten_config(tree: Mapping, prefix: str = "") -> dict:
    """A nested config as {dotted key: value} (lists and empty mappings are values)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(stored: Mapping, wanted: Mapping, ignored=frozenset()) -> list[str]:
    """Keys (dotted) whose values differ between two configs, those in ``ignored`` left
    out: ``"<key>: checkpoint <value> vs requested <value>"``."""
    a, b = flatten_config(stored), flatten_config(wanted)
    return [
        f"{k}: checkpoint {a.get(k)!r} vs requested {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if k not in ignored and a.get(k) != b.get(k)
    ]


def shown_differences(diff: list[str], limit: int = 5) -> str:
    """The first ``limit`` of :func:`differences`' lines, and how many more."""
    more = f"; and {len(diff) - limit} more" if len(diff) > limit else ""
    return "; ".join(diff[:limit]) + more


def check_resumed_config(checkpoint: Path, stored: Mapping, wanted: Mapping) -> None:
    """Refuse to resume a run under settings that change what it trains on or how.

    Raises:
        RunFolderError: naming the keys (other than :data:`RESUME_FREE_KEYS`) whose
            values differ from the checkpoint's run.
    """
    # Keys one side lacks are options added or removed since the checkpoint was made
    # (checkpoint.upgrade_config maps the renamed ones): not a change of this run's.
    one_side = set(flatten_config(stored)) ^ set(flatten_config(wanted))
    diff = differences(stored, wanted, RESUME_FREE_KEYS | one_side)
    if diff:
        raise RunFolderError(
            f"{checkpoint} was trained with other settings ({shown_differences(diff)}): a "
            "resume continues that run, changing only its budget, patience, logging, device "
            "or data paths; start afresh with trainer.overwrite=true, or in a new folder"
        )
