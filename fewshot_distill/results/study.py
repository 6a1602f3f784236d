"""A study's numbers: per-condition accuracy across seeds, paired differences, McNemar per seed; its table
and figure. Pure functions of the per-item results (fewshot_distill/study/ runs the grid and calls these).

Input: `results[condition][seed] = {test index: correct}` for one task, every condition and seed scored on
the same test items (the study evaluates every seed on one seeded subset).

- A condition's accuracy: the mean of its per-seed accuracies with a Student t interval over seeds
  (`stats.t_interval`: n - 1 degrees of freedom; none with one seed).
- A named pair (A, B): the mean of A - B over seeds and items with a paired percentile bootstrap that
  resamples seeds, then items within each seed (`stats.paired_bootstrap_difference`, seeded), and an exact
  McNemar test on each seed's items (`stats.mcnemar_exact`: the binomial test on the discordant items).
- Held-out proxies (when the study scores them, `eval.diagnostics`): each condition's teacher-forced NLL of the
  gold answers, KL(8-shot teacher || it) and the share of the ICL gap closed by each, as a mean over seeds
  with the same t interval (`summarise_diagnostics`).

    summary = summarise_task(results, pairs=[("online_v1", "online_zeroshot")], seeds=[0, 1, 2])
    markdown = study_markdown({"first_letter": summary})
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from fewshot_distill.results.diagnostics import DIAGNOSTICS_COLUMNS
from fewshot_distill.results.labels import label_for, ordered_conditions
from fewshot_distill.results.stats import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, mcnemar_exact,
                               paired_bootstrap_difference, t_interval)

Results = Mapping[str, Mapping[int, Mapping[int, bool]]]  # condition -> seed -> test index -> correct

INTERVAL_METHOD = "Student t interval over per-seed accuracies (mean +- t(n-1) s / sqrt(n))"
BOOTSTRAP_METHOD = ("paired percentile bootstrap: each resample draws the seeds with replacement, then each "
                    "drawn seed's test items with replacement; A - B on the same (seed, item)")
MCNEMAR_METHOD = "exact McNemar test per seed (two-sided binomial test on the discordant items)"


def flag_matrix(results: Results, condition: str, seeds: Sequence[int], items: Sequence[int]) -> np.ndarray:
    """(S, n) correct flags of one condition: row = seed in `seeds` order, column = test index in `items`."""
    by_seed = results[condition]
    return np.array([[by_seed[seed][i] for i in items] for seed in seeds], dtype=bool)


def common_items(results: Results, seeds: Sequence[int]) -> list[int]:
    """The test indices every condition was scored on at every seed (they must all be the same set)."""
    missing = [f"{c}/seed {s}" for c in results for s in seeds if s not in results[c]]
    if missing:
        raise ValueError(f"no results for {', '.join(missing)}; run the study again to finish them")
    sets = {(c, s): frozenset(results[c][s]) for c in results for s in seeds}
    first = next(iter(sets.values()))
    different = [f"{c}/seed {s}" for (c, s), items in sets.items() if items != first]
    if different:
        raise ValueError(f"{', '.join(different)} scored other test items than the rest; evaluate every run on "
                         "the same subset (one eval.subset_seed and eval.test_items for the whole study)")
    return sorted(first)


def summarise_task(results: Results, pairs: Sequence[tuple[str, str]], seeds: Sequence[int],
                   confidence: float = CONFIDENCE, n_resamples: int = BOOTSTRAP_RESAMPLES,
                   bootstrap_seed: int = BOOTSTRAP_SEED) -> dict:
    """The JSON-ready summary of one task's grid (see module docstring)."""
    seeds = list(seeds)
    items = common_items(results, seeds)
    unknown = sorted({name for pair in pairs for name in pair} - set(results))
    if unknown:
        raise ValueError(f"pairs name conditions without results: {', '.join(unknown)}")
    conditions = {}
    for condition in ordered_conditions(results):
        flags = flag_matrix(results, condition, seeds, items)
        per_seed = flags.mean(axis=1)
        interval = t_interval(per_seed, confidence)
        conditions[condition] = {
            "label": label_for(condition), "mean": interval.mean, "low": interval.low, "high": interval.high,
            "per_seed": {str(seed): float(acc) for seed, acc in zip(seeds, per_seed)},
            "correct_per_seed": {str(seed): int(row.sum()) for seed, row in zip(seeds, flags)},
        }
    compared = []
    for a, b in pairs:
        flags_a, flags_b = flag_matrix(results, a, seeds, items), flag_matrix(results, b, seeds, items)
        difference, low, high = paired_bootstrap_difference(flags_a, flags_b, confidence, n_resamples,
                                                            bootstrap_seed)
        tests = []
        for seed, row_a, row_b in zip(seeds, flags_a, flags_b):
            test = mcnemar_exact(row_a, row_b)
            tests.append({"seed": seed, "only_a": test.only_a, "only_b": test.only_b, "p_value": test.p_value})
        compared.append({"a": a, "b": b, "difference": difference, "low": low, "high": high, "mcnemar": tests})
    return {"seeds": seeds, "n_items": len(items), "test_indices": items, "confidence": confidence,
            "interval": INTERVAL_METHOD,
            "bootstrap": {"method": BOOTSTRAP_METHOD, "resamples": n_resamples, "seed": bootstrap_seed},
            "mcnemar": MCNEMAR_METHOD, "conditions": conditions, "pairs": compared}


