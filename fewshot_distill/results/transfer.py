"""The transfer table: trained conditions and base rows (rows) on several tasks (columns), each at one checkpoint.

Each results file holds one task's evaluation (`"task"` in its header; a file without one is GSM8K's, the
default task); files of different tasks are never merged, and two files of one task are an error. The
checkpoint of each condition is chosen once, on the first file (the training task's test results) by
`--select best|final`, or on the dev results by `--select dev`, and every task is read at that checkpoint.

    results = load_task_results(["experiments/full_eval.json", "experiments/svamp_eval.json"])
    print(transfer_table(results, selected_labels(results[0]["conditions"], "best")))
"""

from __future__ import annotations

from pathlib import Path

from fewshot_distill.results.labels import label_for, ordered_conditions
from fewshot_distill.results.load import load_results
from fewshot_distill.results.tables import MISSING, format_checkpoint, format_percent, markdown_table
from fewshot_distill.tasks import DEFAULT_TASK

TASK_TITLES = {"gsm8k": "GSM8K", "svamp": "SVAMP", "gsm_hard": "GSM-Hard", "math500": "MATH-500"}


def task_title(name: str) -> str:
    return TASK_TITLES.get(name, name)


def load_task_results(paths: list[str | Path]) -> list[dict]:
    """One validated results object per file, each with its `task`; two files of one task are refused."""
    if not paths:
        raise ValueError("no results files given for the transfer table")
    results, seen = [], {}
    for path in paths:
        data = load_results(path)
        data.setdefault("task", DEFAULT_TASK)
        data["path"] = str(path)
        if data["task"] in seen:
            raise ValueError(f"{path} and {seen[data['task']]} both hold task {data['task']!r}: a transfer table "
                             "has one results file per task (files are never merged); pass one of them")
        seen[data["task"]] = str(path)
        results.append(data)
    return results


def transfer_rows(results: list[dict], picked: dict[str, str]) -> list[tuple[str, str, list[dict | None]]]:
    """(condition, label, [entry of each task or None]) for every condition picked, in display order."""
    return [(condition, picked[condition], [r["conditions"].get(condition, {}).get(picked[condition])
                                            for r in results])
            for condition in ordered_conditions(picked)]


def transfer_table(results: list[dict], picked: dict[str, str]) -> str:
    """Markdown: rows = conditions (with the checkpoint), columns = tasks; accuracy (%) and counts."""
    header = ["Method", "Checkpoint"] + [f"{task_title(r['task'])} (%)" for r in results]
    rows = []
    for condition, label, entries in transfer_rows(results, picked):
        cells = [MISSING if e is None else f"{format_percent(e['accuracy'])} ({e['correct']}/{e['total']})"
                 for e in entries]
        rows.append([label_for(condition), format_checkpoint(label), *cells])
    return markdown_table(header, rows, ["l", "l"] + ["r"] * len(results))


def transfer_figure(results: list[dict], picked: dict[str, str], title: str, note: str | None = None):
    """Grouped bars: one group per task, one bar per condition at its picked checkpoint."""
    from fewshot_distill.results.figures import DPI, add_footnote, FONT_SIZE, _style, color_for, plt

    rows = transfer_rows(results, picked)
    width = 0.8 / max(1, len(rows))
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rows) * len(results) + 2), 5), dpi=DPI)
        taken: set[str] = set()
        labelled: set[str] = set()
        for i, (condition, label, entries) in enumerate(rows):
            color = color_for(condition, taken)
            where = f" ({format_checkpoint(label)})" if label != "base" else ""
            for t, entry in enumerate(entries):
                if entry is None:
                    continue
                x = t + (i - (len(rows) - 1) / 2) * width
                pct = entry["accuracy"] * 100
                legend = label_for(condition) + where
                ax.bar(x, pct, width=width * 0.95, color=color, label=None if legend in labelled else legend)
                labelled.add(legend)
                ax.annotate(f"{pct:.1f}", xy=(x, pct), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=FONT_SIZE - 3)
        ax.set_xticks(range(len(results)), [task_title(r["task"]) for r in results])
        ax.set_ylabel("Accuracy (%)")
        ax.set_title(title)
        top = max((e["accuracy"] * 100 for _, _, entries in rows for e in entries if e is not None), default=1.0)
        ax.set_ylim(0, top * 1.4 + 5)  # room for the value labels and the legend above the bars
        ax.legend(fontsize=FONT_SIZE - 2, loc="upper center", ncol=2)
        ax.grid(True, axis="y", alpha=0.3)
        add_footnote(fig, note)
    return fig
