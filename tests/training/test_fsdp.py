"""Sharded full fine-tuning: configs/accelerate/fsdp.yaml and the FSDP pieces of training and checkpoints.

accelerate (1.16 here) runs FSDP only on GPUs: with ACCELERATE_USE_CPU the same launch is plain DDP. So on CPU
(1) accelerate's FSDP plugin is built from the config file exactly as `accelerate launch` passes it on,
its transformer-layer auto-wrap policy is applied to our AnswerWindowLM, and the plugin the training
loop builds from it (`sharding_kwargs`) keeps a float32 `reduce_dtype` and syncs every micro-batch;
(2) torch's FSDP2 (`fully_shard`, what the plugin's fsdp_version 2 uses) runs over gloo in 2
processes: the tiny model, sharded per decoder layer with that plugin's policy, trains 2 SFT steps of
2 micro-batches through a real Accelerator's `accumulate` and `backward` (no micro-batch skips the
sync; each rank then holds gradient shards only). Its first step's gradient equals one unsharded
process's within float32 ulps; its weights after 2 AdamW steps are within the bound Adam's update
puts on two runs with those gradients (`adamw_difference_bound`). The full state dict (gathered with
the call accelerate's `get_state_dict` makes under FSDP2) is saved by our checkpoint code, loads with
from_pretrained, and resumes into freshly sharded models with each rank's optimizer shard, from the
files this code writes (local tensors) and from DTensor files as the code before wrote them. The
frozen teacher copy of full distillation, sharded by accelerate's own `fsdp2_prepare_model` (as
`load_frozen_copy` does under FSDP), gives the unsharded copy's top-K and still holds the starting
weights after the student trained.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from fewshot_distill.losses.alignment import student_answer_window

from tests.conftest import REPO_ROOT, SMOKE_DATA
from tests.helpers import free_port

FSDP_CONFIG = REPO_ROOT / "configs" / "accelerate" / "fsdp.yaml"


LR, MAX_GRAD_NORM = 1e-3, 1.0  # the worker's AdamW learning rate and clipping (lr=1e-3, 1.0 there)


def clipped(gradients: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`gradients` scaled as clip_grad_norm_(..., MAX_GRAD_NORM) scales them before the optimizer step."""
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gradients.values()]))
    scale = min(1.0, MAX_GRAD_NORM / (float(total) + 1e-6))
    return {name: g * scale for name, g in gradients.items()}


