"""Training-loop guarantees for GPU runs, checked on the CPU (issue 19).

bf16 (item 3): the real online script runs in this process on the CPU (accelerate enables bf16
autocast on CPU too, so its `prepare` wraps the forward exactly as on a GPU) and the dtype of the
student's window logits and of the teacher's logits is recorded where the losses receive them.
Full global batches (item 7): every optimizer step's example count, from metrics.jsonl.
"""

from __future__ import annotations
from fewshot_distill.losses.divergences import top_k_logits
from fewshot_distill.losses.window_kernel import answer_window_losses

import pytest

from tests.conftest import REPO_ROOT, SMOKE_DATA


@pytest.fixture
def fresh_accelerate_state():
    """Accelerator settings are process-wide; this test's bf16 must not meet another test's "no"."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_window_logits_reach_the_fused_loss_in_bf16(tiny_model_dir, tmp_path, monkeypatch,
                                                         fresh_accelerate_state):
    import torch

    from fewshot_distill import train
    from fewshot_distill.methods import distill
    from fewshot_distill.teachers import base

    seen = {"student": [], "teacher": []}
    fused, top_k = answer_window_losses, top_k_logits

    def record_student(window_logits, *args, **kwargs):
        seen["student"].append(window_logits.dtype)
        return fused(window_logits, *args, **kwargs)

    def record_teacher(logits, k):
        seen["teacher"].append(logits.dtype)
        return top_k(logits, k)

    monkeypatch.setattr(distill, "answer_window_losses", record_student)
    monkeypatch.setattr(base, "top_k_logits", record_teacher)
    monkeypatch.chdir(REPO_ROOT)
    train.main(["--config", "configs/online_v1.yaml", "--output_dir", str(tmp_path / "run"),
                          f"model.name={tiny_model_dir}", f"data.path={SMOKE_DATA}", "training.max_steps=2",
                          "training.bf16=true", "training.per_device_train_batch_size=2",
                          "training.gradient_accumulation_steps=1", "training.save_steps=100",
                          "data.num_workers=0", "data.max_train_examples=4"])
    assert seen["student"] and set(seen["student"]) == {torch.bfloat16}
    assert seen["teacher"] and set(seen["teacher"]) == {torch.bfloat16}


def test_every_optimizer_step_sees_a_full_global_batch_across_epoch_ends(tiny_model_dir, tmp_path, monkeypatch,
                                                                          fresh_accelerate_state):
    """6 examples, steps of 2 x 2 = 4: epoch ends fall inside steps 2 and 3. Before, the end of the
    data loader forced a sync after 3 micro-batches, so step 2 saw 2 examples and counted as a step."""
    from fewshot_distill.results.metrics import read_metrics_jsonl
    from fewshot_distill import train

    monkeypatch.chdir(REPO_ROOT)
    out = tmp_path / "run"
    train.main(["--config", "configs/base.yaml", "--output_dir", str(out), f"model.name={tiny_model_dir}",
                         f"data.path={SMOKE_DATA}", "training.max_steps=4", "training.bf16=false",
                         "training.per_device_train_batch_size=2", "training.gradient_accumulation_steps=2",
                         "training.logging_steps=1", "training.save_steps=100", "data.num_workers=0",
                         "data.max_train_examples=6"])
    metrics = read_metrics_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert [m["train/examples_per_step"] for m in metrics] == [4, 4, 4, 4]
    assert [m["epoch"] for m in metrics] == pytest.approx([4 / 6, 8 / 6, 12 / 6, 16 / 6])
