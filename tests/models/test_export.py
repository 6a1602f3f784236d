"""scripts/export.py / fewshot_distill/models/export.py: a run's checkpoint as a standalone model folder.

Fast: checkpoints written in-process the way training saves them (`save_final`, with the run's
config), on the tiny random Qwen3 with a LoRA whose B is drawn (a fresh B = 0 adapter merges to the
base model and would prove nothing). The exported model's logits equal base + adapter; its greedy
answers equal the adapter's; a full fine-tuning checkpoint exports; bad input is one line.
Slow: vLLM loads the export and decodes the transformers tokens; a real training run through both scripts.
"""

from __future__ import annotations

import importlib.util
import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fewshot_distill.models.export import EXPORT_INFO, ExportError, export_run
from tests.conftest import REPO_ROOT, build_lora_student
from tests.helpers import flip_bytes, train, truncate, vllm_greedy_ids

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
LORA_B_STD = 0.05  # moves the tiny model's logits by ~1.5 (their scale is ~1): far above any tolerance below
MAX_NEW_TOKENS = 12


def write_run(run_dir: Path, model, tokenizer, model_name: str, bf16: bool, label: str = "final") -> Path:
    """A run folder as training leaves it: run_config.yaml, run_info.json and one checkpoint (save_final's files)."""
    from fewshot_distill.config import Config, ModelConfig, TrainingConfig, config_to_yaml
    from fewshot_distill.run_identity import RUN_INFO_FILE
    from fewshot_distill.methods import run_identity_fields
    from fewshot_distill.training.checkpoint import save_final
    from fewshot_distill.utils.run_info import collect_run_info

    finetune = "lora" if hasattr(model, "peft_config") else "full"
    cfg = Config(model=ModelConfig(name=model_name, finetune=finetune),
                 training=TrainingConfig(bf16=bf16, output_dir=str(run_dir)))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run_config.yaml").write_text(config_to_yaml(cfg))
    identity = run_identity_fields("baseline", None, finetune)
    (run_dir / RUN_INFO_FILE).write_text(json.dumps(collect_run_info(**identity)))
    folder = run_dir / label
    save_final(folder, model, tokenizer, config_to_yaml(cfg), max_shard_size="200KB")
    return folder


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir):
    """A LoRA run (trained in float32, checkpoint-3) with a non-identity adapter, and its float32 export."""
    from fewshot_distill.models.student import load_tokenizer

    root = tmp_path_factory.mktemp("export_lora")
    peft_model = build_lora_student(tiny_model_dir, lora_b_std=LORA_B_STD).eval()
    write_run(root / "run", peft_model, load_tokenizer(str(tiny_model_dir)), str(tiny_model_dir), bf16=False,
              label="checkpoint-3")
    out = export_run(root / "run", 3, root / "out_fp32")
    return {"root": root, "run": root / "run", "peft": peft_model, "out": out}


def sample_ids(vocab: int = 300) -> torch.Tensor:
    return torch.randint(3, vocab, (2, 20), generator=torch.Generator().manual_seed(0))


def load(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).eval()


def test_export_folder_is_a_plain_model_with_tokenizer_and_record(lora_run):
    out = lora_run["out"]
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", EXPORT_INFO} <= names
    assert not any(name.startswith("adapter_") for name in names)
    info = json.loads((out / EXPORT_INFO).read_text())
    assert info["step"] == 3 and info["dtype"] == "fp32" and info["finetune"] == "lora"  # fp32: training.bf16=false
    assert info["source_run"] == str(lora_run["run"].resolve())
    assert info["run_git"]["commit"] == info["export_git"]["commit"] is not None  # both written from this checkout
    assert not (out.parent / (out.name + ".tmp")).exists()


def test_float32_export_logits_equal_base_plus_adapter(lora_run):
    """Merging reorders float32 sums (x(W + sBA) against xW + s(xA)B): ~1e-6 apart at a logit scale of ~1,
    a few ulps of float32 per layer. 1e-5 x the largest logit allows ~80 ulps, and is 5 orders of magnitude
    below what the adapter changes."""
    peft_model, ids = lora_run["peft"], sample_ids()
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        with peft_model.disable_adapter():
            base = peft_model(input_ids=ids).logits
        exported = load(lora_run["out"])(input_ids=ids).logits
    scale = float(expected.abs().max())
    assert float((base - expected).abs().max()) > 0.2 * scale  # the adapter is not the identity
    assert float((exported - expected).abs().max()) <= 1e-5 * scale


