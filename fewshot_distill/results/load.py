"""Load and validate evaluation results JSON files (the format written by scripts/eval_checkpoints.py).

A results file maps condition -> checkpoint -> {"accuracy", "correct", "total"}; checkpoints are "base" for
base-model conditions and "step_{N}" for trained checkpoints. Several files can be merged (e.g. one per run).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fewshot_distill.run_identity import label_step, RUN_CONDITIONS_KEY

# accuracy is stored as a float; allow it to be rounded (e.g. to 4 decimals) but not to disagree with correct/total.
ACCURACY_TOLERANCE = 5e-4

def parse_step(checkpoint: str) -> int | None:
    """Training step of a checkpoint key ("step_1000" -> 1000); None for "base" and other non-step keys."""
    return label_step(checkpoint)


def validate_entry(entry: Any, where: str) -> None:
    """Check one {"accuracy", "correct", "total"} entry; `where` names it in the error message."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object with accuracy/correct/total, got {type(entry).__name__}")
    missing = [k for k in ("accuracy", "correct", "total") if k not in entry]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}; each checkpoint needs accuracy, correct and total")
    accuracy, correct, total = entry["accuracy"], entry["correct"], entry["total"]
    for name, value in (("correct", correct), ("total", total)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: {name} must be an integer, got {value!r}")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
        raise ValueError(f"{where}: accuracy must be a finite number (a fraction in [0, 1]), got {accuracy!r}")
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"{where}: need 0 <= correct <= total and total > 0, got correct={correct}, total={total}")
    if abs(accuracy - correct / total) > ACCURACY_TOLERANCE:
        raise ValueError(
            f"{where}: accuracy {accuracy} is inconsistent with correct/total = {correct}/{total} = "
            f"{correct / total:.6f}; accuracy must be a fraction (correct / total), not a percent"
        )


def published_count(percent: float, total: int) -> int:
    """Correct answers behind a published two-decimal percent: round(percent / 100 * total).

    Raises if the count does not give back the same two-decimal percent (then no integer count matches).
    """
    count = round(percent / 100 * total)
    if f"{count / total * 100:.2f}" != f"{percent:.2f}":
        raise ValueError(f"no count out of {total} rounds to {percent:.2f}%; check the total or the percent")
    return count


def validate_headline(data: dict, source: str) -> None:
    """An optional `headline` block names the checkpoint each headline number comes from and the rule that
    chose it: {"rule": "best"|"final", "checkpoints": {condition: label}}. The named checkpoints must exist and
    be the ones the rule picks, so the file cannot claim a step its numbers contradict."""
    headline = data.get("headline")
    if headline is None:
        return
    if not isinstance(headline, dict) or headline.get("rule") not in SELECTION_RULES \
            or not isinstance(headline.get("checkpoints"), dict):
        raise ValueError(f"{source}: 'headline' must be {{\"rule\": one of {SELECTION_RULES}, \"checkpoints\": "
                         "{condition: label}}")
    for condition, label in headline["checkpoints"].items():
        checkpoints = data["conditions"].get(condition, {})
        if label not in checkpoints:
            raise ValueError(f"{source}: headline.checkpoints.{condition} = {label!r} is not in conditions.{condition}")
        chosen, _ = select_checkpoint(checkpoints, headline["rule"])
        if chosen != label:
            raise ValueError(f"{source}: headline.checkpoints.{condition} = {label!r}, but rule "
                             f"{headline['rule']!r} picks {chosen!r}")


def validate_results(data: Any, source: str = "<results>") -> None:
    """Raise ValueError naming `source` if `data` is not a valid results object."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: top level must be a JSON object, got {type(data).__name__}")
    if "conditions" not in data:
        raise ValueError(f"{source}: no 'conditions' key; is this an eval_checkpoints.py results file?")
    conditions = data["conditions"]
    if not isinstance(conditions, dict) or not conditions:
        raise ValueError(f"{source}: 'conditions' must be a non-empty object of condition -> checkpoint -> result")
    for condition, checkpoints in conditions.items():
        if not isinstance(checkpoints, dict) or not checkpoints:
            raise ValueError(f"{source}: condition '{condition}' must map checkpoint names to results")
        for checkpoint, entry in checkpoints.items():
            validate_entry(entry, f"{source}: conditions.{condition}.{checkpoint}")
    validate_headline(data, source)


def load_results(path: str | Path) -> dict:
    """Read and validate one results JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path} (pass the JSON written by eval_checkpoints.py)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    validate_results(data, str(path))
    return data


