"""On-policy distillation (fewshot_distill/methods/onpolicy.py, sampling in fewshot_distill/training/sampling.py): the teacher scores exactly the student's sampled
ids, a 0-shot base teacher gives a zero divergence at the first step, samples are seeded per example,
empty samples are masked, mixed batches split gold and sampled rows, the live teacher is the student
reading the context, the gold path keeps the pre-on-policy losses to the bit, and the config refuses
combinations that cannot work."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fewshot_distill.config import ConfigError, load_config
from fewshot_distill.data.examples import assemble_batch, batch_prompts, build_examples, collate_examples, load_task_rows
from fewshot_distill.models.generation import GeneratedTokens
from fewshot_distill.models.student import AnswerWindowLM
from fewshot_distill.methods import onpolicy as P
from fewshot_distill.training import sampling as S
from fewshot_distill.training.loop import TRAINED_TOKENS, trained_tokens
from fewshot_distill.methods.distill import distillation_loss_step
from fewshot_distill.losses.alignment import targets_on_window
from fewshot_distill.teachers.base import AdapterDisabledTeacher, LiveTeacher
from fewshot_distill.losses.alignment import student_answer_window, teacher_answer_positions
from fewshot_distill.losses.divergences import LossSpec, MSE, top_k_logits
from fewshot_distill.losses.window_kernel import answer_window_losses
from tests.conftest import REPO_ROOT, SMOKE_DATA, build_lora_student, smoke_data_cfg

K = 8
REVERSE_KL = LossSpec("reverse_kl")


@pytest.fixture(scope="module")
def setup(smoke_examples):
    tokenizer, fewshot = smoke_examples
    cfg = smoke_data_cfg()
    rows = load_task_rows(cfg, "train")
    zeroshot, _ = build_examples(rows, tokenizer, cfg, seed=42, with_teacher=True, indices=range(6),
                                 teacher_context="zeroshot")
    return tokenizer, fewshot[:6], zeroshot


def fresh_student(model_dir, trained: bool) -> AnswerWindowLM:
    """A student as training starts (lora_B = 0) or one that moved away from its base weights."""
    return AnswerWindowLM(build_lora_student(model_dir, seed=0, lora_b_std=0.05 if trained else None))


def sampler_for(student, tokenizer, max_new_tokens=6, seed=42) -> S.StudentSampler:
    return S.StudentSampler(student.wrapped_model, tokenizer, S.SampleSettings(max_new_tokens, 1.0, 1.0, seed))


def test_teacher_scores_exactly_the_sampled_ids(setup, tiny_model_dir):
    """Teacher top-K at the answer positions of the on-policy batch = the top-K of one full forward of
    the base model over [teacher prompt][sampled ids], row by row (no padding, nothing re-tokenized)."""
    tokenizer, examples, _ = setup
    student = fresh_student(tiny_model_dir, trained=True)
    gold = collate_examples(examples[:4], tokenizer.pad_token_id)
    student_prompts, teacher_prompts = batch_prompts(gold)
    sampler = sampler_for(student, tokenizer)
    samples = sampler.sample(student_prompts, gold["example_index"].tolist())
    batch = assemble_batch(student_prompts, samples.token_ids, gold["example_index"].tolist(),
                           tokenizer.pad_token_id, teacher_prompts)
    _, answer_mask, answer_ids = student_answer_window(batch["student_labels"])
    for alignment in ("seed", "predict"):
        values, ids = AdapterDisabledTeacher(student, K, alignment).top_k(batch, answer_ids, answer_mask)
        base = student.wrapped_model.get_base_model()
        for row, (prompt, sample) in enumerate(zip(teacher_prompts, samples.token_ids)):
            sequence = torch.tensor([prompt + sample])
            with torch.no_grad(), student.wrapped_model.disable_adapter():
                logits = base(input_ids=sequence).logits[0]
            start = len(prompt) - (1 if alignment == "predict" else 0)
            full = logits[start: start + len(sample)]
            expected_values, expected_ids = full.topk(K, dim=-1)
            n = len(sample)
            torch.testing.assert_close(values[row, :n], expected_values.float(), atol=1e-5, rtol=1e-5)
            assert torch.equal(ids[row, :n], expected_ids)
            # the teacher sequence ends with the sampled ids themselves
            length = int(batch["teacher_attention_mask"][row].sum())
            assert batch["teacher_input_ids"][row, length - n: length].tolist() == sample


def test_zeroshot_base_teacher_gives_zero_divergence_at_the_first_step(setup, tiny_model_dir):
    """Step 1: the student (lora_B = 0) is the base model, and a 0-shot teacher reads the student's own
    sequence, so the on-policy reverse KL is 0; the few-shot teacher's is not."""
    tokenizer, fewshot, zeroshot = setup
    student = fresh_student(tiny_model_dir, trained=False)
    divergences = {}
    for name, examples in (("zeroshot", zeroshot), ("fewshot", fewshot)):
        batch = collate_examples(examples[:4], tokenizer.pad_token_id)
        terms = P.onpolicy_loss_step(student, batch, AdapterDisabledTeacher(student, K), sampler_for(student, tokenizer),
                                     "student", 1.0, "seed", REVERSE_KL, pad_token_id=tokenizer.pad_token_id)
        assert float(terms["ce_loss"]) == 0.0  # no CE on samples
        divergences[name] = float(terms["dist_loss"])
    assert abs(divergences["zeroshot"]) < 1e-6
    assert divergences["fewshot"] > 1e-4


