"""The teacher: what scores the student's answer tokens, one class per variant (base.py has the contract).

    teacher = build_teacher(cfg, run)
    values, ids, *tail = teacher.top_k(batch, answer_ids, answer_mask)   # [B, A, K] x2 (+ [B, A])

A new variant is one module here with a `Teacher` subclass defining `logits_at`, and one branch below.
"""

from __future__ import annotations

import logging

from fewshot_distill.config import Config, ConfigError
from fewshot_distill.losses.divergences import LossSpec
from fewshot_distill.teachers.base import AdapterDisabledTeacher, LiveTeacher, Teacher
from fewshot_distill.teachers.cache import CachedTeacher, build_teacher_cache
from fewshot_distill.teachers.frozen_copy import FrozenCopyTeacher, load_frozen_copy
from fewshot_distill.teachers.shot_prefix import SharedPrefixTeacher, ShotPrefixTeacher, fixed_shot_prefix_ids

logger = logging.getLogger("fewshot_distill")


def check_teacher_config(cfg: Config, fsdp: bool) -> None:
    """What the config's teacher cannot do under FSDP, as a one-line error before anything loads (the
    config itself checks the rest: fewshot_distill/config.py)."""
    dist_cfg = cfg.distillation
    if fsdp and dist_cfg.teacher_cache != "none":
        # A rank whose rows are all cached would skip the sharded teacher's forward, a collective.
        raise ConfigError("distillation.teacher_cache is not supported under FSDP: set distillation.teacher_cache=none")
    if fsdp and dist_cfg.reuse_shot_prefix:
        # The prefix pass calls the decoder outside the sharded model's forward, which gathers the shards.
        raise ConfigError("distillation.reuse_shot_prefix is not supported under FSDP: set "
                          "distillation.reuse_shot_prefix=false")


def base_teacher_model(cfg: Config, run):
    """The AnswerWindowLM holding the frozen base weights the teacher reads: LoRA: the unwrapped student
    (same weights, adapter disabled inside each call); full: a frozen copy of the starting weights,
    loaded again from model.name (whatever a resume loads into the student)."""
    if cfg.model.finetune == "full":
        logger.info("teacher: a frozen %s copy of the starting weights", "bf16" if cfg.training.bf16 else "float32")
        return load_frozen_copy(cfg.model, cfg.training.bf16, run.accelerator)
    return run.accelerator.unwrap_model(run.model)


def build_teacher(cfg: Config, run) -> Teacher:
    """The config's teacher: adapter disabled (LoRA) or a frozen copy (full), on a shared shot prefix
    (distillation.reuse_shot_prefix), memoised (distillation.teacher_cache); or the live student
    (distillation.teacher_weights=live, which the config allows with neither: no frozen copy is loaded)."""
    dist_cfg = cfg.distillation
    k, alignment = dist_cfg.n_top_logits, dist_cfg.alignment
    tail_temperature = LossSpec.from_config(dist_cfg).tail_temperature
    teacher: Teacher
    if dist_cfg.teacher_weights == "live":  # the student itself: no frozen weights to load
        return LiveTeacher(run.accelerator.unwrap_model(run.model), k, alignment, tail_temperature)
    window_lm = base_teacher_model(cfg, run)
    if dist_cfg.reuse_shot_prefix:  # fixed shots' keys/values computed once, each suffix runs on them
        shot_prefix = SharedPrefixTeacher(window_lm, fixed_shot_prefix_ids(
            run.examples, run.n_train_rows, cfg.data.num_fewshot_examples, cfg.training.seed))
        logger.info("shared shot prefix: %d tokens", shot_prefix.prefix_length)
        teacher = ShotPrefixTeacher(shot_prefix, k, alignment, tail_temperature)
    elif cfg.model.finetune == "full":
        teacher = FrozenCopyTeacher(window_lm, k, alignment, tail_temperature)
    else:
        teacher = AdapterDisabledTeacher(window_lm, k, alignment, tail_temperature)
    # distillation.teacher_cache: reuse each example's teacher top-K after its first epoch.
    cache = build_teacher_cache(dist_cfg.teacher_cache, teacher.frozen_weights, cfg.model.name, k, alignment,
                                "bfloat16" if cfg.training.bf16 else "float32",
                                folder=run.output_dir / "teacher_cache",
                                teacher_context=dist_cfg.teacher_context, tail_temperature=tail_temperature,
                                shot_prefix_reuse=isinstance(teacher, ShotPrefixTeacher))
    return teacher if cache is None else CachedTeacher(teacher, cache)
