"""Shared shot prefix teacher (fewshot_distill/teachers/shot_prefix.py): the cached-prefix teacher gives the
full-sequence teacher's top-K (float32, both alignments, every row kind), computes the prefix once,
works in training mode with gradient checkpointing, with the teacher cache, and the real Qwen3 chat
template really renders a token-identical shot prefix for GSM8K rows."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fewshot_distill.config import ConfigError, load_config
from fewshot_distill.data.examples import build_example
from fewshot_distill.data.prompts import AlignmentError
from fewshot_distill.data.shots import fixed_shot_indices
from fewshot_distill.teachers.shot_prefix import common_prefix_length, fixed_shot_prefix_ids, shared_prefix_ids, SharedPrefixTeacher
from fewshot_distill.models.student import AnswerWindowLM, teacher_logits
from fewshot_distill.methods.distill import distillation_loss_step
from fewshot_distill.teachers.base import AdapterDisabledTeacher
from fewshot_distill.teachers.shot_prefix import ShotPrefixTeacher
from fewshot_distill.teachers.cache import build_teacher_cache, CachedTeacher, teacher_cache_context
from fewshot_distill.losses.alignment import student_answer_window, teacher_answer_positions
from fewshot_distill.losses.divergences import top_k_logits

from tests.conftest import FIXED_SHOT_SEED, REPO_ROOT, build_lora_student, smoke_data_cfg

K = 16
SEED = FIXED_SHOT_SEED


# ----------------------------------------------------------------------------- pure helpers

def test_common_prefix_length_by_hand():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3], [1, 2, 9, 9]]) == 2
    assert common_prefix_length([[5, 6], [5, 6]]) == 2
    assert common_prefix_length([[1], [2]]) == 0


def test_shared_prefix_leaves_a_prompt_token_before_every_answer():
    # Two identical 6-token sequences with 2 answer tokens: the prefix may hold at most 3 tokens.
    prefix = shared_prefix_ids([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]], student_lengths=[3, 3],
                               answer_lengths=[2, 2])
    assert prefix == [1, 2, 3]


def test_example_dependent_text_before_the_shots_is_an_error():
    # Shots add 4 tokens (teacher 9 - student 5) but the rows differ from token 1 on (a per-example
    # "system turn"): no shared shot prefix exists.
    with pytest.raises(AlignmentError, match="example-dependent text before or between the shots"):
        shared_prefix_ids([[7, 1, 2, 3, 4, 5, 6, 8, 9], [9, 1, 2, 3, 4, 5, 6, 8, 9]], [5, 5], [2, 2])


@pytest.mark.parametrize("overrides, ok", [
    (["data.shot_sampling=fixed", "distillation.reuse_shot_prefix=true"], True),
    (["distillation.reuse_shot_prefix=true"], False),
    (["data.shot_sampling=fixed", "distillation.reuse_shot_prefix=true", "distillation.teacher_context=zeroshot"],
     False),
])
def test_reuse_needs_fixed_fewshot(overrides, ok):
    if ok:
        assert load_config(REPO_ROOT / "configs/online_v1.yaml", overrides).distillation.reuse_shot_prefix
    else:
        with pytest.raises(ConfigError, match="reuse_shot_prefix=true needs data.shot_sampling=fixed"):
            load_config(REPO_ROOT / "configs/online_v1.yaml", overrides)


# ----------------------------------------------------------------------------- real tokenizer + GSM8K

def test_real_qwen3_template_renders_one_shot_prefix(qwen3_tokenizer, gsm8k_train_rows):
    """Qwen3's template has no system turn unless given one: [shots] come first, token-identical."""
    data_cfg = dataclasses.replace(smoke_data_cfg(), num_fewshot_examples=8, shot_sampling="fixed",
                                   max_seq_len_teacher=4096)
    shot_rows = fixed_shot_indices(len(gsm8k_train_rows), 8, SEED)
    indices = list(range(24)) + shot_rows[:2]
    examples = [build_example(qwen3_tokenizer, gsm8k_train_rows, i, data_cfg, SEED, with_teacher=True)
                for i in indices]
    prefix = fixed_shot_prefix_ids(examples, len(gsm8k_train_rows), 8, SEED)
    readers = [e for e in examples if e.index not in shot_rows]
    shot_tokens = {len(e.teacher_input_ids) - len(e.student_input_ids) for e in readers}
    assert len(shot_tokens) == 1 and len(prefix) >= shot_tokens.pop()
    assert all(e.teacher_input_ids[:len(prefix)] == prefix for e in readers)
    text = qwen3_tokenizer.decode(prefix)
    assert text.startswith("<|im_start|>user\nQuestion: ") and text.endswith("<|im_end|>\n<|im_start|>user\nQuestion:")
    # A shot row reads a substitute shot in its own position: it does not share the prefix.
    for e in examples[-2:]:
        assert e.teacher_input_ids[:len(prefix)] != prefix


