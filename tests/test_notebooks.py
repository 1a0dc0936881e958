"""The notebooks under notebooks/: committed without outputs, and they run on the sample.

Each notebook is executed in a fresh kernel started with the interpreter running pytest
(``sys.executable``), whichever kernel specs the machine has installed. A notebook whose
``metadata.tpulearn.requires`` names a module that is not installed is skipped.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

from jupyter_client import KernelManager  # noqa: E402  (after the skips above)
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ThisInterpreter(KernelSpecManager):
    """Kernel specs that start an IPython kernel in the interpreter running the tests.

    jupyter_client replaces a bare ``python`` in a spec's argv by ``sys.executable``, but an
    installed spec may name another interpreter by its full path; this one never does.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name=f"Python ({sys.executable})",
            language="python",
            resource_dir=str(NOTEBOOKS),
        )


@pytest.mark.slow
def test_the_kernel_runs_the_interpreter_running_the_tests():
    probe = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")]
    )
    km = KernelManager(kernel_name="python3", kernel_spec_manager=ThisInterpreter())
    nbclient.NotebookClient(probe, km=km, timeout=120).execute()
    assert probe.cells[0].outputs[0].text.strip() == sys.executable


def test_there_are_notebooks():
    names = [p.name for p in PATHS]
    assert {"01_quickstart.ipynb", "02_dataset_tour.ipynb", "03_segment_training.ipynb"} <= set(
        names
    )


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"


def missing_requirements(nb) -> list[str]:
    """The modules of ``metadata.tpulearn.requires`` that cannot be imported here."""
    requires = nb.metadata.get("tpulearn", {}).get("requires", [])
    return [m for m in requires if not importable(m)]


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def test_missing_requirements_are_read_from_the_metadata():
    nb = nbformat.v4.new_notebook(
        metadata={"tpulearn": {"requires": ["json", "no_such_module_tpulearn", "no_such.sub"]}}
    )
    assert missing_requirements(nb) == ["no_such_module_tpulearn", "no_such.sub"]
    assert missing_requirements(nbformat.v4.new_notebook()) == []


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_and_draws(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    missing = missing_requirements(nb)
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)} (not installed)")
    out = tmp_path / "figures"
    monkeypatch.setenv("TPULEARN_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    km = KernelManager(kernel_name="python3", kernel_spec_manager=ThisInterpreter())
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} displayed no image/png output"
    written = sorted(out.glob("*.png"))
    if any("TPULEARN_NOTEBOOK_OUT" in c.source for c in nb.cells):
        assert written, f"{path.name} wrote no figure to TPULEARN_NOTEBOOK_OUT"
    for png in written:
        assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 1000
