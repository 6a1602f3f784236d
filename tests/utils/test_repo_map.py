"""The README's repository map is generated from fewshot_distill/ (fewshot_distill/utils/repo_map.py) and names every module."""

from __future__ import annotations

from pathlib import Path

import pytest

from fewshot_distill.utils.repo_map import first_sentence, module_summary, repo_map_markdown, src_modules
from tests.conftest import REPO_ROOT

START, END = "<!-- repo-map:start -->", "<!-- repo-map:end -->"


def _readme_map() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    assert START in readme and END in readme, "README.md lacks the repo-map markers"
    return readme.split(START, 1)[1].split(END, 1)[0]


def test_readme_map_equals_a_fresh_regeneration():
    assert _readme_map() == "\n" + repo_map_markdown(REPO_ROOT), (
        "README's repository map is stale: run python scripts/write_repo_map.py")


def test_every_src_module_is_in_the_readme_map():
    """Built from the filesystem, independently of the generator: a module missing from the map fails."""
    readme_map = _readme_map()
    modules = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "fewshot_distill").rglob("*.py")
                     if p.name != "__init__.py")
    assert len(modules) > 50
    missing = [m for m in modules if f"`{m}`" not in readme_map]
    assert not missing, f"fewshot_distill/ modules missing from the README map (run scripts/write_repo_map.py): {missing}"
    packages = sorted(p.parent.name for p in (REPO_ROOT / "fewshot_distill").glob("*/__init__.py"))
    assert all(f"`fewshot_distill/{p}/`" in readme_map for p in packages)


def test_first_sentence_joins_lines_and_stops_at_the_full_stop():
    assert first_sentence("One thing: a, b and\nc. More text here.\n\nDetails.") == "One thing: a, b and c."
    assert first_sentence("No full stop at all") == "No full stop at all"
    assert first_sentence("Keeps `a.b` and e.g. lower case. Stops Here.") == "Keeps `a.b` and e.g. lower case."


def test_a_new_module_appears_and_one_without_docstring_is_named(tmp_path):
    (tmp_path / "fewshot_distill" / "pkg").mkdir(parents=True)
    for folder in ("configs", "scripts", "tests", "docs", "assets"):
        (tmp_path / folder).mkdir()
    (tmp_path / "fewshot_distill" / "top.py").write_text('"""Top module. More."""\n')
    (tmp_path / "fewshot_distill" / "pkg" / "__init__.py").write_text('"""The package."""\n')
    (tmp_path / "fewshot_distill" / "pkg" / "leaf.py").write_text('"""Leaf module."""\n')
    (tmp_path / "scripts" / "run.py").write_text("")
    text = repo_map_markdown(tmp_path)
    assert "- `fewshot_distill/top.py`: Top module." in text
    assert "- **`fewshot_distill/pkg/`**: The package." in text and "  - `fewshot_distill/pkg/leaf.py`: Leaf module." in text
    assert "`run.py`" in text
    assert src_modules(tmp_path) == ["fewshot_distill/pkg/leaf.py", "fewshot_distill/top.py"]
    (tmp_path / "fewshot_distill" / "pkg" / "bare.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="bare.py has no module docstring"):
        repo_map_markdown(tmp_path)
    assert module_summary(Path(tmp_path / "fewshot_distill" / "top.py")) == "Top module."


def test_write_repo_map_rewrites_a_stale_block(tmp_path):
    from scripts.write_repo_map import main

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{START}\n- stale\n{END}\ntail\n")
    assert main(["--readme", str(readme), "--repo", str(REPO_ROOT)]) == 0
    assert readme.read_text() == f"# x\n{START}\n{repo_map_markdown(REPO_ROOT)}{END}\ntail\n"
