"""Execute a notebook top to bottom with small parameters and return what it recorded.

Convention: each notebook has a cell tagged ``parameters``; the runner inserts a cell
right after it that overrides those values (as papermill does). By its last cell the
notebook holds a dict named ``results`` of the numbers it wants checked; the runner
appends a cell that prints it as JSON and returns it parsed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
_MARK = "__MKTLAB_RESULTS__"


def run_notebook(
    name: str, parameters: dict[str, Any] | None = None, timeout: int = 900
) -> dict[str, Any]:
    """Run ``notebooks/<name>.ipynb`` and return its ``results`` dict."""
    import nbformat
    from nbclient import NotebookClient

    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    idx = next(
        (
            i
            for i, c in enumerate(nb.cells)
            if "parameters" in c.get("metadata", {}).get("tags", [])
        ),
        None,
    )
    if idx is None:
        raise AssertionError(f"{path.name} has no cell tagged 'parameters'")
    if parameters:
        src = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
        nb.cells.insert(
            idx + 1, nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]})
        )
    nb.cells.append(
        nbformat.v4.new_code_cell(
            f"import json as _json\nprint({_MARK!r} + _json.dumps(results, default=float))"
        )
    )
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    for output in nb.cells[-1].get("outputs", []):
        text = output.get("text", "")
        if _MARK in text:
            return json.loads(text.split(_MARK, 1)[1])
    raise AssertionError(f"{path.name} did not print its results")
