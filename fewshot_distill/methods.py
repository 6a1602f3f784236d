"""The method registry: every training method and every condition a reader sees, in one place.

A *method* is a way to train: its name (the `method` of run_info.json), whether it needs a teacher,
and the function that builds its loss step from the config and the run (named as "module:function"
and imported by training only, `fewshot_distill/training/steps.py` `loss_step_builder`: this module sits at the
bottom of the layers, beside fewshot_distill/constants.py, so run identity, tables and figures can read it).

A *condition* is a row of a results table: a method with one teacher context, or a base-model row.
It has the label and the colour every table and figure shows, and its place in their order (the
order of `CONDITIONS`). Few-shot base rows are `icl_{k}shot` for any k: one entry stands for all.

A new method = one `Method` entry (+ its module with the loss-step builder and a training script);
a new teacher context = one `Condition` entry (+ its function in fewshot_distill/data/teacher_context.py).
Names not listed still work everywhere: conditions get their own name as label and a spare colour.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str                   # run_info.json "method", the script's name for itself
    loss_step_builder: str      # "module:function(cfg, run) -> loss_step(model, batch)"
    with_teacher: bool          # examples carry a teacher prompt
    unlisted_context: str | None = None   # condition of a teacher context without an entry: "...{context}"
    answer_source: str | None = None      # distillation.answer_source it trains with (distillation methods)


@dataclass(frozen=True)
class Condition:
    name: str
    label: str
    colour: str | None = None
    method: str | None = None          # None: a base-model row, or a run folder named by hand (below)
    teacher_context: str | None = None  # for a method with a teacher
    finetune: str = "lora"             # model.finetune of its runs: "lora" or "full"


SFT_METHOD = "baseline"             # fewshot_distill/training/train_baseline.py
DISTILLATION_METHOD = "online_v1"   # fewshot_distill/training/train_online_v1.py
ONPOLICY_METHOD = "onpolicy"        # train_online_v1.py with distillation.answer_source=student
MIXED_METHOD = "onpolicy_mixed"     # train_online_v1.py with distillation.answer_source=mixed

METHODS: dict[str, Method] = {m.name: m for m in (
    Method(SFT_METHOD, "fewshot_distill.training.train_baseline:build_loss_step", with_teacher=False),
    Method(DISTILLATION_METHOD, "fewshot_distill.training.train_online_v1:build_loss_step", with_teacher=True,
           unlisted_context="online_{context}", answer_source="gold"),
    Method(ONPOLICY_METHOD, "fewshot_distill.training.onpolicy:build_loss_step", with_teacher=True,
           unlisted_context="onpolicy_{context}", answer_source="student"),
    Method(MIXED_METHOD, "fewshot_distill.training.onpolicy:build_loss_step", with_teacher=True,
           unlisted_context="onpolicy_mixed_{context}", answer_source="mixed"),
)}

ZERO_SHOT_CONDITION = "base_0shot"
ICL_PLACEHOLDER = "icl_{k}shot"     # stands for every few-shot base row, whatever its k

# Display order for tables and legends: reference points first, then the trained conditions.
CONDITIONS: tuple[Condition, ...] = (
    Condition(ZERO_SHOT_CONDITION, "Base model (0-shot)", "tab:gray"),
    Condition(ICL_PLACEHOLDER, "Base model ({k}-shot ICL)", "tab:green"),
    Condition("baseline", "LoRA SFT", "tab:blue", SFT_METHOD),
    Condition("online_zeroshot", "Distillation, 0-shot teacher (control)", "tab:orange", DISTILLATION_METHOD,
              "zeroshot"),
    Condition("online_shuffled", "Distillation, shuffled-answer shots (control)", "tab:purple",
              DISTILLATION_METHOD, "shuffled_answers"),
    Condition("online_v1", "LoRA SFT + Few-Shot Distillation", "tab:red", DISTILLATION_METHOD, "fewshot"),
    # model.finetune=full: every weight trains (darker shades of the LoRA colours); an unlisted full
    # condition is its LoRA name + "_full"
    Condition("baseline_full", "Full SFT", "navy", SFT_METHOD, finetune="full"),
    Condition("online_zeroshot_full", "Full-FT distillation, 0-shot teacher (control)", "darkgoldenrod",
              DISTILLATION_METHOD, "zeroshot", finetune="full"),
    Condition("online_v1_full", "Full SFT + Few-Shot Distillation", "darkred", DISTILLATION_METHOD, "fewshot",
              finetune="full"),
    Condition("onpolicy", "On-policy distillation (student samples, reverse KL)", "tab:brown", ONPOLICY_METHOD,
              "fewshot"),
    # make mini-onpolicy's run folder of the onpolicy method with distillation.loss=mse (its run_info says
    # "onpolicy": a loss is not part of a run's identity), named here for its label and colour only.
    Condition("onpolicy_mse", "On-policy distillation (student samples, MSE)", "tab:olive"),
    Condition("onpolicy_mixed", "Mixed gold / student-sample distillation", "tab:pink", MIXED_METHOD, "fewshot"),
    Condition("onpolicy_zeroshot", "On-policy, 0-shot teacher (control)", "peru", ONPOLICY_METHOD, "zeroshot"),
    Condition("onpolicy_shuffled", "On-policy, shuffled-answer shots (control)", "plum", ONPOLICY_METHOD,
              "shuffled_answers"),
)
CONDITIONS_BY_NAME: dict[str, Condition] = {c.name: c for c in CONDITIONS}
SPARE_COLOURS: tuple[str, ...] = ("tab:cyan", "gold", "teal", "slategray")
DEFAULT_TEACHER_CONTEXT = "fewshot"
LORA_FINETUNE = "lora"              # model.finetune's default
FULL_FINETUNE_SUFFIX = "_full"      # an unlisted full fine-tuning condition: its LoRA condition + this


def distillation_method(answer_source: str) -> str:
    """The distillation method that trains with `distillation.answer_source` (train_online_v1.py)."""
    for method in METHODS.values():
        if method.answer_source == answer_source:
            return method.name
    raise ValueError(f"No method trains with answer_source {answer_source!r}; "
                     f"expected one of {[m.answer_source for m in METHODS.values() if m.answer_source]}")


def method_condition(method: str, teacher_context: str | None = None, finetune: str = LORA_FINETUNE) -> str:
    """Condition name of a run of `method` (with `teacher_context` for a method with a teacher) that trained
    with `finetune` (model.finetune).

    Never raises: readers meet runs of methods this checkout does not know; their condition is the
    method's name (with an unlisted teacher context: the method's `unlisted_context` pattern; an
    unlisted full fine-tuning condition: the LoRA one + "_full").
    """
    entry = METHODS.get(method)
    if entry is None:
        return method
    context = (teacher_context or DEFAULT_TEACHER_CONTEXT) if entry.with_teacher else None
    for condition in CONDITIONS:
        if (condition.method, condition.teacher_context, condition.finetune) == (method, context, finetune):
            return condition.name
    if finetune != LORA_FINETUNE:
        return method_condition(method, teacher_context) + FULL_FINETUNE_SUFFIX
    if entry.unlisted_context is not None and context is not None:
        return entry.unlisted_context.format(context=context)
    return method