def test_samples_are_seeded_per_step_and_example_not_per_batch(setup, tiny_model_dir):
    tokenizer, examples, _ = setup
    student = fresh_student(tiny_model_dir, trained=True)
    sampler = sampler_for(student, tokenizer, max_new_tokens=8)
    prompts = [e.student_prompt_ids for e in examples]
    alone = sampler.sample(prompts[2:3], [examples[2].index])
    together = sampler.sample([prompts[0], prompts[2], prompts[4]], [e.index for e in examples[0:5:2]])
    assert together.token_ids[1] == alone.token_ids[0]

    class AtStep:
        step = 5

    later = S.StudentSampler(student.wrapped_model, tokenizer, sampler.settings, run=AtStep())
    assert later.sample(prompts[2:3], [examples[2].index]).token_ids != alone.token_ids  # another step
    assert S.row_seed(42, 1, 3) != S.row_seed(42, 1, 4) != S.row_seed(42, 2, 3)
    assert student.wrapped_model.training  # sampling restores the caller's mode


def test_mixed_rows_split_the_batch_and_ce_only_on_gold_rows(setup, tiny_model_dir):
    tokenizer, examples, _ = setup
    chosen = S.sampled_rows(4, "mixed", 0.5, 42, 1, [7, 8, 9, 10])
    assert sum(chosen) == 2 and chosen == S.sampled_rows(4, "mixed", 0.5, 42, 1, [7, 8, 9, 10])
    assert S.sampled_rows(4, "student", 0.5, 42, 1, [0] * 4) == [True] * 4
    assert sum(S.sampled_rows(3, "mixed", 0.25, 42, 1, [0, 1, 2])) == 1

    student = fresh_student(tiny_model_dir, trained=True)
    batch = collate_examples(examples[:4], tokenizer.pad_token_id)
    sampler = sampler_for(student, tokenizer)
    terms = P.onpolicy_loss_step(student, batch, AdapterDisabledTeacher(student, K), sampler, "mixed", 0.5,
                                 "seed", REVERSE_KL, student_fraction=0.5, pad_token_id=tokenizer.pad_token_id)
    # CE of the gold rows alone, computed on the gold batch
    rows = [row for row, c in enumerate(S.sampled_rows(4, "mixed", 0.5, 42, 1, batch["example_index"].tolist()))
            if not c]
    gold_only = collate_examples([examples[r] for r in rows], tokenizer.pad_token_id)
    positions, mask, ids = student_answer_window(gold_only["student_labels"])
    with torch.no_grad():
        logits = student(gold_only["student_input_ids"], gold_only["student_attention_mask"], positions)
    expected_ce, _ = answer_window_losses(logits, *targets_on_window(ids, mask))
    torch.testing.assert_close(terms["ce_loss"], expected_ce, atol=1e-5, rtol=1e-5)
    assert float(terms["dist_loss"]) > 0 and float(terms["empty_samples"]) == 0
    torch.testing.assert_close(terms["loss"].detach(), terms["ce_loss"] + 0.5 * terms["dist_loss"])


