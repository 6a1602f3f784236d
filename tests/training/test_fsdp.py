"""Sharded full fine-tuning: configs/accelerate/fsdp.yaml and the FSDP pieces of training and checkpoints.

accelerate 1.15 runs FSDP only on GPUs: with ACCELERATE_USE_CPU the same launch is plain DDP. So on CPU
(1) accelerate's FSDP plugin is built from the config file exactly as `accelerate launch` passes it on,
and its transformer-layer auto-wrap policy is applied to our AnswerWindowLM; (2) torch's FSDP2
(`fully_shard`, what the plugin's fsdp_version 2 uses) runs over gloo in 2 processes: the tiny model,
sharded per decoder layer by that policy, trains 2 SFT steps to the same weights as one unsharded
process; the full state dict (gathered with the call accelerate's `get_state_dict` makes under FSDP2)
is saved by our checkpoint code, loads with from_pretrained, and resumes into a freshly sharded model
with each rank's optimizer shard. The frozen teacher copy of full distillation, sharded by accelerate's
own `fsdp2_prepare_model` (as `load_frozen_copy` does under FSDP), gives the unsharded copy's top-K and
still holds the starting weights after the student trained.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.conftest import REPO_ROOT, SMOKE_DATA
from tests.helpers import free_port

FSDP_CONFIG = REPO_ROOT / "configs" / "accelerate" / "fsdp.yaml"


def launch_env(config_file) -> dict[str, str]:
    """The environment `accelerate launch --config_file config_file` gives the training processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config_file), "train.py"])
    args, _, _ = _validate_launch_command(args)
    return prepare_multi_gpu_env(args)


