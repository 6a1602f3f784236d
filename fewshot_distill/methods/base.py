"""What a training method declares: one `Method` per method file, collected in `METHODS` (methods/__init__.py).

A method file holds its checks, its `build_loss_step(cfg, run) -> loss_step(model, batch)` and the step
itself, in call order: the teacher call, the window placement and the loss mix are all visible there.
A loss step returns {"loss": total with a graph, <term>: detached scalars to log}; a step that trains on
other tokens than its batch's returns their count under `TRAINED_TOKENS` (fewshot_distill/training/loop.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from fewshot_distill.config import Config, ConfigError

# (distillation.teacher_context or None for a method without a teacher, model.finetune) -> condition name
ConditionNames = Mapping[tuple, str]


@dataclass(frozen=True)
class Method:
    name: str = field(metadata={"help": "the `method:` config key and run_info.json's method (run ids: never renamed)"})
    summary: str = field(metadata={"help": "one line for the docs' method table"})
    build_loss_step: Callable = field(metadata={"help": "(cfg, run) -> loss_step(model, batch) -> terms"})
    answer_source: str = field(metadata={"help": "the answer both models read (methods.ANSWER_SOURCES collects them)"})
    with_teacher: bool = field(metadata={"help": "examples carry a teacher prompt (distillation.teacher_context)"})
    needs_top_k: bool = field(metadata={"help": "the loss reads the teacher's top-K logits (n_top_logits > 0)"})
    uses_ce: bool = field(metadata={"help": "the loss has a CE term on some answers"})
    conditions: ConditionNames = field(default_factory=dict, metadata={
        "help": "(teacher context, model.finetune) -> condition name of a results table row"})
    unlisted_condition: str | None = field(default=None, metadata={
        "help": "condition of a teacher context without an entry, e.g. 'online_{context}'"})
    check: Callable[[Config], None] | None = field(default=None, metadata={
        "help": "raises ConfigError for settings the method cannot train with"})


def check_top_k_settings(method: Method, cfg: Config) -> None:
    """A method whose loss reads the teacher's top-K needs K > 0 and a weight on that term."""
    dist_cfg = cfg.distillation
    if method.needs_top_k and (dist_cfg.n_top_logits <= 0 or dist_cfg.lambda_distill <= 0):
        raise ConfigError(
            f"method {method.name} needs distillation.n_top_logits > 0 and distillation.lambda_distill > 0 (got "
            f"{dist_cfg.n_top_logits} and {dist_cfg.lambda_distill}): use --config configs/online_v1.yaml, or "
            "method=baseline for plain SFT")
