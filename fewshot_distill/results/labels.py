"""Presentation of conditions: the label, colour and display order every table and figure uses.

Condition names are the keys of results JSON and run_info.json; which run fills which condition is run
identity (fewshot_distill/methods/ `method_condition`, from each run's recorded method, teacher context and
model.finetune), never its folder name. The few-shot base row is named by its shot count, `icl_{k}shot`
(k = data.num_fewshot_examples), so its label is built from k rather than listed. Names not listed here
still work everywhere: their label is their name and they get a spare colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fewshot_distill.methods import DISTILLATION_METHOD, SFT_METHOD, read_run_identity
from fewshot_distill.run_identity import ICL_PLACEHOLDER, icl_shot_count, RUN_CONDITIONS_KEY, ZERO_SHOT_CONDITION


@dataclass(frozen=True)
class ConditionStyle:
    name: str
    label: str
    colour: str


# Display order for tables and legends: reference points first, then the trained conditions. Full fine-tuning
# conditions take darker shades of their LoRA colours.
CONDITION_STYLES: tuple[ConditionStyle, ...] = (
    ConditionStyle(ZERO_SHOT_CONDITION, "Base model (0-shot)", "tab:gray"),
    ConditionStyle(ICL_PLACEHOLDER, "Base model ({k}-shot ICL)", "tab:green"),
    ConditionStyle("baseline", "LoRA SFT", "tab:blue"),
    ConditionStyle("online_zeroshot", "Distillation, 0-shot teacher (control)", "tab:orange"),
    ConditionStyle("online_shuffled", "Distillation, shuffled-answer shots (control)", "tab:purple"),
    ConditionStyle("online_v1", "LoRA SFT + Few-Shot Distillation", "tab:red"),
    ConditionStyle("baseline_full", "Full SFT", "navy"),
    ConditionStyle("online_zeroshot_full", "Full-FT distillation, 0-shot teacher (control)", "darkgoldenrod"),
    ConditionStyle("online_v1_full", "Full SFT + Few-Shot Distillation", "darkred"),
    ConditionStyle("onpolicy", "On-policy distillation (student samples, reverse KL)", "tab:brown"),
    # make mini-onpolicy's run folder of the onpolicy method with distillation.loss=mse (its run_info says
    # "onpolicy": a loss is not part of a run's identity), named here for its label and colour only.
    ConditionStyle("onpolicy_mse", "On-policy distillation (student samples, MSE)", "tab:olive"),
    ConditionStyle("onpolicy_mixed", "Mixed gold / student-sample distillation", "tab:pink"),
    ConditionStyle("onpolicy_zeroshot", "On-policy, 0-shot teacher (control)", "peru"),
    ConditionStyle("onpolicy_shuffled", "On-policy, shuffled-answer shots (control)", "plum"),
    ConditionStyle("seq_kd", "SFT on the 8-shot teacher's greedy answers (sequence-level KD)", "darkcyan"),
)
STYLES_BY_NAME: dict[str, ConditionStyle] = {s.name: s for s in CONDITION_STYLES}
SPARE_COLOURS: tuple[str, ...] = ("tab:cyan", "gold", "teal", "slategray")

CONDITION_LABELS: dict[str, str] = {s.name: s.label for s in CONDITION_STYLES if s.name != ICL_PLACEHOLDER}
CONDITION_ORDER: tuple[str, ...] = tuple(s.name for s in CONDITION_STYLES)

# The condition names of the two paper runs are their training methods' names (fewshot_distill/methods/).
SFT_CONDITION = SFT_METHOD
DISTILLATION_CONDITION = DISTILLATION_METHOD


def label_for(condition: str, overrides: dict[str, str] | None = None) -> str:
    """Legend label for a condition name; unknown names are shown as they are. `overrides` (a results file's
    `condition_labels`) wins, e.g. for a published run that did not use LoRA."""
    if overrides and condition in overrides:
        return overrides[condition]
    shots = icl_shot_count(condition)
    if shots is not None:
        return STYLES_BY_NAME[ICL_PLACEHOLDER].label.format(k=shots)
    return CONDITION_LABELS.get(condition, condition)


def recorded_labels(results: dict, run_dirs=()) -> dict[str, str]:
    """Labels of a results file's names from what their runs recorded: {result name: label}, for `label_for`.

    A result is named after its run folder ("baseline"); its label comes from the condition the run recorded
    (evaluation stores it under `run_conditions`; for files written before that, from `run_dirs`, the run
    folders, each named like its result). A file's own `condition_labels` win.
    """
    recorded = dict(results.get(RUN_CONDITIONS_KEY) or {})
    for run_dir in run_dirs:
        identity = read_run_identity(run_dir)
        if identity:
            recorded.setdefault(Path(run_dir).name, identity["condition"])
    labels = {name: label_for(condition) for name, condition in recorded.items() if condition != name}
    return {**labels, **(results.get("condition_labels") or {})}


def _order_key(condition: str) -> str:
    return ICL_PLACEHOLDER if icl_shot_count(condition) is not None else condition


def ordered_conditions(names) -> list[str]:
    """Known conditions in CONDITION_ORDER (few-shot rows by shot count), then any others alphabetically."""
    names = list(names)
    known = [n for n in names if _order_key(n) in CONDITION_ORDER]
    known.sort(key=lambda n: (CONDITION_ORDER.index(_order_key(n)), icl_shot_count(n) or 0))
    return known + sorted(n for n in names if _order_key(n) not in CONDITION_ORDER)