DIAGNOSTIC_KEYS = ("nll", "kl", "gap_closed_nll", "gap_closed_kl")  # of fewshot_distill.eval.diagnostics.METRIC_KEYS


def summarise_diagnostics(metrics: Mapping[str, Mapping[int, Mapping[str, float | None]]], seeds: Sequence[int],
                          confidence: float = CONFIDENCE) -> dict:
    """condition -> {"label", key -> {mean, low, high, per_seed}} for each of DIAGNOSTIC_KEYS, from
    `metrics[condition][seed]` (one diagnostics entry per seed; eval_diagnostics.py's metrics). A key that is
    undefined at some seed (a gap ratio whose teacher is not better than 0-shot: None) has no mean."""
    seeds = list(seeds)
    missing = [f"{c}/seed {s}" for c in metrics for s in seeds if s not in metrics[c]]
    if missing:
        raise ValueError(f"no diagnostics for {', '.join(missing)}; run the study again to finish them")
    summary = {}
    for condition in ordered_conditions(metrics):
        entry: dict = {"label": label_for(condition)}
        for key in DIAGNOSTIC_KEYS:
            values = [metrics[condition][seed][key] for seed in seeds]
            per_seed = {str(seed): value for seed, value in zip(seeds, values)}
            if any(value is None for value in values):
                entry[key] = {"mean": None, "low": None, "high": None, "per_seed": per_seed}
                continue
            interval = t_interval(values, confidence)
            entry[key] = {"mean": interval.mean, "low": interval.low, "high": interval.high, "per_seed": per_seed}
        summary[condition] = entry
    return summary


# --- table ------------------------------------------------------------------------------------------------------

def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _p_value(p: float) -> str:
    return f"{p:.2g}" if p < 0.01 else f"{p:.2f}"


def task_markdown(summary: dict) -> str:
    """Two markdown tables of one task: accuracy per condition, then the named paired differences."""
    level = round(100 * summary["confidence"])
    seeds = summary["seeds"]
    lines = [f"| condition | accuracy % (mean of {len(seeds)} seeds) | {level}% t-interval | per seed |",
             "|---|---:|---:|---|"]
    for entry in summary["conditions"].values():
        interval = ("–" if entry["low"] is None
                    else f"[{_percent(entry['low'])}, {_percent(entry['high'])}]")
        per_seed = ", ".join(f"{entry['correct_per_seed'][str(s)]}/{summary['n_items']}" for s in seeds)
        lines.append(f"| {entry['label']} | {_percent(entry['mean'])} | {interval} | {per_seed} |")
    if summary["pairs"]:
        lines += ["", f"| A − B | difference (points) | {level}% paired bootstrap | McNemar p per seed "
                      "(items only A / only B right) |", "|---|---:|---:|---|"]
        for pair in summary["pairs"]:
            tests = ", ".join(f"{_p_value(t['p_value'])} ({t['only_a']}/{t['only_b']})" for t in pair["mcnemar"])
            lines.append(f"| {label_for(pair['a'])} − {label_for(pair['b'])} | {100 * pair['difference']:+.1f} | "
                         f"[{100 * pair['low']:+.1f}, {100 * pair['high']:+.1f}] | {tests} |")
    if summary.get("diagnostics"):
        lines += ["", diagnostics_table_markdown(summary["diagnostics"], level)]
    return "\n".join(lines)


def _mean_interval(value: dict, fmt=_percent) -> str:
    """`mean [low, high]` of a {mean, low, high} entry in `fmt`; the mean alone without an interval (one seed),
    `–` without a mean."""
    if value["mean"] is None:
        return "–"
    if value["low"] is None:
        return fmt(value["mean"])
    return f"{fmt(value['mean'])} [{fmt(value['low'])}, {fmt(value['high'])}]"


def diagnostics_table_markdown(diagnostics: Mapping[str, dict], level: int) -> str:
    """The held-out proxies of one task: a row per condition, mean over seeds [t-interval] of each key (headers
    from the diagnostics table's columns)."""
    headers = [DIAGNOSTICS_COLUMNS[key][0] for key in DIAGNOSTIC_KEYS]
    lines = [f"| condition (held-out, teacher-forced on the same items; mean over seeds [{level}% t-interval]) | "
             + " | ".join(headers) + " |", "|---|" + "---:|" * len(headers)]
    for entry in diagnostics.values():
        lines.append(f"| {entry['label']} | "
                     + " | ".join(_mean_interval(entry[key], lambda v: f"{v:.3f}") for key in DIAGNOSTIC_KEYS) + " |")
    return "\n".join(lines)