def test_an_empty_sample_is_masked_and_counted(setup, tiny_model_dir):
    eos = {2}
    answers, empty = S.answers_from_samples(GeneratedTokens([[5, 6, 2], [2], [7, 8]], [True, True, False]), eos)
    assert answers == [[5, 6, 2], [2], [7, 8]] and empty == [False, True, False]
    answers, empty = S.answers_from_samples(GeneratedTokens([[]], [False]), eos)
    assert answers == [[2]] and empty == [True]

    tokenizer, examples, _ = setup
    student = fresh_student(tiny_model_dir, trained=True)
    sampler = sampler_for(student, tokenizer)
    sampler.sample = lambda prompts, index: GeneratedTokens([[sampler.tokenizer.eos_token_id]] * len(prompts),
                                                            [True] * len(prompts))
    batch = collate_examples(examples[:2], tokenizer.pad_token_id)
    terms = P.onpolicy_loss_step(student, batch, AdapterDisabledTeacher(student, K), sampler, "student", 1.0,
                                 "seed", REVERSE_KL, pad_token_id=tokenizer.pad_token_id)
    assert float(terms["empty_samples"]) == 2 and float(terms["dist_loss"]) == 0.0
    terms["loss"].backward()  # an all-masked batch still has a graph


def test_live_teacher_is_the_student_reading_the_teacher_context(setup, tiny_model_dir):
    tokenizer, examples, _ = setup
    student = fresh_student(tiny_model_dir, trained=True)
    student.train()
    batch = collate_examples(examples[:3], tokenizer.pad_token_id)
    _, mask, ids = student_answer_window(batch["student_labels"])
    live_values, live_ids = LiveTeacher(student, K).top_k(batch, ids, mask)
    assert student.training and not LiveTeacher.cacheable
    positions = teacher_answer_positions(batch["teacher_attention_mask"].sum(dim=1), mask.sum(dim=1), ids.size(1))
    with torch.no_grad():
        expected = student.eval()(batch["teacher_input_ids"], batch["teacher_attention_mask"], positions)
    values, top_ids = top_k_logits(expected, K)
    assert torch.equal(live_values, values) and torch.equal(live_ids, top_ids)
    base_values, _ = AdapterDisabledTeacher(student, K).top_k(batch, ids, mask)
    assert not torch.allclose(base_values, live_values)  # adapter on: not the base model


def old_distillation_loss_step(student, batch, teacher, lambda_distill, alignment, loss=MSE):
    """distillation_loss_step as of db63886 (before the on-policy row masks), for the gold-path check."""
    window_positions, answer_mask, answer_ids = student_answer_window(batch["student_labels"])
    teacher_values, teacher_ids, *teacher_tail = teacher.top_k(batch, answer_ids, answer_mask)
    window_logits = student(batch["student_input_ids"], batch["student_attention_mask"], window_positions)
    shift = 1 if alignment == "seed" else 0
    ce_loss, dist_loss = answer_window_losses(
        window_logits, *targets_on_window(answer_ids, answer_mask),
        teacher_ids=F.pad(teacher_ids, (0, 0, shift, 1 - shift)),
        teacher_values=F.pad(teacher_values, (0, 0, shift, 1 - shift)),
        distill_mask=F.pad(answer_mask, (shift, 1 - shift), value=False), loss=loss,
        teacher_tail=F.pad(teacher_tail[0], (shift, 1 - shift)) if teacher_tail else None)
    total = ce_loss + lambda_distill * dist_loss
    return {"loss": total, "ce_loss": ce_loss.detach(), "dist_loss": dist_loss.detach()}


