"""Markdown result tables rendered from (merged) results conditions.

Every number is formatted from the results JSON: accuracy (a fraction) is shown as a percent with 2 decimals,
deltas as percentage points (pp) computed from the stored accuracies.
"""

from __future__ import annotations

from fewshot_distill.results.labels import (DISTILLATION_CONDITION, SFT_CONDITION, label_for, ordered_conditions,
                                           recorded_labels)
from statistics import NormalDist

from fewshot_distill.results.load import SELECTION_RULES, checkpoint_series, parse_step, select_checkpoint
from fewshot_distill.results.stats import (
    CONFIDENCE,
    McNemarResult,
    binomial_standard_error,
    intervals_from_counts,
    minimum_detectable_difference,
    minimum_resolvable_difference,
    unpaired_p_value,
)

MISSING = "—"
WILSON_HEADER = "95% CI (%, Wilson)"
BOOTSTRAP_HEADER = "95% CI (%, bootstrap)"
# Label of a published number whose checkpoint the source does not name.
UNSTATED_CHECKPOINT = "reported"


def format_percent(accuracy: float) -> str:
    """0.64291 -> '64.29' (percent, 2 decimals)."""
    return f"{accuracy * 100:.2f}"


def format_delta_pp(accuracy_from: float, accuracy_to: float) -> str:
    """Signed difference in percentage points: (0.6429, 0.7271) -> '+8.42'."""
    return f"{(accuracy_to - accuracy_from) * 100:+.2f}"


def entry_fraction(entry: dict) -> float:
    """correct / total of a results entry. Differences are taken between these exact fractions, not between the
    stored (possibly rounded) accuracies, so a delta of two published 2-decimal numbers matches the source."""
    return entry["correct"] / entry["total"]


def format_checkpoint(name: str) -> str:
    """'step_1000' -> 'step 1000'; non-step keys such as 'base' -> 'base model'."""
    step = parse_step(name)
    if step is not None:
        return f"step {step}"
    if name == "base":
        return "base model"
    return "checkpoint not stated" if name == UNSTATED_CHECKPOINT else name


def markdown_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; align holds 'l' or 'r' per column."""
    align = align or ["l"] * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def selection_note(rule: str) -> str:
    """One line naming the checkpoint selection rule; for "best" it says why the number is optimistic."""
    if rule == "best":
        return ("Checkpoint selection: best (each trained method's highest-accuracy checkpoint). It is picked on "
                "the test set itself, so it is optimistic: a checkpoint chosen without the test set would score "
                "lower on average.")
    if rule == "final":
        return "Checkpoint selection: final (each trained method's last checkpoint)."
    raise ValueError(f"unknown checkpoint selection rule {rule!r}; use one of {', '.join(SELECTION_RULES)}")


def selected_cell(name: str, checkpoints: dict[str, dict], rule: str) -> str:
    """Checkpoint column of the main table: which checkpoint the number comes from and, when there was a choice,
    the rule that chose it ("step 400 (best of 200..1000)", "step 1000 (final)")."""
    if len(checkpoints) == 1:
        return format_checkpoint(name)
    steps = [step for step, _ in checkpoint_series(checkpoints)]
    if rule == "final":
        return f"{format_checkpoint(name)} (final)"
    if len(steps) == len(checkpoints):
        return f"{format_checkpoint(name)} (best of {steps[0]}..{steps[-1]})"
    return f"{format_checkpoint(name)} (best of {len(checkpoints)} checkpoints)"


def selected_entries(conditions: dict[str, dict[str, dict]], rule: str) -> dict[str, tuple[str, dict]]:
    """condition -> (label, entry) that the selection rule picks, in display order."""
    return {c: select_checkpoint(conditions[c], rule) for c in ordered_conditions(conditions)}


def format_interval(interval: tuple[float, float]) -> str:
    """(0.7026, 0.7506) -> '70.26–75.06' (percent)."""
    return f"{format_percent(interval[0])}–{format_percent(interval[1])}"


def main_table(
    conditions: dict[str, dict[str, dict]],
    rule: str = "best",
    intervals: dict[tuple[str, str], tuple[float, float]] | None = None,
    interval_header: str = WILSON_HEADER,
    labels: dict[str, str] | None = None,
) -> str:
    """One row per condition: the checkpoint the selection rule picks, its accuracy and counts, and with
    `intervals` ((condition, label) -> (low, high) fractions) an interval column. `labels` override
    labels.label_for."""
    header = ["Method", "Checkpoint", "Accuracy (%)", "Correct / Total"] + ([interval_header] if intervals else [])
    rows = []
    for condition, (name, entry) in selected_entries(conditions, rule).items():
        row = [
            label_for(condition, labels),
            selected_cell(name, conditions[condition], rule),
            format_percent(entry["accuracy"]),
            f"{entry['correct']} / {entry['total']}",
        ]
        if intervals:
            interval = intervals.get((condition, name))
            row.append(format_interval(interval) if interval else MISSING)
        rows.append(row)
    return markdown_table(header, rows, ["l", "l", "r", "r", "r"][: len(header)])


def per_checkpoint_rows(
    conditions: dict[str, dict[str, dict]],
    sft: str = SFT_CONDITION,
    distillation: str = DISTILLATION_CONDITION,
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) with steps as rows: SFT accuracy, distillation accuracy and distillation - SFT in pp.

    Steps present in only one of the two conditions get a dash in the other column. Shared by the Markdown
    table and the matplotlib table panel so both show the same cells.
    """
    sft_by_step = dict(checkpoint_series(conditions.get(sft, {})))
    dist_by_step = dict(checkpoint_series(conditions.get(distillation, {})))
    steps = sorted(set(sft_by_step) | set(dist_by_step))
    if not steps:
        raise ValueError(
            f"no step_N checkpoints for '{sft}' or '{distillation}'; the per-checkpoint table needs trained runs"
        )
    header = ["Step", f"{label_for(sft)} (%)", f"{label_for(distillation)} (%)", "Δ (pp)"]
    rows = []
    for step in steps:
        s, d = sft_by_step.get(step), dist_by_step.get(step)
        rows.append([
            str(step),
            format_percent(s["accuracy"]) if s else MISSING,
            format_percent(d["accuracy"]) if d else MISSING,
            format_delta_pp(entry_fraction(s), entry_fraction(d)) if s and d else MISSING,
        ])
    return header, rows


