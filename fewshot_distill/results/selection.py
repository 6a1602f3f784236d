"""Checkpoint selection on the dev split (`--select dev`), reported beside `best` and `final`.

`best` picks each trained method's checkpoint on the test set itself (the paper's rule, optimistic);
`final` takes the last one; `dev` picks it on the dev split (`data.dev_examples` train rows held back from
training and shots, scored with `eval_checkpoints.py --split dev`): the highest dev accuracy, or, from a
held-out diagnostics file of the dev split (`eval_diagnostics.py --split dev`), the lowest dev answer NLL.
Ties go to the earliest step. The test number is then read at that checkpoint.

    choices = dev_choices(json.load(open("experiments/dev_eval.json")))   # {"baseline": "step_400", ...}
    print(selection_table(test_results["conditions"], choices))
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from fewshot_distill.results.labels import label_for, ordered_conditions
from fewshot_distill.results.load import parse_step, select_checkpoint, validate_results
from fewshot_distill.results.tables import MISSING, format_checkpoint, format_percent, markdown_table

DEV_RULE = "dev"
DIAGNOSTICS_KIND = "diagnostics"


def load_dev_results(path: str | Path) -> dict:
    """A dev-split results file (accuracy or diagnostics); refuses one evaluated on another split."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dev results not found: {path} (run eval_checkpoints.py --split dev)")
    data = json.loads(path.read_text())
    if data.get("split", "dev") != "dev":
        raise ValueError(f"{path} was evaluated on the {data['split']!r} split, not dev; pass the file written "
                         "with --split dev")
    if data.get("kind") != DIAGNOSTICS_KIND:
        validate_results(data, str(path))
    return data


def dev_metric(dev_results: dict) -> str:
    """"accuracy" (an accuracy file) or "nll" (a diagnostics file: accuracy not measured)."""
    return "nll" if dev_results.get("kind") == DIAGNOSTICS_KIND else "accuracy"


def dev_choices(dev_results: dict) -> dict[str, str]:
    """condition -> the step label with the best dev score (highest accuracy or lowest NLL; ties: earliest step).

    Only trained conditions (labels `step_N`) get a choice; base rows have nothing to choose.
    """
    metric = dev_metric(dev_results)
    sign = 1.0 if metric == "accuracy" else -1.0
    choices = {}
    for condition, labels in dev_results["conditions"].items():
        steps = sorted((parse_step(label), label) for label in labels if parse_step(label) is not None)
        if steps:
            # max keeps the first of equal items: the earliest step wins a tie.
            choices[condition] = max((label for _, label in steps), key=lambda lb: sign * labels[lb][metric])
    if not choices:
        raise ValueError("the dev results hold no trained checkpoints (step_N) to choose from")
    return choices


def dev_note(dev_results: dict) -> str:
    metric = "accuracy" if dev_metric(dev_results) == "accuracy" else "answer NLL (accuracy not measured)"
    rows = next(iter(next(iter(dev_results["conditions"].values())).values()))
    n = rows.get("total", rows.get("rows"))
    return (f"dev: each trained method's checkpoint with the best dev-split {metric} ({n} training rows held "
            "back from training and shots), test accuracy at that checkpoint; best: picked on the test set "
            "itself (optimistic); final: the last checkpoint.")


def selected_labels(conditions: dict[str, dict[str, dict]], rule: str,
                    choices: dict[str, str] | None = None) -> dict[str, str]:
    """condition -> label under `rule` ("best", "final", or "dev" with `choices` from `dev_choices`).

    Under "dev" a condition without a dev choice (a base row) keeps its only entry.
    """
    picked = {}
    for condition in ordered_conditions(conditions):
        if rule == DEV_RULE:
            if choices is None:
                raise ValueError("--select dev needs the dev results (--dev_results FILE.json, written by "
                                 "eval_checkpoints.py --split dev)")
            label = choices.get(condition)
            picked[condition] = label if label is not None else select_checkpoint(conditions[condition], "final")[0]
        else:
            picked[condition] = select_checkpoint(conditions[condition], rule)[0]
    return picked


def selection_rows(conditions: dict[str, dict[str, dict]], choices: dict[str, str]) -> list[tuple[str, dict]]:
    """Per trained condition: {rule: (label, test entry or None)} for best, dev and final."""
    rows = []
    for condition in ordered_conditions(conditions):
        checkpoints = conditions[condition]
        if not any(parse_step(label) is not None for label in checkpoints):
            continue
        dev_label = choices.get(condition)
        rows.append((condition, {
            "best": select_checkpoint(checkpoints, "best"),
            DEV_RULE: (dev_label, checkpoints.get(dev_label)) if dev_label else (None, None),
            "final": select_checkpoint(checkpoints, "final"),
        }))
    return rows


def _cell(label: str | None, entry: dict | None) -> str:
    if entry is None:
        return MISSING if label is None else f"{format_checkpoint(label)}: not on test"
    return f"{format_percent(entry['accuracy'])} ({format_checkpoint(label)})"


def selection_table(conditions: dict[str, dict[str, dict]], choices: dict[str, str]) -> str:
    """Markdown: one row per trained method, test accuracy (%) at its best, dev-selected and final checkpoint."""
    header = ["Method", "best: test-selected (%)", "dev: dev-selected (%)", "final (%)"]
    rows = [[label_for(c), _cell(*by["best"]), _cell(*by[DEV_RULE]), _cell(*by["final"])]
            for c, by in selection_rows(conditions, choices)]
    if not rows:
        raise ValueError("no trained checkpoints in the test results to select among")
    return markdown_table(header, rows, ["l", "r", "r", "r"])


def selection_figure(conditions: dict[str, dict[str, dict]], choices: dict[str, str], title: str,
                     note: str | None = None):
    """Grouped bars: per trained method, test accuracy at the best, dev-selected and final checkpoint."""
    from fewshot_distill.results.figures import DPI, add_footnote, FONT_SIZE, _style, plt

    rows = selection_rows(conditions, choices)
    if not rows:
        raise ValueError("no trained checkpoints in the test results to select among")
    rules = ("best", DEV_RULE, "final")
    colors = {"best": "tab:gray", DEV_RULE: "tab:green", "final": "tab:blue"}
    width = 0.8 / len(rules)
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(max(6.0, 2.4 * len(rows)), 5), dpi=DPI)
        labelled: set[str] = set()
        for r, rule in enumerate(rules):
            for x, (_, by) in enumerate(rows):
                label, entry = by[rule]
                if entry is None:
                    continue
                pct = entry["accuracy"] * 100
                position = x + (r - 1) * width
                ax.bar(position, pct, width=width * 0.95, color=colors[rule],
                       label=None if rule in labelled else rule)
                labelled.add(rule)
                ax.annotate(f"{pct:.1f}\n{format_checkpoint(label)}", xy=(position, pct), xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom", fontsize=FONT_SIZE - 3)
        ax.set_xticks(range(len(rows)), [textwrap.fill(label_for(c), 18) for c, _ in rows])
        ax.set_ylabel("Test accuracy (%)")
        ax.set_title(title)
        top = max(by[r][1]["accuracy"] * 100 for _, by in rows for r in rules if by[r][1] is not None)
        ax.set_ylim(0, top * 1.35 + 5)  # room for the value labels and the legend above the bars
        ax.legend(title="checkpoint selection", loc="upper center", ncol=len(rules))
        ax.grid(True, axis="y", alpha=0.3)
        add_footnote(fig, note)
    return fig
