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
from fewshot_distill.results.load import SELECTION_RULES, load_many
from fewshot_distill.results.selection import DEV_RULE, dev_choices, dev_note, load_dev_results, selected_labels, \
    selection_figure
from fewshot_distill.results.transfer import load_task_results, transfer_figure


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
        results = load_many(args.results)
        choices = note = None
        if args.dev_results:
            dev = load_dev_results(args.dev_results)
            choices, note = dev_choices(dev), dev_note(dev)
        picked = selected_labels(results["conditions"], args.select, choices)
        if args.out:
            if not args.transfer:
                raise ValueError("--out draws the transfer figure: pass --transfer FILE.json ... (one per task)")
            tasks = load_task_results(args.transfer)
            model = str(results.get("model", "")).split("/")[-1]
            title = args.title or f"{model + ': ' if model else ''}transfer to other tasks ({args.select} checkpoint)"
            print(f"wrote {save_figure(transfer_figure(tasks, picked, title, note if args.select == DEV_RULE else None), args.out)}")
        if args.selection_out:
            if choices is None:
                raise ValueError("--selection_out needs --dev_results FILE.json (eval_checkpoints.py --split dev)")
            figure = selection_figure(results["conditions"], choices, "Test accuracy by checkpoint selection", note)
            print(f"wrote {save_figure(figure, args.selection_out)}")
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    return 0


if __name__ == "__main__":
    sys.exit(main())
