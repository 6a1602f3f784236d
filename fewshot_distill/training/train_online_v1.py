"""LoRA SFT + online few-shot logit distillation.

Teacher: the same base model with the LoRA adapter disabled (model.finetune=full: a frozen copy of the
starting weights, fewshot_distill/training/frozen_teacher.py), reading [8 shots][question][answer].
Student: base model + LoRA (or every weight), reading [question][answer].
Loss: CE(student) + lambda_distill * MSE(teacher top-K logits, student logits at the same vocab ids),
at every answer token; `distillation.loss` swaps the MSE for a KL-family loss (fewshot_distill/losses.py).
`distillation.answer_source=student|mixed` trains on the student's own samples instead (the methods
onpolicy / onpolicy_mixed of fewshot_distill/methods.py, loss step in fewshot_distill/training/onpolicy.py);
`distillation.teacher_weights=live` makes the teacher the current student reading the context.

    accelerate launch --num_processes 2 --mixed_precision bf16 \
        fewshot_distill/training/train_online_v1.py --config configs/online_v1.yaml --output_dir experiments/online_v1 \
        [--resume | --overwrite] [key=value ...]
"""

from __future__ import annotations

import logging
from functools import partial

from fewshot_distill.config import Config
from fewshot_distill.losses import LossSpec
from fewshot_distill.methods import METHODS, distillation_method
from fewshot_distill.models.prefix_teacher import SharedPrefixTeacher, fixed_shot_prefix_ids
from fewshot_distill.training.frozen_teacher import FrozenCopyTeacher, load_frozen_copy
from fewshot_distill.training.loop import exit_on_user_error, parse_training_args, setup_run, train
from fewshot_distill.training.steps import distillation_loss_step, loss_step_builder
from fewshot_distill.training.teacher import AdapterDisabledTeacher, LiveTeacher, ShotPrefixTeacher, Teacher
from fewshot_distill.training.teacher_cache import CachedTeacher, build_teacher_cache


def check_distillation_config(cfg: Config) -> None:
    if cfg.distillation.n_top_logits <= 0 or cfg.distillation.lambda_distill <= 0:
        raise SystemExit(
            "train_online_v1.py needs distillation.n_top_logits > 0 and distillation.lambda_distill > 0 "
            f"(got {cfg.distillation.n_top_logits} and {cfg.distillation.lambda_distill}). Use "
            "--config configs/online_v1.yaml, or train_baseline.py for plain SFT.")


def base_teacher_model(cfg: Config, run):
    """The AnswerWindowLM holding the frozen base weights the teacher reads: LoRA: the unwrapped student
    (same weights, adapter disabled inside each call); full: a frozen copy of the starting weights,
    loaded again from model.name (whatever a resume loads into the student)."""
    if cfg.model.finetune == "full":
        logging.getLogger("fewshot_distill").info("teacher: a frozen %s copy of the starting weights",
                                                  "bf16" if cfg.training.bf16 else "float32")
        return load_frozen_copy(cfg.model, cfg.training.bf16, run.accelerator)
    return run.accelerator.unwrap_model(run.model)


def loss_spec(cfg: Config) -> LossSpec:
    """The config's distillation loss (`distillation.loss` and its hyperparameters)."""
    dist_cfg = cfg.distillation
    return LossSpec(dist_cfg.loss, dist_cfg.temperature, dist_cfg.jsd_beta, dist_cfg.topk_tail)


def build_teacher(cfg: Config, run) -> Teacher:
    """The config's teacher: adapter disabled (LoRA) or a frozen copy (full), on a shared shot prefix
    (distillation.reuse_shot_prefix), memoised (distillation.teacher_cache); or the live student
    (distillation.teacher_weights=live, which the config allows with neither: no frozen copy is loaded)."""
    dist_cfg = cfg.distillation
    log = logging.getLogger("fewshot_distill")
    k, alignment = dist_cfg.n_top_logits, dist_cfg.alignment
    tail_temperature = loss_spec(cfg).tail_temperature
    teacher: Teacher
    if dist_cfg.teacher_weights == "live":  # the student itself: no frozen weights to load
        return LiveTeacher(run.accelerator.unwrap_model(run.model), k, alignment, tail_temperature)
    window_lm = base_teacher_model(cfg, run)
    if dist_cfg.reuse_shot_prefix:  # fixed shots' keys/values computed once, each suffix runs on them
        shot_prefix = SharedPrefixTeacher(window_lm, fixed_shot_prefix_ids(
            run.examples, run.n_train_rows, cfg.data.num_fewshot_examples, cfg.training.seed))
        log.info("shared shot prefix: %d tokens", shot_prefix.prefix_length)
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


def build_loss_step(cfg: Config, run):
    """The method's loss step (registered in fewshot_distill/methods.py): CE + lambda * distillation.loss against
    the config's teacher (a partial: `.keywords["teacher"]` is the Teacher, for the end-of-run stats)."""
    dist_cfg = cfg.distillation
    return partial(distillation_loss_step, teacher=build_teacher(cfg, run), lambda_distill=dist_cfg.lambda_distill,
                   alignment=dist_cfg.alignment, loss=loss_spec(cfg))


def main(argv: list[str] | None = None) -> None:
    args, cfg = parse_training_args(argv, __doc__)
    check_distillation_config(cfg)
    # gold: online_v1 (build_loss_step above); student / mixed: the on-policy methods
    method = distillation_method(cfg.distillation.answer_source)
    run = setup_run(cfg, args, method=method, with_teacher=METHODS[method].with_teacher)
    loss_step = loss_step_builder(method)(cfg, run)
    train(run, loss_step=loss_step)
    log = logging.getLogger("fewshot_distill")
    teacher = loss_step.keywords["teacher"]
    if isinstance(teacher, CachedTeacher):
        log.info("teacher cache: %s", teacher.cache.stats())
        teacher = teacher.online
    if isinstance(teacher, ShotPrefixTeacher):
        log.info("shared shot prefix teacher: %s", teacher.shot_prefix.stats())


if __name__ == "__main__":
    exit_on_user_error(main)
