"""The resumable evaluation loop and its two output files.

    {output}.json               header (config, model, subset, sampling, ...) + conditions.{name}.{label}
    {output stem}.predictions.jsonl   one line per (condition, label, test example)

After each (condition, label) the predictions are appended (flushed to disk) and then the JSON is
rewritten atomically, so the JSON never lists an entry whose predictions are missing. A crash loses
at most the entry in flight: on the next run, prediction lines of entries the JSON does not list are
dropped and those entries are evaluated again; finished entries are skipped (unless overwrite).
A results file made with another model, subset, sampling or prompt setup is refused, never mixed.

    store = ResultsStore("experiments/eval.json", header, overwrite=False)
    failures = run_targets(targets, store, open_backend, prompts_for, golds, indices)
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from pathlib import Path
from typing import Callable, Sequence

from src.eval.answers import accuracy
from src.eval.backends import Backend, Generation
from src.eval.conditions import EvalTarget
from src.tasks import Task, get_task
from src.utils.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

# Header fields that must match for a run to add to an existing results file.
COMPATIBILITY_KEYS = ("model", "subset_indices", "sampling", "prompting", "data_fingerprint", "engine")


class IncompatibleResultsError(ValueError):
    """The existing results file was produced with a different evaluation setup."""


def predictions_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}.predictions.jsonl")


def _describe(value) -> str:
    if isinstance(value, list) and len(value) > 8:
        return f"[{len(value)} items: {value[:4]} ...]"
    return json.dumps(value, sort_keys=True)


class ResultsStore:
    """The results JSON and its predictions file, resumable."""

    def __init__(self, output: str | Path, header: dict, overwrite: bool = False, rows_path: str | Path | None = None):
        self.output = Path(output)
        # rows_path: the per-row file when it is not predictions (held-out diagnostics: {stem}.rows.jsonl)
        self.predictions = Path(rows_path) if rows_path else predictions_path(self.output)
        self.data = {**header, "conditions": {}}
        existing = None if overwrite else self._read_existing()
        if existing is not None:
            self._check_compatible(existing, header)
            self.data["conditions"] = existing.get("conditions", {})
            self.data["sources"] = existing.get("sources", {})
        else:
            self.data["sources"] = {}
        self._keep_finished_predictions(overwrite)
        atomic_write_json(self.output, self.data)

    def _read_existing(self) -> dict | None:
        if not self.output.is_file():
            return None
        try:
            return json.loads(self.output.read_text())
        except json.JSONDecodeError as error:
            raise IncompatibleResultsError(
                f"{self.output} exists but is not valid JSON ({error}); pass --overwrite to replace it "
                "or choose another --output") from None

    def _check_compatible(self, existing: dict, header: dict) -> None:
        for key in COMPATIBILITY_KEYS:
            if existing.get(key) != header.get(key):
                raise IncompatibleResultsError(
                    f"{self.output} was made with a different '{key}' ({_describe(existing.get(key))}; "
                    f"this run: {_describe(header.get(key))}). Its results cannot be combined with this "
                    "run's: pass --overwrite to replace them, or choose another --output.")

    def _keep_finished_predictions(self, overwrite: bool) -> None:
        """Drop prediction lines of entries the JSON does not list (the entry in flight at a crash)."""
        if overwrite or not self.predictions.is_file():
            atomic_write_text(self.predictions, "")
            return
        kept = []
        for line in self.predictions.read_text().splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if self.is_done(row.get("condition"), row.get("label")):
                kept.append(line + "\n")
        atomic_write_text(self.predictions, "".join(kept))

    def is_done(self, condition: str, label: str) -> bool:
        return label in self.data["conditions"].get(condition, {})

    def record(self, target: EvalTarget, metrics: dict, prediction_rows: Sequence[dict]) -> None:
        with open(self.predictions, "a") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in prediction_rows)
            handle.flush()
            os.fsync(handle.fileno())
        self.data["conditions"].setdefault(target.condition, {})[target.label] = metrics
        self.data["sources"].setdefault(target.condition, {})[target.label] = target.adapter_path or target.model_path
        atomic_write_json(self.output, self.data)


def score(target: EvalTarget, generations: Sequence[Generation], golds: Sequence[str],
          indices: Sequence[int], task: Task | None = None) -> tuple[dict, list[dict]]:
    """Entry metrics and one prediction row per test example (task None = gsm8k).

    `accuracy`/`correct`/`total` use the task's flexible extraction (as always);
    `strict_accuracy`/`strict_correct` its strict one. Each row holds both: `extracted`/`correct`
    (flexible) and `extracted_strict`/`correct_strict`.
    """
    task = task or get_task()
    if not (len(generations) == len(golds) == len(indices)):
        raise ValueError(f"{len(generations)} generations for {len(golds)} gold answers / {len(indices)} indices")
    rows = []
    for generation, gold, index in zip(generations, golds, indices):
        extraction = task.extract(generation.text)
        rows.append({"condition": target.condition, "label": target.label, "index": int(index),
                     "generated": generation.text, "extracted": extraction.flexible, "gold": gold,
                     "correct": task.answers_match(extraction.flexible, gold),
                     "extracted_strict": extraction.strict,
                     "correct_strict": task.answers_match(extraction.strict, gold)})
    metrics = accuracy(row["correct"] for row in rows)
    strict = accuracy(row["correct_strict"] for row in rows)
    metrics.update(strict_accuracy=strict["accuracy"], strict_correct=strict["correct"])
    return metrics, rows


def run_targets(targets: Sequence[EvalTarget], store: ResultsStore, open_backend: Callable[[str], Backend],
                prompts_for: Callable[[int], Sequence[Sequence[int]]], golds: Sequence[str],
                indices: Sequence[int], task: Task | None = None) -> list[tuple[EvalTarget, str]]:
    """Evaluate every unfinished target; returns the (target, error) pairs that failed.

    Targets are grouped by model so each engine starts once (the base model serves the base rows and
    every adapter); an engine is only started when one of its targets still needs evaluating.
    """
    by_model: dict[str, list[EvalTarget]] = {}
    for target in targets:
        by_model.setdefault(target.model_path, []).append(target)
    failures = []
    for model_path, model_targets in by_model.items():
        pending = [t for t in model_targets if not store.is_done(*t.key)]
        for target in model_targets:
            if target not in pending:
                logger.info("%s/%s: already in %s, skipped", target.condition, target.label, store.output)
        if not pending:
            continue
        logger.info("loading %s for %d entries to evaluate", model_path, len(pending))
        try:
            backend = open_backend(model_path)
        except Exception as error:  # e.g. a full-weight checkpoint the engine cannot load
            logger.error("could not load %s:\n%s", model_path, traceback.format_exc())
            failures.extend((t, f"loading {model_path}: {type(error).__name__}: {error}") for t in pending)
            continue
        try:
            for target in pending:
                logger.info("evaluating %s/%s", target.condition, target.label)
                try:
                    generations = backend.generate(prompts_for(target.n_shots), adapter_path=target.adapter_path)
                    metrics, rows = score(target, generations, golds, indices, task)
                except Exception as error:  # one bad checkpoint must not cost the others' results
                    logger.error("%s/%s failed:\n%s", target.condition, target.label, traceback.format_exc())
                    failures.append((target, f"{type(error).__name__}: {error}"))
                    continue
                store.record(target, metrics, rows)
                logger.info("%s/%s: accuracy %.2f%% (%d/%d)", target.condition, target.label,
                            100 * metrics["accuracy"], metrics["correct"], metrics["total"])
        finally:
            backend.close()
    return failures


def summary_table(conditions: dict) -> str:
    """Plain-text table: condition, label, accuracy in percent (2 decimals), correct/total."""
    lines = [f"{'condition':<16} {'label':<12} {'accuracy':>9} {'correct/total':>14}"]
    for condition, labels in conditions.items():
        for label, metrics in labels.items():
            lines.append(f"{condition:<16} {label:<12} {100 * metrics['accuracy']:>8.2f}% "
                         f"{metrics['correct']:>7}/{metrics['total']:<6}")
    return "\n".join(lines)
