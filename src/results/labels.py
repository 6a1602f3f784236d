"""Legend labels for evaluation condition names.

Figures and tables show these human-readable labels; the condition names themselves are the keys used in the
evaluation results JSON and in run configs.
"""

from __future__ import annotations

CONDITION_LABELS: dict[str, str] = {
    "base_0shot": "Base model (0-shot)",
    "icl_8shot": "Base model (8-shot ICL)",
    "baseline": "LoRA SFT",
    "online_v1": "LoRA SFT + Few-Shot Distillation",
}

# Display order for tables and legends: reference points first, then the trained conditions.
CONDITION_ORDER: tuple[str, ...] = ("base_0shot", "icl_8shot", "baseline", "online_v1")

SFT_CONDITION = "baseline"
DISTILLATION_CONDITION = "online_v1"
# Conditions evaluated once on the base model; figures draw them as horizontal reference lines.
REFERENCE_CONDITIONS: tuple[str, ...] = ("base_0shot", "icl_8shot")


def label_for(condition: str) -> str:
    """Legend label for a condition name; unknown names are shown as they are."""
    return CONDITION_LABELS.get(condition, condition)


def ordered_conditions(names) -> list[str]:
    """Known conditions in CONDITION_ORDER, then any others alphabetically."""
    names = list(names)
    known = [n for n in CONDITION_ORDER if n in names]
    return known + sorted(n for n in names if n not in CONDITION_ORDER)
