"""Train with any method of the registry (fewshot_distill/methods/): the one entry point.

    accelerate launch --num_processes 2 --mixed_precision bf16 -m fewshot_distill.train \
        --config configs/online_v1.yaml --output_dir experiments/online_v1 [--resume | --overwrite] [key=value ...]

`method:` in the config picks the method (configs/base.yaml: baseline, online_v1.yaml: the paper's,
onpolicy.yaml: on-policy distillation, seq_kd.yaml: SFT on the teacher's greedy answers). One step, in call
order: training/loop.py `train` -> the method's loss step (methods/<method>.py) -> its teacher
(teachers/) -> the fused kernel (losses/window_kernel.py) -> the divergence (losses/divergences.py).
"""

from __future__ import annotations

import logging

from fewshot_distill.methods import resolve_method, run_identity_fields
from fewshot_distill.teachers import check_teacher_config
from fewshot_distill.training.loop import exit_on_user_error, launched_with_fsdp, parse_training_args, setup_run, train

logger = logging.getLogger("fewshot_distill")


def main(argv: list[str] | None = None, legacy_script: str | None = None) -> None:
    """`legacy_script`: the deprecated entry scripts (src/training/train_*.py) say which method they train."""
    args, cfg = parse_training_args(argv, __doc__)
    method = resolve_method(cfg, legacy_script)
    cfg.method = method.name  # run_config.yaml records the method that trained
    if method.with_teacher:
        check_teacher_config(cfg, fsdp=launched_with_fsdp())
    identity = run_identity_fields(method.name, cfg.distillation.teacher_context, cfg.model.finetune)
    run = setup_run(cfg, args, identity, with_teacher=method.with_teacher)
    loss_step = method.build_loss_step(cfg, run)
    train(run, loss_step)
    teacher = getattr(loss_step, "teacher", None)
    if teacher is not None and teacher.stats():
        logger.info("teacher: %s", teacher.stats())


if __name__ == "__main__":
    exit_on_user_error(main)
