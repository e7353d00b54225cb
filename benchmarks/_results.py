"""Benchmark figures on disk: each benchmark writes what it printed, the README quotes it.

``write_results(name, figures)`` stores one run's figures in
``benchmarks/results/<name>.json`` under a *variant* key: ``"full"`` for a run at the
default (README) sizes, ``"quick"`` for ``--quick``, or any name a benchmark passes for
another configuration it documents (e.g. ``"connections-8"``). Each entry also records
the machine (cores, CPU, load average when the benchmark started), the time and the
command line. ``benchmarks/readme_figures.py`` renders the README sections between
``<!-- figures:<name> -->`` markers from these files, and ``--check`` fails when README and
files disagree, so the two cannot drift apart silently.

The files are small JSON and committed with the README they back.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_LOAD_AT_START = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def cpu_model() -> str:
    """The CPU model name (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_machine() -> str:
    """``"2-core AMD EPYC, load average 0.4 at start"``: what the figures ran on."""
    load = "" if math.isnan(_LOAD_AT_START) else f", load average {_LOAD_AT_START:.1f} at start"
    return f"{os.cpu_count()}-core {cpu_model()}{load}"


def _plain(value: Any) -> Any:
    """JSON-able copy: numpy scalars and arrays to Python, NaN/inf to None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def variant_of(argv: list[str] | None = None) -> str:
    """``"quick"`` when the command line asked for a smoke run, else ``"full"``."""
    args = sys.argv[1:] if argv is None else argv
    return "quick" if "--quick" in args else "full"


def write_results(
    name: str,
    figures: Mapping[str, Any],
    *,
    machine: str | None = None,
    variant: str | None = None,
    results_dir: Path | None = None,
) -> Path:
    """Store one run's ``figures`` in ``<results_dir>/<name>.json`` under ``variant``.

    Parameters
    ----------
    name : str
        The benchmark (the README section ``<!-- figures:<name> -->``).
    figures : mapping
        The numbers the benchmark printed, by name (nested mappings allowed).
    machine : str, optional
        What it ran on; default :func:`describe_machine`. Say "quiet" or "shared" here
        when you know it.
    variant : str, optional
        Default :func:`variant_of` the command line (``"full"`` or ``"quick"``).
    results_dir : path, optional
        Default ``benchmarks/results``.

    Returns
    -------
    Path
        The file written (atomically: other variants in it are kept).
    """
    folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc[variant or variant_of()] = {
        **_plain(dict(figures)),
        "cores": os.cpu_count(),
        "machine": machine or describe_machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", "/".join(Path(sys.argv[0]).parts[-2:]), *sys.argv[1:]]),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    print(f"figures written to {path.relative_to(folder.parent)} [{variant or variant_of()}]")
    return path
