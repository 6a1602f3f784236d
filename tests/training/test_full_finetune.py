"""model.finetune=full: config, the trainable model, whole-model checkpoints (sharded), resume, run identity.

Fast tests on the tiny Qwen3 (tied embeddings, like Qwen3-1.7B). The 2-process DDP runs and the
SIGTERM resume of a full SFT run are in tests/training/test_train_e2e.py; a full checkpoint through vLLM and
the HF backend in tests/eval/test_eval_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fewshot_distill.config import ConfigError, LoraConfig, ModelConfig, load_config
from fewshot_distill.training.checkpoint import (MODEL_WEIGHTS_INDEX, CheckpointError, find_resume_checkpoint,
                                     load_checkpoint, save_checkpoint, save_final, verify_checkpoint,
                                     weight_files)
from fewshot_distill.losses.alignment import student_answer_window, teacher_answer_positions
from tests.conftest import REPO_ROOT


def test_finetune_defaults_to_lora_and_rejects_other_values():
    assert load_config(REPO_ROOT / "configs" / "base.yaml").model.finetune == "lora"
    assert load_config(REPO_ROOT / "configs" / "base.yaml", ["model.finetune=full"]).model.finetune == "full"
    with pytest.raises(ConfigError, match=r"model.finetune must be one of \('lora', 'full'\), got 'qlora'") as error:
        load_config(REPO_ROOT / "configs" / "base.yaml", ["model.finetune=qlora"])
    assert "\n" not in str(error.value)


def test_full_student_trains_every_weight_in_float32_and_lora_keeps_bf16_base(tiny_model_dir):
    from fewshot_distill.models.student import AnswerWindowLM, build_student, has_adapter

    full = build_student(ModelConfig(name=str(tiny_model_dir), finetune="full"), LoraConfig(), bf16=True)
    assert not has_adapter(full)
    params = list(full.parameters())
    assert all(p.requires_grad for p in params) and {p.dtype for p in params} == {torch.float32}
    assert AnswerWindowLM(full).causal_lm is full

    lora = build_student(ModelConfig(name=str(tiny_model_dir)), LoraConfig(), bf16=True)
    assert has_adapter(lora)
    frozen = [p for p in lora.parameters() if not p.requires_grad]
    assert frozen and {p.dtype for p in frozen} == {torch.bfloat16}
    assert {p.dtype for p in lora.parameters() if p.requires_grad} == {torch.float32}


def _sft_grads(tiny_model_dir, gradient_checkpointing: bool) -> dict[str, torch.Tensor]:
    from fewshot_distill.data.examples import build_examples, collate_examples, load_task_rows
    from fewshot_distill.models.student import AnswerWindowLM, build_student, load_tokenizer
    from fewshot_distill.methods.sft import sft_loss_step
    from tests.conftest import smoke_data_cfg

    data_cfg = smoke_data_cfg()
    tokenizer = load_tokenizer(str(tiny_model_dir))
    rows = load_task_rows(data_cfg, "train")
    examples, _ = build_examples(rows, tokenizer, data_cfg, seed=0, with_teacher=False, indices=[0, 1])
    batch = collate_examples(examples, pad_token_id=tokenizer.pad_token_id)
    model = build_student(ModelConfig(name=str(tiny_model_dir), finetune="full"), LoraConfig(), bf16=False,
                          gradient_checkpointing=gradient_checkpointing)
    model.train()
    sft_loss_step(AnswerWindowLM(model), batch)["loss"].backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_gradient_checkpointing_gives_the_same_full_gradients(tiny_model_dir):
    plain, checkpointed = _sft_grads(tiny_model_dir, False), _sft_grads(tiny_model_dir, True)
    assert plain.keys() == checkpointed.keys()
    assert all(g.abs().max() > 0 for g in plain.values() if g.numel() > 0)  # every weight gets a gradient
    for name in plain:  # recomputation repeats the same float32 ops
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7)


class FullTrainee:
    """A tiny fully trainable model with its optimizer and scheduler, as the loop holds them."""

    def __init__(self, model_dir: Path):
        from transformers import get_cosine_schedule_with_warmup

        from fewshot_distill.models.student import build_student, load_tokenizer

        self.tokenizer = load_tokenizer(str(model_dir))
        self.model = build_student(ModelConfig(name=str(model_dir), finetune="full"), LoraConfig(), bf16=False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, 1, 10)

    def step(self) -> None:
        ids = torch.arange(12).reshape(2, 6) + 5
        self.model(input_ids=ids, labels=ids).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.scheduler.step()

    def save(self, folder: Path, step: int, max_shard_size: str) -> Path:
        from accelerate import Accelerator

        state = {"step": step, "examples_seen": step,
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        return save_checkpoint(Accelerator(cpu=True), folder, self.model, self.tokenizer, "run: test\n", state,
                               max_shard_size=max_shard_size)


@pytest.fixture(scope="module")
def full_run(tiny_model_dir, tmp_path_factory):
    """checkpoint-2 (one file) and checkpoint-3 (sharded) of a full run, final/ sharded; the trainee at step 3."""
    out = tmp_path_factory.mktemp("full_run") / "run"
    trainee = FullTrainee(tiny_model_dir)
    trainee.step(), trainee.step()
    trainee.save(out / "checkpoint-2", 2, max_shard_size="5GB")
    trainee.step()
    trainee.save(out / "checkpoint-3", 3, max_shard_size="200KB")
    save_final(out / "final", trainee.model, trainee.tokenizer, "run: test\n", max_shard_size="200KB")
    return out, trainee


def test_full_checkpoint_is_a_model_sharded_when_large_and_verifies(full_run):
    from fewshot_distill.eval.conditions import checkpoint_kind

    out, _ = full_run
    assert weight_files(out / "checkpoint-2") == ["model.safetensors"]
    shards = weight_files(out / "checkpoint-3")
    assert len(shards) > 1 and (out / "checkpoint-3" / MODEL_WEIGHTS_INDEX).is_file()
    for name in ("checkpoint-2", "checkpoint-3", "final"):
        assert checkpoint_kind(out / name) == "full"
        assert verify_checkpoint(out / name).status == "ok"
        assert not (out / name / "adapter_config.json").exists()
    assert not (out / "final" / "training_state.pt").exists()


def test_final_loads_with_from_pretrained_equal_to_the_trained_weights(full_run):
    from transformers import AutoModelForCausalLM

    out, trainee = full_run
    loaded = AutoModelForCausalLM.from_pretrained(out / "final", dtype=torch.float32)
    trained = dict(trainee.model.named_parameters())
    for name, param in loaded.named_parameters():
        assert torch.equal(param, trained[name]), name


def test_resume_restores_full_weights_optimizer_and_continues_identically(full_run, tiny_model_dir):
    out, trainee = full_run
    resumed = FullTrainee(tiny_model_dir)
    state = load_checkpoint(out / "checkpoint-3", resumed.model, resumed.optimizer, resumed.scheduler, 0)
    assert state["step"] == 3
    for (name, a), (_, b) in zip(resumed.model.named_parameters(), trainee.model.named_parameters()):
        assert torch.equal(a, b), name
    # one more step from the restored state equals one more step of a model trained without the break
    reference = FullTrainee(tiny_model_dir)
    load_checkpoint(out / "checkpoint-3", reference.model, reference.optimizer, reference.scheduler, 0)
    uninterrupted = FullTrainee(tiny_model_dir)
    for _ in range(3):
        uninterrupted.step()
    resumed.step(), uninterrupted.step()
    for (name, a), (_, b) in zip(resumed.model.named_parameters(), uninterrupted.model.named_parameters()):
        assert torch.equal(a, b), name
    assert resumed.scheduler.state_dict() == uninterrupted.scheduler.state_dict()


def test_a_damaged_shard_sends_resume_back_to_the_previous_checkpoint(full_run, tmp_path):
    import shutil

    from tests.helpers import flip_bytes

    out = tmp_path / "run"
    shutil.copytree(full_run[0], out)
    shard = weight_files(out / "checkpoint-3")[-1]
    flip_bytes(out / "checkpoint-3" / shard)
    folder, notes = find_resume_checkpoint(out)
    assert folder == out / "checkpoint-2"
    assert f"{shard}: sha256 differs" in notes[0]


def test_checkpoint_of_the_other_finetune_mode_is_a_one_line_error(full_run, tiny_model_dir, tmp_path):
    from fewshot_distill.models.student import build_student

    out, _ = full_run
    lora = build_student(ModelConfig(name=str(tiny_model_dir)), LoraConfig(), bf16=False)
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad])
    with pytest.raises(CheckpointError, match="holds a full model: resume with model.finetune=full") as error:
        load_checkpoint(out / "checkpoint-2", lora, optimizer, None, 0)
    assert "\n" not in str(error.value)
    lora.save_pretrained(tmp_path / "adapter")
    full = FullTrainee(tiny_model_dir)
    with pytest.raises(CheckpointError, match="holds a LoRA adapter: resume with model.finetune=lora"):
        load_checkpoint(tmp_path / "adapter", full.model, full.optimizer, full.scheduler, 0)


def test_full_weights_of_another_model_are_refused(full_run, tmp_path):
    from fewshot_distill.models.tiny_model import build_tiny_qwen3

    out, _ = full_run
    other_dir = tmp_path / "other"
    build_tiny_qwen3(other_dir, num_layers=1)
    other = FullTrainee(other_dir)
    with pytest.raises(CheckpointError, match=r"do not match this model .*unexpected \['model.layers.1"):
        load_checkpoint(out / "checkpoint-2", other.model, other.optimizer, other.scheduler, 0)


def test_run_identity_names_full_runs_and_reads_old_run_info_as_lora(tmp_path):
    from fewshot_distill.methods import read_run_identity, run_identity_fields

    assert run_identity_fields("baseline", None, "full") == {
        "method": "baseline", "condition": "baseline_full", "teacher_context": None, "finetune": "full"}
    assert run_identity_fields("online_v1", "zeroshot", "full")["condition"] == "online_zeroshot_full"
    assert run_identity_fields("online_v1", "fewshot")["condition"] == "online_v1"
    (tmp_path / "run_info.json").write_text(json.dumps({"method": "baseline"}))
    assert read_run_identity(tmp_path) == {"method": "baseline", "condition": "baseline", "teacher_context": None,
                                           "finetune": "lora"}
    (tmp_path / "run_info.json").write_text(json.dumps({"method": "online_v1", "finetune": "full"}))
    assert read_run_identity(tmp_path)["condition"] == "online_v1_full"


def test_full_condition_labels():
    from fewshot_distill.results.labels import label_for, ordered_conditions

    assert label_for("baseline_full") == "Full SFT"
    assert ordered_conditions(["online_v1_full", "baseline_full", "baseline"]) == [
        "baseline", "baseline_full", "online_v1_full"]


GEMMA_CONFIGS = {"sft": (0, 0.0, "fewshot"), "distill": (256, 0.5, "fewshot"), "zeroshot_teacher": (256, 0.5, "zeroshot")}


@pytest.mark.parametrize("name", list(GEMMA_CONFIGS))
def test_gemma_negative_control_configs_load_with_the_published_settings(name):
    path = REPO_ROOT / "configs" / "ablations" / f"gemma270m_full_{name}.yaml"
    cfg = load_config(path)
    assert (cfg.model.name, cfg.model.finetune) == ("google/gemma-3-270m", "full")
    t = cfg.training
    assert (t.lr, t.weight_decay, t.grad_clip, t.warmup_steps, t.max_steps, t.bf16) == (5e-5, 0.01, 1.0, 50, 1000, True)
    assert t.per_device_train_batch_size * t.gradient_accumulation_steps * 2 == 32  # on the follow-up's 2 GPUs
    assert (cfg.data.max_seq_len_teacher, cfg.data.max_seq_len_student) == (4096, 512)
    d = cfg.distillation
    assert (d.n_top_logits, d.lambda_distill, d.teacher_context) == GEMMA_CONFIGS[name]
    assert t.output_dir == f"experiments/gemma270m_full_{name}"
    assert load_config(path, ["model.name=/models/gemma"]).model.name == "/models/gemma"


def test_shared_prefix_teacher_runs_on_a_plain_model(tiny_model_dir):
    """The prefix teacher on a model without adapter (a frozen copy of a full run's starting weights)
    gives that model's own full-sequence logits."""
    import dataclasses

    from fewshot_distill.data.examples import build_examples, collate_examples, load_task_rows
    from fewshot_distill.teachers.shot_prefix import fixed_shot_prefix_ids, SharedPrefixTeacher
    from fewshot_distill.models.student import AnswerWindowLM, load_base_model, load_tokenizer, teacher_logits
    from tests.conftest import smoke_data_cfg

    data_cfg = dataclasses.replace(smoke_data_cfg(), shot_sampling="fixed")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    rows = load_task_rows(data_cfg, "train")
    examples, _ = build_examples(rows, tokenizer, data_cfg, seed=3, with_teacher=True)
    prefix = fixed_shot_prefix_ids(examples, len(rows), data_cfg.num_fewshot_examples, 3)
    frozen = AnswerWindowLM(load_base_model(str(tiny_model_dir), bf16=False).requires_grad_(False).eval())
    batch = collate_examples([examples[i] for i in (4, 9, 15)], tokenizer.pad_token_id)
    _, mask, ids = student_answer_window(batch["student_labels"])
    positions = teacher_answer_positions(batch["teacher_attention_mask"].sum(dim=1), mask.sum(dim=1), ids.size(1))
    full = teacher_logits(frozen, batch["teacher_input_ids"], batch["teacher_attention_mask"], positions)
    shot_prefix = SharedPrefixTeacher(frozen, prefix)
    ours = shot_prefix.logits(batch["teacher_input_ids"], batch["teacher_attention_mask"], positions)
    assert shot_prefix.rows_on_prefix > 0
    torch.testing.assert_close(ours[mask], full[mask], rtol=0, atol=1e-5)
