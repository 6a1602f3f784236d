"""Matplotlib figures for results and training curves (the plotting behind scripts/gen_main_fig.py and
scripts/plot_curves.py). Functions return a Figure; callers save it. Uses the Agg backend: no display needed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
from matplotlib.figure import Figure  # noqa: E402

from fewshot_distill.results.labels import (CONDITION_STYLES, SPARE_COLOURS, STYLES_BY_NAME,  # noqa: E402
                                            label_for, ordered_conditions)
from fewshot_distill.run_identity import ICL_PLACEHOLDER, icl_shot_count
  # noqa: E402
from fewshot_distill.results.load import best_checkpoint, checkpoint_series, select_checkpoint  # noqa: E402
from fewshot_distill.results.metrics import Series, ema_smooth  # noqa: E402
from fewshot_distill.results.tables import format_percent, has_trained_checkpoints, per_checkpoint_rows  # noqa: E402

FONT_SIZE = 11
DPI = 150
# Fixed colours (fewshot_distill/results/labels.py) so a condition looks the same in every figure; other
# runs/conditions take the spare ones.
ICL_COLOR = STYLES_BY_NAME[ICL_PLACEHOLDER].colour  # every icl_{k}shot row
CONDITION_COLORS = {s.name: s.colour for s in CONDITION_STYLES if s.name != ICL_PLACEHOLDER}
_SPARE_COLORS = list(SPARE_COLOURS)

Intervals = dict[tuple[str, str], tuple[float, float]]  # (condition, label) -> (low, high) accuracy fractions


def _style() -> dict:
    return {"font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 1, "legend.fontsize": FONT_SIZE - 1}


def _fixed_color(condition: str) -> str | None:
    return ICL_COLOR if icl_shot_count(condition) is not None else CONDITION_COLORS.get(condition)


def color_for(name: str, taken: set[str]) -> str:
    """Colour of a condition name or its label; unknown names get an unused spare colour."""
    by_label = {label_for(c): color for c, color in CONDITION_COLORS.items()}
    color = _fixed_color(name) or by_label.get(name)
    if color is None:
        spare = [c for c in _SPARE_COLORS if c not in taken] or _SPARE_COLORS
        color = spare[0]
    taken.add(color)
    return color


def _error(interval: tuple[float, float], pct: float) -> tuple[float, float]:
    """(below, above) error-bar lengths in percent for a point at pct."""
    return pct - interval[0] * 100, interval[1] * 100 - pct


def accuracy_figure(
    conditions: dict[str, dict[str, dict]],
    title: str,
    note: str | None = None,
    rule: str = "best",
    intervals: Intervals | None = None,
    labels: dict[str, str] | None = None,
) -> Figure:
    """Accuracy (%) vs training step for every condition with step_N checkpoints; conditions without steps
    (base-model evaluations) become horizontal dashed lines. The checkpoint the selection rule picks ("best" or
    "final") is annotated on each curve. With `intervals`, points get error bars and reference lines a band."""
    curves = {c: checkpoint_series(conditions[c]) for c in ordered_conditions(conditions)}
    stepped = {c: s for c, s in curves.items() if s}
    flat = [c for c, s in curves.items() if not s]
    if not stepped and not flat:
        raise ValueError("no conditions to plot")

    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(8, 5), dpi=DPI)
        taken: set[str] = set()
        all_pct: list[float] = []
        all_steps: set[int] = set()

        for condition in flat:
            name, entry = best_checkpoint(conditions[condition])
            pct = entry["accuracy"] * 100
            all_pct.append(pct)
            color = color_for(label_for(condition, labels), taken)
            ax.axhline(pct, linestyle="--", linewidth=1.5, color=color,
                       label=f"{label_for(condition, labels)}: {format_percent(entry['accuracy'])}%")
            if intervals and (condition, name) in intervals:
                low, high = intervals[(condition, name)]
                ax.axhspan(low * 100, high * 100, color=color, alpha=0.08, linewidth=0)

        # Highest curve gets its label above the selected point, the others below, so nearby labels do not collide.
        picked = {c: select_checkpoint(conditions[c], rule) for c in stepped}
        by_value = sorted(stepped, key=lambda c: picked[c][1]["accuracy"], reverse=True)
        for condition in stepped:  # plotted in CONDITION_ORDER so the legend reads SFT, then distillation
            rank = by_value.index(condition)
            series = stepped[condition]
            steps = [s for s, _ in series]
            pct = [e["accuracy"] * 100 for _, e in series]
            all_pct += pct
            all_steps.update(steps)
            color = color_for(label_for(condition, labels), taken)
            ax.plot(steps, pct, marker="o", markersize=7, linewidth=2, color=color,
                    label=label_for(condition, labels))
            if intervals:
                bars = [_error(intervals[(condition, f"step_{s}")], p) for s, p in zip(steps, pct)
                        if (condition, f"step_{s}") in intervals]
                if len(bars) == len(steps):
                    ax.errorbar(steps, pct, yerr=list(zip(*bars)), fmt="none", ecolor=color, elinewidth=1,
                                capsize=3, alpha=0.7)
                    all_pct += [p - b for p, (b, _) in zip(pct, bars)] + [p + a for p, (_, a) in zip(pct, bars)]
            picked_name, picked_entry = picked[condition]
            picked_i = [f"step_{s}" for s in steps].index(picked_name) if picked_name.startswith("step_") else \
                len(steps) - 1
            # Near the 0% floor there is no room below the point: stack those labels above instead.
            near_floor = pct[picked_i] < 8
            above = rank == 0 or near_floor
            offset = 10 + 16 * rank if near_floor else (10 if above else -12)
            ax.annotate(
                f"{format_percent(picked_entry['accuracy'])}%",
                xy=(steps[picked_i], pct[picked_i]),
                xytext=(0, offset),
                textcoords="offset points",
                ha="center",
                va="bottom" if above else "top",
                fontsize=FONT_SIZE,
                fontweight="bold",
                color=color,
            )

        low, high = min(all_pct), max(all_pct)
        ax.set_ylim(max(0.0, low - 8), min(100.0, high + 8))
        if all_steps:
            max_step = max(all_steps)
            ax.set_xlim(0, max_step * 1.08)
            if len(all_steps) <= 12:  # label each checkpoint; with many checkpoints keep the automatic ticks
                ax.set_xticks([0, *sorted(all_steps)])
        ax.set_xlabel("Training step")
        ax.set_ylabel("Accuracy (%)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
        if note:
            ax.text(0.01, 0.02, note, transform=ax.transAxes, fontsize=FONT_SIZE - 1, style="italic",
                    color="dimgray", va="bottom", ha="left")
        fig.tight_layout()
    return fig


def selected_accuracy_bars(
    conditions: dict[str, dict[str, dict]],
    title: str,
    rule: str = "best",
    intervals: Intervals | None = None,
    labels: dict[str, str] | None = None,
    note: str | None = None,
) -> Figure:
    """One bar per condition: the accuracy (%) of the checkpoint the selection rule picks, labelled with its
    value and step; with `intervals`, error bars."""
    names = ordered_conditions(conditions)
    if not names:
        raise ValueError("no conditions to plot")
    picked = {c: select_checkpoint(conditions[c], rule) for c in names}
    pct = [picked[c][1]["accuracy"] * 100 for c in names]
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(names)), 5), dpi=DPI)
        taken: set[str] = set()
        colors = [color_for(label_for(c, labels), taken) for c in names]
        positions = list(range(len(names)))
        ax.bar(positions, pct, color=colors, width=0.65)
        tops = list(pct)
        if intervals:
            bars = [_error(intervals[(c, picked[c][0])], p) for c, p in zip(names, pct)]
            ax.errorbar(positions, pct, yerr=list(zip(*bars)), fmt="none", ecolor="black", elinewidth=1,
                        capsize=4)
            tops = [p + above for p, (_, above) in zip(pct, bars)]
        for x, top, c in zip(positions, tops, names):
            label, entry = picked[c]
            where = f"\n{label.replace('_', ' ')}" if label.startswith("step_") else ""
            ax.annotate(f"{format_percent(entry['accuracy'])}%{where}", xy=(x, top), xytext=(0, 4),
                        textcoords="offset points", ha="center", va="bottom", fontsize=FONT_SIZE - 1)
        ax.set_xticks(positions, [textwrap.fill(label_for(c, labels), 18) for c in names])
        ax.set_ylim(0, min(100.0, max(tops) * 1.18 + 2))
        ax.set_ylabel("Accuracy (%)")
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
        if note:
            fig.text(0.01, 0.005, note, fontsize=FONT_SIZE - 2, style="italic", color="dimgray", va="bottom",
                     ha="left", wrap=True)
        fig.tight_layout(rect=(0, 0.05 if note else 0, 1, 1))
    return fig


def add_footnote(fig: Figure, note: str | None, bottom: float = 0.08) -> None:
    """`note` (wrapped) in small grey italics under the axes, which `tight_layout` keeps clear of it."""
    if note:
        fig.text(0.01, 0.005, textwrap.fill(note, 120), fontsize=FONT_SIZE - 3, style="italic",
                 color="dimgray", va="bottom", ha="left")
    fig.tight_layout(rect=(0, bottom if note else 0, 1, 1))


def _plot_series(ax, steps: list[int], values: list[float], label: str, color: str, smooth: float) -> None:
    if smooth > 0 and len(values) > 1:
        ax.plot(steps, values, color=color, alpha=0.25, linewidth=1)
        ax.plot(steps, ema_smooth(values, smooth), color=color, linewidth=2, label=label)
    else:
        ax.plot(steps, values, color=color, linewidth=2, marker="o" if len(values) == 1 else None, label=label)


def _reference_note(conditions: dict[str, dict[str, dict]]) -> str:
    parts = []
    for condition in ordered_conditions(conditions):
        if not checkpoint_series(conditions[condition]):
            _, entry = best_checkpoint(conditions[condition])
            parts.append(f"{label_for(condition)}: {format_percent(entry['accuracy'])}%")
    return "   ".join(parts)


def _loss_panel(ax, runs, key: str, title: str, ylabel: str, colors: dict, smooth: float) -> None:
    for label, scalars in runs:
        _plot_series(ax, *scalars[key], label=label, color=colors[label], smooth=smooth)
    ax.set_title(title)
    ax.set_xlabel("Training step")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")


def curves_figure(
    runs: list[tuple[str, dict[str, Series]]],
    smooth: float = 0.0,
    conditions: dict[str, dict[str, dict]] | None = None,
    ce_key: str = "train/ce_loss",
    dist_key: str = "train/dist_loss",
) -> Figure:
    """Panels: CE loss of every run; distillation loss of the runs that log it; with `conditions`, the
    accuracy-per-checkpoint table. `runs` holds (label, scalars) pairs from metrics.load_run_scalars."""
    if not runs:
        raise ValueError("no runs to plot")
    missing_ce = [label for label, scalars in runs if ce_key not in scalars]
    if missing_ce:
        raise ValueError(f"runs without '{ce_key}': {', '.join(missing_ce)}; is this a training run directory?")
    dist_runs = [(label, scalars) for label, scalars in runs if dist_key in scalars]
    loss_panels = 2 if dist_runs else 1
    with_table = conditions is not None

    with plt.rc_context(_style()):
        width = max(6.5 * loss_panels, 9.0 if with_table else 0.0)  # the table's header needs ~9 in
        table_height = 0.3 * _table_rows(conditions) + 1.2 if with_table else 0.0  # rows + wrapped header + title
        height = 4.5 + table_height
        fig = plt.figure(figsize=(width, height), dpi=DPI, layout="constrained")
        grid = fig.add_gridspec(2 if with_table else 1, loss_panels,
                                height_ratios=[4.5, table_height] if with_table else None)
        taken: set[str] = set()
        colors = {label: color_for(label, taken) for label, _ in runs}
        suffix = f" (EMA {smooth:g})" if smooth > 0 else ""

        _loss_panel(fig.add_subplot(grid[0, 0]), runs, ce_key, f"Cross-entropy loss{suffix}", "CE loss",
                    colors, smooth)
        if dist_runs:
            _loss_panel(fig.add_subplot(grid[0, 1]), dist_runs, dist_key,
                        f"Distillation loss (MSE on teacher top-K logits){suffix}", "Distillation loss",
                        colors, smooth)

        if with_table:
            ax = fig.add_subplot(grid[1, :])
            _draw_accuracy_table(ax, conditions)
    return fig


def _table_rows(conditions: dict[str, dict[str, dict]] | None) -> int:
    if not conditions:
        return 0
    if has_trained_checkpoints(conditions):
        return len(per_checkpoint_rows(conditions)[1]) + 1
    return len(conditions) + 1


def _draw_accuracy_table(ax, conditions: dict[str, dict[str, dict]]) -> None:
    """The per-checkpoint accuracy table (same cells as the Markdown one) as a matplotlib table."""
    ax.axis("off")
    if has_trained_checkpoints(conditions):
        header, rows = per_checkpoint_rows(conditions)
        title = "Accuracy per checkpoint (Δ = distillation − SFT, pp)"
    else:  # no SFT/distillation steps: one row per condition and checkpoint instead
        header = ["Method", "Checkpoint", "Accuracy (%)"]
        rows = [[label_for(c), name, format_percent(e["accuracy"])]
                for c in ordered_conditions(conditions) for name, e in conditions[c].items()]
        title = "Accuracy"
    header = [textwrap.fill(cell, width=24) for cell in header]  # long method names wrap instead of overlapping
    table = ax.table(cellText=rows, colLabels=header, bbox=[0, 0, 1, 1], cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(FONT_SIZE - 1)
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#eeeeee")
    note = _reference_note(conditions)
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=FONT_SIZE)


def save_figure(fig: Figure, out: str | Path) -> Path:
    """Save as PNG (creating the parent folder) and close the figure."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return out
