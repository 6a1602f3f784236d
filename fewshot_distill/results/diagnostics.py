"""Held-out diagnostics results (scripts/eval_diagnostics.py): load, tabulate, plot.

A diagnostics file has the evaluation layout (`conditions.{name}.{label}` = metrics) with
`"kind": "diagnostics"` and metrics {nll, top1, kl, topk_mse, gap_closed_nll, gap_closed_kl, tokens,
rows}; it is not an accuracy file, so fewshot_distill/results/load.py refuses it and this module reads it.

    data = load_diagnostics("assets/mini/diagnostics.json")
    print(diagnostics_markdown(data["conditions"]))
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

from fewshot_distill.results.figures import color_for, plt
from fewshot_distill.results.labels import label_for, ordered_conditions
from fewshot_distill.results.load import checkpoint_series, last_checkpoint, parse_step
from fewshot_distill.run_identity import BASE_LABEL

KIND = "diagnostics"
REQUIRED = ("nll", "top1", "kl", "topk_mse", "gap_closed_nll", "gap_closed_kl", "tokens", "rows")


def validate_diagnostics(data, source: str) -> None:
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ValueError(f"{source}: not a diagnostics file (no \"kind\": \"{KIND}\"); pass the JSON written by "
                         "scripts/eval_diagnostics.py")
    conditions = data.get("conditions")
    if not isinstance(conditions, dict) or not conditions:
        raise ValueError(f"{source}: 'conditions' must be a non-empty object of condition -> label -> metrics")
    for condition, labels in conditions.items():
        for label, metrics in labels.items():
            missing = [key for key in REQUIRED if key not in metrics]
            if missing:
                raise ValueError(f"{source}: conditions.{condition}.{label} lacks {', '.join(missing)}")
            for key in ("nll", "top1", "kl", "topk_mse"):
                if not isinstance(metrics[key], (int, float)) or not math.isfinite(metrics[key]):
                    raise ValueError(f"{source}: conditions.{condition}.{label}.{key} must be a finite number")


def load_diagnostics(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"diagnostics file not found: {path} (run scripts/eval_diagnostics.py first)")
    data = json.loads(path.read_text())
    validate_diagnostics(data, str(path))
    return data


def _fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# Columns of the diagnostics table: key -> (header, alignment, cell from (label, metrics)).
DIAGNOSTICS_COLUMNS = {
    "checkpoint": ("checkpoint", "---", lambda label, m: label),
    "nll": ("answer NLL (nats/token)", "---:", lambda label, m: _fmt(m["nll"], 4)),
    "top1": ("top-1 agreement", "---:", lambda label, m: _fmt(m["top1"], 4)),
    "kl": ("KL(teacher ‖ model)", "---:", lambda label, m: _fmt(m["kl"], 4)),
    "topk_mse": ("top-K MSE", "---:", lambda label, m: _fmt(m["topk_mse"], 3)),
    "gap_closed_nll": ("ICL gap closed (NLL)", "---:", lambda label, m: _fmt(m["gap_closed_nll"], 3)),
    "gap_closed_kl": ("ICL gap closed (KL)", "---:", lambda label, m: _fmt(m["gap_closed_kl"], 3)),
    "rows": ("rows", "---:", lambda label, m: str(m["rows"])),
    "tokens": ("tokens", "---:", lambda label, m: str(m["tokens"])),
}


def diagnostics_markdown(conditions: dict, columns: tuple[str, ...] = tuple(DIAGNOSTICS_COLUMNS),
                         labels: dict[str, str] | None = None) -> str:
    """One row per (condition, label): the numbers as stored, rounded for reading; `columns` picks and
    orders the columns after the condition (keys of DIAGNOSTICS_COLUMNS; default all)."""
    spec = [DIAGNOSTICS_COLUMNS[key] for key in columns]
    lines = ["| condition | " + " | ".join(header for header, _, _ in spec) + " |",
             "|---|" + "|".join(align for _, align, _ in spec) + "|"]
    for condition in ordered_conditions(conditions):
        checkpoints = conditions[condition]
        for label in sorted(checkpoints, key=lambda name: (parse_step(name) is None and name != BASE_LABEL,
                                                           parse_step(name) or -1)):
            m = checkpoints[label]
            cells = " | ".join(cell(label, m) for _, _, cell in spec)
            lines.append(f"| {label_for(condition, labels)} | {cells} |")
    return "\n".join(lines)


PANELS = (("nll", "Answer NLL (nats/token)"), ("kl", "KL(k-shot teacher ‖ model)"),
          ("gap_closed_nll", "ICL gap closed (NLL)"))


def per_checkpoint_figure(conditions: dict, title: str = "", labels: dict[str, str] | None = None):
    """NLL, KL and gap closed vs training step; base rows as dashed horizontal lines. `labels`: see
    labels.recorded_labels."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.2 * len(PANELS), 4.3), dpi=150, layout="constrained")
    taken: set[str] = set()
    colors = {c: color_for(label_for(c, labels), taken) for c in ordered_conditions(conditions)}
    for ax, (key, name) in zip(axes, PANELS):
        for condition in ordered_conditions(conditions):
            series = checkpoint_series(conditions[condition])
            if series:
                steps = [s for s, m in series if m[key] is not None]
                ax.plot(steps, [m[key] for _, m in series if m[key] is not None], marker="o",
                        color=colors[condition], label=label_for(condition, labels))
            elif BASE_LABEL in conditions[condition]:  # base_0shot and icl_{k}shot: reference lines
                value = conditions[condition][BASE_LABEL][key]
                if value is not None:
                    ax.axhline(value, linestyle="--", color=colors[condition], label=label_for(condition, labels))
        ax.set_title(name)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def gap_bars_figure(conditions: dict, title: str = "", labels: dict[str, str] | None = None):
    """Share of the ICL gap closed (NLL and KL) by the last checkpoint of each run, with the base rows."""
    names, nll_gap, kl_gap = [], [], []
    for condition in ordered_conditions(conditions):
        label, metrics = last_checkpoint(conditions[condition])
        # Long method names wrap instead of running into their neighbours.
        name = textwrap.fill(label_for(condition, labels), 22)
        names.append(name + ("" if label == BASE_LABEL else f"\n({label})"))
        nll_gap.append(metrics["gap_closed_nll"] or 0.0)
        kl_gap.append(metrics["gap_closed_kl"] or 0.0)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(names)), 4.5), dpi=150, layout="constrained")
    width = 0.38
    xs = range(len(names))
    bars = ax.bar([x - width / 2 for x in xs], nll_gap, width, label="by answer NLL", color="tab:blue")
    bars_kl = ax.bar([x + width / 2 for x in xs], kl_gap, width, label="by KL to the teacher", color="tab:orange")
    for bar_set in (bars, bars_kl):
        ax.bar_label(bar_set, fmt="%.2f", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("share of the 0-shot → k-shot gap closed")
    ax.legend(fontsize=8)
    ax.set_title("ICL gap closed (0 = 0-shot base model, 1 = k-shot teacher)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def eval_curves_figure(runs: list[tuple[str, dict]], title: str = ""):
    """In-training eval/* scalars (metrics.jsonl) of each run: NLL and gap closed vs step. `runs` holds
    (legend label, scalars) pairs (metrics.run_label gives a run's)."""
    keys = [("eval/nll", "held-out answer NLL"), ("eval/kl", "KL(teacher ‖ model)"),
            ("eval/gap_closed_nll", "ICL gap closed (NLL)")]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4.0), dpi=150, layout="constrained")
    taken: set[str] = set()
    for label, scalars in runs:
        color = color_for(label, taken)
        for ax, (key, _) in zip(axes, keys):
            if key in scalars:
                steps, values = scalars[key]
                ax.plot(steps, values, marker=".", color=color, label=label)
    for ax, (_, name) in zip(axes, keys):
        ax.set_title(f"in training: {name}")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