def adamw_difference_bound(reference: list[dict], other: list[dict], lr: float, betas=(0.9, 0.999),
                           eps: float = 1e-8) -> dict[str, torch.Tensor]:
    """Per element, how far two AdamW runs from the same weights can end apart, given each step's gradients.

    Step t updates w <- w (1 - lr wd) - lr u_t with u_t = m_t / (s_t + eps), where
    m_t = sum_i a_i g_i, s_t = sqrt(sum_i b_i g_i^2) over the steps i <= t, with the bias-corrected weights
    a_i = (1 - b1) b1^(t-i) / (1 - b1^t) and b_i = (1 - b2) b2^(t-i) / (1 - b2^t) (each summing to 1).
    - Cauchy-Schwarz: |m_t| <= sqrt(sum_i a_i^2 / b_i) s_t, so |u_t| <= B_t = sqrt(sum_i a_i^2 / b_i) (1 at
      t = 1): an update element is at most about lr, whatever the gradient, however small.
    - Two runs whose gradients differ by d_i: |dm_t| <= sum_i a_i |d_i| and |ds_t| <= sqrt(sum_i b_i d_i^2)
      (triangle inequality of the weighted 2-norm), and u - u' = (dm + u' ds) / (s + eps), so
      |du_t| <= (sum_i a_i |d_i| + B_t sqrt(sum_i b_i d_i^2)) / (s_t + eps), and never more than 2 B_t.
    - The weights then differ by at most sum_t lr |du_t| (weight decay only shrinks a difference).
    Where a gradient is far from zero (s_t >> d) this is tight; where it is as small as the rounding
    noise of the sums, Adam's normalisation turns that noise into a step of up to +-lr, which is why
    an element-wise rtol/atol comparison of the weights fails on some CPUs and not on others.
    `reference`/`other`: each step's (clipped) gradients of the two runs, by name.
    """
    beta1, beta2 = betas
    bounds = {}
    for name in reference[0]:
        total = torch.zeros_like(reference[0][name])
        for t in range(1, len(reference) + 1):
            a = [(1 - beta1) * beta1 ** (t - i) / (1 - beta1 ** t) for i in range(1, t + 1)]
            b = [(1 - beta2) * beta2 ** (t - i) / (1 - beta2 ** t) for i in range(1, t + 1)]
            largest_update = sum(ai * ai / bi for ai, bi in zip(a, b)) ** 0.5
            diffs = [(other[i][name] - reference[i][name]).abs() for i in range(t)]
            s = sum(bi * reference[i][name] ** 2 for i, bi in enumerate(b)).sqrt()
            dm = sum(ai * d for ai, d in zip(a, diffs))
            ds = sum(bi * d ** 2 for bi, d in zip(b, diffs)).sqrt()
            du = (dm + largest_update * ds) / (s + eps)
            total += lr * du.clamp(max=2 * largest_update)
        bounds[name] = total
    return bounds


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

    from fewshot_distill.config import LoraConfig, ModelConfig
    from fewshot_distill.models.student import AnswerWindowLM, build_student

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
    assert wrapped == [f"wrapped_model.model.layers.{i}" for i in range(model.config.num_hidden_layers)]


