"""Repository layout promises: DESIGN.md's top level, conda env agreement, paired notebooks."""

from __future__ import annotations

import ast
import functools
import operator
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_top_level_layout():
    for name in (
        "notebooks",
        "mktlab",
        "models",
        "data",
        "bentofile.yaml",
        "mlruns",
        "tests",
        "benchmarks",
        "environment.yml",
        "pyproject.toml",
        "Makefile",
        "README.md",
        ".ci/run",
    ):
        assert (ROOT / name).exists(), name


def test_environment_yml_agrees_with_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"]
    spec = py["project"]["requires-python"]
    assert ">=3.11" in spec
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    # versions live only in pyproject: the pip section installs the project, nothing pinned twice
    assert pip == ["-e .[all]"]
    extras = py["project"]["optional-dependencies"]
    assert "all" in extras
    named = {x for e in extras["all"] for x in e.split("[")[1].split("]")[0].split(",")}
    assert named == {"uplift", "rl", "serve", "notebooks", "dev"}


def test_pins_that_matter():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = py["project"]["dependencies"] + functools.reduce(
        operator.iadd, py["project"]["optional-dependencies"].values(), []
    )
    assert "mlflow==3.17.2" in deps
    assert "torch==2.13.0" in deps
    assert "bentoml==1.4.40" in deps


def _code_cells_py(path: Path) -> list[str]:
    import jupytext

    nb = jupytext.read(path)
    return [c.source.strip() for c in nb.cells if c.cell_type == "code" and c.source.strip()]


NOTEBOOK_PYS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.py"))


@pytest.mark.parametrize("py", NOTEBOOK_PYS, ids=lambda p: p.stem)
def test_notebooks_paired_stripped_and_parameterised(py):
    import nbformat

    ipynb = py.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{py.name} has no paired .ipynb (run make notebooks-sync)"
    nb = nbformat.read(ipynb, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        "outputs not stripped"
    )
    assert any("parameters" in c.metadata.get("tags", []) for c in code), "no 'parameters' cell"
    assert [c.source.strip() for c in code if c.source.strip()] == _code_cells_py(py), (
        "ipynb and py disagree"
    )
    assert "autoreload" in code[0].source
    # notebooks call mktlab; they define no library code
    for c in code:
        src = "\n".join(
            ln for ln in c.source.splitlines() if not ln.lstrip().startswith(("%", "!"))
        )
        tree = ast.parse(src)
        defs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not defs, f"library code in a notebook: {defs}"


def test_only_config_reads_environment_and_only_tracking_imports_mlflow():
    pkg = ROOT / "mktlab"
    for f in pkg.rglob("*.py"):
        text = f.read_text()
        rel = f.relative_to(pkg).as_posix()
        if rel != "config.py":
            assert not re.search(r"os\.environ|os\.getenv", text), f"{rel} reads the environment"
        if rel != "tracking.py" and not rel.startswith("service/"):
            assert not re.search(r"^\s*(import mlflow|from mlflow)", text, re.M), (
                f"{rel} imports mlflow"
            )
        if not rel.startswith(("service/", "cli/")) and rel != "demo.py":  # orchestration may
            assert not re.search(
                r"^\s*(from mktlab\.service|import mktlab\.service)", text, re.M
            ), f"{rel} imports the service"
