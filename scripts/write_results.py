"""README result tables as Markdown: main table (one row per condition) and accuracy per checkpoint with the
distillation - SFT delta in percentage points. Every number comes from the results JSON.

Run:
    python scripts/write_results.py --results assets/published_results.json --out assets/published_results.md
    python scripts/write_results.py --results experiments/eval/results.json          # prints to stdout
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.results.load import load_many
from src.results.tables import results_markdown


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", nargs="+", required=True, metavar="R.json",
                        help="eval_checkpoints.py results file(s); several are merged")
    parser.add_argument("--out", default=None, help="output .md path (default: stdout)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        markdown = results_markdown(load_many(args.results), sources=args.results)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    if args.out is None:
        sys.stdout.write(markdown)
    else:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