def merge_conditions(results: list[dict], sources: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """Merge the `conditions` of several results objects.

    The same condition may appear in several files with different checkpoints; the same (condition, checkpoint)
    appearing twice with different numbers is an error, since it is unclear which one to report.
    """
    sources = sources or [f"<results {i}>" for i in range(len(results))]
    merged: dict[str, dict[str, dict]] = {}
    origin: dict[tuple[str, str], str] = {}
    for data, source in zip(results, sources):
        for condition, checkpoints in data["conditions"].items():
            target = merged.setdefault(condition, {})
            for checkpoint, entry in checkpoints.items():
                if checkpoint in target and target[checkpoint] != entry:
                    raise ValueError(
                        f"conditions.{condition}.{checkpoint} differs between {origin[(condition, checkpoint)]} "
                        f"and {source}; pass only one of them"
                    )
                target[checkpoint] = entry
                origin.setdefault((condition, checkpoint), source)
    return merged


def load_many(paths: list[str | Path]) -> dict:
    """Load, validate and merge several results files into {"conditions": ..., "sources": [...], ...}.

    Top-level flags of a single file (e.g. "published", "source", "model") are kept when they agree across files.
    """
    if not paths:
        raise ValueError("no results files given; pass at least one --results FILE.json")
    results = [load_results(p) for p in paths]
    sources = [str(p) for p in paths]
    # One results set is one task's one split: files of other tasks go side by side (the transfer table).
    for key, default in (("task", "gsm8k"), ("split", "test")):
        found = {source: r.get(key, default) for source, r in zip(sources, results)}
        if len(set(found.values())) > 1:
            raise ValueError(f"these results files hold different {key}s ({found}) and are never merged; pass "
                             "one per run of write_results.py, or other tasks with --transfer")
    merged: dict[str, Any] = {"conditions": merge_conditions(results, sources), "sources": sources}
    for key in ("model", "task", "split", "published", "source", "sampling", "headline", "condition_descriptions",
                "condition_labels", "title", "training"):
        values = [r[key] for r in results if key in r]
        if values and len(values) == len(results) and all(v == values[0] for v in values):
            merged[key] = values[0]
    recorded = {name: condition for r in results for name, condition in (r.get(RUN_CONDITIONS_KEY) or {}).items()}
    if recorded:
        merged[RUN_CONDITIONS_KEY] = recorded
    return merged


def checkpoint_series(checkpoints: dict[str, dict]) -> list[tuple[int, dict]]:
    """(step, entry) pairs of the step_N checkpoints of one condition, sorted by step."""
    series = [(parse_step(name), entry) for name, entry in checkpoints.items()]
    return sorted(((step, entry) for step, entry in series if step is not None), key=lambda pair: pair[0])


def _checkpoint_sort_key(name: str) -> tuple[int, int, str]:
    step = parse_step(name)
    return (0, step, name) if step is not None else (-1, 0, name)


def last_checkpoint(checkpoints: dict[str, dict]) -> tuple[str, dict]:
    """The checkpoint with the highest step (or the only non-step entry, e.g. "base")."""
    name = max(checkpoints, key=_checkpoint_sort_key)
    return name, checkpoints[name]


def best_checkpoint(checkpoints: dict[str, dict]) -> tuple[str, dict]:
    """The checkpoint with the highest accuracy; ties go to the earliest step."""
    ordered = sorted(checkpoints, key=_checkpoint_sort_key)
    name = max(ordered, key=lambda n: checkpoints[n]["accuracy"])  # max keeps the first of equal items
    return name, checkpoints[name]


# How a condition with several checkpoints is summarised by one number: its highest-accuracy checkpoint (as the
# paper reports) or its last one.
SELECTION_RULES = ("best", "final")


def select_checkpoint(checkpoints: dict[str, dict], rule: str) -> tuple[str, dict]:
    """The checkpoint a selection rule picks: "best" (best_checkpoint) or "final" (last_checkpoint)."""
    if rule == "best":
        return best_checkpoint(checkpoints)
    if rule == "final":
        return last_checkpoint(checkpoints)
    raise ValueError(f"unknown checkpoint selection rule {rule!r}; use one of {', '.join(SELECTION_RULES)}")
