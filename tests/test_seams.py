"""The seams keep the gold path to the bit: batches assembled from separate prompt / answer ids equal
the concatenated sequences of the code before them (87ea6dc, reproduced inline), each Teacher class
equals the top-K closure it replaced, and `assemble_batch` takes answers that are not the gold ones."""

from __future__ import annotations

import pytest
import torch

from fewshot_distill.constants import IGNORE_INDEX
from fewshot_distill.data.examples import assemble_batch, batch_prompts, build_examples, collate_examples, load_task_rows
from fewshot_distill.teachers.shot_prefix import fixed_shot_prefix_ids, SharedPrefixTeacher
from fewshot_distill.models.student import AnswerWindowLM, teacher_logits
from fewshot_distill.methods.distill import distillation_loss_step
from fewshot_distill.teachers.base import AdapterDisabledTeacher
from fewshot_distill.teachers.shot_prefix import ShotPrefixTeacher
from fewshot_distill.teachers.cache import CachedTeacher, TeacherTopKCache
from fewshot_distill.data.prompts import AlignmentError
from fewshot_distill.losses.alignment import check_aligned_token_ids, student_answer_window, teacher_answer_positions
from fewshot_distill.losses.divergences import LossSpec, MSE, tail_logsumexp, top_k_logits
from tests.conftest import build_lora_student, smoke_data_cfg

K = 8


def old_collate(examples, pad_token_id):
    """collate_examples as of 87ea6dc: sequences stored concatenated on the example."""
    def pad(sequences, value):
        width = max(len(s) for s in sequences)
        out = torch.full((len(sequences), width), value, dtype=torch.long)
        for row, seq in enumerate(sequences):
            out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return out

    student_ids = [e.student_input_ids for e in examples]
    labels = [[IGNORE_INDEX] * e.student_prompt_len + e.answer_ids for e in examples]
    batch = {"student_input_ids": pad(student_ids, pad_token_id),
             "student_attention_mask": pad([[1] * len(s) for s in student_ids], 0),
             "student_labels": pad(labels, IGNORE_INDEX),
             "example_index": torch.tensor([e.index for e in examples], dtype=torch.long)}
    if all(e.teacher_input_ids is not None for e in examples):
        teacher_ids = [e.teacher_input_ids for e in examples]
        batch["teacher_input_ids"] = pad(teacher_ids, pad_token_id)
        batch["teacher_attention_mask"] = pad([[1] * len(t) for t in teacher_ids], 0)
    return batch


def old_online_top_k(window_lm, k, alignment, tail_temperature=None, shot_prefix=None):
    """online_teacher_top_k as of 87ea6dc."""
    compute = shot_prefix.logits if shot_prefix is not None else (
        lambda *args: teacher_logits(window_lm, *args))

    def top_k(batch, answer_ids, answer_mask):
        lengths = batch["teacher_attention_mask"].sum(dim=1)
        check_aligned_token_ids(batch["teacher_input_ids"], lengths, answer_ids, answer_mask,
                                  batch.get("example_index"))
        positions = teacher_answer_positions(lengths, answer_mask.sum(dim=1), answer_ids.size(1), alignment)
        logits = compute(batch["teacher_input_ids"], batch["teacher_attention_mask"], positions)
        values, ids = top_k_logits(logits, k)
        if tail_temperature is None:
            return values, ids
        return values, ids, tail_logsumexp(logits, ids, tail_temperature)

    return top_k


class ClosureTeacher:
    """Adapts an old closure to the step's `teacher.top_k` call."""

    def __init__(self, top_k):
        self.top_k = top_k


@pytest.fixture(scope="module")
def setup(tiny_model_dir, smoke_examples):
    tokenizer, examples = smoke_examples
    rows = load_task_rows(smoke_data_cfg(), "train")
    fixed_cfg = smoke_data_cfg()
    fixed_cfg.shot_sampling = "fixed"
    fixed, _ = build_examples(rows, tokenizer, fixed_cfg, seed=42, with_teacher=True)
    peft_model = build_lora_student(tiny_model_dir, lora_b_std=0.05).eval()  # a student that differs from its teacher
    prefix = fixed_shot_prefix_ids(fixed, len(rows), fixed_cfg.num_fewshot_examples, 42)
    return tokenizer, examples[:8], fixed[:6], prefix, AnswerWindowLM(peft_model)


def test_collated_batches_equal_the_old_concatenated_sequences(setup, tiny_model_dir, small_data_cfg):
    tokenizer, examples, fixed, _, _ = setup
    for group in (examples[:3], [examples[5], examples[0], examples[7], examples[2]], fixed):
        new, old = collate_examples(group, tokenizer.pad_token_id), old_collate(group, tokenizer.pad_token_id)
        assert new.keys() == old.keys() and "teacher_input_ids" in new
        for key in old:
            assert new[key].dtype == old[key].dtype and torch.equal(new[key], old[key]), key
    rows = load_task_rows(small_data_cfg, "train")
    sft, _ = build_examples(rows, tokenizer, small_data_cfg, seed=42, with_teacher=False, indices=range(4))
    new, old = collate_examples(sft, tokenizer.pad_token_id), old_collate(sft, tokenizer.pad_token_id)
    assert new.keys() == old.keys() and "teacher_input_ids" not in new
    assert all(torch.equal(new[key], old[key]) for key in old)


