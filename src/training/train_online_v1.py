"""LoRA SFT + online few-shot logit distillation.

Teacher: the same base model with the LoRA adapter disabled, reading [8 shots][question][answer].
Student: base model + LoRA, reading [question][answer].
Loss: CE(student) + lambda_distill * MSE(teacher top-K logits, student logits at the same vocab ids),
at every answer token; `distillation.loss` swaps the MSE for a KL-family loss (src/losses.py).

    accelerate launch --num_processes 2 --mixed_precision bf16 \
        src/training/train_online_v1.py --config configs/online_v1.yaml --output_dir experiments/online_v1 \
        [--resume | --overwrite] [key=value ...]
"""

from __future__ import annotations

import logging
from functools import partial

from src.config import Config, ConfigError
from src.losses import LossSpec
from src.models.prefix_teacher import SharedPrefixTeacher, fixed_shot_prefix_ids
from src.training.loop import exit_on_user_error, parse_training_args, setup_run, train
from src.training.steps import distillation_loss_step, online_teacher_top_k
from src.training.teacher_cache import build_teacher_cache, cached_teacher_top_k


def check_distillation_config(cfg: Config) -> None:
    if cfg.distillation.n_top_logits <= 0 or cfg.distillation.lambda_distill <= 0:
        raise SystemExit(
            "train_online_v1.py needs distillation.n_top_logits > 0 and distillation.lambda_distill > 0 "
            f"(got {cfg.distillation.n_top_logits} and {cfg.distillation.lambda_distill}). Use "
            "--config configs/online_v1.yaml, or train_baseline.py for plain SFT.")
    if cfg.model.finetune == "full":
        # The adapter-disabled teacher would be the trained weights themselves once every weight trains.
        raise ConfigError("model.finetune=full with distillation needs the frozen-copy teacher, not yet "
                          "available; use model.finetune=lora, or train_baseline.py for full SFT")


def main(argv: list[str] | None = None) -> None:
    args, cfg = parse_training_args(argv, __doc__)
    check_distillation_config(cfg)
    dist_cfg = cfg.distillation
    run = setup_run(cfg, args, method="online_v1", with_teacher=True)
    # The teacher is the unwrapped student module: same weights, adapter disabled inside each call.
    teacher = run.accelerator.unwrap_model(run.model)
    loss = LossSpec(dist_cfg.loss, dist_cfg.temperature, dist_cfg.jsd_beta, dist_cfg.topk_tail)
    tail_temperature = loss.temperature if loss.with_tail else None
    # distillation.reuse_shot_prefix: fixed shots' keys/values computed once, each suffix runs on them.
    shot_prefix = None
    if dist_cfg.reuse_shot_prefix:
        shot_prefix = SharedPrefixTeacher(teacher, fixed_shot_prefix_ids(
            run.examples, run.n_train_rows, cfg.data.num_fewshot_examples, cfg.training.seed))
        logging.getLogger("fewshot_distill").info("shared shot prefix: %d tokens", shot_prefix.prefix_length)
    teacher_top_k = online_teacher_top_k(teacher, dist_cfg.n_top_logits, dist_cfg.alignment,
                                         tail_temperature=tail_temperature, shot_prefix=shot_prefix)
    # distillation.teacher_cache: reuse each example's teacher top-K after its first epoch.
    cache = build_teacher_cache(dist_cfg.teacher_cache, teacher, cfg.model.name, dist_cfg.n_top_logits,
                                dist_cfg.alignment, "bfloat16" if cfg.training.bf16 else "float32",
                                folder=run.output_dir / "teacher_cache",
                                teacher_context=dist_cfg.teacher_context, tail_temperature=tail_temperature,
                                shot_prefix_reuse=dist_cfg.reuse_shot_prefix)
    if cache is not None:
        teacher_top_k = cached_teacher_top_k(teacher_top_k, cache)
    loss_step = partial(distillation_loss_step, teacher_top_k=teacher_top_k,
                        lambda_distill=dist_cfg.lambda_distill, alignment=dist_cfg.alignment, loss=loss)
    train(run, loss_step=loss_step)
    if cache is not None:
        logging.getLogger("fewshot_distill").info("teacher cache: %s", cache.stats())
    if shot_prefix is not None:
        logging.getLogger("fewshot_distill").info("shared shot prefix teacher: %s", shot_prefix.stats())


if __name__ == "__main__":
    exit_on_user_error(main)
