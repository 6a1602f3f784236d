"""The frozen-copy teacher of full fine-tuning (fewshot_distill/teachers/frozen_copy.py): frozen, never trained,
equal to a freshly loaded base model after training; the shared-prefix teacher and the teacher cache
on it equal it; gradient checkpointing of the student leaves it alone. Tiny Qwen3, float32 on CPU.
The 2-process DDP run and its SIGTERM resume are in tests/training/test_train_e2e.py, the sharded copy in
tests/training/test_fsdp.py."""

from __future__ import annotations

import signal

import pytest
import torch

from fewshot_distill.config import ConfigError, LoraConfig, ModelConfig, load_config
from fewshot_distill.teachers.shot_prefix import SharedPrefixTeacher
from fewshot_distill.models.student import AnswerWindowLM, build_student, load_base_model
from fewshot_distill.teachers.frozen_copy import FrozenCopyTeacher, load_frozen_copy
from fewshot_distill.methods.distill import distillation_loss_step
from fewshot_distill.teachers.shot_prefix import ShotPrefixTeacher
from fewshot_distill.teachers.cache import build_teacher_cache, CachedTeacher
from fewshot_distill.losses.alignment import student_answer_window
from tests.conftest import REPO_ROOT, SMOKE_DATA

K = 8
SEED = 3


def full_model_cfg(model_dir) -> ModelConfig:
    return ModelConfig(name=str(model_dir), finetune="full")


def answer_window(batch):
    _, mask, ids = student_answer_window(batch["student_labels"])
    return ids, mask


@pytest.fixture(scope="module")
def fixed_batches(fixed_shot_batches):
    """(shared prefix, batches with prefix rows and one shot row): conftest's fixed_shot_batches."""
    return fixed_shot_batches


