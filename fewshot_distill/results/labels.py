"""Legend labels for evaluation condition names.

Figures and tables show these human-readable labels; the condition names themselves are the keys used in the
evaluation results JSON and in run configs. The few-shot base row is named by its shot count, `icl_{k}shot`
(k = data.num_fewshot_examples), so its label is built from k rather than listed.
"""

from __future__ import annotations

from fewshot_distill.methods import CONDITIONS, CONDITIONS_BY_NAME, ICL_PLACEHOLDER
from fewshot_distill.run_identity import DISTILLATION_METHOD, SFT_METHOD, icl_shot_count

# Labels and display order come from the method registry (fewshot_distill/methods.py).
CONDITION_LABELS: dict[str, str] = {c.name: c.label for c in CONDITIONS if c.name != ICL_PLACEHOLDER}
CONDITION_ORDER: tuple[str, ...] = tuple(c.name for c in CONDITIONS)

# The condition names of the two paper runs are their training methods (fewshot_distill/run_identity.py).
SFT_CONDITION = SFT_METHOD
DISTILLATION_CONDITION = DISTILLATION_METHOD


def label_for(condition: str, overrides: dict[str, str] | None = None) -> str:
    """Legend label for a condition name; unknown names are shown as they are. `overrides` (a results file's
    `condition_labels`) wins, e.g. for a published run that did not use LoRA."""
    if overrides and condition in overrides:
        return overrides[condition]
    shots = icl_shot_count(condition)
    if shots is not None:
        return CONDITIONS_BY_NAME[ICL_PLACEHOLDER].label.format(k=shots)
    return CONDITION_LABELS.get(condition, condition)


def _order_key(condition: str) -> str:
    return ICL_PLACEHOLDER if icl_shot_count(condition) is not None else condition


def ordered_conditions(names) -> list[str]:
    """Known conditions in CONDITION_ORDER (few-shot rows by shot count), then any others alphabetically."""
    names = list(names)
    known = [n for n in names if _order_key(n) in CONDITION_ORDER]
    known.sort(key=lambda n: (CONDITION_ORDER.index(_order_key(n)), icl_shot_count(n) or 0))
    return known + sorted(n for n in names if _order_key(n) not in CONDITION_ORDER)