def fsdp_plugin(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin

    for key, value in launch_env(FSDP_CONFIG).items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    return FullyShardedDataParallelPlugin()


def test_accelerate_fsdp_plugin_from_the_config_file(monkeypatch, tiny_model_dir):
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from torch.distributed.fsdp import StateDictType
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    from src.config import LoraConfig, ModelConfig
    from src.models.student import AnswerWindowLM, build_student

    env = launch_env(FSDP_CONFIG)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    plugin = fsdp_plugin(monkeypatch)
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True  # FULL_SHARD in FSDP2's terms
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy
    assert plugin.transformer_cls_names_to_wrap is None  # taken from the model: one file for every architecture
    assert plugin.cpu_offload is not None and not plugin.activation_checkpointing

    model = build_student(ModelConfig(name=str(tiny_model_dir), finetune="full"), LoraConfig(), bf16=False)
    policy = fsdp2_prepare_auto_wrap_policy(plugin, AnswerWindowLM(model))
    wrapped = [name for name, module in AnswerWindowLM(model).named_modules() if policy(module)]
    assert wrapped == [f"peft_model.model.layers.{i}" for i in range(model.config.num_hidden_layers)]


def test_fsdp_with_lora_or_held_out_eval_is_a_one_line_error():
    from accelerate.utils import DistributedType

    from src.config import load_config
    from src.config import ConfigError
    from src.training.loop import check_sharding

    base = REPO_ROOT / "configs" / "base.yaml"
    check_sharding(load_config(base), DistributedType.MULTI_GPU)  # DDP: anything goes
    check_sharding(load_config(base, ["model.finetune=full", "eval.held_out_examples=0"]), DistributedType.FSDP)
    with pytest.raises(ConfigError, match="set model.finetune=full"):
        check_sharding(load_config(base, ["eval.held_out_examples=0"]), DistributedType.FSDP)
    with pytest.raises(ConfigError, match="set eval.held_out_examples=0"):
        check_sharding(load_config(base, ["model.finetune=full"]), DistributedType.FSDP)


FSDP_WORKER = textwrap.dedent("""
    import json, os, sys, types
    from pathlib import Path

    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard

    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from src.config import LoraConfig, ModelConfig
    from src.models.student import AnswerWindowLM, build_student, load_tokenizer
    from src.training.checkpoint import full_state_dict, load_checkpoint, save_checkpoint, save_final
    from src.training.steps import sft_loss_step
    from src import distillation as D
    from src.training.frozen_teacher import FrozenCopyTeacher, load_frozen_copy


    class GlooAccelerator:
        # What our checkpoint code asks of accelerate; get_state_dict as accelerate's FSDP2 branch computes it.
        process_index = property(lambda self: dist.get_rank())
        is_main_process = property(lambda self: dist.get_rank() == 0)

        def wait_for_everyone(self):
            dist.barrier()

        def get_state_dict(self, model):
            options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True)
            return get_model_state_dict(model, options=options)


    class FsdpAccelerator(GlooAccelerator):
        # What accelerate's fsdp2_prepare_model reads from an Accelerator launched with an FSDP2 config.
        distributed_type = "FSDP"
        mixed_precision = "no"
        device = torch.device("cpu")

        def __init__(self):
            plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
            self.state = types.SimpleNamespace(fsdp_plugin=plugin)


    def sharded_student(model_dir):
        model = build_student(ModelConfig(name=model_dir, finetune="full"), LoraConfig(), bf16=False)
        window_lm = AnswerWindowLM(model)
        plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
        policy = fsdp2_prepare_auto_wrap_policy(plugin, window_lm)
        for module in [m for m in window_lm.modules() if policy(m)]:  # as accelerate's fsdp2_prepare_model
            fully_shard(module)
        fully_shard(window_lm)
        optimizer = torch.optim.AdamW(window_lm.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return model, window_lm, optimizer, scheduler


    def train_step(window_lm, optimizer, scheduler, batch):
        sft_loss_step(window_lm, batch)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(window_lm.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()


    if __name__ == "__main__":
        dist.init_process_group("gloo")
        rank = dist.get_rank()
        model_dir, out = sys.argv[1], Path(sys.argv[2])
        batches = torch.load(out / "batches.pt")
        accelerator = GlooAccelerator()
        teacher = FrozenCopyTeacher(load_frozen_copy(ModelConfig(name=model_dir, finetune="full"), False,
                                                     FsdpAccelerator()), k=8)
        model, window_lm, optimizer, scheduler = sharded_student(model_dir)
        for step in range(2):
            train_step(window_lm, optimizer, scheduler, batches[step][rank])
        _, answer_mask, answer_ids = D.student_answer_window(batches[0][rank]["student_labels"])
        values, ids = teacher.top_k(batches[0][rank], answer_ids, answer_mask)
        torch.save({"values": values, "ids": ids, "type": type(next(teacher.window_lm.parameters())).__name__,
                    "class": type(teacher.window_lm).__name__}, out / f"teacher_{rank}.pt")
        teacher_weights = full_state_dict(accelerator, teacher.window_lm)
        if rank == 0:
            torch.save(teacher_weights, out / "teacher_weights.pt")
        tokenizer = load_tokenizer(model_dir)
        state = {"step": 2, "examples_seen": 2, "scheduler": scheduler.state_dict()}
        save_checkpoint(accelerator, out / "checkpoint-2", model, tokenizer, "run: fsdp\\n", state,
                        state_dict=full_state_dict(accelerator, window_lm), max_shard_size="200KB",
                        rank_optimizer_state=optimizer.state_dict())
        weights = full_state_dict(accelerator, window_lm)
        if rank == 0:
            save_final(out / "final", model, tokenizer, "run: fsdp\\n", state_dict=weights)
        dist.barrier()
        # resume: a freshly sharded model takes the full weights and this rank's optimizer shard
        model2, window_lm2, optimizer2, scheduler2 = sharded_student(model_dir)
        load_checkpoint(out / "checkpoint-2", model2, optimizer2, scheduler2, rank)
        for step in (2, 3):
            train_step(window_lm, optimizer, scheduler, batches[step][rank])
            train_step(window_lm2, optimizer2, scheduler2, batches[step][rank])
        continued, resumed = full_state_dict(accelerator, window_lm), full_state_dict(accelerator, window_lm2)
        if rank == 0:
            diff = max(float((continued[k] - resumed[k]).abs().max()) for k in continued)
            (out / "resume_diff.json").write_text(json.dumps({"max_abs_diff": diff, "type": type(
                next(window_lm.parameters())).__name__, "class": type(window_lm).__name__}))
        dist.destroy_process_group()
""")


@pytest.mark.slow
def test_fully_shard_over_gloo_trains_saves_and_resumes_like_one_process(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from src.config import DataConfig, LoraConfig, ModelConfig
    from src.data.gsm8k_loader import build_examples, collate_examples, load_gsm8k_rows
    from src.models.student import AnswerWindowLM, build_student, load_tokenizer
    from src.training.steps import sft_loss_step
    from src import distillation as D
    from src.training.frozen_teacher import FrozenCopyTeacher, load_frozen_copy

    data_cfg = DataConfig(path=str(SMOKE_DATA), num_workers=0, max_seq_len_student=512, num_fewshot_examples=2)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    examples, _ = build_examples(load_gsm8k_rows(data_cfg, "train"), tokenizer, data_cfg, seed=0,
                                 with_teacher=True, indices=list(range(16)))
    # batches[step][rank]: 2 rows per rank per step (equal answer-token counts are not needed: FSDP
    # averages the two ranks' gradients, as the single-process reference below does)
    batches = [[collate_examples(examples[4 * s + 2 * r: 4 * s + 2 * r + 2], tokenizer.pad_token_id)
                for r in range(2)] for s in range(4)]
    torch.save(batches, tmp_path / "batches.pt")
    (tmp_path / "worker.py").write_text(FSDP_WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(tmp_path / "worker.py"), str(tiny_model_dir), str(tmp_path)]
    env = {"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    report = json.loads((tmp_path / "resume_diff.json").read_text())
    assert report["type"] == "DTensor" and report["class"].startswith("FSDP")  # really sharded
    assert report["max_abs_diff"] == 0.0  # resumed == continued, bit for bit within one run

    # one process, unsharded: the mean of the two ranks' losses per step, same AdamW and clipping
    model = build_student(ModelConfig(name=str(tiny_model_dir), finetune="full"), LoraConfig(), bf16=False)
    window_lm = AnswerWindowLM(model)
    optimizer = torch.optim.AdamW(window_lm.parameters(), lr=1e-3)
    for step in range(2):
        loss = sum(sft_loss_step(window_lm, batches[step][r])["loss"] for r in range(2)) / 2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(window_lm.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "final", dtype=torch.float32)
    checkpoint = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint-2", dtype=torch.float32)
    reference = dict(model.named_parameters())
    for name, param in final.named_parameters():
        torch.testing.assert_close(param, reference[name], rtol=1e-4, atol=1e-5, msg=name)
        assert torch.equal(param, dict(checkpoint.named_parameters())[name]), name
    assert (tmp_path / "checkpoint-2" / "optimizer_state_1.pt").is_file()
    assert "optimizer" not in torch.load(tmp_path / "checkpoint-2" / "training_state.pt", weights_only=False)

    # The sharded frozen teacher copy: really sharded, the unsharded copy's top-K, the starting weights.

    plain = FrozenCopyTeacher(load_frozen_copy(ModelConfig(name=str(tiny_model_dir), finetune="full"), False), k=8)
    for rank in range(2):
        sharded = torch.load(tmp_path / f"teacher_{rank}.pt", weights_only=False)
        assert sharded["type"] == "DTensor" and sharded["class"].startswith("FSDP")
        _, answer_mask, answer_ids = D.student_answer_window(batches[0][rank]["student_labels"])
        values, ids = plain.top_k(batches[0][rank], answer_ids, answer_mask)
        torch.testing.assert_close(sharded["values"][answer_mask], values[answer_mask], rtol=1e-5, atol=1e-5)
        assert torch.equal(sharded["ids"][answer_mask], ids[answer_mask])
    starting = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    teacher_weights = torch.load(tmp_path / "teacher_weights.pt", weights_only=True)
    assert teacher_weights.keys() == starting.keys()
    assert all(torch.equal(teacher_weights[name], starting[name]) for name in starting)
