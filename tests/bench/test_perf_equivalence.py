"""Our optimised distillation step gives the paper-style reference's loss values and gradients.

Reference (fewshot_distill/bench/reference.py): a separate frozen teacher copy, full logits over whole sequences,
top-K, CE + MSE. Ours (fewshot_distill/methods/distill.py): adapter-disabled teacher at answer positions only,
answer-window student logits, chunked CE, teacher computed before the student. Tiny model, float32.
"""

from __future__ import annotations

import pytest
import torch

from fewshot_distill.bench.reference import reference_distillation_losses
from fewshot_distill.data.examples import collate_examples
from fewshot_distill.models.student import AnswerWindowLM, load_base_model
from fewshot_distill.methods.distill import distillation_loss_step
from fewshot_distill.methods.sft import sft_loss_step
from fewshot_distill.teachers.base import AdapterDisabledTeacher

from tests.conftest import build_lora_student


K = 16
LAMBDA = 0.5


@pytest.fixture(scope="module")
def models_and_batch(tiny_model_dir, smoke_examples):
    tokenizer, examples = smoke_examples
    batch = collate_examples([examples[i] for i in (0, 5, 9)], tokenizer.pad_token_id)
    teacher_copy = load_base_model(str(tiny_model_dir), bf16=False).eval()  # the reference's separate copy
    # a non-zero adapter, so student and teacher differ and the MSE is not 0
    peft_model = build_lora_student(tiny_model_dir, seed=1, lora_b_std=0.05).eval()
    return teacher_copy, peft_model, batch


def lora_grads(peft_model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.grad is not None}
    peft_model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("alignment", ["seed", "predict"])
def test_ours_equals_reference_losses_and_grads(models_and_batch, alignment):
    teacher_copy, peft_model, batch = models_and_batch
    reference = reference_distillation_losses(teacher_copy, peft_model, batch, K, LAMBDA, alignment)
    reference["loss"].backward()
    reference_grads = lora_grads(peft_model)

    student = AnswerWindowLM(peft_model)
    ours = distillation_loss_step(student, batch, AdapterDisabledTeacher(student, K, alignment), LAMBDA, alignment)
    ours["loss"].backward()
    our_grads = lora_grads(peft_model)

    assert float(reference["dist_loss"]) > 1e-6
    for name in ("loss", "ce_loss", "dist_loss"):
        torch.testing.assert_close(ours[name].detach(), reference[name].detach(), rtol=1e-5, atol=1e-6)
    assert our_grads.keys() == reference_grads.keys()
    for name in our_grads:
        torch.testing.assert_close(our_grads[name], reference_grads[name], rtol=1e-4, atol=1e-6)


def test_sft_ce_equals_reference_ce(models_and_batch):
    teacher_copy, peft_model, batch = models_and_batch
    reference = reference_distillation_losses(teacher_copy, peft_model, batch, K, LAMBDA)
    ours = sft_loss_step(AnswerWindowLM(peft_model), batch)
    torch.testing.assert_close(ours["ce_loss"], reference["ce_loss"], rtol=1e-5, atol=1e-6)


def test_teacher_copy_equals_adapter_disabled_student(models_and_batch):
    teacher_copy, peft_model, batch = models_and_batch
    with torch.no_grad(), peft_model.disable_adapter():
        disabled = peft_model(input_ids=batch["teacher_input_ids"],
                              attention_mask=batch["teacher_attention_mask"]).logits
        copied = teacher_copy(input_ids=batch["teacher_input_ids"],
                              attention_mask=batch["teacher_attention_mask"]).logits
    torch.testing.assert_close(disabled, copied)
