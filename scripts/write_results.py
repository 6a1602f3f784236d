"""README result tables as Markdown: main table (one row per condition, the checkpoint picked by the selection
rule, its 95% interval), accuracy per checkpoint, and either paired tests (with predictions) or what the counts
alone can resolve (published numbers). Every number comes from the results JSON (and its predictions).

Intervals: with a predictions file (`{stem}.predictions.jsonl` next to the results, found automatically, or
--predictions) a percentile bootstrap over problems, and an exact McNemar test between every two conditions at
the same label; without one, Wilson intervals from the counts.

Run:
    python scripts/write_results.py --results assets/published_results.json \
        --controls assets/published_controls.json assets/published_gemma_control.json \
        --out assets/published_results.md
    python scripts/write_results.py --results experiments/eval/results.json          # prints to stdout
    python scripts/write_results.py --results experiments/eval/results.json --select final
    # checkpoints picked on the dev split (eval_checkpoints.py --split dev), beside best and final:
    python scripts/write_results.py --results experiments/full_eval.json --select dev \
        --dev_results experiments/dev_eval.json
    # transfer table: rows = conditions, columns = tasks (one results file per task), at the selected checkpoint
    python scripts/write_results.py --results experiments/full_eval.json \
        --transfer experiments/full_eval.json experiments/svamp_eval.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fewshot_distill.results.load import SELECTION_RULES
from fewshot_distill.results.report import results_report
from fewshot_distill.results.selection import DEV_RULE
from fewshot_distill.results.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from fewshot_distill.results.tables import selection_note


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", nargs="+", required=True, metavar="R.json",
                        help="eval_checkpoints.py results file(s); several are merged")
    parser.add_argument("--controls", nargs="+", default=[], metavar="C.json",
                        help="further results sets (e.g. published controls), each its own section, never merged")
    parser.add_argument("--select", choices=(*SELECTION_RULES, DEV_RULE), default="best",
                        help="which checkpoint of a trained method is reported: its best on test (as the paper "
                             "does; default), its final one, or the one best on the dev split (needs "
                             "--dev_results; the main table then stays 'best' and a best/dev/final table follows)")
    parser.add_argument("--dev_results", default=None, metavar="D.json",
                        help="results of the dev split (eval_checkpoints.py --split dev, or eval_diagnostics.py "
                             "--split dev: selection by dev NLL); adds the best/dev/final table")
    parser.add_argument("--transfer", nargs="+", default=None, metavar="T.json",
                        help="one results file per task (eval_checkpoints.py --task ...): adds the transfer table "
                             "(rows = conditions, columns = tasks) at the checkpoint --select picks on --results")
    parser.add_argument("--predictions", nargs="+", default=None, metavar="P.jsonl",
                        help="predictions file(s) for bootstrap intervals and McNemar tests (default: "
                             "{stem}.predictions.jsonl next to each results file, when all exist)")
    parser.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=BOOTSTRAP_SEED, help="bootstrap seed")
    parser.add_argument("--out", default=None, help="output .md path (default: stdout)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        markdown = results_report(args.results, args.controls, args.select, args.dev_results, args.transfer,
                                  args.predictions, args.resamples, args.seed)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    if args.select != DEV_RULE:
        print(selection_note(args.select), file=sys.stderr)
    if args.out is None:
        sys.stdout.write(markdown)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(markdown)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
