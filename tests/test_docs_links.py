"""Every relative link in README.md, compute.md and docs/*.md points at a file or folder that exists, and the
README links every docs/ page."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

# [text](target) and ![alt](target), the target ending at the first space or closing parenthesis; and an
# HTML image's src="target" (the README's sized figure).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")


def test_relative_links_resolve():
    pages = [REPO_ROOT / "README.md", REPO_ROOT / "compute.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in (markdown or html for markdown, html in LINK.findall(page.read_text())):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            path = target.split("#", 1)[0]
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(REPO_ROOT)}: {target}")
    assert not broken, f"links to nothing: {broken}"


def test_readme_links_every_docs_page():
    readme = (REPO_ROOT / "README.md").read_text()
    unlinked = [p.name for p in sorted((REPO_ROOT / "docs").glob("*.md")) if f"](docs/{p.name})" not in readme]
    assert not unlinked, f"docs pages the README's Documentation section does not link: {unlinked}"