@pytest.mark.parametrize("alignment", ["seed", "predict"])
@pytest.mark.parametrize("loss", [MSE, LossSpec("reverse_kl", 2.0, topk_tail="bucket")])
def test_gold_path_losses_and_gradients_equal_the_code_before_on_policy(setup, tiny_model_dir, alignment, loss):
    tokenizer, examples, _ = setup
    student = fresh_student(tiny_model_dir, trained=True)
    teacher = AdapterDisabledTeacher(student, K, alignment, loss.temperature if loss.with_tail else None)
    batch = collate_examples(examples[:4], tokenizer.pad_token_id)
    results = []
    for step in (distillation_loss_step, old_distillation_loss_step):
        student.zero_grad(set_to_none=True)
        terms = step(student, batch, teacher, 0.5, alignment, loss=loss)
        terms["loss"].backward()
        grads = [p.grad.clone() for p in student.parameters() if p.requires_grad]
        results.append((terms, grads))
    (new, new_grads), (old, old_grads) = results
    for name in ("loss", "ce_loss", "dist_loss"):
        assert torch.equal(new[name].detach(), old[name].detach()), name
    assert all(torch.equal(a, b) for a, b in zip(new_grads, old_grads))


def test_one_sampling_call_per_step_gives_the_per_micro_batch_samples_losses_and_grads(setup, tiny_model_dir):
    """Two micro-batches of one optimizer step: sampled in one call before the first forward
    (sample_step) or one call per micro-batch as before. The same samples bit for bit, the same loss
    terms and the same accumulated gradients (one process). `mixed`: sampled and gold rows both."""
    answer_source = "mixed"
    tokenizer, _, examples = setup  # 0-shot teacher sequences: short, and the same code path
    batches = [collate_examples(examples[i:i + 3], tokenizer.pad_token_id) for i in (0, 3)]
    student = fresh_student(tiny_model_dir, trained=True)
    teacher = AdapterDisabledTeacher(student, K)
    results = []
    for one_call in (False, True):
        student.zero_grad(set_to_none=True)
        sampler = sampler_for(student, tokenizer, max_new_tokens=6)
        calls, drawn = [], []
        draw = sampler.draw
        sampler.draw = lambda prompts, index: calls.append(list(index)) or draw(prompts, index)
        sample = sampler.sample
        sampler.sample = lambda prompts, index: drawn.append(sample(prompts, index)) or drawn[-1]
        if one_call:
            sampler.sample_step(batches, answer_source, 0.5)
        terms = []
        for batch in batches:
            step_terms = P.onpolicy_loss_step(student, batch, teacher, sampler, answer_source, 1.0, "seed",
                                              REVERSE_KL, student_fraction=0.5, pad_token_id=tokenizer.pad_token_id)
            (step_terms["loss"] / len(batches)).backward()
            terms.append(step_terms)
        grads = [p.grad.clone() for p in student.parameters() if p.requires_grad]
        results.append((calls, drawn, terms, grads))
    (calls_a, drawn_a, terms_a, grads_a), (calls_b, drawn_b, terms_b, grads_b) = results
    assert len(calls_a) == 2 and len(calls_b) == 1  # one call per micro-batch before, one per step now
    assert sorted(calls_b[0]) == sorted(i for c in calls_a for i in c)
    assert [d.token_ids for d in drawn_a] == [d.token_ids for d in drawn_b]
    assert [d.ended_with_eos for d in drawn_a] == [d.ended_with_eos for d in drawn_b]
    for a, b in zip(terms_a, terms_b):
        for name in ("loss", "ce_loss", "dist_loss", "sample_len", "empty_samples"):
            assert torch.equal(a[name].detach(), b[name].detach()), name
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    assert float(terms_b[0]["gen_seconds"]) > 0  # the step's call is counted on its first micro-batch


def test_step_lookahead_hands_each_optimizer_step_to_begin_step_before_its_first_micro_batch():
    from fewshot_distill.training.loop import with_step_lookahead

    events = []
    for batch in with_step_lookahead(range(7), 3, lambda group: events.append(list(group))):
        events.append(batch)
    assert events == [[0, 1, 2], 0, 1, 2, [3, 4, 5], 3, 4, 5, [6], 6]


