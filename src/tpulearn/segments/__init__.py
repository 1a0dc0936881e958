"""Graph segment training (GST): constant-memory training on large graphs.

GST (Cao et al., "Learning Large Graph Property Prediction via Graph Segment Training",
NeurIPS 2023, arXiv 2305.12322) splits each graph into segments of at most 1000 nodes,
scores a graph as the sum of its segments' scores, and back-propagates through one random
segment per graph per step; the other segments' scores come from a historical embedding
table, each kept with probability p (stale embedding dropout). Inference scores every
segment fresh.

Two extensions, off by default (the reference has neither): ``halo_hops`` gives each
segment its k-hop neighbourhood as read-only context (cross-segment edges are then seen,
not dropped; :mod:`.subgraph`), and ``max_age`` bounds the staleness of the history
(entries older than that many steps are recomputed without gradient; :mod:`.training`).

Modules: :mod:`.partition` (contiguous / METIS partitions and their cache),
:mod:`.subgraph` (segments as graphs), :mod:`.model` (:class:`SegmentModel`),
:mod:`.history` (:class:`HistoryTable`), :mod:`.dropout` (stale embedding dropout and
rescaling), :mod:`.training` (:func:`gst_step`, :class:`GSTTrainer`), :mod:`.loop` (GST
in a training loop: :class:`GSTSettings`, :func:`gst_trainer`, :class:`StepModule`,
checkpointed state).

Typical use::

    seg_model = SegmentModel(SAGE("layout", hidden_channels=256), max_segment_nodes=1000)
    trainer = GSTTrainer(seg_model, keep_prob=0.5)
    scores = trainer.step(graphs)             # [B, C], gradient through one segment each
    loss = pairwise_hinge_loss(scores, runtime)
    ...
    seg_model.eval(); seg_model(graph)        # inference: all segments fresh, summed
"""

from .dropout import RESCALES, combine, stale_keep_mask, trained_multiplier
from .history import HistoryTable
from .loop import GSTSettings, StepModule, gst_trainer, load_gst_state, merge_gst_states
from .model import SegmentModel
from .partition import METHODS, Partition, PartitionCache, key_stem, partition, partition_key
from .subgraph import segment_batch, segment_data, split_segments
from .training import MISSING, GSTOutput, GSTTrainer, fill_missing, gst_step

__all__ = [
    "METHODS",
    "MISSING",
    "RESCALES",
    "GSTOutput",
    "GSTSettings",
    "GSTTrainer",
    "HistoryTable",
    "Partition",
    "PartitionCache",
    "SegmentModel",
    "StepModule",
    "combine",
    "fill_missing",
    "gst_step",
    "gst_trainer",
    "load_gst_state",
    "merge_gst_states",
    "partition",
    "key_stem",
    "partition_key",
    "segment_batch",
    "segment_data",
    "split_segments",
    "stale_keep_mask",
    "trained_multiplier",
]
