"""The run's TensorBoard events beyond scalars: its config, as text and as hparams, so that
a run in TensorBoard says what it was and runs can be compared in the HParams tab."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

# Validation metrics kept out of TensorBoard: counts of graphs are the same at every
# validation of a run, a flat line that says nothing (they stay in the returned metrics).
NOT_SCALARS = ("num_graphs", "num_graphs_excluded")

# The validation loss sits at valid/loss, beside the validation metrics (in the metrics
# dict it is val_loss: the history's loss is the training loss of the step).
TAGS = {"val_loss": "valid/loss"}


class NullWriter:
    """Stands in for the SummaryWriter on ranks other than 0: every call does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def open_writer(out_dir: Path, main: bool, purge_step: int | None):
    """``<out_dir>/tensorboard``'s writer on rank 0, a :class:`NullWriter` elsewhere."""
    if not main:
        return NullWriter()
    return SummaryWriter(str(out_dir / "tensorboard"), purge_step=purge_step)


def valid_tags(metrics: Mapping) -> dict[str, str]:
    """The TensorBoard tag of each validation metric that is logged."""
    return {k: TAGS.get(k, f"valid/{k}") for k in metrics if k not in NOT_SCALARS}


def flatten(config: Mapping, prefix: str = "") -> dict:
    """``{"model.hidden_channels": 64, ...}``: the hparams plugin takes numbers, strings
    and booleans, so other values (lists, None) become their text."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def write_config(writer, config: Mapping) -> None:
    """The resolved config as text (TensorBoard's Text tab; indented, Markdown shows it as
    code)."""
    text = OmegaConf.to_yaml(OmegaConf.create(dict(config)))
    writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)


def write_hparams(writer, config: Mapping, metric_tags: Iterable[str]) -> None:
    """The config as hparams of this run, with ``metric_tags`` (scalars of the run) as its
    metrics: the HParams tab then shows each run's latest value of each.

    Written into the run's own event file (``SummaryWriter.add_hparams`` would make a
    second run folder per call).
    """
    exp, start, end = hparams(flatten(config), dict.fromkeys(metric_tags, 0.0))
    for summary in (exp, start, end):
        writer.file_writer.add_summary(summary)
