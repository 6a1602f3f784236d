"""The training methods, one file each; `METHODS` is the registry (`method:` in a config names an entry).

A new method = one file here defining its loss step and a `Method` (base.py), one line in `METHODS` and
one config with `method: <name>`. Everything that lists methods (config validation, answer sources, run
identity, the docs' method table) reads this registry.

Run identity: a run's *condition* is the row it fills in a results table, from its method, its teacher
context and what trained (model.finetune). Training writes method and condition into run_info.json; readers
take them from there (`read_run_identity`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from fewshot_distill.config import Config, ConfigError
from fewshot_distill.methods import distill, onpolicy, seq_kd, sft
from fewshot_distill.methods.base import Method, check_top_k_settings
from fewshot_distill.run_identity import LORA_FINETUNE, RUN_INFO_FILE

METHODS: dict[str, Method] = {m.name: m for m in (
    sft.METHOD,
    distill.METHOD,
    onpolicy.METHOD,
    onpolicy.MIXED_METHOD,
    seq_kd.METHOD,
)}

SFT_METHOD = sft.METHOD.name                  # "baseline"
DISTILLATION_METHOD = distill.METHOD.name     # "online_v1", the paper's
DEFAULT_TEACHER_CONTEXT = "fewshot"
FULL_FINETUNE_SUFFIX = "_full"      # an unlisted full fine-tuning condition: its LoRA condition + this
ANSWER_SOURCES: tuple[str, ...] = tuple(dict.fromkeys(m.answer_source for m in METHODS.values()))


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"method must be one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name]


def method_of_answer_source(answer_source: str) -> str:
    """The teacher method that trains with `answer_source` (the deprecated `distillation.answer_source`)."""
    for method in METHODS.values():
        if method.with_teacher and method.answer_source == answer_source:
            return method.name
    raise ConfigError(f"distillation.answer_source must be one of {list(ANSWER_SOURCES)}, got {answer_source!r}: "
                      "set `method:` instead (one of " + ", ".join(sorted(METHODS)) + ")")


def resolve_method(cfg: Config, legacy_script: str | None = None) -> Method:
    """The method `cfg` trains with, checked against its settings (one-line ConfigError otherwise).

    `method:` names it. Configs written before that key (still accepted for one release, with a warning):
    the old entry scripts said it (`legacy_script`: "baseline" trains SFT whatever the config, "online_v1"
    a distillation method), and `distillation.answer_source` picked among the distillation methods.
    """
    name = cfg.method
    if legacy_script == SFT_METHOD:
        name = SFT_METHOD
    elif legacy_script == DISTILLATION_METHOD and name == SFT_METHOD:
        name = DISTILLATION_METHOD
    source = cfg.distillation.answer_source
    if source is not None and legacy_script != SFT_METHOD:
        if source != get_method(name).answer_source:
            if name not in (SFT_METHOD, DISTILLATION_METHOD):  # inherited from base.yaml / online_v1.yaml
                raise ConfigError(f"method: {name} and distillation.answer_source: {source} contradict each other: "
                                  f"remove distillation.answer_source (method {name} reads "
                                  f"{get_method(name).answer_source} answers)")
            name = method_of_answer_source(source)
        warnings.warn(f"distillation.answer_source is deprecated: set method: {name} instead", FutureWarning,
                      stacklevel=2)
    method = get_method(name)
    check_top_k_settings(method, cfg)
    if method.check is not None:
        method.check(cfg)
    return method


# --- run identity ----------------------------------------------------------------------------------------

def method_condition(method: str, teacher_context: str | None = None, finetune: str = LORA_FINETUNE) -> str:
    """Condition name of a run of `method` (with `teacher_context` for a method with a teacher) that trained
    with `finetune` (model.finetune).

    Never raises: readers meet runs of methods this checkout does not know; their condition is the
    method's name (with an unlisted teacher context: the method's `unlisted_condition` pattern; an
    unlisted full fine-tuning condition: the LoRA one + "_full").
    """
    entry = METHODS.get(method)
    if entry is None:
        return method
    context = (teacher_context or DEFAULT_TEACHER_CONTEXT) if entry.with_teacher else None
    listed = entry.conditions.get((context, finetune))
    if listed is not None:
        return listed
    if finetune != LORA_FINETUNE:
        return method_condition(method, teacher_context) + FULL_FINETUNE_SUFFIX
    if entry.unlisted_condition is not None and context is not None:
        return entry.unlisted_condition.format(context=context)
    return method


def run_identity_fields(method: str, teacher_context: str | None, finetune: str = LORA_FINETUNE) -> dict:
    """What training writes into run_info.json: method, condition, (teacher methods only) teacher context
    and what trained (model.finetune)."""
    context = teacher_context if get_method(method).with_teacher else None
    return {"method": method, "condition": method_condition(method, context, finetune), "teacher_context": context,
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
        condition = method_condition(method, info.get("teacher_context"), finetune)
    return {"method": method, "condition": condition, "teacher_context": info.get("teacher_context"),
            "finetune": finetune}
