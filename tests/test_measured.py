"""The README's "Measured in this repository" section is generated from the committed make mini outputs."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO_ROOT


def test_readme_measured_section_equals_the_generated_one(monkeypatch):
    from scripts.write_measured import END, START, measured_markdown

    monkeypatch.chdir(REPO_ROOT)  # the section names its sources by repo-relative paths, as make mini writes them
    readme = Path("README.md").read_text()
    section = readme.split(START, 1)[1].split(END, 1)[0]
    onpolicy = Path("assets/mini_onpolicy")  # make mini-onpolicy's runs, when committed
    generated = measured_markdown(Path("assets/mini"), Path("assets/published_results.json"),
                                  onpolicy if (onpolicy / "diagnostics.json").is_file() else None)
    assert section == "\n" + generated, "README measured section is stale: run scripts/write_measured.py --readme README.md"
