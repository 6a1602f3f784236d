"""Write the README's repository map (src/utils/repo_map.py) between its `<!-- repo-map:start -->` /
`<!-- repo-map:end -->` markers: every src/ module with its docstring's first sentence, one line per folder
beside src/. Run it after adding, removing or re-describing a module (tests/utils/test_repo_map.py fails
until then).

    python scripts/write_repo_map.py --readme README.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from src.utils.io import replace_between_markers
from src.utils.repo_map import repo_map_markdown

START, END = "<!-- repo-map:start -->", "<!-- repo-map:end -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", default="README.md", help=f"file to update between {START} and {END}")
    parser.add_argument("--repo", default=".", help="repository root whose src/ is mapped")
    args = parser.parse_args(argv)
    try:
        markdown = repo_map_markdown(Path(args.repo))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    replace_between_markers(args.readme, START, END, markdown)
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