# ----------------------------------------------------------------------------- tiny model equality

@pytest.fixture(scope="module")
def fixed_setup(tiny_model_dir, fixed_shot_batches):
    prefix, batches = fixed_shot_batches  # seeded with SEED (conftest.FIXED_SHOT_SEED)
    return tiny_model_dir, prefix, batches


def window_lm(model_dir, gradient_checkpointing=False, bf16=False):
    # a non-zero adapter: the teacher must not see it
    return AnswerWindowLM(build_lora_student(model_dir, seed=1, lora_b_std=0.05, bf16=bf16,
                                             gradient_checkpointing=gradient_checkpointing))


def answer_window(batch):
    _, mask, ids = student_answer_window(batch["student_labels"])
    return ids, mask


@pytest.mark.parametrize("alignment", ["seed", "predict"])
def test_prefix_teacher_top_k_equals_full_teacher_float32(fixed_setup, alignment):
    model_dir, prefix, batches = fixed_setup
    student = window_lm(model_dir).eval()
    shot_prefix = SharedPrefixTeacher(student, prefix)
    for batch in batches:
        ids, mask = answer_window(batch)
        positions = teacher_answer_positions(batch["teacher_attention_mask"].sum(dim=1), mask.sum(dim=1),
                                               ids.size(1), alignment)
        full = teacher_logits(student, batch["teacher_input_ids"], batch["teacher_attention_mask"], positions)
        ours = shot_prefix.logits(batch["teacher_input_ids"], batch["teacher_attention_mask"], positions)
        torch.testing.assert_close(ours[mask], full[mask], rtol=0, atol=1e-5)
        full_values, full_ids = top_k_logits(full, K)
        values, top_ids = ShotPrefixTeacher(shot_prefix, K, alignment).top_k(batch, ids, mask)
        torch.testing.assert_close(values[mask], full_values[mask], rtol=0, atol=1e-5)
        assert torch.equal(top_ids[mask], full_ids[mask])
    assert shot_prefix.prefix_computations == 1, "the prefix K/V are computed once and reused"
    assert shot_prefix.rows_on_prefix == 2 * 5 and shot_prefix.rows_full == 2 * 1  # two calls per batch


@pytest.mark.parametrize("alignment", ["seed", "predict"])
def test_distillation_step_with_prefix_teacher_gives_the_same_loss_and_grads(fixed_setup, alignment):
    model_dir, prefix, batches = fixed_setup
    student = window_lm(model_dir, gradient_checkpointing=True).train()  # train mode, checkpointing on
    results = []
    for teacher in (AdapterDisabledTeacher(student, K, alignment),
                    ShotPrefixTeacher(SharedPrefixTeacher(student, prefix), K, alignment)):
        terms = distillation_loss_step(student, batches[0], teacher, 0.5, alignment)
        terms["loss"].backward()
        grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
        student.zero_grad(set_to_none=True)
        results.append((terms, grads))
    (full, full_grads), (ours, our_grads) = results
    assert float(full["dist_loss"]) > 1e-6
    for name in ("loss", "ce_loss", "dist_loss"):
        torch.testing.assert_close(ours[name], full[name], rtol=1e-5, atol=1e-6)
    for name in full_grads:
        torch.testing.assert_close(our_grads[name], full_grads[name], rtol=1e-4, atol=1e-6)
    assert student.training, "the teacher call restores training mode"


