"""Transfer figure (accuracy per task, one bar per condition at its selected checkpoint) and, with
--dev_results, the checkpoint-selection figure (test accuracy at the best, dev-selected and final checkpoint).

Run:
    python scripts/plot_transfer.py --results experiments/full_eval.json \
        --transfer experiments/full_eval.json experiments/svamp_eval.json --out experiments/transfer.png
    python scripts/plot_transfer.py --results experiments/full_eval.json --select dev \
        --dev_results experiments/dev_eval.json --transfer experiments/full_eval.json experiments/svamp_eval.json \
        --out experiments/transfer.png --selection_out experiments/selection.png
"""

from __future__ import annotations

import argparse
import sys

from fewshot_distill.results.figures import save_figure
from fewshot_distill.results.load import SELECTION_RULES
from fewshot_distill.results.plots import transfer_figures
from fewshot_distill.results.selection import DEV_RULE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", nargs="+", required=True, metavar="R.json",
                        help="results the checkpoints are selected on (the training task's test evaluation)")
    parser.add_argument("--transfer", nargs="+", default=None, metavar="T.json", help="one results file per task")
    parser.add_argument("--select", choices=(*SELECTION_RULES, DEV_RULE), default="best")
    parser.add_argument("--dev_results", default=None, metavar="D.json", help="eval_checkpoints.py --split dev output")
    parser.add_argument("--out", default=None, help="transfer figure PNG (needs --transfer)")
    parser.add_argument("--selection_out", default=None, help="best/dev/final figure PNG (needs --dev_results)")
    parser.add_argument("--title", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        figures = transfer_figures(args.results, select=args.select, transfer=args.transfer,
                                   dev_results=args.dev_results, title=args.title, transfer_out=bool(args.out),
                                   selection_out=bool(args.selection_out))
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    outputs = {"transfer": args.out, "selection": args.selection_out}
    for name, fig in figures.items():
        print(f"wrote {save_figure(fig, outputs[name])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