def test_fsdp_reduces_gradients_in_float32_and_syncs_every_micro_batch(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin, GradientAccumulationPlugin

    from fewshot_distill.config import ConfigError, load_config
    from fewshot_distill.training.loop import launched_with_fsdp, sharding_kwargs

    env = launch_env(FSDP_CONFIG)
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    cfg = load_config(REPO_ROOT / "configs" / "base.yaml", ["model.finetune=full", "eval.held_out_examples=0"])
    assert launched_with_fsdp() and cfg.training.bf16 and cfg.training.gradient_accumulation_steps > 1
    kwargs = sharding_kwargs(cfg.training, launched_with_fsdp())
    plugin = kwargs["fsdp_plugin"]
    # what AcceleratorState then does with the launch's mixed precision: a policy it was given stays
    plugin.set_mixed_precision(env["ACCELERATE_MIXED_PRECISION"])
    policy = plugin.mixed_precision_policy
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True  # the rest as the file says
    own = FullyShardedDataParallelPlugin()  # accelerate's own plugin from the same variables sums in bf16
    own.set_mixed_precision(env["ACCELERATE_MIXED_PRECISION"])
    assert own.mixed_precision_policy.reduce_dtype == torch.bfloat16
    # accumulate() then reduce-scatters every micro-batch (no no_sync: tests below run it on 2 ranks)
    accumulation = kwargs["gradient_accumulation_plugin"]
    assert accumulation.sync_each_batch and accumulation.num_steps == cfg.training.gradient_accumulation_steps
    # DDP and one process keep accumulating locally and syncing once per optimizer step, which is counted
    # (the on-policy loop reads a step ahead, so the dataloader's end comes one step early)
    assert sharding_kwargs(cfg.training, False) == {"gradient_accumulation_plugin": GradientAccumulationPlugin(
        num_steps=cfg.training.gradient_accumulation_steps, sync_each_batch=False, sync_with_dataloader=False)}
    assert not accumulation.sync_with_dataloader
    monkeypatch.setenv("FSDP_VERSION", "1")
    monkeypatch.setenv("FSDP_SYNC_MODULE_STATES", "false")  # FSDP1's default, which a CPU cannot build
    with pytest.raises(ConfigError, match="set fsdp_version: 2"):
        sharding_kwargs(cfg.training, True)


def test_an_optimizer_shard_that_does_not_fit_this_run_is_a_one_line_error():
    from fewshot_distill.training.checkpoint import LOCAL_SHARDS, CheckpointError, sharded_optimizer_state

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(4))])  # this run: unsharded (DDP)
    group = {key: value for key, value in optimizer.param_groups[0].items() if key != "params"}
    shard = {"step": torch.tensor(1.0), "exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2)}
    saved = {"state": {0: shard}, "param_groups": [{**group, "params": [0]}],
             LOCAL_SHARDS: {0: ["exp_avg", "exp_avg_sq"]}}  # a 2-rank FSDP run's file
    with pytest.raises(CheckpointError, match="resume with the number of processes and the FSDP config"):
        sharded_optimizer_state(optimizer, saved)
    with pytest.raises(CheckpointError, match="resume with the config the run was started with"):
        sharded_optimizer_state(optimizer, {**saved, "param_groups": [{**group, "params": [0, 1]}]})


def test_fsdp_with_lora_or_held_out_eval_is_a_one_line_error():
    from accelerate.utils import DistributedType

    from fewshot_distill.config import load_config
    from fewshot_distill.config import ConfigError
    from fewshot_distill.training.loop import check_sharding

    base = REPO_ROOT / "configs" / "base.yaml"
    check_sharding(load_config(base), DistributedType.MULTI_GPU)  # DDP: anything goes
    check_sharding(load_config(base, ["model.finetune=full", "eval.held_out_examples=0"]), DistributedType.FSDP)
    with pytest.raises(ConfigError, match="set model.finetune=full"):
        check_sharding(load_config(base, ["eval.held_out_examples=0"]), DistributedType.FSDP)
    with pytest.raises(ConfigError, match="set eval.held_out_examples=0"):
        check_sharding(load_config(base, ["model.finetune=full"]), DistributedType.FSDP)


FSDP_WORKER = textwrap.dedent("""
    import json, shutil, sys, types
    from pathlib import Path

    import torch
    import torch.distributed as dist
    from accelerate import Accelerator
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from fewshot_distill.config import LoraConfig, ModelConfig, load_config
    from fewshot_distill.models.student import AnswerWindowLM, build_student, load_tokenizer
    from fewshot_distill.training.checkpoint import full_state_dict, load_checkpoint, save_checkpoint, save_final
    from fewshot_distill.training.loop import launched_with_fsdp, sharding_kwargs
    from fewshot_distill.methods.sft import sft_loss_step
    from fewshot_distill.losses.alignment import student_answer_window, teacher_answer_positions
    from fewshot_distill.teachers.frozen_copy import FrozenCopyTeacher, load_frozen_copy
    from fewshot_distill.utils.checkpoint_files import optimizer_state_file


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


    def sharded_student(model_dir, plugin):
        # sharded as accelerate's fsdp2_prepare_model does, with the plugin (and so the mixed-precision
        # policy) that setup_run hands to the Accelerator
        model = build_student(ModelConfig(name=model_dir, finetune="full"), LoraConfig(), bf16=False)
        window_lm = AnswerWindowLM(model)
        policy = fsdp2_prepare_auto_wrap_policy(plugin, window_lm)
        for module in [m for m in window_lm.modules() if policy(m)] + [window_lm]:
            fully_shard(module, mp_policy=plugin.mixed_precision_policy)
        optimizer = torch.optim.AdamW(window_lm.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return model, window_lm, optimizer, scheduler


    def full_gradients(window_lm):
        return {name.removeprefix("wrapped_model."): param.grad.full_tensor()
                for name, param in window_lm.named_parameters()}


    def train_step(accelerator, window_lm, optimizer, scheduler, micro_batches):
        # the training loop's step: accelerate's accumulate and backward over the micro-batches
        sharded_after_each = []
        for batch in micro_batches:
            with accelerator.accumulate(window_lm):
                accelerator.backward(sft_loss_step(window_lm, batch)["loss"])
            # reduce-scattered: each rank accumulates its shard of the gradient, none holds a whole one
            sharded_after_each.append(all(isinstance(p.grad, DTensor) for p in window_lm.parameters()))
        assert accelerator.sync_gradients and all(sharded_after_each), sharded_after_each
        gradients = full_gradients(window_lm)
        torch.nn.utils.clip_grad_norm_(window_lm.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        return gradients


    def states_on_their_parameters(optimizer):
        # every AdamW state of a shard is a DTensor laid out as its parameter: same mesh, placements, device
        return all(isinstance(value, DTensor) and value.device_mesh == param.device_mesh
                   and value.placements == param.placements and value.to_local().device == param.to_local().device
                   and value.shape == param.shape
                   for group in optimizer.param_groups for param in group["params"]
                   for key, value in optimizer.state[param].items() if key != "step")


    if __name__ == "__main__":
        dist.init_process_group("gloo")
        rank = dist.get_rank()
        model_dir, out = sys.argv[1], Path(sys.argv[2])
        batches = torch.load(out / "batches.pt")
        # setup_run's Accelerator arguments under `accelerate launch --config_file configs/accelerate/fsdp.yaml`
        # (the test passes that launch's FSDP variables). On CPU accelerate itself runs as DDP (MULTI_CPU),
        # but its accumulate decides the gradient sync the same way.
        cfg = load_config("configs/base.yaml", ["training.gradient_accumulation_steps=2", "training.bf16=false"])
        kwargs = sharding_kwargs(cfg.training, launched_with_fsdp())
        plugin = kwargs["fsdp_plugin"]
        accelerator = Accelerator(cpu=True, mixed_precision="no", **kwargs)
        no_sync_calls = []
        accelerate_no_sync = accelerator.no_sync
        accelerator.no_sync = lambda model: no_sync_calls.append(1) or accelerate_no_sync(model)
        gloo = GlooAccelerator()
        teacher = FrozenCopyTeacher(load_frozen_copy(ModelConfig(name=model_dir, finetune="full"), False,
                                                     FsdpAccelerator()), k=8)
        model, window_lm, optimizer, scheduler = sharded_student(model_dir, plugin)
        gradients = [train_step(accelerator, window_lm, optimizer, scheduler, batches[step][rank])
                     for step in range(2)]
        if rank == 0:
            torch.save(gradients, out / "gradients.pt")
        teacher_batch = batches[0][rank][0]
        _, answer_mask, answer_ids = student_answer_window(teacher_batch["student_labels"])
        values, ids = teacher.top_k(teacher_batch, answer_ids, answer_mask)
        torch.save({"values": values, "ids": ids, "type": type(next(teacher.window_lm.parameters())).__name__,
                    "class": type(teacher.window_lm).__name__}, out / f"teacher_{rank}.pt")
        teacher_weights = full_state_dict(gloo, teacher.window_lm)
        if rank == 0:
            torch.save(teacher_weights, out / "teacher_weights.pt")
        tokenizer = load_tokenizer(model_dir)
        state = {"step": 2, "examples_seen": 8, "scheduler": scheduler.state_dict()}
        save_checkpoint(gloo, out / "checkpoint-2", model, tokenizer, "run: fsdp\\n", state,
                        state_dict=full_state_dict(gloo, window_lm), max_shard_size="200KB",
                        rank_optimizer_state=optimizer.state_dict())
        weights = full_state_dict(gloo, window_lm)
        if rank == 0:
            save_final(out / "final", model, tokenizer, "run: fsdp\\n", state_dict=weights)
            # the same checkpoint as the code before local_optimizer_state wrote it: each rank's DTensors
            shutil.copytree(out / "checkpoint-2", out / "checkpoint-2-dtensors")
        dist.barrier()
        torch.save(optimizer.state_dict(), out / "checkpoint-2-dtensors" / optimizer_state_file(rank))
        saved = torch.load(out / "checkpoint-2" / optimizer_state_file(rank), weights_only=False)
        saved_dtensors = any(isinstance(value, DTensor) for entries in saved["state"].values()
                             for value in entries.values())
        dist.barrier()
        # resume: freshly sharded models take the full weights and this rank's optimizer shard
        resumed = {}
        for folder in ("checkpoint-2", "checkpoint-2-dtensors"):
            model2, window_lm2, optimizer2, scheduler2 = sharded_student(model_dir, plugin)
            load_checkpoint(out / folder, model2, optimizer2, scheduler2, rank)
            resumed[folder] = (window_lm2, optimizer2, scheduler2, states_on_their_parameters(optimizer2))
        for step in (2, 3):
            train_step(accelerator, window_lm, optimizer, scheduler, batches[step][rank])
            for window_lm2, optimizer2, scheduler2, _ in resumed.values():
                train_step(accelerator, window_lm2, optimizer2, scheduler2, batches[step][rank])
        continued = full_state_dict(gloo, window_lm)
        diffs = {}
        for folder, (window_lm2, _, _, placed) in resumed.items():
            weights2 = full_state_dict(gloo, window_lm2)
            diffs[folder] = {"max_abs_diff": max(float((continued[k] - weights2[k]).abs().max()) for k in continued)
                             if rank == 0 else None, "states_placed": placed}
        report = {"resumed": diffs, "saved_dtensors": saved_dtensors, "no_sync_calls": len(no_sync_calls),
                  "reduce_dtype": str(plugin.mixed_precision_policy.reduce_dtype),
                  "type": type(next(window_lm.parameters())).__name__, "class": type(window_lm).__name__}
        (out / f"report_{rank}.json").write_text(json.dumps(report))
        dist.destroy_process_group()
""")


@pytest.mark.slow
def test_fully_shard_over_gloo_trains_saves_and_resumes_like_one_process(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from fewshot_distill.config import DataConfig, LoraConfig, ModelConfig
    from fewshot_distill.data.examples import build_examples, collate_examples, load_task_rows
    from fewshot_distill.models.student import AnswerWindowLM, build_student, load_tokenizer
    from fewshot_distill.methods.sft import sft_loss_step
    from fewshot_distill.teachers.frozen_copy import FrozenCopyTeacher, load_frozen_copy

    data_cfg = DataConfig(path=str(SMOKE_DATA), num_workers=0, max_seq_len_student=512, num_fewshot_examples=2)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    examples, _ = build_examples(load_task_rows(data_cfg, "train"), tokenizer, data_cfg, seed=0,
                                 with_teacher=True, indices=list(range(16)))
    # batches[step][rank][micro]: 2 micro-batches of 1 row per rank per step (gradient accumulation 2)
    batches = [[[collate_examples([examples[4 * s + 2 * r + m]], tokenizer.pad_token_id) for m in range(2)]
                for r in range(2)] for s in range(4)]
    torch.save(batches, tmp_path / "batches.pt")
    (tmp_path / "worker.py").write_text(FSDP_WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(tmp_path / "worker.py"), str(tiny_model_dir), str(tmp_path)]
    fsdp_variables = {k: v for k, v in launch_env(FSDP_CONFIG).items() if k.startswith("FSDP_")}
    env = {"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PATH": "/usr/bin:/bin", "ACCELERATE_USE_FSDP": "true",
           **fsdp_variables}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    reports = [json.loads((tmp_path / f"report_{rank}.json").read_text()) for rank in range(2)]
    report = reports[0]
    assert report["type"] == "DTensor" and report["class"].startswith("FSDP")  # really sharded
    assert report["reduce_dtype"] == "torch.float32"
    # accumulate never skipped a sync: every micro-batch was reduce-scattered (the worker checks that
    # each rank then held DTensor gradient shards only)
    assert [r["no_sync_calls"] for r in reports] == [0, 0]
    # each rank's optimizer file holds local tensors only; a resume from it, or from a checkpoint of the
    # code before (DTensors in the file), places every AdamW state on its parameter's mesh and device
    # and continues bit for bit as the uninterrupted run (within one run)
    assert [r["saved_dtensors"] for r in reports] == [False, False]
    for folder in ("checkpoint-2", "checkpoint-2-dtensors"):
        assert [r["resumed"][folder]["states_placed"] for r in reports] == [True, True], folder
        assert report["resumed"][folder]["max_abs_diff"] == 0.0, folder

    # one process, unsharded: the mean of the four micro-batches' losses per step, same AdamW and clipping
    model = build_student(ModelConfig(name=str(tiny_model_dir), finetune="full"), LoraConfig(), bf16=False)
    window_lm = AnswerWindowLM(model)
    optimizer = torch.optim.AdamW(window_lm.parameters(), lr=LR)
    reference_gradients = []
    for step in range(2):
        loss = sum(sft_loss_step(window_lm, micro)["loss"] for rank in batches[step] for micro in rank) / 4
        loss.backward()
        reference_gradients.append({name.removeprefix("wrapped_model."): p.grad.clone()
                                    for name, p in window_lm.named_parameters()})
        torch.nn.utils.clip_grad_norm_(window_lm.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad()
    gradients = torch.load(tmp_path / "gradients.pt", weights_only=True)

    # Sharding must preserve the first step's gradient up to the order of float32 sums: nothing has
    # amplified rounding yet. A dropped, doubled or misplaced reduction is off by the gradient's own size.
    for name, reference in reference_gradients[0].items():
        ulps = 64 * torch.finfo(torch.float32).eps
        torch.testing.assert_close(gradients[0][name], reference, rtol=ulps,
                                   atol=ulps * float(reference.abs().max()), msg=name)

    # After two AdamW steps, each element within what Adam can make of the two runs' gradient differences.
    bound = adamw_difference_bound([clipped(g) for g in reference_gradients],
                                   [clipped(g) for g in gradients], LR)
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "final", dtype=torch.float32)
    checkpoint = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint-2", dtype=torch.float32)
    reference_weights = dict(model.named_parameters())
    for name, param in final.named_parameters():
        expected = reference_weights[name].detach()
        # plus the rounding of `w - lr u` itself, twice: a few float32 ulps of the larger of the weight and lr
        allowed = bound[name] + 16 * torch.finfo(torch.float32).eps * (expected.abs() + LR)
        excess = (param.detach() - expected).abs() - allowed
        assert float(excess.max()) <= 0, \
            f"{name}: {int((excess > 0).sum())} elements off by up to {float(excess.max()):.3g} more than allowed"
        assert torch.equal(param, dict(checkpoint.named_parameters())[name]), name
    assert (tmp_path / "checkpoint-2" / "optimizer_state_1.pt").is_file()
    assert "optimizer" not in torch.load(tmp_path / "checkpoint-2" / "training_state.pt", weights_only=False)

    # The sharded frozen teacher copy: really sharded, the unsharded copy's top-K, the starting weights.

    plain = FrozenCopyTeacher(load_frozen_copy(ModelConfig(name=str(tiny_model_dir), finetune="full"), False), k=8)
    for rank in range(2):
        sharded = torch.load(tmp_path / f"teacher_{rank}.pt", weights_only=False)
        assert sharded["type"] == "DTensor" and sharded["class"].startswith("FSDP")
        teacher_batch = batches[0][rank][0]
        _, answer_mask, answer_ids = student_answer_window(teacher_batch["student_labels"])
        values, ids = plain.top_k(teacher_batch, answer_ids, answer_mask)
        torch.testing.assert_close(sharded["values"][answer_mask], values[answer_mask], rtol=1e-5, atol=1e-5)
        assert torch.equal(sharded["ids"][answer_mask], ids[answer_mask])
    starting = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    teacher_weights = torch.load(tmp_path / "teacher_weights.pt", weights_only=True)
    assert teacher_weights.keys() == starting.keys()
    assert all(torch.equal(teacher_weights[name], starting[name]) for name in starting)