def test_prefix_teacher_with_the_teacher_cache(fixed_setup):
    model_dir, prefix, batches = fixed_setup
    student = window_lm(model_dir).eval()
    shot_prefix = SharedPrefixTeacher(student, prefix)
    online = ShotPrefixTeacher(shot_prefix, K, "seed")
    cache = build_teacher_cache("memory", student, "tiny", K, "seed", "float32", shot_prefix_reuse=True)
    cached = CachedTeacher(online, cache)
    ids, mask = answer_window(batches[1])  # a prefix row and a full-sequence row
    first = cached.top_k(batches[1], ids, mask)
    second = cached.top_k(batches[1], ids, mask)
    assert cache.stats()["misses"] == 2 and cache.stats()["hits"] == 2
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    values, _ = online.top_k(batches[1], ids, mask)
    torch.testing.assert_close(first[0][mask], values[mask], rtol=0, atol=0)
    # The prefix teacher's values get keys of their own (equal to the full teacher's only to rounding).
    assert (teacher_cache_context(student, "tiny", K, "seed", "float32", shot_prefix_reuse=True)
            != teacher_cache_context(student, "tiny", K, "seed", "float32"))


def test_bf16_prefix_teacher_is_within_rounding(fixed_setup):
    """bf16 weights + autocast: the same top-K to about one bf16 ulp of the logits (measured, not exact)."""
    from fewshot_distill.bench.prefix_tolerance import compare_with_full_teacher

    model_dir, prefix, batches = fixed_setup
    student = window_lm(model_dir, bf16=True).eval()
    report = compare_with_full_teacher(SharedPrefixTeacher(student, prefix), batches, K,
                                       autocast_dtype=torch.bfloat16)
    assert report["positions"] > 0 and report["finite"]
    assert report["max_diff_in_bf16_ulps"] <= 4
    assert report["top1_id_agreement"] >= 0.95


# ----------------------------------------------------------------------------- DDP end to end

@pytest.mark.slow
def test_fixed_shots_with_prefix_reuse_and_the_disk_cache_train_under_ddp(tiny_model_dir, tmp_path):
    """One 2-process gloo DDP run wires both config switches: distillation.reuse_shot_prefix (the prefix
    computed once) and distillation.teacher_cache=disk (8 rows, one global batch of 8 per step: the main
    process's 4 rows miss at step 1 and hit at steps 2 and 3, whichever rank computed them). The losses
    equal the full-sequence / uncached teacher's on tensors, in this process:
    test_distillation_step_with_prefix_teacher_gives_the_same_loss_and_grads,
    test_prefix_teacher_with_the_teacher_cache, tests/teachers/test_cache.py."""
    from tests.helpers import read_metrics, train

    out = tmp_path / "run"
    result = train("online_v1", out, tiny_model_dir, "data.shot_sampling=fixed", "training.max_steps=3",
                   "data.max_train_examples=8", "distillation.reuse_shot_prefix=true",
                   "distillation.teacher_cache=disk")
    assert "'shared_shot_prefix': {'prefix_tokens'" in result.stderr  # the end-of-run teacher stats
    assert "'prefix_computations': 1" in result.stderr
    assert "'teacher_cache': {" in result.stderr and "'hits': 8" in result.stderr and "'misses': 4" in result.stderr
    assert any((out / "teacher_cache").rglob("*")), "the disk cache is written under the run's output dir"
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(m["train/dist_loss"] > 0 for m in metrics)
