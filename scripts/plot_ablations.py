"""Ablation figures of a results set with several trained conditions (e.g. the published controls: SFT,
distillation with a 0-shot teacher, with shuffled-answer shots, with the 8-shot teacher):
- the ablation curve: accuracy (%) per checkpoint, one line per condition;
- the ablation bars: one bar per condition, the checkpoint picked by --select (best, as published, or final).

Run:
    python scripts/plot_ablations.py --results assets/published_controls.json \
        --curves assets/ablation_curves.png --bars assets/ablation_bars.png
"""

from __future__ import annotations

import argparse
import sys

from fewshot_distill.results.figures import save_figure
from fewshot_distill.results.load import SELECTION_RULES
from fewshot_distill.results.plots import ablation_figures
from fewshot_distill.results.tables import selection_note


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", nargs="+", required=True, metavar="R.json", help="results file(s), merged")
    parser.add_argument("--curves", default=None, help="output PNG of the accuracy-per-checkpoint curves")
    parser.add_argument("--bars", default=None, help="output PNG of the per-condition bars")
    parser.add_argument("--select", choices=SELECTION_RULES, default="best",
                        help="checkpoint shown per condition: best (as published; default) or final")
    parser.add_argument("--no-intervals", action="store_true",
                        help="leave out the 95%% error bars on the bars figure (bootstrap from predictions when "
                             "present next to the results, else Wilson from the counts)")
    parser.add_argument("--title", default=None, help="title prefix (default: the results file's title)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        figures = ablation_figures(args.results, select=args.select, intervals=not args.no_intervals,
                                   title=args.title, curves=bool(args.curves), bars=bool(args.bars))
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    print(selection_note(args.select))
    for name, fig in figures.items():
        print(f"wrote {save_figure(fig, getattr(args, name))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