def test_real_gsm8k_batches_equal_the_old_ones(qwen3_tokenizer, gsm8k_train_rows):
    from fewshot_distill.config import DataConfig
    from tests.conftest import GSM8K_DIR

    examples, _ = build_examples(gsm8k_train_rows, qwen3_tokenizer, DataConfig(path=str(GSM8K_DIR)), seed=42,
                                 with_teacher=True, indices=range(0, 400, 50))
    new, old = collate_examples(examples, qwen3_tokenizer.pad_token_id), old_collate(examples, qwen3_tokenizer.pad_token_id)
    assert all(torch.equal(new[key], old[key]) for key in old)


@pytest.mark.parametrize("variant", ["adapter_disabled", "shot_prefix", "cached", "tail"])
@pytest.mark.parametrize("alignment", ["seed", "predict"])
def test_teacher_classes_give_the_old_closures_losses_to_the_bit(setup, variant, alignment):
    tokenizer, examples, fixed, prefix, student = setup
    loss, tail_temperature, group = MSE, None, examples[:4]
    if variant == "tail":
        loss, tail_temperature = LossSpec("reverse_kl", 2.0, topk_tail="bucket"), 2.0
    if variant == "shot_prefix":
        group = fixed
        shot_prefix = SharedPrefixTeacher(student, prefix)
        new_teacher = ShotPrefixTeacher(shot_prefix, K, alignment)
        old_teacher = ClosureTeacher(old_online_top_k(student, K, alignment,
                                                      shot_prefix=SharedPrefixTeacher(student, prefix)))
    else:
        new_teacher = AdapterDisabledTeacher(student, K, alignment, tail_temperature)
        old_teacher = ClosureTeacher(old_online_top_k(student, K, alignment, tail_temperature))
    if variant == "cached":
        new_teacher = CachedTeacher(new_teacher, TeacherTopKCache("memory", "seams-test"))
    batch = collate_examples(group, tokenizer.pad_token_id)
    for _ in range(2):  # a cached teacher: misses, then hits
        new = distillation_loss_step(student, batch, new_teacher, 0.5, alignment, loss=loss)
        old = distillation_loss_step(student, batch, old_teacher, 0.5, alignment, loss=loss)
        for name in ("loss", "ce_loss", "dist_loss"):
            assert torch.equal(new[name], old[name]), name
        assert float(new["dist_loss"]) > 0
    if variant == "cached":
        assert (new_teacher.cache.misses, new_teacher.cache.hits) == (4, 4)


def test_teacher_top_k_runs_without_grad_and_keeps_the_alignment_check(setup):
    tokenizer, examples, _, _, student = setup
    batch = collate_examples(examples[:2], tokenizer.pad_token_id)
    _, mask, ids = student_answer_window(batch["student_labels"])
    values, top_ids = AdapterDisabledTeacher(student, K).top_k(batch, ids, mask)
    assert not values.requires_grad and values.shape == top_ids.shape == (*ids.shape, K)
    wrong = ids.clone()
    wrong[0, 0] += 1
    with pytest.raises(AlignmentError, match=f"examples \\[{examples[0].index}\\]"):
        AdapterDisabledTeacher(student, K).top_k(batch, wrong, mask)


def test_assemble_batch_takes_any_answer_ids(setup):
    """An answer that is not the gold one (as a student sample would be) ends both sequences and is the label."""
    tokenizer, examples, _, _, _ = setup
    answers = [[11, 12, 13], [14]]
    batch = assemble_batch([e.student_prompt_ids for e in examples[:2]], answers, [e.index for e in examples[:2]],
                           tokenizer.pad_token_id, [e.teacher_prompt_ids for e in examples[:2]])
    for row, (example, answer) in enumerate(zip(examples, answers)):
        n_student, n_teacher = len(example.student_prompt_ids), len(example.teacher_prompt_ids)
        assert batch["student_input_ids"][row, n_student:n_student + len(answer)].tolist() == answer
        assert batch["teacher_input_ids"][row, n_teacher:n_teacher + len(answer)].tolist() == answer
        assert int(batch["teacher_attention_mask"][row].sum()) == n_teacher + len(answer)
    _, mask, ids = student_answer_window(batch["student_labels"])
    assert ids[mask].tolist() == [11, 12, 13, 14]
    check_aligned_token_ids(batch["teacher_input_ids"], batch["teacher_attention_mask"].sum(dim=1), ids, mask)
    with pytest.raises(ValueError, match="one of each per row"):
        assemble_batch([[1]], [[2], [3]], [0], 0)


def test_batch_prompts_recovers_the_prompts_so_a_batch_can_take_other_answers(setup):
    tokenizer, examples, _, _, _ = setup
    group = [examples[3], examples[0], examples[6]]
    gold = collate_examples(group, tokenizer.pad_token_id)
    student_prompts, teacher_prompts = batch_prompts(gold)
    assert student_prompts == [e.student_prompt_ids for e in group]
    assert teacher_prompts == [e.teacher_prompt_ids for e in group]
    again = assemble_batch(student_prompts, [e.answer_ids for e in group], gold["example_index"].tolist(),
                           tokenizer.pad_token_id, teacher_prompts)
    assert all(torch.equal(again[key], gold[key]) for key in gold)
    sft = {k: v for k, v in gold.items() if not k.startswith("teacher_")}
    assert batch_prompts(sft) == (student_prompts, None)
