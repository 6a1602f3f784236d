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

from fewshot_distill.results.labels import ordered_conditions
from fewshot_distill.results.load import SELECTION_RULES, load_many
from fewshot_distill.results.stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    find_predictions,
    intervals_from_predictions,
    load_predictions_for,
    paired_tests_from_predictions,
)
from fewshot_distill.results.selection import DEV_RULE, dev_choices, dev_note, load_dev_results, selected_labels, selection_table
from fewshot_distill.results.tables import BOOTSTRAP_HEADER, results_markdown, selection_note
from fewshot_distill.results.transfer import load_task_results, transfer_table


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


def selection_sections(results: dict, args: argparse.Namespace) -> str:
    """The best/dev/final table (with --dev_results) and the transfer table (with --transfer), as Markdown."""
    choices = note = None
    lines = []
    if args.select == DEV_RULE and not args.dev_results:
        raise ValueError("--select dev needs --dev_results FILE.json (eval_checkpoints.py --split dev)")
    if args.dev_results:
        dev = load_dev_results(args.dev_results)
        choices, note = dev_choices(dev), dev_note(dev)
        lines += ["", "### Checkpoint selection: best, dev, final", "",
                  f"Test accuracy of each trained method at three checkpoints; dev choices from `{args.dev_results}`.",
                  "", selection_table(results["conditions"], choices), "", note]
    if args.transfer:
        tasks = load_task_results(args.transfer)
        picked = selected_labels(results["conditions"], args.select, choices)
        names = ", ".join(f"`{r['path']}`" for r in tasks)
        lines += ["", "### Transfer to other tasks", "",
                  f"Accuracy (%) per task, each condition at its `{args.select}` checkpoint (chosen on "
                  f"{'the dev split' if args.select == DEV_RULE else '`' + args.results[0] + '`'}), from {names}.",
                  "", transfer_table(tasks, picked)]
    return "\n".join(lines) + ("\n" if lines else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resamples < 1:
        raise SystemExit(f"error: --resamples must be >= 1, got {args.resamples}")
    try:
        results = load_many(args.results)
        extra_sets = []
        for path in args.controls:
            extra = load_many([path])
            extra_sets.append((extra.get("title") or Path(path).stem, extra, path))
        intervals = header = tests = None
        prediction_files = find_predictions(args.results, args.predictions)
        if prediction_files:
            predictions = load_predictions_for(results["conditions"], prediction_files)
            source = ", ".join(map(str, prediction_files))
            intervals = intervals_from_predictions(results["conditions"], predictions, n_resamples=args.resamples,
                                                   seed=args.seed)
            header = BOOTSTRAP_HEADER
            tests = paired_tests_from_predictions(results["conditions"], predictions,
                                                  ordered_conditions(results["conditions"]))
            print(f"intervals and paired tests from {source} ({args.resamples} bootstrap resamples, "
                  f"seed {args.seed})", file=sys.stderr)
        else:
            print("no predictions file: Wilson intervals from the counts, no paired tests", file=sys.stderr)
        kwargs = {"interval_header": header} if header else {}
        main_rule = "best" if args.select == DEV_RULE else args.select
        markdown = results_markdown(results, args.results, main_rule, intervals, paired_tests=tests,
                                    extra_sets=extra_sets, **kwargs)
        markdown += selection_sections(results, args)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    if args.select != DEV_RULE:
        print(selection_note(args.select), file=sys.stderr)
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
