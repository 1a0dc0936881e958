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
