"""Write the README's repository map (fewshot_distill/utils/repo_map.py) between its `<!-- repo-map:start -->` /
`<!-- repo-map:end -->` markers: every fewshot_distill/ module with its docstring's first sentence, one line per folder
beside fewshot_distill/. Run it after adding, removing or re-describing a module (tests/utils/test_repo_map.py fails
until then).

    python scripts/write_repo_map.py --readme README.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fewshot_distill.utils.io import replace_between_markers
from fewshot_distill.utils.repo_map import repo_map_markdown

START, END = "<!-- repo-map:start -->", "<!-- repo-map:end -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", default="README.md", help=f"file to update between {START} and {END}")
    parser.add_argument("--repo", default=".", help="repository root whose fewshot_distill/ is mapped")
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
