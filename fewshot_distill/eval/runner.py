"""The resumable evaluation loop and its two output files.

    {output}.json               header (config, model, subset, sampling, ...) + conditions.{name}.{label}
    {output stem}.predictions.jsonl   one line per (condition, label, test example)

After each (condition, label) the predictions are appended (flushed to disk) and then the JSON is
rewritten atomically, so the JSON never lists an entry whose predictions are missing. A crash loses
at most the entry in flight: on the next run, prediction lines of entries the JSON does not list are
dropped and those entries are evaluated again; finished entries are skipped (unless overwrite).
A results file made with another model, subset, sampling or prompt setup is refused, never mixed.
So is a damaged one (`DamagedResultsError`): a JSON that does not parse, a predictions file with a
non-JSON line other than a last line cut short by a crash, or fewer/more prediction rows for a
finished entry than its `total`; the message names `--overwrite`.

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

from fewshot_distill.eval.answers import accuracy
from fewshot_distill.eval.backends import Backend, Generation
from fewshot_distill.eval.conditions import EvalTarget
from fewshot_distill.tasks import Task, get_task
from fewshot_distill.utils.io import atomic_write_json, atomic_write_text
from fewshot_distill.utils.resources import ResourceError
from fewshot_distill.run_identity import RUN_CONDITIONS_KEY

logger = logging.getLogger(__name__)

# Header fields that must match for a run to add to an existing results file.
# "task" and "split": a results file holds one task's one split, never merged with another's.
COMPATIBILITY_KEYS = ("model", "task", "split", "subset_indices", "sampling", "prompting", "data_fingerprint", "engine")


class IncompatibleResultsError(ValueError):
    """The existing results file was produced with a different evaluation setup."""


class DamagedResultsError(IncompatibleResultsError):
    """The existing results JSON or predictions file is damaged (not what this code wrote)."""


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
            if RUN_CONDITIONS_KEY in existing:
                self.data[RUN_CONDITIONS_KEY] = existing[RUN_CONDITIONS_KEY]
        else:
            self.data["sources"] = {}
        self._keep_finished_predictions(overwrite)
        atomic_write_json(self.output, self.data)

    def _read_existing(self) -> dict | None:
        if not self.output.is_file():
            return None
        try:
            existing = json.loads(self.output.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DamagedResultsError(
                f"{self.output} exists but is not valid JSON ({error}); pass --overwrite to replace it "
                "or choose another --output") from None
        problem = results_layout_problem(existing)
        if problem:
            raise DamagedResultsError(f"{self.output} is not a results file of this evaluation ({problem}); "
                                      "pass --overwrite to replace it or choose another --output")
        return existing

    def _check_compatible(self, existing: dict, header: dict) -> None:
        for key in COMPATIBILITY_KEYS:
            if existing.get(key) != header.get(key):
                raise IncompatibleResultsError(
                    f"{self.output} was made with a different '{key}' ({_describe(existing.get(key))}; "
                    f"this run: {_describe(header.get(key))}). Its results cannot be combined with this "
                    "run's: pass --overwrite to replace them, or choose another --output.")

    def _keep_finished_predictions(self, overwrite: bool) -> None:
        """Drop prediction lines of entries the JSON does not list (the entry in flight at a crash)."""
        finished = {(c, label): metrics for c, labels in self.data["conditions"].items()
                    for label, metrics in labels.items()}
        if overwrite or (not self.predictions.is_file() and not finished):
            atomic_write_text(self.predictions, "")
            return
        fix = "pass --overwrite to evaluate everything again, or choose another --output"
        if not self.predictions.is_file():
            raise DamagedResultsError(f"{self.predictions} is missing, but {self.output} lists {len(finished)} "
                                      f"finished entries; {fix}")
        try:
            rows = read_prediction_rows(self.predictions.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise DamagedResultsError(f"{self.predictions} is damaged ({error}); {fix}") from None
        kept = [(row, line) for row, line in rows if (row["condition"], row["label"]) in finished]
        for (condition, label), metrics in finished.items():
            expected = metrics.get("total") if isinstance(metrics, dict) else None
            found = sum(1 for row, _ in kept if (row["condition"], row["label"]) == (condition, label))
            if isinstance(expected, int) and found != expected:
                raise DamagedResultsError(
                    f"{self.predictions} has {found} prediction rows for {condition}/{label}, but {self.output} "
                    f"counts {expected}; {fix}")
        atomic_write_text(self.predictions, "".join(line for _, line in kept))

    def is_done(self, condition: str, label: str) -> bool:
        return label in self.data["conditions"].get(condition, {})

    def record(self, target: EvalTarget, metrics: dict, prediction_rows: Sequence[dict]) -> None:
        with open(self.predictions, "a") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in prediction_rows)
            handle.flush()
            os.fsync(handle.fileno())
        self.data["conditions"].setdefault(target.condition, {})[target.label] = metrics
        self.data["sources"].setdefault(target.condition, {})[target.label] = target.adapter_path or target.model_path
        if target.run_condition:  # figures label the result by what trained, not by its folder's name
            self.data.setdefault(RUN_CONDITIONS_KEY, {})[target.condition] = target.run_condition
        atomic_write_json(self.output, self.data)


def results_layout_problem(existing) -> str | None:
    """Why a parsed results JSON is not `{..., "conditions": {name: {label: {metrics}}}}`, or None."""
    if not isinstance(existing, dict):
        return f"the top level is a {type(existing).__name__}, not an object"
    conditions = existing.get("conditions", {})
    if not isinstance(conditions, dict):
        return "'conditions' is not an object"
    for name, labels in conditions.items():
        if not isinstance(labels, dict) or not all(isinstance(m, dict) for m in labels.values()):
            return f"'conditions.{name}' is not an object of label -> metrics"
    return None


def read_prediction_rows(text: str) -> list[tuple[dict, str]]:
    """(row, its line with newline) for every prediction line; ValueError naming a damaged line.

    A last line without its newline that does not parse is the line a crash cut short: dropped. Any
    other line that is not a JSON object with condition, label and index is damage.
    """
    lines = text.splitlines(keepends=True)
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):
                logger.info("dropping the last predictions line, cut short by an interrupted run")
                continue
            raise ValueError(f"line {number} is not JSON") from None
        if not isinstance(row, dict) or not {"condition", "label", "index"} <= row.keys():
            raise ValueError(f"line {number} is not a prediction row (needs condition, label, index)")
        rows.append((row, line if line.endswith("\n") else line + "\n"))
    return rows


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
        except ResourceError as error:  # the message says it all; a traceback would bury it
            logger.error("could not load %s: %s", model_path, error)
            failures.extend((t, str(error)) for t in pending)
            continue
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


def report(store: ResultsStore, problems: Sequence, failures: Sequence[tuple[EvalTarget, str]],
           table: Callable[[dict], str] = summary_table, rows_name: str = "predictions") -> int:
    """Print the summary table, the output files and every problem/failure; return the exit status
    (1 when any entry failed or a requested entry could not be evaluated, else 0)."""
    import sys

    print(table(store.data["conditions"]))
    print(f"results: {store.output}\n{rows_name}: {store.predictions}")
    for problem in problems:
        print(f"{'ERROR' if problem.fatal else 'skipped'}: {problem.condition}"
              f"{'/' + problem.label if problem.label else ''}: {problem.message}", file=sys.stderr)
    for target, message in failures:
        print(f"FAILED: {target.condition}/{target.label}: {message}", file=sys.stderr)
    return 1 if failures or any(p.fatal for p in problems) else 0
