"""Main comparison figure: GSM8K accuracy (%) vs training step for every checkpointed condition, with the
base-model conditions (0-shot, few-shot ICL) as dashed horizontal lines. The checkpoint the selection rule picks
(--select best|final) is annotated on each curve; --intervals adds 95% error bars (bootstrap over problems from
the predictions file next to the results, else Wilson intervals from the counts).

Run:
    python scripts/gen_main_fig.py --results experiments/eval/results.json --out assets/main_comparison_ours.png
    python scripts/gen_main_fig.py --published --out assets/main_comparison.png   # the paper's published numbers
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fewshot_distill.results.figures import save_figure
from fewshot_distill.results.load import SELECTION_RULES
from fewshot_distill.results.plots import main_comparison_figure
from fewshot_distill.results.tables import selection_note

PUBLISHED_RESULTS = Path(__file__).resolve().parent.parent / "assets" / "published_results.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", nargs="+", metavar="R.json", help="eval_checkpoints.py results file(s)")
    source.add_argument("--published", action="store_true", help=f"plot the paper's numbers ({PUBLISHED_RESULTS})")
    parser.add_argument("--out", required=True, help="output PNG path")
    parser.add_argument("--title", default=None, help="figure title (default depends on the source)")
    parser.add_argument("--select", choices=SELECTION_RULES, default="best",
                        help="checkpoint annotated on each curve: best (as the paper reports; default) or final")
    parser.add_argument("--intervals", action="store_true",
                        help="draw 95%% intervals: bootstrap from the predictions file, else Wilson from counts")
    parser.add_argument("--predictions", nargs="+", default=None, metavar="P.jsonl",
                        help="predictions file(s) for --intervals (default: the one next to each results file)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        fig = main_comparison_figure([PUBLISHED_RESULTS] if args.published else args.results,
                                     published=args.published, select=args.select, intervals=args.intervals,
                                     predictions=args.predictions, title=args.title)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    print(selection_note(args.select))
    print(f"wrote {save_figure(fig, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
