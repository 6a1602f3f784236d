"""Sequence-level KD (fewshot_distill/methods/seq_kd.py): the student's CE targets are the frozen few-shot
teacher's greedy answers, written once per example, whatever the adapter has learned; the method trains
end to end through the one entry point."""

from __future__ import annotations

import json
import signal

import torch

from fewshot_distill.data.examples import assemble_batch, batch_prompts
from fewshot_distill.methods.seq_kd import TeacherAnswerStep
from fewshot_distill.methods.sft import sft_loss_step
from fewshot_distill.models.generation import eos_token_ids, generate_tokens
from fewshot_distill.models.student import AnswerWindowLM, load_base_model
from tests.conftest import REPO_ROOT, SMOKE_DATA, build_lora_student

MAX_NEW_TOKENS = 6


def step_for(student: AnswerWindowLM, tokenizer) -> TeacherAnswerStep:
    return TeacherAnswerStep(student, eos_token_ids(tokenizer), tokenizer.pad_token_id, MAX_NEW_TOKENS)


def test_targets_are_the_base_models_greedy_answers_to_the_teacher_prompts(tiny_model_dir, smoke_examples,
                                                                          smoke_batch):
    tokenizer, _ = smoke_examples
    # A trained-looking adapter (B != 0): the teacher must still be the base model.
    student = AnswerWindowLM(build_lora_student(tiny_model_dir, lora_b_std=0.5)).train()
    step = step_for(student, tokenizer)
    _, teacher_prompts = batch_prompts(smoke_batch)
    example_index = smoke_batch["example_index"].tolist()
    answers = step.teacher_answers(teacher_prompts, example_index)

    base = load_base_model(str(tiny_model_dir), bf16=False).eval()
    expected = generate_tokens(base, teacher_prompts, max_new_tokens=MAX_NEW_TOKENS, eos_ids=step.eos_ids,
                               pad_token_id=tokenizer.pad_token_id)
    assert answers == [list(ids) for ids in expected.token_ids]
    assert student.training  # restored after the teacher's eval-mode generation
    assert all(len(a) <= MAX_NEW_TOKENS for a in answers) and set(step.answers) == set(example_index)


def test_the_loss_is_sft_on_the_teacher_answers_and_answers_are_written_once(tiny_model_dir, smoke_examples,
                                                                            smoke_batch, monkeypatch):
    tokenizer, _ = smoke_examples
    student = AnswerWindowLM(build_lora_student(tiny_model_dir)).train()
    step = step_for(student, tokenizer)
    terms = step(student, smoke_batch)

    student_prompts, _ = batch_prompts(smoke_batch)
    example_index = smoke_batch["example_index"].tolist()
    expected_batch = assemble_batch(student_prompts, [step.answers[i] for i in example_index], example_index,
                                    tokenizer.pad_token_id)
    expected = sft_loss_step(student, expected_batch)
    assert torch.equal(terms["loss"], expected["loss"]) and terms["loss"].requires_grad
    assert int(terms["trained_tokens"]) == int(expected_batch["student_attention_mask"].sum())
    assert float(terms["teacher_answer_len"]) == sum(len(step.answers[i]) for i in example_index) / len(example_index)

    import fewshot_distill.methods.seq_kd as seq_kd

    def no_generation(*args, **kwargs):
        raise AssertionError("an example's answer was written twice")

    monkeypatch.setattr(seq_kd, "generate_tokens", no_generation)
    assert torch.equal(step(student, smoke_batch)["loss"], terms["loss"])


def test_seq_kd_trains_through_the_entry_point(tiny_model_dir, tmp_path):
    from fewshot_distill.methods import read_run_identity
    from fewshot_distill.train import main

    out = tmp_path / "run"
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        main(["--config", str(REPO_ROOT / "configs" / "seq_kd.yaml"), "--output_dir", str(out),
              f"model.name={tiny_model_dir}", f"data.path={SMOKE_DATA}", "training.max_steps=2",
              "training.bf16=false", "training.save_steps=100", "training.logging_steps=1",
              "training.per_device_train_batch_size=2", "training.gradient_accumulation_steps=1",
              "data.num_workers=0", "data.num_fewshot_examples=2", "data.max_train_examples=4",
              "eval.held_out_examples=0", f"generation.max_new_tokens={MAX_NEW_TOKENS}"])
    finally:  # the loop's stop handlers must not outlive it in the test process
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert read_run_identity(out) == {"method": "seq_kd", "condition": "seq_kd", "teacher_context": "fewshot",
                                      "finetune": "lora"}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(0 < m["train/teacher_answer_len"] <= MAX_NEW_TOKENS and m["train/ce_loss"] > 0 for m in metrics)
    assert (out / "final" / "adapter_model.safetensors").is_file()
