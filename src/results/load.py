"""Load and validate evaluation results JSON files (the format written by scripts/eval_checkpoints.py).

A results file maps condition -> checkpoint -> {"accuracy", "correct", "total"}; checkpoints are "base" for
base-model conditions and "step_{N}" for trained checkpoints. Several files can be merged (e.g. one per run).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from src.run_identity import label_step

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
    merged: dict[str, Any] = {"conditions": merge_conditions(results, sources), "sources": sources}
    for key in ("model", "published", "source", "sampling"):
        values = [r[key] for r in results if key in r]
        if values and len(values) == len(results) and all(v == values[0] for v in values):
            merged[key] = values[0]
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