@pytest.mark.parametrize("bf16, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_frozen_copy_is_frozen_in_eval_mode_and_bf16_when_training_in_bf16(tiny_model_dir, bf16, dtype):
    frozen_lm = load_frozen_copy(full_model_cfg(tiny_model_dir), bf16=bf16)
    params = list(frozen_lm.parameters())
    assert params and not any(p.requires_grad for p in params)
    assert {p.dtype for p in params} == {dtype}  # docs/finetune_memory.md counts 2 bytes in bf16
    assert not any(m.training for m in frozen_lm.modules())
    assert not frozen_lm.has_adapter


def test_a_trainable_module_is_refused(tiny_model_dir):
    student = AnswerWindowLM(build_student(full_model_cfg(tiny_model_dir), LoraConfig(), bf16=False))
    with pytest.raises(ValueError, match="needs frozen weights"):
        FrozenCopyTeacher(student, K)


def _train_in_process(model_dir, out, *overrides):
    """The paper's method wired as fewshot_distill/train.py's main() does, in this process (1 process, CPU):
    (run, teacher)."""
    from fewshot_distill.methods import resolve_method, run_identity_fields
    from fewshot_distill.training.loop import parse_training_args, setup_run, train

    argv = ["--config", str(REPO_ROOT / "configs" / "online_v1.yaml"), "--output_dir", str(out),
            f"model.name={model_dir}", f"data.path={SMOKE_DATA}", "model.finetune=full", "training.max_steps=3",
            "training.bf16=false", "training.warmup_steps=0", "training.lr=1e-3", "training.save_steps=100",
            "training.per_device_train_batch_size=2", "training.gradient_accumulation_steps=1",
            "data.num_workers=0", "data.num_fewshot_examples=2", "data.max_train_examples=4",
            f"distillation.n_top_logits={K}", "eval.held_out_examples=0", *overrides]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        args, cfg = parse_training_args(argv, "")
        method = resolve_method(cfg)
        run = setup_run(cfg, args, run_identity_fields(method.name, "fewshot", "full"), with_teacher=True)
        loss_step = method.build_loss_step(cfg, run)
        train(run, loss_step)
    finally:  # the loop's stop handlers must not outlive it in the test process
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return run, loss_step.teacher


def test_frozen_teacher_equals_a_freshly_loaded_base_model_after_full_training(tiny_model_dir, tmp_path,
                                                                                fixed_batches):
    run, teacher = _train_in_process(tiny_model_dir, tmp_path / "run", "distillation.teacher_cache=memory")
    assert isinstance(teacher, CachedTeacher) and isinstance(teacher.online, FrozenCopyTeacher)
    frozen_lm = teacher.frozen_weights
    fresh = AnswerWindowLM(load_base_model(str(tiny_model_dir), bf16=False)).eval()

    # The student trained every weight; the copy none.
    fresh_params = dict(fresh.causal_lm.named_parameters())
    trained = dict(run.trained_model.named_parameters())
    assert all(not torch.equal(trained[n], p) for n, p in fresh_params.items()), "full FT moves every weight"
    for name, param in frozen_lm.causal_lm.named_parameters():
        assert not param.requires_grad and torch.equal(param, fresh_params[name]), name

    _, batches = fixed_batches
    batch = batches[0]
    ids, mask = answer_window(batch)
    positions = torch.arange(batch["teacher_input_ids"].size(1))[None].repeat(ids.size(0), 1)
    with torch.no_grad():
        ours = teacher.online.logits_at(batch["teacher_input_ids"], batch["teacher_attention_mask"], positions)
        base = fresh(batch["teacher_input_ids"], batch["teacher_attention_mask"], positions)
        student = AnswerWindowLM(run.trained_model).eval()(batch["teacher_input_ids"],
                                                           batch["teacher_attention_mask"], positions)
    real = batch["teacher_attention_mask"].bool()
    assert torch.equal(ours[real], base[real])
    assert (student[real] - base[real]).abs().max() > 1e-3, "the trained student must differ from the teacher"
    values, top_ids = teacher.online.top_k(batch, ids, mask)
    fresh_values, fresh_ids = FrozenCopyTeacher(fresh.requires_grad_(False), K).top_k(batch, ids, mask)
    assert torch.equal(values, fresh_values) and torch.equal(top_ids, fresh_ids)

    # The cache key is the starting weights': equal to a fresh base model's context, not the trained one's.
    assert teacher.cache.hits > 0
    fresh_cache = build_teacher_cache("memory", fresh, str(tiny_model_dir), K, "seed", "float32")
    trained_cache = build_teacher_cache("memory", AnswerWindowLM(run.trained_model), str(tiny_model_dir), K, "seed",
                                        "float32")
    assert teacher.cache.context_hash == fresh_cache.context_hash != trained_cache.context_hash


@pytest.mark.parametrize("alignment", ["seed", "predict"])
def test_shared_prefix_on_the_frozen_copy_equals_the_frozen_copy_teacher(tiny_model_dir, fixed_batches, alignment):
    prefix, batches = fixed_batches
    frozen_lm = load_frozen_copy(full_model_cfg(tiny_model_dir), bf16=False)
    plain = FrozenCopyTeacher(frozen_lm, K, alignment)
    shot_prefix = SharedPrefixTeacher(frozen_lm, prefix)
    on_prefix = ShotPrefixTeacher(shot_prefix, K, alignment)
    assert on_prefix.frozen_weights is frozen_lm
    for batch in batches:
        ids, mask = answer_window(batch)
        values, top_ids = on_prefix.top_k(batch, ids, mask)
        plain_values, plain_ids = plain.top_k(batch, ids, mask)
        torch.testing.assert_close(values[mask], plain_values[mask], rtol=0, atol=1e-5)
        assert torch.equal(top_ids[mask], plain_ids[mask])
    assert shot_prefix.rows_on_prefix == 5 and shot_prefix.rows_full == 1


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_cached_frozen_copy_equals_the_frozen_copy_teacher(tiny_model_dir, fixed_batches, mode, tmp_path):
    _, batches = fixed_batches
    frozen_lm = load_frozen_copy(full_model_cfg(tiny_model_dir), bf16=False)
    plain = FrozenCopyTeacher(frozen_lm, K, tail_temperature=2.0)  # with the tail bucket: three tensors
    cache = build_teacher_cache(mode, plain.frozen_weights, "tiny", K, "seed", "float32", folder=tmp_path,
                                tail_temperature=2.0)
    cached = CachedTeacher(plain, cache)
    for _ in range(2):  # misses, then hits
        for batch in batches:
            ids, mask = answer_window(batch)
            for ours, reference in zip(cached.top_k(batch, ids, mask), plain.top_k(batch, ids, mask)):
                assert torch.equal(ours[mask], reference[mask])
    assert cache.stats()["misses"] == 6 and cache.stats()["hits"] == 6


def _distillation_grads(model_dir, batch, gradient_checkpointing: bool):
    student = AnswerWindowLM(build_student(full_model_cfg(model_dir), LoraConfig(), bf16=False,
                                           gradient_checkpointing=gradient_checkpointing)).train()
    teacher = FrozenCopyTeacher(load_frozen_copy(full_model_cfg(model_dir), bf16=False), K)
    # One step first, so student and teacher differ when the gradients are taken.
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    distillation_loss_step(student, batch, teacher, 0.5, "seed")["loss"].backward()
    optimizer.step()
    optimizer.zero_grad()
    terms = distillation_loss_step(student, batch, teacher, 0.5, "seed")
    terms["loss"].backward()
    assert not teacher.window_lm.training and not teacher.window_lm.causal_lm.is_gradient_checkpointing
    assert all(p.grad is None for p in teacher.window_lm.parameters())
    return terms, {n: p.grad.clone() for n, p in student.named_parameters()}


def test_gradient_checkpointing_of_the_student_gives_the_same_full_distillation_gradients(tiny_model_dir,
                                                                                         fixed_batches):
    _, batches = fixed_batches
    (plain_terms, plain), (ckpt_terms, checkpointed) = (_distillation_grads(tiny_model_dir, batches[0], flag)
                                                        for flag in (False, True))
    assert float(plain_terms["dist_loss"]) > 1e-6
    for name in ("ce_loss", "dist_loss"):
        torch.testing.assert_close(ckpt_terms[name], plain_terms[name], rtol=1e-5, atol=1e-7)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("override, message", [
    ("distillation.teacher_cache=memory", "set distillation.teacher_cache=none"),
    ("distillation.reuse_shot_prefix=true", "set distillation.reuse_shot_prefix=false"),
])
def test_full_distillation_under_fsdp_refuses_cache_and_prefix_reuse_in_one_line(override, message):
    from accelerate.utils import DistributedType

    from fewshot_distill.teachers import check_teacher_config
    from fewshot_distill.training.loop import check_sharding

    base = ["model.finetune=full", "eval.held_out_examples=0", "data.shot_sampling=fixed"]
    config = REPO_ROOT / "configs" / "online_v1.yaml"
    check_sharding(load_config(config, base), DistributedType.FSDP)  # the frozen copy alone: fine
    check_teacher_config(load_config(config, base), fsdp=True)
    check_teacher_config(load_config(config, base + [override]), fsdp=False)  # DDP: fine
    with pytest.raises(ConfigError, match=message) as error:
        check_teacher_config(load_config(config, base + [override]), fsdp=True)
    assert "\n" not in str(error.value)


def test_the_copy_holds_the_bytes_the_memory_table_counts(tiny_model_dir):
    """docs/finetune_memory.md's teacher column (2 bytes per parameter in bf16) is what load_frozen_copy holds."""
    from transformers import AutoConfig

    from fewshot_distill.bench.finetune_memory import memory_row

    row = memory_row("tiny", AutoConfig.from_pretrained(tiny_model_dir))
    frozen_lm = load_frozen_copy(full_model_cfg(tiny_model_dir), bf16=True)
    assert sum(p.numel() * p.element_size() for p in frozen_lm.parameters()) == row.full_bytes()["teacher"]


def test_fsdp_version_1_is_a_one_line_error(tiny_model_dir):
    from types import SimpleNamespace

    accelerator = SimpleNamespace(distributed_type="FSDP", state=SimpleNamespace(fsdp_plugin=SimpleNamespace(fsdp_version=1)))
    with pytest.raises(ConfigError, match="set fsdp_version: 2") as error:
        load_frozen_copy(full_model_cfg(tiny_model_dir), bf16=True, accelerator=accelerator)
    assert "\n" not in str(error.value)
