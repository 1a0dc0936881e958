"""Broken or foreign input raises FeaturizeError naming the file and field; nothing else.

Never an IndexError, a RecursionError or a hang: truncation at every offset, random bytes,
mutated modules, deep groups, other messages, empty files.
"""

import warnings

import numpy as np
import pytest
from featurize_inputs import LAYOUT_NPZ, LAYOUT_PB, TILE_PB, len_field, small_module, tag, varint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tpulearn.featurize import FeaturizeError, featurize, read_message
from tpulearn.featurize.wire import field_spans

SMALL = small_module()


def featurize_or_error(data: bytes, kind: str = "auto"):
    """The outcome of featurizing: a record (list) or the FeaturizeError; anything else
    propagates and fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mutated opcodes warn as unknown
            return featurize(data, kind)
    except FeaturizeError as exc:
        assert str(exc)  # a message, naming what was expected
        return exc


def test_truncation_at_every_offset_of_a_module():
    """Every cut raises, except at a top-level field boundary, where the prefix is itself a
    well-formed (shorter) module: here, the first computation alone."""
    boundaries = {stop for *_, stop in field_spans(SMALL)}
    parsed = []
    for cut in range(len(SMALL)):
        outcome = featurize_or_error(SMALL[:cut])
        if not isinstance(outcome, FeaturizeError):
            parsed.append(cut)
    assert parsed and set(parsed) <= boundaries
    assert len(parsed) <= 2


@pytest.mark.slow  # featurizes 65 truncated copies of a tuning file
def test_truncated_tuning_file_at_many_offsets(tmp_path):
    data = LAYOUT_PB.read_bytes()
    spans = field_spans(data)
    module_end = spans[0][3]  # the module, then 122 runs, then config_index_to_node
    boundaries = {stop for *_, stop in spans}
    cuts = np.r_[np.linspace(0, module_end, 60), np.linspace(module_end + 1, len(data) - 1, 5)]
    path = tmp_path / "cut.pb"
    for cut in cuts.astype(int):
        path.write_bytes(data[:cut])
        outcome = featurize_or_error(path)
        if isinstance(outcome, FeaturizeError):
            assert str(path) in str(outcome)
        else:  # a prefix ending between runs is a ModuleTuningData with fewer runs
            assert cut in boundaries and outcome.num_configs < 112
    path.write_bytes(data[:200_000])
    with pytest.raises(FeaturizeError, match=r"field 'module'.*expected \d+ bytes of payload"):
        featurize(path, "tuning")


def test_seeded_random_bytes_are_rejected():
    rng = np.random.default_rng(0)
    for size in rng.integers(1, 4000, size=150):
        data = rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()
        with pytest.raises(FeaturizeError, match="expected"):
            read_message(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_crash(data):
    featurize_or_error(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 255)), max_size=6))
def test_mutated_modules_featurize_or_raise_cleanly(edits):
    data = bytearray(SMALL)
    for pos, value in edits:
        data[pos] = value
    outcome = featurize_or_error(bytes(data))
    if not isinstance(outcome, FeaturizeError):
        # A few edited bytes can make another kind of message (auto-detected): a tile
        # tuning file gives a list of kernels, never an empty one.
        records = outcome if isinstance(outcome, list) else [outcome]
        assert records and all(r.node_feat.shape[1] == 140 for r in records)


def test_empty_file_and_missing_file(tmp_path):
    empty = tmp_path / "empty.pb"
    empty.write_bytes(b"")
    for kind in ("auto", "module", "hlo", "tuning", "tile"):
        with pytest.raises(FeaturizeError, match=f"{empty}.*expected"):
            featurize(empty, kind)
    with pytest.raises(FeaturizeError, match="no such file"):
        featurize(tmp_path / "missing.pb")
    with pytest.raises(FeaturizeError, match="a directory"):
        featurize(tmp_path)


def test_other_messages_are_named_as_such(tmp_path):
    with pytest.raises(FeaturizeError, match=r"unet_3d.*expected an HloModuleProto, HloProto"):
        featurize(LAYOUT_NPZ)  # a zip archive
    text = tmp_path / "module.txt"
    text.write_text("HloModule jit_f\n\nENTRY main { ROOT p = f32[] parameter(0) }\n")
    with pytest.raises(FeaturizeError, match="module.txt"):
        featurize(text)
    with pytest.raises(FeaturizeError, match=r"op_tuning_data.pb: field 'module"):
        featurize(TILE_PB, "tuning")  # a TuningData is not a ModuleTuningData
    with pytest.raises(FeaturizeError, match=r"module_tuning_data_layout.pb: field 'modules"):
        featurize(LAYOUT_PB, "tile")
    with pytest.raises(FeaturizeError, match=r"field 'module\.name'.*expected"):
        featurize(LAYOUT_PB, "module")


def test_pathological_encodings_raise_quickly():
    deep_groups = tag(20, 3) * 100_000
    with pytest.raises(FeaturizeError, match="nested at most"):
        read_message(deep_groups, "module")
    with pytest.raises(FeaturizeError, match="bytes of payload"):
        read_message(tag(3, 2) + varint(1 << 60), "module")
    with pytest.raises(FeaturizeError, match="at most 10 bytes"):
        read_message(tag(6, 0) + b"\xff" * 11 + b"\x01", "module")
    with pytest.raises(FeaturizeError, match="field number"):
        read_message(b"\x00\x01", "module")
    with pytest.raises(FeaturizeError, match="wire type"):
        read_message(bytes([3 << 3 | 7]), "module")
    with pytest.raises(FeaturizeError, match=r"field 'module\.computations\[0\]\.name'"):
        read_message(len_field(3, len_field(1, b"\xff\xfe")), "module")  # not UTF-8
    with pytest.raises(FeaturizeError, match="length-delimited data.*found varint"):
        read_message(tag(3, 0) + varint(1), "module")  # computations as a number
