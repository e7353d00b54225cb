"""README figures come from the benchmarks' results files and cannot drift from them.

``benchmarks/readme_figures.py --check`` renders every README section between
``<!-- figures:<name> -->`` markers from ``benchmarks/results/<name>.json`` and fails
when the README says something else. Sections whose benchmark has no full-size results
file yet are left alone (and reported as such).
"""

from __future__ import annotations

import json

import pytest

from benchmarks import _results, readme_figures


def test_the_readme_agrees_with_every_results_file(capsys):
    assert readme_figures.main(["--check"]) == 0, capsys.readouterr().out


def test_every_marked_section_has_a_renderer_and_the_files_render():
    spans = readme_figures.find_sections(readme_figures.README.read_text())
    assert set(spans) <= set(readme_figures.SECTIONS)
    for name in spans:
        path = readme_figures.RESULTS / f"{name}.json"
        if path.exists() and "full" in json.loads(path.read_text()):
            assert readme_figures.render(name) is not None, f"results/{name}.json lacks a figure"


@pytest.fixture
def tiny(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n\n"
        "  <!-- figures:world -->\n"
        "  1M users take about 35 s on 2 cores (`benchmarks/world.py` prints users/s).\n"
        "  <!-- /figures:world -->\n\n"
        "<!-- figures:rl -->\nold RL text\n<!-- /figures:rl -->\n"
    )
    results = tmp_path / "results"
    _results.write_results(
        "world", {"seconds_per_1m_users": 26.97}, machine="test box", results_dir=results
    )
    return readme, results


def test_a_drift_fails_check_and_write_fixes_it(tiny, capsys):
    readme, results = tiny
    args = ["--readme", str(readme), "--results", str(results)]
    assert readme_figures.main(["--check", *args]) == 1
    out = capsys.readouterr().out
    assert "world           DIFFERS" in out
    assert "rl              not measured" in out  # no results file: left as it is
    assert readme_figures.main(["--write", *args]) == 0
    text = readme.read_text()
    assert "about 27 s on" in text
    assert "measured on a test box" in text
    assert "old RL text" in text
    assert readme_figures.main(["--check", *args]) == 0


def test_a_quick_run_does_not_reach_the_readme(tiny):
    _, results = tiny
    _results.write_results(
        "rl", {"ppo_return": 1.0}, machine="test box", variant="quick", results_dir=results
    )
    assert readme_figures.render("rl", results) is None  # only a quick run: not quoted
    doc = json.loads((results / "rl.json").read_text())
    assert set(doc) == {"quick"}
    assert doc["quick"]["machine"] == "test box"
    assert {"measured_at", "command", "cores"} <= set(doc["quick"])


def test_an_unclosed_or_unknown_section_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- figures:nosuch -->\nx\n<!-- /figures:nosuch -->\n")
    assert readme_figures.main(["--check", "--readme", str(readme)]) == 1
    readme.write_text("<!-- figures:world -->\nx\n")
    with pytest.raises(SystemExit, match="no closing marker"):
        readme_figures.main(["--check", "--readme", str(readme)])
