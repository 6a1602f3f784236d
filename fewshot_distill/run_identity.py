"""Run identity, in one place: checkpoint folder names, result labels, condition names, a run's method.

    checkpoint folders   {output_dir}/checkpoint-{N}/ (N = optimizer step) and {output_dir}/final/
    result labels        "step_{N}" for checkpoint-{N}, "final" for final/, "base" for base-model rows
    base-model rows      "base_0shot" and "icl_{k}shot" (k = data.num_fewshot_examples; "icl_8shot" by default)
    training conditions  "baseline" (LoRA SFT), "online_v1" (distillation, few-shot teacher),
                         "online_zeroshot" / "online_shuffled" (teacher contexts zeroshot / shuffled_answers);
                         the methods and their conditions are listed in fewshot_distill/methods.py; a full fine-tuning
                         run (model.finetune=full) is "baseline_full", "online_v1_full", ...

A training run writes its method and condition into `{output_dir}/run_info.json` (fewshot_distill/training/loop.py
`setup_run`); readers take them from there (`read_run_identity`) instead of guessing from the
config: an SFT run launched with a distillation config is still `baseline`.

    checkpoint_dir("experiments/online_v1", 200)   # experiments/online_v1/checkpoint-200
    label_step("step_200")                          # 200
    icl_condition(8)                                # "icl_8shot"
    read_run_identity("experiments/online_zeroshot")["condition"]   # "online_zeroshot"
"""

from __future__ import annotations

import json
import re
from pathlib import Path

# SFT_METHOD, DISTILLATION_METHOD and ZERO_SHOT_CONDITION are read from here too; the registry is fewshot_distill/methods.py.
from fewshot_distill.methods import (DISTILLATION_METHOD, LORA_FINETUNE, METHODS, SFT_METHOD, ZERO_SHOT_CONDITION,  # noqa: F401
                         method_condition)

CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")  # "checkpoint-200.tmp" (half-written) does not match
FINAL_DIR = "final"

STEP_LABEL_PATTERN = re.compile(r"^step_(\d+)$")
BASE_LABEL = "base"
FINAL_LABEL = "final"

ICL_CONDITION_PATTERN = re.compile(r"^icl_(\d+)shot$")

RUN_INFO_FILE = "run_info.json"


# --- checkpoint folders --------------------------------------------------------------------------------------

def checkpoint_dir_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{int(step)}"


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / checkpoint_dir_name(step)


def checkpoint_step(folder_name: str) -> int | None:
    """Step of a complete checkpoint folder name ("checkpoint-200" -> 200); None for anything else."""
    match = CHECKPOINT_PATTERN.match(folder_name)
    return int(match.group(1)) if match else None


# --- result labels -------------------------------------------------------------------------------------------

def step_label(step: int) -> str:
    return f"step_{int(step)}"


def label_step(label: str) -> int | None:
    """Training step of a result label ("step_1000" -> 1000); None for "base", "final" and others."""
    match = STEP_LABEL_PATTERN.match(label)
    return int(match.group(1)) if match else None


def label_of_checkpoint_dir(folder_name: str) -> str | None:
    """Result label of a run's checkpoint folder ("checkpoint-200" -> "step_200", "final" -> "final")."""
    if folder_name == FINAL_DIR:
        return FINAL_LABEL
    step = checkpoint_step(folder_name)
    return None if step is None else step_label(step)


def checkpoint_dir_of_label(run_dir: str | Path, label: str) -> Path:
    """The folder a result label names in a run ("step_200" -> run_dir/checkpoint-200, "final" -> run_dir/final)."""
    if label == FINAL_LABEL:
        return Path(run_dir) / FINAL_DIR
    step = label_step(label)
    if step is None:
        raise ValueError(f"Label {label!r} names no checkpoint folder; expected 'step_N' or '{FINAL_LABEL}'")
    return checkpoint_dir(run_dir, step)


def available_checkpoints(run_dir: str | Path) -> dict[str, Path]:
    """label -> folder for every `checkpoint-{N}` (ordered by step) and `final` in a run folder.

    Half-written folders (`checkpoint-200.tmp`) do not match and are ignored.
    """
    run_dir = Path(run_dir)
    steps = sorted((step, child) for child in run_dir.iterdir()
                   if child.is_dir() and (step := checkpoint_step(child.name)) is not None)
    found = {step_label(step): folder for step, folder in steps}
    if (run_dir / FINAL_DIR).is_dir():
        found[FINAL_LABEL] = run_dir / FINAL_DIR
    return found


# --- base-model rows -----------------------------------------------------------------------------------------

def icl_condition(n_shots: int) -> str:
    """Name of the few-shot base-model row: "icl_{k}shot"."""
    return f"icl_{int(n_shots)}shot"


def icl_shot_count(condition: str) -> int | None:
    """k of an "icl_{k}shot" name; None for other names."""
    match = ICL_CONDITION_PATTERN.match(condition)
    return int(match.group(1)) if match else None


def base_conditions(n_shots: int) -> dict[str, int]:
    """Base-model rows (name -> shots in the prompt) for data.num_fewshot_examples = n_shots."""
    return {ZERO_SHOT_CONDITION: 0, icl_condition(n_shots): n_shots}


# --- a training run's method and condition -------------------------------------------------------------------

def training_condition(method: str, teacher_context: str | None = None, finetune: str = LORA_FINETUNE) -> str:
    """Condition name of a training run from its method (the script), for a method with a teacher its
    teacher context, and what trained (model.finetune) (fewshot_distill/methods.py). An unknown method is its own
    condition: readers never fail."""
    return method_condition(method, teacher_context, finetune)


def run_identity_fields(method: str, teacher_context: str | None, finetune: str = LORA_FINETUNE) -> dict:
    """What training writes into run_info.json: method, condition, (teacher methods only) teacher context
    and what trained (model.finetune)."""
    if method not in METHODS:
        raise ValueError(f"Unknown training method {method!r}; expected one of {sorted(METHODS)} "
                         "(register it in fewshot_distill/methods.py)")
    context = teacher_context if METHODS[method].with_teacher else None
    return {"method": method, "condition": training_condition(method, context, finetune), "teacher_context": context,
            "finetune": finetune}


def read_run_identity(run_dir: str | Path) -> dict | None:
    """{"method", "condition", "teacher_context", "finetune"} from a run's run_info.json; None without a
    readable one.

    Runs written before `condition` existed get it from their `method` (the teacher context then
    counted as the default, "fewshot"); runs written before `finetune` existed were LoRA runs.
    """
    path = Path(run_dir) / RUN_INFO_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    method = info.get("method") if isinstance(info, dict) else None
    if not isinstance(method, str):
        return None
    finetune = info.get("finetune") or LORA_FINETUNE
    condition = info.get("condition")
    if not isinstance(condition, str) or not condition:
        condition = training_condition(method, info.get("teacher_context"), finetune)
    return {"method": method, "condition": condition, "teacher_context": info.get("teacher_context"),
            "finetune": finetune}
