"""`make help` lists every target of the Makefile, from the Makefile's own header comment."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO_ROOT


def test_make_help_lists_every_phony_target():
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    listed = subprocess.run(["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    named = {match.group(1) for match in re.finditer(r"make ([\w-]+)", listed)}
    missing = [t for t in targets if t not in named]
    assert not missing, f"targets without a line in the Makefile's header comment: {missing}"
