"""Which (condition, label) entries to evaluate, and what model/adapter each one is.

A condition is either one of the two base-model rows (`base_0shot`, `icl_{k}shot` with
k = data.num_fewshot_examples, label `base`) or a training run folder holding `checkpoint-{step}/`
(and `final/`) folders. Names and labels come from fewshot_distill/run_identity.py. A run folder is found as
`base_dir/NAME`, `base_dir/poc/NAME` (the seed's layout, e.g. experiments/poc/baseline) or NAME as a
literal path. Each checkpoint folder is a peft adapter (adapter_config.json: evaluated as a LoRA on
the base model) or a full model (config.json: evaluated as its own model).

Problems with single entries (a missing checkpoint, a folder that is neither, a damaged one: see
`verify_checkpoint`) are returned as `Problem`s so the caller reports them and evaluates the rest.

    targets, problems = discover_targets(["base_0shot", "baseline"], "experiments", ["200", "final"],
                                         base_model="Qwen/Qwen3-1.7B", icl_shots=8)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fewshot_distill.run_identity import available_checkpoints, base_conditions, BASE_LABEL, checkpoint_dir_of_label, FINAL_LABEL, icl_condition, icl_shot_count, recorded_condition, step_label
from fewshot_distill.utils.checkpoint_files import ADAPTER_CONFIG, checkpoint_kind, verify_checkpoint


@dataclass(frozen=True)
class EvalTarget:
    condition: str
    label: str                     # "base", "step_{N}" or "final"
    model_path: str                # base model (hub id or folder) or a full-weight checkpoint folder
    adapter_path: str | None = None  # peft adapter folder evaluated on top of model_path
    n_shots: int = 0               # few-shot examples in the prompt (icl_{k}shot only)
    run_condition: str | None = None  # the condition the trained run recorded (run_info.json), for labels

    @property
    def key(self) -> tuple[str, str]:
        return self.condition, self.label


@dataclass(frozen=True)
class Problem:
    condition: str
    label: str | None
    message: str
    fatal: bool  # True: the requested entry cannot be evaluated as asked (exit status 1)


def parse_checkpoint_selector(text: str) -> str:
    """`--checkpoint_steps` items: a step number ("200") or "final"; returns the label."""
    text = str(text).strip()
    if text == FINAL_LABEL:
        return FINAL_LABEL
    if text.isdigit():
        return step_label(int(text))
    raise ValueError(f"Checkpoint {text!r} is neither a step number (e.g. 200) nor 'final'")


def condition_key(argument: str) -> str:
    """The name a condition is stored under: the argument, or a path argument's last component."""
    return Path(argument).name if "/" in argument else argument


def find_condition_dir(name: str, base_dir: str | Path, icl_shots: int = 8) -> Path:
    """The run folder of condition `name`: base_dir/NAME, base_dir/poc/NAME, or NAME as a path."""
    base_dir = Path(base_dir)
    candidates = [base_dir / name, base_dir / "poc" / name, Path(name)]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"Condition {name!r}: no run folder found (tried {tried}). Pass --base_dir pointing at the "
        f"folder that holds it, or the run folder's path as the condition name; the base-model rows "
        f"are called {', '.join(base_conditions(icl_shots))}.")


def checkpoint_targets(condition: str, run_dir: Path, labels: Sequence[str] | None, base_model: str
                       ) -> tuple[list[EvalTarget], list[Problem]]:
    """Targets for the requested labels of one run folder (all `checkpoint-*` when labels is None)."""
    found = available_checkpoints(run_dir)
    run_condition = recorded_condition(run_dir)
    if labels is None:
        labels = [label for label in found if label != FINAL_LABEL]
    targets, problems = [], []
    for label in labels:
        folder = found.get(label)
        if folder is None:
            expected = checkpoint_dir_of_label(run_dir, label)
            have = ", ".join(found) or "none"
            problems.append(Problem(condition, label, f"missing checkpoint {expected} (have: {have}); "
                                    "skipped", fatal=False))
            continue
        try:
            kind = checkpoint_kind(folder)
        except ValueError as error:
            problems.append(Problem(condition, label, str(error), fatal=True))
            continue
        check = verify_checkpoint(folder, for_training=False)
        if check.damaged:
            problems.append(Problem(condition, label, f"{check.describe()}; not evaluated", fatal=True))
            continue
        if kind == "adapter":
            targets.append(EvalTarget(condition, label, model_path=base_model, adapter_path=str(folder),
                                      run_condition=run_condition))
        else:
            targets.append(EvalTarget(condition, label, model_path=str(folder), run_condition=run_condition))
    if not labels:
        problems.append(Problem(condition, None, f"{run_dir} has no checkpoint-* folders", fatal=True))
    return targets, problems


def discover_targets(conditions: Sequence[str], base_dir: str | Path, checkpoint_labels: Sequence[str] | None,
                     base_model: str, icl_shots: int) -> tuple[list[EvalTarget], list[Problem]]:
    """Every entry to evaluate, in the order given, plus the problems found on the way."""
    keys = [condition_key(c) for c in conditions]
    if len(set(keys)) != len(keys):
        raise ValueError(f"--conditions names a condition twice (paths count by their last folder name): "
                         f"{list(conditions)}")
    targets: list[EvalTarget] = []
    problems: list[Problem] = []
    base_rows = base_conditions(icl_shots)
    for argument, condition in zip(conditions, keys):
        if condition in base_rows:
            targets.append(EvalTarget(condition, BASE_LABEL, model_path=base_model, n_shots=base_rows[condition]))
            continue
        asked_shots = icl_shot_count(condition)
        if asked_shots is not None and argument == condition:
            problems.append(Problem(condition, None, (
                f"{condition} asks for {asked_shots} shots but data.num_fewshot_examples={icl_shots}; "
                f"ask for {icl_condition(icl_shots)} or set data.num_fewshot_examples={asked_shots}"), fatal=True))
            continue
        try:
            run_dir = find_condition_dir(argument, base_dir, icl_shots)
        except FileNotFoundError as error:
            problems.append(Problem(condition, None, str(error), fatal=True))
            continue
        found, found_problems = checkpoint_targets(condition, run_dir, checkpoint_labels, base_model)
        targets.extend(found)
        problems.extend(found_problems)
    return targets, problems


def adapter_rank(adapter_path: str | Path) -> int:
    """The largest LoRA rank in a peft adapter config (r and any per-module rank_pattern)."""
    config = json.loads((Path(adapter_path) / ADAPTER_CONFIG).read_text())
    ranks = [int(config.get("r", 0))] + [int(r) for r in (config.get("rank_pattern") or {}).values()]
    return max(ranks)


def log_problems(problems, log) -> None:
    """Log each problem found while discovering targets: fatal ones as errors, skipped entries as warnings."""
    for problem in problems:
        where = f"{problem.condition}/{problem.label}" if problem.label else problem.condition
        (log.error if problem.fatal else log.warning)("%s: %s", where, problem.message)