@pytest.mark.parametrize("overrides, message", [
    (["distillation.teacher_weights=live", "distillation.teacher_cache=memory"], "cannot be cached"),
    (["distillation.teacher_weights=live", "distillation.reuse_shot_prefix=true", "data.shot_sampling=fixed"],
     "reuse_shot_prefix=false"),
    (["distillation.student_fraction=1.0"], "student_fraction must be in"),
    (["distillation.teacher_weights=frozen"], "teacher_weights must be one of"),
    (["generation.max_new_tokens=0"], "generation.max_new_tokens"),
    (["generation.backend=sglang"], "generation.backend must be one of"),
    (["generation.vllm_weight_sync=delta"], "generation.vllm_weight_sync must be one of"),
    (["generation.vllm_gpu_memory_utilization=0"], "vllm_gpu_memory_utilization must be in"),
])
def test_impossible_on_policy_combinations_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(REPO_ROOT / "configs" / "online_v1.yaml", overrides)
    assert "\n" not in str(error.value)


def test_the_on_policy_configs_load_and_name_their_methods():
    from fewshot_distill.methods import method_of_answer_source, resolve_method

    for path in ("configs/onpolicy.yaml", "configs/mini/onpolicy.yaml"):
        cfg = load_config(REPO_ROOT / path)
        assert cfg.method == "onpolicy" and cfg.distillation.loss == "reverse_kl"
        assert resolve_method(cfg).answer_source == "student"
    # the deprecated distillation.answer_source still names the same methods
    assert method_of_answer_source("gold") == "online_v1" and method_of_answer_source("mixed") == "onpolicy_mixed"
    # shared prefix with student samples and fixed shots is allowed
    load_config(REPO_ROOT / "configs/onpolicy.yaml", ["data.shot_sampling=fixed", "distillation.reuse_shot_prefix=true"])


@pytest.mark.parametrize("method, overrides", [
    ("onpolicy", ["distillation.teacher_cache=memory"]), ("onpolicy_mixed", ["distillation.teacher_cache=disk"])])
def test_on_policy_methods_refuse_the_teacher_cache_in_one_line(method, overrides):
    from fewshot_distill.methods import resolve_method

    cfg = load_config(REPO_ROOT / "configs" / "online_v1.yaml", [f"method={method}", *overrides])
    with pytest.raises(ConfigError, match="needs gold answers.*set distillation.teacher_cache=none") as error:
        resolve_method(cfg)
    assert "\n" not in str(error.value)


def test_every_on_policy_config_scores_with_the_dropout_free_model_that_sampled():
    """LoRA dropout is off while sampling (eval mode); the scored forward must match it (GKD sets 0 too)."""
    from fewshot_distill.methods import resolve_method

    on_policy = []
    for path in sorted(REPO_ROOT.glob("configs/*.yaml")) + sorted(REPO_ROOT.glob("configs/*/*.yaml")):
        if path.parent.name in ("accelerate", "tasks", "studies"):  # not training configs
            continue
        cfg = load_config(path)
        if resolve_method(cfg).answer_source in ("student", "mixed"):
            on_policy.append(path.name)
            assert cfg.lora.dropout == 0.0, path
    assert len(on_policy) >= 2  # configs/onpolicy.yaml and configs/mini/onpolicy.yaml


