"""The results report behind scripts/write_results.py: main table, accuracy per checkpoint, intervals and paired
tests (bootstrap over problems with predictions, else Wilson intervals from the counts), and the optional
best/dev/final and transfer tables. Every number comes from the results JSON (and its predictions)."""

from __future__ import annotations

import sys
from pathlib import Path

from fewshot_distill.results.labels import ordered_conditions
from fewshot_distill.results.load import load_many
from fewshot_distill.results.stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    find_predictions,
    intervals_from_predictions,
    load_predictions_for,
    paired_tests_from_predictions,
)
from fewshot_distill.results.selection import (DEV_RULE, dev_choices, dev_note, load_dev_results, selected_labels,
                                               selection_table)
from fewshot_distill.results.tables import BOOTSTRAP_HEADER, results_markdown
from fewshot_distill.results.transfer import load_task_results, transfer_table


def selection_sections(results: dict, results_paths: list[str], select: str, dev_results: str | None,
                       transfer: list[str] | None) -> str:
    """The best/dev/final table (with `dev_results`) and the transfer table (with `transfer`), as Markdown."""
    choices = note = None
    lines = []
    if select == DEV_RULE and not dev_results:
        raise ValueError("--select dev needs --dev_results FILE.json (eval_checkpoints.py --split dev)")
    if dev_results:
        dev = load_dev_results(dev_results)
        choices, note = dev_choices(dev), dev_note(dev)
        lines += ["", "### Checkpoint selection: best, dev, final", "",
                  f"Test accuracy of each trained method at three checkpoints; dev choices from `{dev_results}`.",
                  "", selection_table(results["conditions"], choices), "", note]
    if transfer:
        tasks = load_task_results(transfer)
        picked = selected_labels(results["conditions"], select, choices)
        names = ", ".join(f"`{r['path']}`" for r in tasks)
        lines += ["", "### Transfer to other tasks", "",
                  f"Accuracy (%) per task, each condition at its `{select}` checkpoint (chosen on "
                  f"{'the dev split' if select == DEV_RULE else '`' + results_paths[0] + '`'}), from {names}.",
                  "", transfer_table(tasks, picked)]
    return "\n".join(lines) + ("\n" if lines else "")


def results_report(results_paths: list[str], controls: list[str] = (), select: str = "best",
                   dev_results: str | None = None, transfer: list[str] | None = None,
                   predictions: list[str] | None = None, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> str:
    """The whole report as Markdown; notes on where the intervals come from go to stderr."""
    if resamples < 1:
        raise ValueError(f"--resamples must be >= 1, got {resamples}")
    results = load_many(results_paths)
    extra_sets = []
    for path in controls:
        extra = load_many([path])
        extra_sets.append((extra.get("title") or Path(path).stem, extra, path))
    intervals = tests = None
    kwargs = {}
    prediction_files = find_predictions(results_paths, predictions)
    if prediction_files:
        rows = load_predictions_for(results["conditions"], prediction_files)
        intervals = intervals_from_predictions(results["conditions"], rows, n_resamples=resamples, seed=seed)
        kwargs["interval_header"] = BOOTSTRAP_HEADER
        tests = paired_tests_from_predictions(results["conditions"], rows, ordered_conditions(results["conditions"]))
        print(f"intervals and paired tests from {', '.join(map(str, prediction_files))} ({resamples} bootstrap "
              f"resamples, seed {seed})", file=sys.stderr)
    else:
        print("no predictions file: Wilson intervals from the counts, no paired tests", file=sys.stderr)
    main_rule = "best" if select == DEV_RULE else select
    markdown = results_markdown(results, results_paths, main_rule, intervals, paired_tests=tests,
                                extra_sets=extra_sets, **kwargs)
    return markdown + selection_sections(results, results_paths, select, dev_results, transfer)