def merged_by_hand(peft_model) -> dict[str, torch.Tensor]:
    """The plain model's weights with every LoRA folded in by hand, in float32: W + scaling * (B @ A)."""
    merged = {}
    for name, module in peft_model.base_model.model.named_modules():
        if hasattr(module, "base_layer") and hasattr(module, "lora_A"):
            lora_a, lora_b = module.lora_A["default"].weight, module.lora_B["default"].weight
            merged[f"{name}.weight"] = module.base_layer.weight + (lora_b @ lora_a) * module.scaling["default"]
    for name, tensor in peft_model.base_model.model.state_dict().items():
        if "lora_" not in name and ".base_layer." not in name:
            merged[name] = tensor
    return merged


def test_bf16_export_is_the_float32_merge_rounded_once(lora_run):
    """bf16 weights are W + sBA computed in float32 and cast once (bit-equal: one process, one cast; merging a
    bf16 base would round twice). Its logits, computed in bf16, stay within 4 bf16 epsilons (2^-7 each) of the
    float32 adapter's largest logit: rounding every weight and activation to 8 bits of mantissa costs ~1.5
    epsilon on the tiny model."""
    out = export_run(lora_run["run"], "3", lora_run["root"] / "out_bf16", dtype="bf16")
    exported = load(out)
    assert exported.dtype == torch.bfloat16
    with torch.no_grad():
        expected_weights = merged_by_hand(lora_run["peft"])
    exported_weights = exported.state_dict()
    assert exported_weights.keys() == expected_weights.keys()
    for name, weight in exported_weights.items():
        assert torch.equal(weight, expected_weights[name].to(torch.bfloat16)), name
    ids = sample_ids()
    with torch.no_grad():
        expected = lora_run["peft"](input_ids=ids).logits
        logits = exported(input_ids=ids).logits.float()
    scale = float(expected.abs().max())
    assert float((logits - expected).abs().max()) <= 4 * torch.finfo(torch.bfloat16).eps * scale


def greedy_prompts(tokenizer) -> list[list[int]]:
    questions = ["Ana has 3 pens and buys 4 more. How many pens now?", "What is 12 times 3?", "Tom ran 5 km."]
    return [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                          tokenize=True, return_dict=False) for q in questions]


def test_exported_model_answers_greedily_like_the_adapter(lora_run, tiny_model_dir):
    from fewshot_distill.eval.backends import EngineSettings, HFBackend
    from fewshot_distill.models.student import load_tokenizer

    tokenizer = load_tokenizer(str(lora_run["out"]))
    prompts = greedy_prompts(tokenizer)
    settings = EngineSettings(max_new_tokens=MAX_NEW_TOKENS, dtype="float32", batch_size=3)
    on_base = HFBackend(str(tiny_model_dir), tokenizer, settings)
    with_adapter = [g.token_ids for g in on_base.generate(prompts, str(lora_run["run"] / "checkpoint-3"))]
    base_only = [g.token_ids for g in on_base.generate(prompts)]
    exported = [g.token_ids for g in HFBackend(str(lora_run["out"]), tokenizer, settings).generate(prompts)]
    assert with_adapter != base_only  # the adapter changes the answers
    assert exported == with_adapter


def test_full_finetuning_checkpoint_exports(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from fewshot_distill.models.student import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    write_run(tmp_path / "run", model, load_tokenizer(str(tiny_model_dir)), str(tiny_model_dir), bf16=True)
    out = export_run(tmp_path / "run", "final", tmp_path / "out")  # default dtype: the run's bf16
    exported = load(out)
    info = json.loads((out / EXPORT_INFO).read_text())
    assert (info["step"], info["finetune"], info["dtype"], info["base_model"]) == ("final", "full", "bf16", None)
    assert exported.dtype == torch.bfloat16
    trained = model.state_dict()
    for name, weight in exported.state_dict().items():
        assert torch.equal(weight, trained[name].to(torch.bfloat16)), name


# --------------------------------------------------------------------------- one-line errors (nothing loaded)

@pytest.mark.parametrize("run, step, message", [
    ("missing", "final", "no run folder"),
    ("run", "7", "has no checkpoint for step 7 (it has: 3): pass STEP= / --step"),
    ("run", "last", "neither an optimizer step"),
])
def test_bad_run_or_step_is_one_line_naming_the_fix(lora_run, tmp_path, run, step, message):
    with pytest.raises(ExportError, match=re.escape(message)) as error:
        export_run(lora_run["root"] / run, step, tmp_path / "out")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_folder_without_checkpoints_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(ExportError, match="no checkpoint-\\* or final folder"):
        export_run(tmp_path, "final", tmp_path / "out")


def test_damaged_checkpoint_is_refused(lora_run, tmp_path):
    run = shutil.copytree(lora_run["run"], tmp_path / "run")
    flip_bytes(run / "checkpoint-3" / "adapter_model.safetensors")
    with pytest.raises(ExportError, match="checkpoint-3.*export another step") as error:
        export_run(run, 3, tmp_path / "out")
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()


def test_unverified_checkpoint_that_does_not_load_is_one_line(lora_run, tmp_path):
    """No manifest (written before manifests existed) and an adapter file cut short: found at load time."""
    run = shutil.copytree(lora_run["run"], tmp_path / "run")
    (run / "checkpoint-3" / "manifest.json").unlink()
    truncate(run / "checkpoint-3" / "adapter_model.safetensors")
    with pytest.raises(ExportError, match="checkpoint-3 does not load .*: export another step") as error:
        export_run(run, 3, tmp_path / "out")
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()


def test_base_model_that_is_not_there_is_one_line(lora_run, tmp_path):
    with pytest.raises(ExportError, match="pass --base_model") as error:
        export_run(lora_run["run"], 3, tmp_path / "out", base_model=str(tmp_path / "moved"))
    assert "\n" not in str(error.value) and str(tmp_path / "moved") in str(error.value)


def test_output_folder_that_is_not_empty_is_refused(lora_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="exists and is not empty: pass a new folder"):
        export_run(lora_run["run"], 3, out)
    assert (out / "keep.txt").read_text() == "mine"


def test_script_exits_with_the_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["export.py", "--run", str(tmp_path / "x"), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO_ROOT / "scripts" / "export.py"), run_name="__main__")
    assert str(exit_.value) == (f"error: no run folder {tmp_path / 'x'}: pass the output_dir of a training run "
                                "(RUN=, --run), e.g. experiments/baseline")


