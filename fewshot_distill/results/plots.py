"""What each figure script draws, from its parsed arguments (scripts/gen_main_fig.py, plot_ablations.py,
plot_transfer.py, plot_curves.py, plot_diagnostics.py parse flags and call one function here). Each returns
the Figures it drew (or writes the files it names) and raises ValueError / FileNotFoundError with a one-line
message on bad input; the scripts turn those into `error: ...` exits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from fewshot_distill.results.diagnostics import (diagnostics_markdown, eval_curves_figure, gap_bars_figure,
                                                 load_diagnostics, per_checkpoint_figure)
from fewshot_distill.results.figures import accuracy_figure, curves_figure, save_figure, selected_accuracy_bars
from fewshot_distill.results.labels import recorded_labels
from fewshot_distill.results.load import load_many
from fewshot_distill.results.metrics import load_run_scalars, run_label
from fewshot_distill.results.selection import (DEV_RULE, dev_choices, dev_note, load_dev_results, selected_labels,
                                               selection_figure)
from fewshot_distill.results.stats import accuracy_intervals
from fewshot_distill.results.transfer import load_task_results, task_title, transfer_figure

# Footnotes: which checkpoint each curve marks or each bar shows, and where the error bars come from.
MAIN_SELECTION_NOTES = {
    "best": "Marked: each method's best checkpoint, picked on the test set (optimistic).",
    "final": "Marked: each method's final checkpoint.",
}
MAIN_INTERVAL_NOTES = {"": "", "bootstrap": "\nBars: 95% bootstrap intervals over problems.",
                       "wilson": "\nBars: 95% Wilson intervals from the counts."}
ABLATION_SELECTION_NOTES = {
    "best": "Each condition's best checkpoint, picked on the test set (optimistic).",
    "final": "Each condition's final checkpoint.",
}
ABLATION_INTERVAL_NOTES = {"": "", "bootstrap": " Bars: 95% bootstrap intervals.",
                           "wilson": " Bars: 95% Wilson intervals (n = problems per entry)."}


def main_comparison_figure(paths: Sequence[str | Path], *, published: bool = False, select: str = "best",
                           intervals: bool = False, predictions: Sequence[str] | None = None,
                           title: str | None = None):
    """Accuracy vs training step for every condition of the results files (the base rows as dashed lines), the
    checkpoint `select` picks marked, 95% error bars with `intervals`. Title: model, task and split."""
    results = load_many(paths)
    conditions = results["conditions"]
    bars, source = accuracy_intervals(conditions, paths, predictions) if intervals else (None, "")
    model = results.get("model", "").split("/")[-1]
    where = f"{task_title(results.get('task', 'gsm8k'))} {results.get('split', 'test')}"
    prefix = f"{model} on {where}" if model else where
    default = f"{prefix}: published numbers (paper README)" if published else f"{prefix}: accuracy vs training step"
    return accuracy_figure(conditions, title=title or default, rule=select, intervals=bars,
                           note=MAIN_SELECTION_NOTES[select] + MAIN_INTERVAL_NOTES[source],
                           labels=recorded_labels(results))


def ablation_figures(paths: Sequence[str | Path], *, select: str = "best", intervals: bool = True,
                     title: str | None = None, curves: bool = True, bars: bool = True) -> dict:
    """{"curves": accuracy per checkpoint, "bars": each condition at its `select` checkpoint with 95% bars}."""
    if not curves and not bars:
        raise ValueError("nothing to draw; pass --curves OUT.png and/or --bars OUT.png")
    results = load_many(paths)
    conditions = results["conditions"]
    interval_bars, source = accuracy_intervals(conditions, paths) if intervals else (None, "")
    title = title or results.get("title") or "Ablations"
    labels = recorded_labels(results)
    figures = {}
    if curves:
        figures["curves"] = accuracy_figure(conditions, title=f"{title}: accuracy per checkpoint",
                                            note=ABLATION_SELECTION_NOTES[select].replace("Each", "Marked: each"),
                                            rule=select, labels=labels)
    if bars:
        note = ABLATION_SELECTION_NOTES[select] + ABLATION_INTERVAL_NOTES[source]
        figures["bars"] = selected_accuracy_bars(conditions, title=f"{title}: {select} checkpoint", rule=select,
                                                 intervals=interval_bars, labels=labels, note=note)
    return figures


def transfer_figures(paths: Sequence[str | Path], *, select: str = "best", transfer: Sequence[str] | None = None,
                     dev_results: str | None = None, title: str | None = None, transfer_out: bool = True,
                     selection_out: bool = False) -> dict:
    """{"transfer": accuracy per task at each condition's selected checkpoint, "selection": test accuracy at the
    best, dev-selected and final checkpoint}: the ones asked for."""
    results = load_many(paths)
    choices = note = None
    if dev_results:
        dev = load_dev_results(dev_results)
        choices, note = dev_choices(dev), dev_note(dev)
    picked = selected_labels(results["conditions"], select, choices)
    figures = {}
    if transfer_out:
        if not transfer:
            raise ValueError("--out draws the transfer figure: pass --transfer FILE.json ... (one per task)")
        model = str(results.get("model", "")).split("/")[-1]
        title = title or f"{model + ': ' if model else ''}transfer to other tasks ({select} checkpoint)"
        figures["transfer"] = transfer_figure(load_task_results(transfer), picked, title,
                                              note if select == DEV_RULE else None)
    if selection_out:
        if choices is None:
            raise ValueError("--selection_out needs --dev_results FILE.json (eval_checkpoints.py --split dev)")
        figures["selection"] = selection_figure(results["conditions"], choices,
                                                "Test accuracy by checkpoint selection", note)
    return figures


def training_curves_figure(run_dirs: Sequence[str | Path], *, labels: Sequence[str] | None = None,
                           smooth: float = 0.0, results: Sequence[str] | None = None, title: str = ""):
    """Loss (and eval) curves of training runs, one legend label each, with the accuracy table of `results`."""
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"got {len(labels)} --labels for {len(run_dirs)} --runs; give one per run")
    if not 0 <= smooth < 1:
        raise ValueError(f"--smooth must be in [0, 1), got {smooth}")
    labels = list(labels or [run_label(run_dir) for run_dir in run_dirs])
    if len(set(labels)) != len(labels):
        raise ValueError(f"runs share a legend label ({', '.join(labels)}); pass distinct --labels")
    runs = [(label, load_run_scalars(run_dir)) for label, run_dir in zip(labels, run_dirs)]
    conditions = load_many(results)["conditions"] if results else None
    fig = curves_figure(runs, smooth=smooth, conditions=conditions)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def write_diagnostics_outputs(results: str | Path, out_dir: str | Path, run_dirs: Sequence[str | Path] = (),
                              title: str = "") -> list[Path]:
    """diagnostics_per_checkpoint.png, icl_gap_closed.png, diagnostics.md (and eval_curves.png when the runs
    logged held-out metrics) in out_dir, labelled from each run's recorded condition; returns what it wrote."""
    data = load_diagnostics(results)
    out = Path(out_dir)
    conditions, labels = data["conditions"], recorded_labels(data, list(run_dirs))
    written = [save_figure(per_checkpoint_figure(conditions, title, labels), out / "diagnostics_per_checkpoint.png"),
               save_figure(gap_bars_figure(conditions, title, labels), out / "icl_gap_closed.png")]
    runs = [(run_label(r), load_run_scalars(r)) for r in run_dirs]
    if any("eval/nll" in scalars for _, scalars in runs):
        written.append(save_figure(eval_curves_figure(runs, title), out / "eval_curves.png"))
    table = out / "diagnostics.md"
    table.write_text(diagnostics_markdown(conditions, labels=labels) + "\n")
    return [*written, table]
