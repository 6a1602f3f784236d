"""Which clone's code runs: a warning when Python imports this package from another checkout.

Two clones sharing one virtual environment share its editable install, so `python scripts/x.py` run in clone
B silently runs clone A's package (`python -m` from a checkout's root imports the local one first). The git
commit a run records is the imported package's, so the run is still traceable; the warning says it at once.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]   # the imported fewshot_distill/
CHECKOUT_MARKER = "pyproject.toml"                  # beside fewshot_distill/ in a checkout of this repository


def checkout_of(folder: str | Path) -> Path | None:
    """The checkout of this repository that `folder` is in (its root), or None outside one."""
    folder = Path(folder).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / CHECKOUT_MARKER).is_file() and (candidate / PACKAGE_DIR.name / "__init__.py").is_file():
            return candidate
    return None


def other_checkout_warning(cwd: str | Path | None = None, package_dir: Path = PACKAGE_DIR) -> str | None:
    """One line when the working directory is a checkout whose package is not the imported one; else None."""
    checkout = checkout_of(cwd or Path.cwd())
    if checkout is None or (checkout / package_dir.name).resolve() == package_dir.resolve():
        return None
    return (f"this checkout is {checkout}, but Python imports {package_dir.name} from {package_dir.parent} (the "
            f"virtual environment's editable install of another clone), so that clone's code runs: give each clone "
            f"its own venv (make install in {checkout}), or set PYTHONPATH={checkout}")