def test_make_export_passes_run_step_out_and_dtype():
    result = subprocess.run(["make", "-n", "export", "RUN=runs/a", "STEP=200", "OUT=exported/a", "DTYPE=fp32"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert "scripts/export.py --run runs/a --step 200 --out exported/a --dtype fp32" in result.stdout


# --------------------------------------------------------------------------- slow: vLLM, real training runs

@pytest.mark.slow
@needs_vllm
def test_vllm_loads_the_export_and_decodes_like_transformers(lora_run, tmp_path):
    """float32 on CPU, no adapter on the engine: greedy tokens equal the transformers backend's, which equal
    the adapter's (test_exported_model_answers_greedily_like_the_adapter)."""
    from fewshot_distill.eval.backends import EngineSettings, HFBackend
    from fewshot_distill.eval.prompts import max_model_len
    from fewshot_distill.models.student import load_tokenizer

    out = lora_run["out"]
    tokenizer = load_tokenizer(str(out))
    prompts = greedy_prompts(tokenizer)
    settings = {"max_new_tokens": MAX_NEW_TOKENS, "dtype": "float32", "batch_size": 3,
                "max_model_len": max_model_len(prompts, MAX_NEW_TOKENS)}
    vllm_ids = vllm_greedy_ids(out, prompts, [None], settings, tmp_path)["None"]
    hf_ids = [list(g.token_ids) for g in HFBackend(str(out), tokenizer, EngineSettings(**settings)).generate(prompts)]
    assert vllm_ids == hf_ids and all(vllm_ids)


@pytest.mark.slow
def test_script_exports_a_trained_lora_run_and_a_full_run(tmp_path, tiny_model_dir):
    """2 optimizer steps of each kind through the training script, then scripts/export.py on checkpoint-2: the
    export computes what the checkpoint computes (the adapter on its base; the full model as saved)."""
    from peft import PeftModel

    ids = sample_ids()
    for finetune in ("lora", "full"):
        run_dir = tmp_path / finetune
        train("baseline", run_dir, tiny_model_dir, "training.max_steps=2", "training.warmup_steps=0",
              f"model.finetune={finetune}", processes=1)
        out = tmp_path / f"out_{finetune}"
        result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "export.py"), "--run", str(run_dir),
                                 "--step", "2", "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        info = json.loads((out / EXPORT_INFO).read_text())
        assert (info["step"], info["finetune"], info["dtype"]) == (2, finetune, "fp32")  # the tests train in fp32
        checkpoint = run_dir / "checkpoint-2"
        with torch.no_grad():
            base_logits = load(tiny_model_dir)(input_ids=ids).logits
            expected = (PeftModel.from_pretrained(load(tiny_model_dir), checkpoint) if finetune == "lora"
                        else load(checkpoint))(input_ids=ids).logits
            logits = load(out)(input_ids=ids).logits
        scale = float(expected.abs().max())
        assert float((expected - base_logits).abs().max()) > 1e-4 * scale  # two steps moved the model
        assert float((logits - expected).abs().max()) <= 1e-5 * scale  # as test_float32_export_logits_equal_...
