"""Names of stored outputs, in one place: checkpoint folders, result labels, base-model rows.

    checkpoint folders   {output_dir}/checkpoint-{N}/ (N = optimizer step) and {output_dir}/final/
    result labels        "step_{N}" for checkpoint-{N}, "final" for final/, "base" for base-model rows
    base-model rows      "base_0shot" and "icl_{k}shot" (k = data.num_fewshot_examples; "icl_8shot" by default)

A training run's method and condition ("baseline", "online_v1", "online_zeroshot", ...) are named by the
method registry (fewshot_distill/methods/: `method_condition`, `read_run_identity`), which training writes into
`{output_dir}/run_info.json`.

    checkpoint_dir("experiments/online_v1", 200)   # experiments/online_v1/checkpoint-200
    label_step("step_200")                          # 200
    icl_condition(8)                                # "icl_8shot"
"""

from __future__ import annotations

import json
import re
from pathlib import Path


CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")  # "checkpoint-200.tmp" (half-written) does not match
FINAL_DIR = "final"

STEP_LABEL_PATTERN = re.compile(r"^step_(\d+)$")
BASE_LABEL = "base"
FINAL_LABEL = "final"

ICL_CONDITION_PATTERN = re.compile(r"^icl_(\d+)shot$")

RUN_INFO_FILE = "run_info.json"
RUN_CONDITIONS_KEY = "run_conditions"  # results files: {result name: the condition its run recorded}
LORA_FINETUNE = "lora"              # model.finetune's default; run_info.json files older than `finetune` were LoRA runs

ZERO_SHOT_CONDITION = "base_0shot"
ICL_PLACEHOLDER = "icl_{k}shot"     # stands for every few-shot base row, whatever its k


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


# --- what a trained run recorded ---------------------------------------------------------------------------

def recorded_condition(run_dir: str | Path) -> str | None:
    """The condition a run's run_info.json records (training writes it), or None without one.

    Evaluation keeps it beside each result, so that a result named after its folder ("baseline") is still
    labelled by what trained (e.g. "baseline_full"). Runs older than the field: fewshot_distill/methods/
    `read_run_identity` derives it from their method.
    """
    try:
        info = json.loads((Path(run_dir) / RUN_INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    condition = info.get("condition") if isinstance(info, dict) else None
    return condition if isinstance(condition, str) and condition else None


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
