"""Whether a run folder's checkpoints can be reused or resumed: they must have been made
with the requested config, up to the keys that do not change what a run trains."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..training.folder import differences, flatten_config, shown_differences

__all__ = [
    "IGNORED_KEYS",
    "config_differences",
    "existing_run",
    "flatten_config",
    "shown_differences",
]

# Config keys that do not change what a run trains: ignored when reusing a checkpoint.
IGNORED_KEYS = {
    "out_dir",
    "trainer.progress",
    "trainer.log_every",
    "trainer.resume",
    "trainer.device",
    "data.eval_chunk",
    "data.cache_dir",
    "model.segments_per_batch",
}


def config_differences(stored: Mapping, wanted: Mapping) -> list[str]:
    """Keys (dotted) whose values differ, ignoring those of :data:`IGNORED_KEYS`."""
    return differences(stored, wanted, IGNORED_KEYS)


def existing_run(run_dir: Path, wanted: Mapping) -> tuple[str, int | None]:
    """What to do with a run folder, and the step of its best checkpoint: ``"train"``
    (no checkpoint), ``"reuse"`` (finished, same config) or ``"resume"`` (interrupted,
    same config).

    Raises:
        CheckpointMismatchError: a checkpoint there was made with another config.
    """
    from ..training import CheckpointMismatchError, load_checkpoint

    best, last = run_dir / "checkpoints" / "best.pt", run_dir / "checkpoints" / "last.pt"
    states = {p: load_checkpoint(p) for p in (best, last) if p.is_file()}
    for path, state in states.items():
        diff = config_differences(state.get("config", {}), wanted)
        if diff:
            raise CheckpointMismatchError(
                f"{path} was made with another config ({shown_differences(diff)}); pass "
                "--retrain to replace it, or --out for another folder"
            )
    if last in states:
        state, trainer = states[last], wanted["trainer"]
        stopped = trainer.get("patience") and state["bad"] >= trainer["patience"]
        # The run's step budget as it ran (derived from trainer.max_epochs or not); older
        # checkpoints lack it and had trainer.max_steps alone.
        max_steps = state.get("max_steps") or trainer["max_steps"]
        if state["step"] < max_steps and not stopped:
            return "resume", None
    return ("reuse", states[best]["step"]) if best in states else ("train", None)
