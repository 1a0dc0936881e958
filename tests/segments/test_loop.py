"""GST in a training loop: which models gst_trainer gives a GSTTrainer, and its warnings."""

import warnings

import pytest
from segment_inputs import small

from tpulearn.segments import GSTSettings, SegmentModel, gst_trainer


def test_trainer_trains_checkpointed_segments_without_a_history_table(tmp_path):
    seg = SegmentModel(small(), max_segment_nodes=1000, checkpoint=True)
    assert gst_trainer(seg) is None
    assert "checkpoint" in repr(seg)


def test_gst_settings_for_a_model_that_does_not_train_by_gst_warn():
    settings = GSTSettings(max_age=0)
    with pytest.warns(UserWarning, match=r"\{'max_age': 0\} have no effect: SAGE trains on whole"):
        assert gst_trainer(small(), settings) is None
    disabled = SegmentModel(small(), max_segment_nodes=1000, enabled=False)
    with pytest.warns(UserWarning, match="segments disabled"):
        assert gst_trainer(disabled, settings) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gst_trainer(small(), GSTSettings()) is None  # the defaults: nothing was set
        assert gst_trainer(SegmentModel(small(), 1000), settings).max_age == 0


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"keep_prob": 1.5}, r"gst.keep_prob must be a number in \[0, 1\], got 1.5"),
        ({"rescale": "both"}, r"gst.rescale must be one of \('trained', 'stale', 'none'\)"),
        ({"missing": "skip"}, r"gst.missing must be one of \('fill', 'zero'\)"),
        ({"fill_chunk": 0}, r"gst.fill_chunk must be an integer >= 1, got 0"),
        ({"dropout_unit": "node"}, r"gst.dropout_unit must be one of \('entry', 'segment'\)"),
        ({"max_age": -1}, r"gst.max_age must be an integer >= 0 \(null: never recompute\)"),
    ],
)
def test_bad_gst_settings_are_refused_when_the_config_is_built(setting, message):
    # keep_prob and fill_chunk were once checked only inside the first GST step (after the
    # run had started), fill_chunk=0 as "range() arg 3 must not be zero".
    with pytest.raises(ValueError, match=message):
        GSTSettings(**setting)


def test_the_edges_of_the_gst_settings_are_valid():
    for keep_prob in (0.0, 1.0):
        assert GSTSettings(keep_prob=keep_prob, fill_chunk=1, max_age=0).keep_prob == keep_prob
