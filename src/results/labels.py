"""Legend labels for evaluation condition names.

Figures and tables show these human-readable labels; the condition names themselves are the keys used in the
evaluation results JSON and in run configs. The few-shot base row is named by its shot count, `icl_{k}shot`
(k = data.num_fewshot_examples), so its label is built from k rather than listed.
"""

from __future__ import annotations

from src.run_identity import DISTILLATION_METHOD, SFT_METHOD, icl_shot_count

CONDITION_LABELS: dict[str, str] = {
    "base_0shot": "Base model (0-shot)",
    "baseline": "LoRA SFT",
    "online_v1": "LoRA SFT + Few-Shot Distillation",
    "online_zeroshot": "Distillation, 0-shot teacher (control)",
    "online_shuffled": "Distillation, shuffled-answer shots (control)",
    # model.finetune=full runs (src/run_identity.py adds "_full")
    "baseline_full": "Full SFT",
    "online_v1_full": "Full SFT + Few-Shot Distillation",
    "online_zeroshot_full": "Full-FT distillation, 0-shot teacher (control)",
}

# Display order for tables and legends: reference points first, then the trained conditions. "icl_{k}shot"
# stands for every few-shot base row, whatever its k.
ICL_PLACEHOLDER = "icl_{k}shot"
CONDITION_ORDER: tuple[str, ...] = (
    "base_0shot", ICL_PLACEHOLDER, "baseline", "online_zeroshot", "online_shuffled", "online_v1",
    "baseline_full", "online_zeroshot_full", "online_v1_full",
)

# The condition names of the two paper runs are their training methods (src/run_identity.py).
SFT_CONDITION = SFT_METHOD
DISTILLATION_CONDITION = DISTILLATION_METHOD


def label_for(condition: str, overrides: dict[str, str] | None = None) -> str:
    """Legend label for a condition name; unknown names are shown as they are. `overrides` (a results file's
    `condition_labels`) wins, e.g. for a published run that did not use LoRA."""
    if overrides and condition in overrides:
        return overrides[condition]
    shots = icl_shot_count(condition)
    if shots is not None:
        return f"Base model ({shots}-shot ICL)"
    return CONDITION_LABELS.get(condition, condition)


def _order_key(condition: str) -> str:
    return ICL_PLACEHOLDER if icl_shot_count(condition) is not None else condition


def ordered_conditions(names) -> list[str]:
    """Known conditions in CONDITION_ORDER (few-shot rows by shot count), then any others alphabetically."""
    names = list(names)
    known = [n for n in names if _order_key(n) in CONDITION_ORDER]
    known.sort(key=lambda n: (CONDITION_ORDER.index(_order_key(n)), icl_shot_count(n) or 0))
    return known + sorted(n for n in names if _order_key(n) not in CONDITION_ORDER)
