"""The README's Python blocks run as written: in order, in one session, in a fresh working
folder, on the bundled sample. The only change is fewer training steps, by exact textual
substitution of the step settings (each must be found, so the README cannot drift away
from what is run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# README text -> what the test runs instead: a 2-step run validated at its end.
SHRINK = {
    '"trainer.max_steps=150"': '"trainer.max_steps=2"',
    '"trainer.val_every=50"': '"trainer.val_every=2"',
}


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def shrunk(blocks: list[str]) -> list[str]:
    """The blocks with :data:`SHRINK` applied; each substitution must match exactly once."""
    joined = "\n".join(blocks)
    for old in SHRINK:
        assert joined.count(old) == 1, f"README no longer contains {old} exactly once"
    out = []
    for block in blocks:
        for old, new in SHRINK.items():
            block = block.replace(old, new)
        out.append(block)
    return out


def test_the_readme_blocks_are_found_and_shrinkable():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 5 and any("train(cfg)" in b for b in blocks)
    assert all(new in "\n".join(shrunk(blocks)) for new in SHRINK.values())


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    blocks = shrunk(python_blocks(README.read_text()))
    if any("import jax" in b for b in blocks):
        pytest.importorskip("jax")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TPUGRAPHS_ROOT", raising=False)
    session: dict = {"__name__": "__readme__"}
    for number, block in enumerate(blocks, start=1):
        code = compile(block, f"README.md python block {number}", "exec")
        exec(code, session)  # noqa: S102  (the README's own code is what is tested)
    assert (tmp_path / "outputs/notebook/checkpoints/best.pt").is_file()
    assert (tmp_path / "outputs/notebook/eval/valid/per_graph_valid.csv").is_file()
    assert (tmp_path / "graph.npz").is_file()