def tasks_table_markdown(tasks: Mapping[str, dict]) -> str:
    """One markdown table over every task: a row per condition, a column per task with its mean accuracy % and
    t-interval across seeds (`60.0 [49.2, 70.8]`; the mean alone with one seed, `–` where a task lacks it).
    Where a task has held-out proxies, a second column beside it: the mean share of the ICL gap closed by NLL."""
    conditions: dict[str, str] = {}
    for summary in tasks.values():
        conditions |= {c: entry["label"] for c, entry in summary["conditions"].items() if c not in conditions}

    def cells(summary: dict, condition: str) -> list[str]:
        entry = summary["conditions"].get(condition)
        accuracy = "–" if entry is None else _mean_interval(entry)
        if not summary.get("diagnostics"):
            return [accuracy]
        proxy = summary["diagnostics"].get(condition, {}).get("gap_closed_nll", {"mean": None})
        # round first, then + 0.0: a tiny negative mean prints 0.00, not -0.00
        return [accuracy, "–" if proxy["mean"] is None else f"{round(proxy['mean'], 2) + 0.0:.2f}"]

    header = []
    for task, summary in tasks.items():
        header += ([f"`{task}` accuracy %", f"`{task}` gap closed (NLL)"] if summary.get("diagnostics")
                   else [f"`{task}`"])
    lines = ["| condition | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    lines += [f"| {label} | " + " | ".join(c for summary in tasks.values() for c in cells(summary, condition))
              + " |" for condition, label in conditions.items()]
    return "\n".join(lines)


def key_pairs(summary: dict) -> list[dict]:
    """The pairs a short summary shows: the study's first pair (its headline question), whatever its verdict,
    and every other pair whose paired bootstrap interval excludes 0; in the study's `pairs:` order."""
    return [pair for index, pair in enumerate(summary["pairs"])
            if index == 0 or pair["low"] > 0 or pair["high"] < 0]


def study_markdown(tasks: Mapping[str, dict]) -> str:
    """Every task's tables under a heading line, and one line saying how the intervals and tests are made."""
    parts = []
    for task, summary in tasks.items():
        parts += [f"**{task}** ({summary['n_items']} test items, seeds {', '.join(map(str, summary['seeds']))})",
                  "", task_markdown(summary), ""]
    first = next(iter(tasks.values()))
    parts.append(f"Intervals: {first['interval']}. Differences: {first['bootstrap']['method']} "
                 f"({first['bootstrap']['resamples']} resamples, seed {first['bootstrap']['seed']}); "
                 f"{first['mcnemar']}.")
    return "\n".join(parts) + "\n"


# --- figure -----------------------------------------------------------------------------------------------------

def study_figure(tasks: Mapping[str, dict], title: str = ""):
    """One panel per task: a bar per condition (mean accuracy), its t-interval, and a dot per seed. Returns the
    Figure (save it with fewshot_distill.results.figures.save_figure)."""
    import matplotlib.pyplot as plt

    from fewshot_distill.results.figures import color_for

    n_conditions = max(len(s["conditions"]) for s in tasks.values())
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 0.4 * n_conditions + 1.4), squeeze=False)
    for ax, (task, summary) in zip(axes[0], tasks.items()):
        entries = list(summary["conditions"].items())
        taken: set[str] = set()
        for row, (condition, entry) in enumerate(entries):
            ax.barh(row, 100 * entry["mean"], color=color_for(condition, taken), alpha=0.8)
            if entry["low"] is not None:
                ax.errorbar(100 * entry["mean"], row, xerr=[[100 * (entry["mean"] - entry["low"])],
                                                            [100 * (entry["high"] - entry["mean"])]],
                            color="black", capsize=3, linewidth=1)
            per_seed = [100 * v for v in entry["per_seed"].values()]
            ax.scatter(per_seed, [row] * len(per_seed), color="black", s=10, zorder=3)
        ax.set_yticks(range(len(entries)), [e["label"] for _, e in entries], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("test accuracy (%): bar = mean over seeds, whisker = t-interval, dots = seeds", fontsize=8)
        ax.set_title(f"{task} ({summary['n_items']} test items, {len(summary['seeds'])} seeds)", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def pair_reading(pair: dict, confidence: float = CONFIDENCE) -> str:
    """One generated sentence on a named pair: which side its paired bootstrap interval puts ahead, if any."""
    a, b = label_for(pair["a"]), label_for(pair["b"])
    level = round(100 * confidence)
    interval = f"{100 * pair['difference']:+.1f} points, {level}% interval [{100 * pair['low']:+.1f}, " \
               f"{100 * pair['high']:+.1f}]"
    if pair["low"] > 0:
        return f"{a} is above {b} ({interval})."
    if pair["high"] < 0:
        return f"{a} is below {b} ({interval})."
    return f"{a} and {b} are not told apart ({interval}: the interval includes 0)."
