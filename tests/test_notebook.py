"""notebooks/walkthrough.ipynb runs top to bottom, in a kernel of this very interpreter.

The committed notebook is never rewritten: a temporary copy is executed (nbclient, the
"python3" kernel of ipykernel installed in this venv), with the repository's root as the
kernel's working directory and TFHYBRID_DATA_DIR pointing at the MNIST files. Any cell
that raises or exceeds its timeout fails the test with the cell's number and first line.
The notebook's own asserts (the audit's verdicts, the planted bug named) run too.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "walkthrough.ipynb"
CELL_TIMEOUT = 240  # seconds, per cell; the whole notebook: about 20 s on 2 idle cores
KERNEL_CHECK = "import sys\nprint(sys.prefix)\nprint(sys.executable)"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _cell_label(index: int, count: int, cell) -> str:
    """ "cell 4 of 43 of walkthrough.ipynb ('first line')": counted from 1, Markdown included."""
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"cell {index + 1} of {count} of {NOTEBOOK.name} ({first.strip()[:70]!r})"


def _kernel_check_failure(cell) -> str | None:
    """None when the kernel runs this interpreter; otherwise what it runs instead."""
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    lines = text.splitlines()
    expected = [sys.prefix, sys.executable]
    if len(lines) == 2 and all(
        os.path.realpath(got) == os.path.realpath(want)
        for got, want in zip(lines, expected, strict=True)
    ):
        return None
    return (
        f"the 'python3' kernel does not run this interpreter: it reported {lines}, "
        f"expected {expected}; install ipykernel into this venv, and remove any "
        "user-level 'python3' kernelspec that points elsewhere (jupyter kernelspec list)"
    )


def test_walkthrough_notebook_runs(data_dir, tmp_path):
    copy = tmp_path / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    # First, in the same kernel: which interpreter is it? (removed before saving the copy)
    nb.cells.insert(0, nbformat.v4.new_code_cell(KERNEL_CHECK))

    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    env = dict(os.environ, TFHYBRID_DATA_DIR=str(Path(data_dir).resolve()))
    client.reset_execution_trackers()
    failure = None
    with client.setup_kernel(env=env):
        for index, cell in enumerate(nb.cells):
            label = (
                "the kernel check"
                if index == 0
                else _cell_label(index - 1, len(nb.cells) - 1, cell)
            )
            try:
                client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except CellTimeoutError:
                failure = f"{label} did not finish within {CELL_TIMEOUT} s"
            except DeadKernelError as err:
                failure = f"the kernel died in {label}: {err}"
            except CellExecutionError as err:
                failure = f"{label} failed:\n{ANSI.sub('', str(err))}"
            if failure is None and index == 0:
                failure = _kernel_check_failure(cell)
            if failure is not None:
                break
    del nb.cells[0]
    nbformat.write(nb, copy)  # the executed copy, for a look when a cell failed
    assert failure is None, f"{failure}\n(executed copy: {copy})"
