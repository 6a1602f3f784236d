"""Main comparison figure: GSM8K accuracy (%) vs training step for every checkpointed condition, with the
base-model conditions (0-shot, 8-shot ICL) as dashed horizontal lines.

Run:
    python scripts/gen_main_fig.py --results experiments/eval/results.json --out assets/main_comparison_ours.png
    python scripts/gen_main_fig.py --published --out assets/main_comparison.png   # the paper's published numbers
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.results.figures import accuracy_figure, save_figure
from src.results.load import load_many

REPO_ROOT = Path(__file__).resolve().parent.parent
PUBLISHED_RESULTS = REPO_ROOT / "assets" / "published_results.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", nargs="+", metavar="R.json", help="eval_checkpoints.py results file(s)")
    source.add_argument("--published", action="store_true", help=f"plot the paper's numbers ({PUBLISHED_RESULTS})")
    parser.add_argument("--out", required=True, help="output PNG path")
    parser.add_argument("--title", default=None, help="figure title (default depends on the source)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths = [PUBLISHED_RESULTS] if args.published else args.results
    try:
        results = load_many(paths)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    model = results.get("model", "").split("/")[-1]
    prefix = f"{model} on GSM8K test" if model else "GSM8K test"
    if args.published:
        title = args.title or f"{prefix}: published numbers (paper README)"
        note = "Published numbers: only step 1000 is reported for the trained models."
    else:
        title = args.title or f"{prefix}: accuracy vs training step"
        note = None
    out = save_figure(accuracy_figure(results["conditions"], title=title, note=note), args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
