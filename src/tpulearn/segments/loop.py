"""GST inside a training loop: the run's step settings, the step as a module, and the
history state that checkpoints carry across processes and restarts.

The loop itself (:mod:`tpulearn.training`) knows nothing of segments: it asks
:func:`gst_trainer` for a :class:`~.training.GSTTrainer` (None for a model that trains on
whole graphs), calls :class:`StepModule` for each graph, and hands the states of
:func:`merge_gst_states` / :func:`load_gst_state` to its checkpoints.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import torch

from .._checks import check_choice, check_int, check_number
from .dropout import DROPOUT_UNITS, RESCALES
from .model import SegmentModel
from .partition import key_stem
from .training import FILL_CHUNK, MISSING, GSTTrainer


@dataclass(frozen=True)
class GSTSettings:
    """GST step settings of a training run (the ``gst`` config group).

    Args:
        keep_prob, rescale, missing, fill_chunk, dropout_unit, max_age: as in
            :func:`~.training.gst_step`.
    """

    keep_prob: float = 0.5
    rescale: str = "trained"
    missing: str = "fill"
    fill_chunk: int = FILL_CHUNK
    dropout_unit: str = "entry"
    max_age: int | None = None

    def __post_init__(self) -> None:
        # Checked when the config is built, before a run starts (the step checks again).
        check_number("gst.keep_prob", self.keep_prob, 0.0, 1.0)
        check_choice("gst.rescale", self.rescale, RESCALES)
        check_choice("gst.missing", self.missing, MISSING)
        check_int("gst.fill_chunk", self.fill_chunk, 1)
        check_choice("gst.dropout_unit", self.dropout_unit, DROPOUT_UNITS)
        if self.max_age is not None:
            check_int("gst.max_age", self.max_age, 0, "null: never recompute")

    def changed(self) -> dict:
        """The settings that differ from the defaults."""
        default = GSTSettings()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }


def gst_trainer(model, settings: GSTSettings | None = None, seed: int = 0) -> GSTTrainer | None:
    """The GST state of a run training ``model``, or None when the model's own forward
    trains it (whole graphs, segments disabled, or exact checkpointed segments).

    Warns when ``settings`` differ from the defaults but the model does not train by GST,
    so that an option that would do nothing is not taken silently.

    Args:
        model: the model being trained.
        settings: the run's GST step settings (None: the defaults).
        seed: seed of the segment choice and the stale dropout.
    """
    settings = settings or GSTSettings()
    segmented = isinstance(model, SegmentModel)
    if segmented and model.enabled and not model.checkpoint:
        return GSTTrainer(model, seed=seed, **dataclasses.asdict(settings))
    changed = settings.changed()
    if changed:
        if not segmented:
            why = f"{type(model).__name__} trains on whole graphs (not a SegmentModel)"
        elif not model.enabled:
            why = "the SegmentModel has segments disabled (model.enabled=false)"
        else:
            why = "checkpointed segments train without GST (model.checkpoint=true)"
        warnings.warn(f"GST settings {changed} have no effect: {why}", stacklevel=2)
    return None


class StepModule(torch.nn.Module):
    """The model's training forward for one graph (a GST step for segment models), as a
    module so that DistributedDataParallel can wrap it."""

    def __init__(self, model, gst: GSTTrainer | None):
        super().__init__()
        self.model = model
        self.gst = gst  # not a module: no parameters of its own

    def forward(self, data, num_configs: int):
        if self.gst is not None:
            return self.gst.step([data], [num_configs])[0]
        return self.model(data)


def merge_gst_states(states: list[dict]) -> dict:
    """One GST state from every process's: the union of their history tables (each owns
    its graphs), rank 0's generator, and every rank's generator for a same-size resume."""
    table = {"values": {}, "filled": {}, "stamps": {}}
    for state in states:
        for part in table:
            table[part].update(state["table"].get(part, {}))
    # Every rank ticks once per step, so the clocks agree.
    table["clock"] = states[0]["table"].get("clock", 0)
    merged = {"table": table, "generator": states[0]["generator"]}
    if len(states) > 1:
        merged["generators"] = [state["generator"] for state in states]
    return merged


def load_gst_state(
    gst: GSTTrainer, state: dict, rank: int = 0, size: int = 1, stems: set | None = None
) -> None:
    """Restore a merged state (:func:`merge_gst_states`) into one process's GST.

    Args:
        gst: this process's GST state.
        state: the checkpoint's merged state.
        rank, size: this process and the number of processes now; its own generator is
            restored only when the saved run had as many processes.
        stems: the graphs whose history entries this process keeps (None: all of them).
    """
    table = state["table"]
    if stems is not None:
        table = {
            part: {k: v for k, v in entries.items() if key_stem(k) in stems}
            if isinstance(entries, dict)
            else entries  # the step counter
            for part, entries in table.items()
        }
    generators = state.get("generators") or [state["generator"]]
    generator = generators[rank] if len(generators) == size else None
    gst.table.load_state_dict(table)
    if generator is not None:
        gst.generator.set_state(generator)