def per_checkpoint_table(
    conditions: dict[str, dict[str, dict]],
    sft: str = SFT_CONDITION,
    distillation: str = DISTILLATION_CONDITION,
) -> str:
    """Markdown version of per_checkpoint_rows."""
    header, rows = per_checkpoint_rows(conditions, sft, distillation)
    return markdown_table(header, rows, ["r"] * len(header))


def has_trained_checkpoints(
    conditions: dict[str, dict[str, dict]],
    sft: str = SFT_CONDITION,
    distillation: str = DISTILLATION_CONDITION,
) -> bool:
    """Whether the SFT or distillation condition has any step_N checkpoint."""
    return any(checkpoint_series(conditions.get(c, {})) for c in (sft, distillation))


def stepped_conditions(conditions: dict[str, dict[str, dict]]) -> list[str]:
    """Conditions with step_N checkpoints, in display order."""
    return [c for c in ordered_conditions(conditions) if checkpoint_series(conditions[c])]


def checkpoint_matrix_rows(
    conditions: dict[str, dict[str, dict]], labels: dict[str, str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) with steps as rows and one accuracy column per condition with steps (dash where a
    condition lacks that step): the per-checkpoint table of runs other than the SFT/distillation pair."""
    columns = stepped_conditions(conditions)
    if not columns:
        raise ValueError("no step_N checkpoints in any condition; the per-checkpoint table needs trained runs")
    by_step = {c: dict(checkpoint_series(conditions[c])) for c in columns}
    steps = sorted(set().union(*by_step.values()))
    header = ["Step"] + [f"{label_for(c, labels)} (%)" for c in columns]
    rows = [[str(step)] + [format_percent(by_step[c][step]["accuracy"]) if step in by_step[c] else MISSING
                           for c in columns] for step in steps]
    return header, rows


def format_p_value(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _comparison_row(name: str, a: dict, b: dict, confidence: float) -> list[str]:
    """Unpaired comparison of two counted entries on the same number of problems (b minus a)."""
    if a["total"] != b["total"]:
        raise ValueError(f"{name}: entries out of different totals ({a['total']} vs {b['total']}) are not compared")
    p = unpaired_p_value(a["correct"], b["correct"], a["total"])
    return [name, format_delta_pp(entry_fraction(a), entry_fraction(b)), format_p_value(p),
            "yes" if p < 1 - confidence else "no"]


def _entry_name(condition: str, label: str, labels: dict[str, str] | None) -> str:
    name = label_for(condition, labels)
    return name if label in ("base", UNSTATED_CHECKPOINT) else f"{name} ({format_checkpoint(label)})"


def resolution_lines(
    conditions: dict[str, dict[str, dict]],
    rule: str,
    confidence: float = CONFIDENCE,
    labels: dict[str, str] | None = None,
) -> list[str]:
    """Markdown: what counts alone can say about the differences in a results set. Every number is computed
    here from the stored counts (binomial standard error, unpaired two-proportion test); none is typed."""
    selected = selected_entries(conditions, rule)
    totals = {entry["total"] for _, entry in selected.values()}
    if len(totals) != 1:
        raise ValueError("entries out of different totals; the resolution section needs one test set size")
    total = totals.pop()
    trained = [c for c in selected if len(conditions[c]) > 1] or list(selected)
    ref_condition = max(trained, key=lambda c: selected[c][1]["accuracy"])
    ref_name, ref = selected[ref_condition]
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * binomial_standard_error(ref["accuracy"], total)
    resolvable = minimum_resolvable_difference(ref["accuracy"], total, confidence)
    detectable = minimum_detectable_difference(ref["accuracy"], total, confidence)
    level = f"{confidence * 100:g}%"
    lines = [
        f"Without per-problem predictions each number is a binomial measurement on n = {total} problems "
        f"(standard error sqrt(p(1 − p)/n)). At the level of {_entry_name(ref_condition, ref_name, labels)}, "
        f"{format_percent(ref['accuracy'])}%, the {level} half-width is ±{half * 100:.2f} pp. Two independent numbers near that level differ significantly (two-sided unpaired "
        f"two-proportion test, p < {1 - confidence:.2g}) only when at least {resolvable * 100:.2f} pp apart, and a "
        f"true gap of {detectable * 100:.2f} pp is found with 80% power. A paired test on the same problems "
        "(exact McNemar from the predictions) is usually sharper but needs the per-problem predictions.",
        "",
    ]
    rows = []
    names = list(selected)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            (name_a, a), (name_b, b) = selected[first], selected[second]
            title = f"{_entry_name(second, name_b, labels)} − {_entry_name(first, name_a, labels)}"
            rows.append(_comparison_row(title, a, b, confidence))
    for condition in names:
        checkpoints = conditions[condition]
        if len(checkpoints) > 1:
            (best_name, best), (worst_name, worst) = select_checkpoint(checkpoints, "best"), min(
                checkpoints.items(), key=lambda item: item[1]["accuracy"])
            title = (f"{label_for(condition, labels)}: best − worst checkpoint ({format_checkpoint(best_name)} − "
                     f"{format_checkpoint(worst_name)})")
            rows.append(_comparison_row(title, worst, best, confidence))
    header = ["Comparison", "Δ (pp)", "p (unpaired)", f"Resolved at {1 - confidence:.2g}"]
    note = ("Best − worst rows compare the extremes of a method's checkpoints, picked after seeing them, so their "
            "p-values are too small: a \"no\" there stands, a \"yes\" may not.")
    return lines + [markdown_table(header, rows, ["l", "r", "r", "l"]), "", note, ""]


def entry_interval_table(
    conditions: dict[str, dict[str, dict]],
    intervals: dict[tuple[str, str], tuple[float, float]],
    interval_header: str = BOOTSTRAP_HEADER,
    labels: dict[str, str] | None = None,
) -> str:
    """Every (condition, checkpoint) with its accuracy and interval, checkpoints in step order."""
    rows = []
    for condition in ordered_conditions(conditions):
        checkpoints = conditions[condition]
        for name in sorted(checkpoints, key=lambda n: (parse_step(n) is not None, parse_step(n) or 0, n)):
            entry = checkpoints[name]
            interval = intervals.get((condition, name))
            rows.append([label_for(condition, labels), format_checkpoint(name), format_percent(entry["accuracy"]),
                         f"{entry['correct']} / {entry['total']}", format_interval(interval) if interval else MISSING])
    header = ["Method", "Checkpoint", "Accuracy (%)", "Correct / Total", interval_header]
    return markdown_table(header, rows, ["l", "l", "r", "r", "r"])


def paired_test_lines(tests: list[tuple[tuple[str, str], tuple[str, str], McNemarResult]]) -> list[str]:
    """Markdown table of exact McNemar tests: ((condition A, label), (condition B, label), result)."""
    header = ["Label", "A", "B", "A right, B wrong", "B right, A wrong", "Δ B − A (pp)", "p (exact McNemar)"]
    rows = [[format_checkpoint(a[1]), label_for(a[0]), label_for(b[0]), str(r.only_a), str(r.only_b),
             f"{-r.difference * 100:+.2f}", format_p_value(r.p_value)] for a, b, r in tests]
    return [markdown_table(header, rows, ["l", "l", "l", "r", "r", "r", "r"]), ""]


def results_section(
    results: dict,
    rule: str = "best",
    level: int = 3,
    intervals: dict[tuple[str, str], tuple[float, float]] | None = None,
    interval_header: str = WILSON_HEADER,
    paired_tests: list | None = None,
) -> list[str]:
    """Markdown lines of one results set: main table (selection rule + note), per-checkpoint table, and either
    the paired tests (with predictions) or what counts alone can resolve (published numbers)."""
    conditions = results["conditions"]
    labels = recorded_labels(results)
    heading = "#" * level
    lines = []
    descriptions = results.get("condition_descriptions") or {}
    if descriptions:
        lines += [f"- `{c}`: {descriptions[c]}" for c in ordered_conditions(descriptions)] + [""]
    lines += [f"{heading} Main results", "", main_table(conditions, rule, intervals, interval_header, labels), ""]
    if any(len(checkpoints) > 1 for checkpoints in conditions.values()):
        lines += [selection_note(rule), ""]
    stepped = stepped_conditions(conditions)
    if stepped and set(stepped) <= {SFT_CONDITION, DISTILLATION_CONDITION}:
        lines += [
            f"{heading} Accuracy per checkpoint",
            "",
            per_checkpoint_table(conditions),
            "",
            f"Δ = {label_for(DISTILLATION_CONDITION)} − {label_for(SFT_CONDITION)}, in percentage points.",
            "",
        ]
    elif stepped:
        header, rows = checkpoint_matrix_rows(conditions, labels)
        lines += [f"{heading} Accuracy per checkpoint", "", markdown_table(header, rows, ["r"] * len(header)), ""]
    if paired_tests is not None:
        if intervals:
            lines += [f"{heading} Intervals per entry", "", entry_interval_table(conditions, intervals, interval_header,
                                                                                 labels), ""]
        lines += [f"{heading} Paired tests (same problems)", "", *paired_test_lines(paired_tests)]
    elif results.get("published"):
        lines += [f"{heading} What {_total_text(conditions)} problems can resolve", "",
                  *resolution_lines(conditions, rule, labels=labels)]
    return lines


def _total_text(conditions: dict[str, dict[str, dict]]) -> str:
    totals = sorted({e["total"] for checkpoints in conditions.values() for e in checkpoints.values()})
    return ", ".join(f"{t:,}" for t in totals)


def _source_lines(results: dict, names: str) -> list[str]:
    if results.get("published"):
        model = f" ({results['model']})" if results.get("model") else ""
        lines = [f"Published numbers{model}, not produced by this repository's runs, from {names}."]
        if results.get("source"):
            lines.append(f"Source: {results['source']}")
        return lines
    return [f"Results from {names}."]


def results_markdown(
    results: dict,
    sources: list[str],
    rule: str = "best",
    intervals: dict[tuple[str, str], tuple[float, float]] | None = None,
    interval_header: str = BOOTSTRAP_HEADER,
    paired_tests: list | None = None,
    extra_sets: list[tuple[str, dict, str]] | None = None,
) -> str:
    """The README result section: a header naming the source file(s), the main and per-checkpoint tables,
    intervals and tests; then each of `extra_sets` ((title, results, source path), e.g. published controls) as
    its own section, never merged with the main set.

    `intervals` (from the predictions, e.g. bootstrap) default to Wilson intervals from the counts."""
    if intervals is None:
        intervals, interval_header = intervals_from_counts(results["conditions"]), WILSON_HEADER
    names = ", ".join(f"`{s}`" for s in sources)
    extra_sets = extra_sets or []
    all_names = ", ".join([names] + [f"`{path}`" for _, _, path in extra_sets])
    lines = [f"<!-- generated by scripts/write_results.py from {all_names}; do not edit by hand -->", ""]
    lines += _source_lines(results, names) + [""]
    lines += results_section(results, rule, 3, intervals, interval_header, paired_tests)
    for title, extra, path in extra_sets:
        lines += [f"## {title}", "", *_source_lines(extra, f"`{path}`"), ""]
        lines += results_section(extra, rule, 3, intervals_from_counts(extra["conditions"]), WILSON_HEADER)
    return "\n".join(lines).rstrip("\n") + "\n"
