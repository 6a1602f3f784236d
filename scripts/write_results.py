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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.results.labels import ordered_conditions
from src.results.load import SELECTION_RULES, load_many
from src.results.stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    find_predictions,
    intervals_from_predictions,
    load_predictions_for,
    paired_tests_from_predictions,
)
from src.results.tables import BOOTSTRAP_HEADER, results_markdown, selection_note


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", nargs="+", required=True, metavar="R.json",
                        help="eval_checkpoints.py results file(s); several are merged")
    parser.add_argument("--controls", nargs="+", default=[], metavar="C.json",
                        help="further results sets (e.g. published controls), each its own section, never merged")
    parser.add_argument("--select", choices=SELECTION_RULES, default="best",
                        help="which checkpoint of a trained method the main table reports: its best (as the paper "
                             "does; default) or its final one")
    parser.add_argument("--predictions", nargs="+", default=None, metavar="P.jsonl",
                        help="predictions file(s) for bootstrap intervals and McNemar tests (default: "
                             "{stem}.predictions.jsonl next to each results file, when all exist)")
    parser.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=BOOTSTRAP_SEED, help="bootstrap seed")
    parser.add_argument("--out", default=None, help="output .md path (default: stdout)")
    return parser.parse_args(argv)


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
        markdown = results_markdown(results, args.results, args.select, intervals, paired_tests=tests,
                                    extra_sets=extra_sets, **kwargs)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
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
