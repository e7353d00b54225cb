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
    assert named == {"uplift", "rl", "serve", "notebooks", "dev", "scale"}


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


# ---------------------------------------------------------------- layering (DESIGN.md)
# Orchestration: the service, the CLI, the demo and the live workers. Capabilities (every
# other module) never import them; they may import capabilities and each other.
ORCHESTRATION = ("mktlab.service", "mktlab.cli", "mktlab.demo", "mktlab.live.worker")

# (importer, imported) pairs allowed to cross the line, each with its reason.
LAYER_EXEMPTIONS: dict[tuple[str, str], str] = {
    # mktlab.cli loads "mktlab.live.cli:live" as the `mktlab live` command group: it is
    # the CLI layer living beside its capability, and `mktlab live run` starts workers.
    ("mktlab.live.cli", "mktlab.live.worker"): "the `mktlab live run` command starts the workers",
}

# Modules that reach MLflow other than mktlab/tracking.py, each with its reason. Reaching
# MLflow means importing ``mlflow`` or BentoML's MLflow integration ``bentoml.mlflow``
# (which imports mlflow and reads the registry).
MLFLOW_EXEMPTIONS: dict[str, str] = {}


def _is_orchestration(mod: str) -> bool:
    return any(mod == o or mod.startswith(o + ".") for o in ORCHESTRATION)


def test_capabilities_do_not_import_service_cli_demo_or_workers():
    from tests.test_imports import graph

    g = graph()
    assert all(o in g for o in ORCHESTRATION), "an orchestration module moved: update ORCHESTRATION"
    crossing = {
        (m, d) for m, deps in g.items() if not _is_orchestration(m) for d in deps
        if _is_orchestration(d)
    }  # fmt: skip
    bad = sorted(crossing - set(LAYER_EXEMPTIONS))
    assert not bad, f"capabilities importing the service / CLI / demo / workers: {bad}"
    stale = sorted(set(LAYER_EXEMPTIONS) - crossing)
    assert not stale, f"exemptions no longer needed, remove them: {stale}"


def _reaches_mlflow(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = [f"{node.value.id}.{node.attr}"]
        else:
            continue
        if any(n == "mlflow" or n.startswith(("mlflow.", "bentoml.mlflow")) for n in names):
            return True
    return False


def test_only_tracking_reaches_mlflow():
    from tests.test_imports import modules

    reaching = {m for m, path in modules().items() if _reaches_mlflow(ast.parse(path.read_text()))}
    assert "mktlab.tracking" in reaching  # the reader still sees it
    bad = sorted(reaching - {"mktlab.tracking"} - set(MLFLOW_EXEMPTIONS))
    assert not bad, f"only mktlab/tracking.py may import mlflow (or bentoml.mlflow): {bad}"
    stale = sorted(set(MLFLOW_EXEMPTIONS) - reaching)
    assert not stale, f"exemptions no longer needed, remove them: {stale}"


def test_only_config_reads_environment():
    pkg = ROOT / "mktlab"
    for f in pkg.rglob("*.py"):
        rel = f.relative_to(pkg).as_posix()
        if rel != "config.py":
            assert not re.search(
                r"os\.environ|os\.getenv|from os import .*\b(environ|getenv)\b", f.read_text()
            ), f"{rel} reads the environment"
