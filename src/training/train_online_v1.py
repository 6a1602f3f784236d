"""LoRA SFT + online few-shot logit distillation.

Teacher: the same base model with the LoRA adapter disabled, reading [8 shots][question][answer].
Student: base model + LoRA, reading [question][answer].
Loss: CE(student) + lambda_distill * MSE(teacher top-K logits, student logits at the same vocab ids),
at every answer token.

    accelerate launch --num_processes 2 --mixed_precision bf16 \
        src/training/train_online_v1.py --config configs/online_v1.yaml --output_dir experiments/online_v1 \
        [--resume | --overwrite] [key=value ...]
"""

from __future__ import annotations

import logging
from functools import partial

from src.config import Config
from src.training.loop import exit_on_user_error, parse_training_args, setup_run, train
from src.training.steps import distillation_loss_step, online_teacher_top_k
from src.training.teacher_cache import build_teacher_cache, cached_teacher_top_k


def check_distillation_config(cfg: Config) -> None:
    if cfg.distillation.n_top_logits <= 0 or cfg.distillation.lambda_distill <= 0:
        raise SystemExit(
            "train_online_v1.py needs distillation.n_top_logits > 0 and distillation.lambda_distill > 0 "
            f"(got {cfg.distillation.n_top_logits} and {cfg.distillation.lambda_distill}). Use "
            "--config configs/online_v1.yaml, or train_baseline.py for plain SFT.")


def main(argv: list[str] | None = None) -> None:
    args, cfg = parse_training_args(argv, __doc__)
    check_distillation_config(cfg)
    dist_cfg = cfg.distillation
    run = setup_run(cfg, args, method="online_v1", with_teacher=True)
    # The teacher is the unwrapped student module: same weights, adapter disabled inside each call.
    teacher = run.accelerator.unwrap_model(run.model)
    teacher_top_k = online_teacher_top_k(teacher, dist_cfg.n_top_logits, dist_cfg.alignment)
    # distillation.teacher_cache: reuse each example's teacher top-K after its first epoch.
    cache = build_teacher_cache(dist_cfg.teacher_cache, teacher, cfg.model.name, dist_cfg.n_top_logits,
                                dist_cfg.alignment, "bfloat16" if cfg.training.bf16 else "float32",
                                folder=run.output_dir / "teacher_cache",
                                teacher_context=dist_cfg.teacher_context)
    if cache is not None:
        teacher_top_k = cached_teacher_top_k(teacher_top_k, cache)
    loss_step = partial(distillation_loss_step, teacher_top_k=teacher_top_k,
                        lambda_distill=dist_cfg.lambda_distill, alignment=dist_cfg.alignment)
    train(run, loss_step=loss_step)
    if cache is not None:
        logging.getLogger("fewshot_distill").info("teacher cache: %s", cache.stats())


if __name__ == "__main__":
    exit_on_user_error(main)