@pytest.mark.parametrize("method", ["onpolicy", "onpolicy_mixed"])
def test_on_policy_under_fsdp_is_a_one_line_error_naming_ddp_and_lora(method, monkeypatch):
    """Sampling under FSDP would run the inner model on sharded weights, and ranks would stop decoding
    at different steps (different numbers of all-gathers): refused, pointing at DDP (full or LoRA)."""
    from fewshot_distill.methods import resolve_method

    overrides = [f"method={method}", "model.finetune=full", "eval.held_out_examples=0"]
    cfg = load_config(REPO_ROOT / "configs" / "onpolicy.yaml", overrides)
    resolve_method(cfg)  # DDP: fine
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --config_file fsdp.yaml` sets
    with pytest.raises(ConfigError, match="not supported under FSDP.*DDP.*model.finetune=lora") as error:
        resolve_method(cfg)
    assert "\n" not in str(error.value)
    gold = load_config(REPO_ROOT / "configs" / "onpolicy.yaml", overrides[1:] + ["method=online_v1"])
    resolve_method(gold)  # gold distillation under FSDP: fine


def test_trained_tokens_are_the_reported_count_else_the_batch_tokens():
    batch = {"student_attention_mask": torch.tensor([[0, 1, 1], [1, 1, 1]])}
    assert trained_tokens({"loss": torch.zeros(())}, batch) == 5
    assert trained_tokens({"loss": torch.zeros(()), TRAINED_TOKENS: torch.tensor(11)}, batch) == 11


def test_the_on_policy_step_reports_the_tokens_of_the_batch_it_trained_on(setup, tiny_model_dir):
    """The student's tokens of the re-assembled batch: each prompt + its sample (the sampled row) or its
    gold answer (the other), not the gold batch's."""
    tokenizer, examples, _ = setup
    student = fresh_student(tiny_model_dir, trained=True)
    gold = collate_examples(examples[:2], tokenizer.pad_token_id)
    sampler = sampler_for(student, tokenizer)
    terms = P.onpolicy_loss_step(student, gold, AdapterDisabledTeacher(student, K), sampler, "mixed", 1.0,
                                 "seed", REVERSE_KL, student_fraction=0.5, pad_token_id=tokenizer.pad_token_id)
    index = gold["example_index"].tolist()
    chosen = S.sampled_rows(2, "mixed", 0.5, sampler.settings.seed, sampler.step, index)
    assert chosen.count(True) == 1  # one sampled row, one gold row
    expected = 0
    for row, example in enumerate(examples[:2]):
        sample = sampler.sample([example.student_prompt_ids], [index[row]]).token_ids[0]  # seeded per example
        answer = sample if chosen[row] else S.gold_answers(gold)[row]
        expected += len(example.student_prompt_ids) + len(answer)
    assert int(terms[TRAINED_TOKENS]) == expected
    assert expected != int(gold["student_attention_mask"].sum())


def test_the_loop_counts_the_sampled_tokens_into_tokens_per_s(tiny_model_dir, tmp_path, monkeypatch):
    """One on-policy step of full fine-tuning in this process: the tokens behind train/tokens_per_s are the
    prompts plus the samples written to samples.jsonl, and the count is not logged as a loss term."""
    import json
    import signal

    from fewshot_distill.methods import resolve_method, run_identity_fields
    from fewshot_distill.training import loop

    counted = []
    reduce_window = loop._reduce_window

    def recording_reduce_window(accelerator, window, *args):
        counted.append(window.tokens)
        return reduce_window(accelerator, window, *args)

    monkeypatch.setattr(loop, "_reduce_window", recording_reduce_window)
    out = tmp_path / "run"
    argv = ["--config", str(REPO_ROOT / "configs" / "onpolicy.yaml"), "--output_dir", str(out),
            f"model.name={tiny_model_dir}", f"data.path={SMOKE_DATA}", "model.finetune=full", "training.max_steps=1",
            "training.bf16=false", "training.save_steps=100", "training.logging_steps=1",
            "training.per_device_train_batch_size=2", "training.gradient_accumulation_steps=1",
            "data.num_workers=0", "data.num_fewshot_examples=2", "data.max_train_examples=4",
            f"distillation.n_top_logits={K}", "eval.held_out_examples=0", "generation.max_new_tokens=4"]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        args, cfg = loop.parse_training_args(argv, "")
        method = resolve_method(cfg)
        run = loop.setup_run(cfg, args, run_identity_fields(method.name, "fewshot", "full"), with_teacher=True)
        loop.train(run, method.build_loss_step(cfg, run))
    finally:  # the loop's stop handlers must not outlive it in the test process
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    samples = [json.loads(line) for line in (out / S.SAMPLES_FILE).read_text().splitlines()]
    assert len(samples) == 2
    by_index = {e.index: e for e in run.examples}
    assert counted == [sum(len(by_index[s["example_index"]].student_prompt_ids) + s["length"] for s in samples)]
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["train/tokens_per_s"] > 0 and "train/" + TRAINED_TOKENS not in logged[-1]
