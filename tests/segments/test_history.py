"""The history table: index arithmetic, state round trip, entry ages."""

import io

import pytest
import torch

from tpulearn.segments import HistoryTable


def test_history_table_index_arithmetic():
    table = HistoryTable()
    table.ensure("a", num_configs=4, num_segments=3)
    table.ensure("b", num_configs=2, num_segments=2)
    table.write("a", torch.tensor([1, 3]), 2, torch.tensor([10.0, 30.0]))
    table.write("a", torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([5.0, 7.0]))
    expected = torch.zeros(4, 3)
    expected[1, 2], expected[3, 2], expected[0, 0], expected[3, 1] = 10, 30, 5, 7
    assert torch.equal(table.values["a"], expected)
    assert torch.equal(table.filled["a"], expected != 0)
    # Row-major per graph: (config 3, segment 1) is flat entry 3 * 3 + 1 = 10.
    assert table.values["a"].flatten()[10] == 7
    values, filled = table.read("a", torch.tensor([3, 1]))
    assert values.tolist() == [[0.0, 7.0, 30.0], [0.0, 0.0, 10.0]]
    assert filled.tolist() == [[False, True, True], [False, False, True]]
    assert not table.filled["b"].any() and table.num_entries == 16
    table.ensure("a", num_configs=6, num_segments=3)  # grows, keeps what it had
    assert table.values["a"].shape == (6, 3) and torch.equal(table.values["a"][:4], expected)
    assert not table.filled["a"][4:].any()
    with pytest.raises(ValueError, match="segments"):
        table.ensure("a", 6, 4)


def test_history_state_dict_round_trip():
    table = HistoryTable()
    table.ensure("g", 3, 2)
    table.write("g", torch.tensor([2]), 1, torch.tensor([1.5]))
    buffer = io.BytesIO()
    torch.save(table.state_dict(), buffer)
    buffer.seek(0)
    other = HistoryTable()
    other.load_state_dict(torch.load(buffer))
    assert torch.equal(other.values["g"], table.values["g"])
    assert torch.equal(other.filled["g"], table.filled["g"])
    assert torch.equal(other.stamps["g"], table.stamps["g"]) and other.clock == table.clock


def test_history_ages_count_steps_since_the_last_write():
    table = HistoryTable()
    table.ensure("g", 4, 2)
    table.write("g", torch.tensor([0, 1]), 0, torch.ones(2))
    table.tick()
    table.tick()
    table.write("g", torch.tensor([1]), 0, torch.ones(1))
    table.write("g", torch.tensor([3]), 1, torch.ones(1))
    ages = table.age("g", torch.tensor([0, 1, 3]))
    assert ages[:, 0].tolist() == [2, 0, 2] and ages[2, 1] == 0
    table.ensure("g", 6, 2)  # grown rows are unwritten
    assert not table.filled["g"][4:].any()
    # A state saved without write steps loads with every entry written at step 0.
    state = table.state_dict()
    del state["stamps"], state["clock"]
    other = HistoryTable()
    other.load_state_dict(state)
    assert other.clock == 0 and not other.stamps["g"].any()
