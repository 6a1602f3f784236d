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

from fewshot_distill.results.figures import accuracy_figure, save_figure, selected_accuracy_bars
from fewshot_distill.results.load import SELECTION_RULES, load_many
from fewshot_distill.results.labels import recorded_labels
from fewshot_distill.results.stats import accuracy_intervals
from fewshot_distill.results.tables import selection_note

SELECTION_MARKS = {
    "best": "Each condition's best checkpoint, picked on the test set (optimistic).",
    "final": "Each condition's final checkpoint.",
}
INTERVAL_NOTES = {"": "", "bootstrap": " Bars: 95% bootstrap intervals.",
                  "wilson": " Bars: 95% Wilson intervals (n = problems per entry)."}


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
    if not args.curves and not args.bars:
        raise SystemExit("error: nothing to draw; pass --curves OUT.png and/or --bars OUT.png")
    try:
        results = load_many(args.results)
        conditions = results["conditions"]
        intervals, source = (None, "") if args.no_intervals else accuracy_intervals(conditions, args.results)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    title = args.title or results.get("title") or "Ablations"
    labels = recorded_labels(results)
    print(selection_note(args.select))
    if args.curves:
        fig = accuracy_figure(conditions, title=f"{title}: accuracy per checkpoint",
                              note=SELECTION_MARKS[args.select].replace("Each", "Marked: each"), rule=args.select,
                              labels=labels)
        print(f"wrote {save_figure(fig, args.curves)}")
    if args.bars:
        fig = selected_accuracy_bars(conditions, title=f"{title}: {args.select} checkpoint", rule=args.select,
                                     intervals=intervals, labels=labels, note=SELECTION_MARKS[args.select] + INTERVAL_NOTES[source])
        print(f"wrote {save_figure(fig, args.bars)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
