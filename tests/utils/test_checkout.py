"""The warning when Python imports fewshot_distill from another clone than the working directory's."""

from __future__ import annotations

import subprocess
import sys

from fewshot_distill.utils.checkout import PACKAGE_DIR, checkout_of, other_checkout_warning
from tests.conftest import REPO_ROOT


def make_clone(root):
    (root / "fewshot_distill").mkdir(parents=True)
    (root / "fewshot_distill" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text("")
    return root


def test_a_checkout_is_found_from_any_folder_inside_it(tmp_path):
    clone = make_clone(tmp_path / "clone")
    (clone / "scripts").mkdir()
    assert checkout_of(clone / "scripts") == clone.resolve()
    assert checkout_of(tmp_path) is None


def test_warns_only_when_the_imported_package_is_another_clones(tmp_path):
    clone = make_clone(tmp_path / "clone")
    message = other_checkout_warning(clone)
    assert message and str(clone.resolve()) in message and f"PYTHONPATH={clone.resolve()}" in message
    assert other_checkout_warning(REPO_ROOT) is None  # the tests' own checkout
    assert other_checkout_warning(clone, package_dir=clone / "fewshot_distill") is None
    assert other_checkout_warning(tmp_path) is None  # not in a checkout: nothing to compare


def test_a_script_run_in_another_clone_warns_on_import(tmp_path):
    clone = make_clone(tmp_path / "clone")
    (clone / "scripts").mkdir()
    (clone / "scripts" / "run.py").write_text("import fewshot_distill\n")
    result = subprocess.run([sys.executable, "scripts/run.py"], cwd=clone, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert "imports fewshot_distill from" in result.stderr and str(PACKAGE_DIR.parent) in result.stderr
