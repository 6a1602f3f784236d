"""LoRA SFT baseline: cross-entropy on the gold answer, no teacher.

    accelerate launch --num_processes 2 --mixed_precision bf16 \
        fewshot_distill/training/train_baseline.py --config configs/base.yaml --output_dir experiments/poc/baseline \
        [--resume | --overwrite] [key=value ...]
"""

from __future__ import annotations

from fewshot_distill.methods import METHODS, SFT_METHOD
from fewshot_distill.training.loop import exit_on_user_error, parse_training_args, setup_run, train
from fewshot_distill.training.steps import sft_loss_step


def build_loss_step(cfg, run):
    """The method's loss step (registered in fewshot_distill/methods.py): CE on the gold answer."""
    return sft_loss_step


def main(argv: list[str] | None = None) -> None:
    args, cfg = parse_training_args(argv, __doc__)
    run = setup_run(cfg, args, method=SFT_METHOD, with_teacher=METHODS[SFT_METHOD].with_teacher)
    train(run, loss_step=build_loss_step(cfg, run))


if __name__ == "__main__":
    exit_on_user_error(main)
