"""Shared fixtures: the real Qwen3 tokenizer and GSM8K from ../shared (skipped when absent), tiny
random-initialised Qwen3 models saved to disk and loaded through `from_pretrained`, the LoRA student
on the tiny model, and tokenized smoke examples with one collated batch.

Where shared test code lives:
- tests/conftest.py (this file): fixtures, and the paths and builder functions they are made from
  (REPO_ROOT, SMOKE_DATA, smoke_data_cfg, build_lora_student), so that a module-scoped fixture or a
  helper class builds the same object as the fixture does.
- tests/helpers.py: plain functions and classes that more than one test module calls (training
  launches, file damage, the scripted evaluation backend, synthetic results, ulp comparisons). No
  fixtures there.
- A test module imports from these two only, never from another test module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
QWEN3_TOKENIZER = SHARED / "tokenizers" / "qwen3"
GSM8K_DIR = SHARED / "data" / "gsm8k"
SMOKE_DATA = REPO_ROOT / "data" / "smoke"
FIXED_SHOT_SEED = 42  # the seed of the fixed_shot_batches fixture
SMOKE_SEED = 42  # the shot-sampling seed of the smoke_examples fixture


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    if not QWEN3_TOKENIZER.is_dir():
        pytest.skip("../shared/tokenizers/qwen3 is absent")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(QWEN3_TOKENIZER)


@pytest.fixture(scope="session")
def gsm8k_train_rows():
    if not GSM8K_DIR.is_dir():
        pytest.skip("../shared/data/gsm8k is absent")
    with open(GSM8K_DIR / "train.jsonl") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Tiny Qwen3 (head_dim 64) with the project's offline BPE tokenizer: fast enough for training tests."""
    from fewshot_distill.models.tiny_model import build_tiny_qwen3

    out = tmp_path_factory.mktemp("tiny_qwen3")
    build_tiny_qwen3(out)
    return out


@pytest.fixture(scope="session")
def tiny_qwen3_real_tokenizer_dir(tmp_path_factory):
    """Tiny Qwen3 with the real Qwen3 tokenizer (vocab 151,669)."""
    if not QWEN3_TOKENIZER.is_dir():
        pytest.skip("../shared/tokenizers/qwen3 is absent")
    from fewshot_distill.models.tiny_model import build_tiny_qwen3

    out = tmp_path_factory.mktemp("tiny_qwen3_real_tok")
    build_tiny_qwen3(out, tokenizer=str(QWEN3_TOKENIZER))
    return out


def smoke_data_cfg():
    """Data config over the project's own smoke problems with 2 shots: short sequences, fast tests."""
    from fewshot_distill.config import DataConfig

    return DataConfig(path=str(SMOKE_DATA), num_fewshot_examples=2, max_seq_len_teacher=1024,
                      max_seq_len_student=512, num_workers=0)


@pytest.fixture(scope="session")
def fixed_shot_batches(tiny_model_dir):
    """Fixed-shot smoke examples (every teacher sequence starts with the same shots, seed 42) as
    (shared prefix ids, batches). Batch 1: prefix readers only, different lengths (right padding).
    Batch 2 mixes in a shot row, which takes the full-sequence path. Batch 3: one row, no padding (no
    mask to lean on: the suffix queries must still see the whole prefix, not sdpa's top-left causal
    pattern)."""
    import dataclasses

    from fewshot_distill.data.examples import build_examples, collate_examples, load_task_rows
    from fewshot_distill.data.shots import fixed_shot_indices
    from fewshot_distill.teachers.shot_prefix import fixed_shot_prefix_ids
    from fewshot_distill.models.student import load_tokenizer

    seed = FIXED_SHOT_SEED
    data_cfg = dataclasses.replace(smoke_data_cfg(), shot_sampling="fixed")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    rows = load_task_rows(data_cfg, "train")
    examples, _ = build_examples(rows, tokenizer, data_cfg, seed=seed, with_teacher=True)
    prefix = fixed_shot_prefix_ids(examples, len(rows), data_cfg.num_fewshot_examples, seed)
    shot_row = fixed_shot_indices(len(rows), data_cfg.num_fewshot_examples, seed)[0]
    batches = [collate_examples([examples[i] for i in rows_], tokenizer.pad_token_id)
               for rows_ in ((3, 10, 17), (5, shot_row), (7,))]
    return prefix, batches


@pytest.fixture
def small_data_cfg():
    return smoke_data_cfg()


@pytest.fixture(scope="session")
def smoke_examples(tiny_model_dir):
    """(tokenizer, examples): the first 16 smoke training rows tokenized for the tiny model, with their
    few-shot teacher sequences (seed SMOKE_SEED). Each example depends only on its row and the seed, so
    `examples[i]` equals `build_examples(..., seed=42, indices=[i])[0]`. Shared by the whole session:
    collate them, never modify them."""
    from fewshot_distill.data.examples import build_examples, load_task_rows
    from fewshot_distill.models.student import load_tokenizer

    data_cfg = smoke_data_cfg()
    tokenizer = load_tokenizer(str(tiny_model_dir))
    rows = load_task_rows(data_cfg, "train")
    examples, _ = build_examples(rows, tokenizer, data_cfg, seed=SMOKE_SEED, with_teacher=True, indices=range(16))
    return tokenizer, examples


@pytest.fixture(scope="session")
def smoke_batch(smoke_examples):
    """Smoke rows 0, 3 and 7 collated: three sequences of different lengths (right padding), with the
    teacher's few-shot sequences. Shared by the whole session: never modify its tensors in place."""
    from fewshot_distill.data.examples import collate_examples

    tokenizer, examples = smoke_examples
    return collate_examples([examples[i] for i in (0, 3, 7)], tokenizer.pad_token_id)


def build_lora_student(model_dir, *, seed: int = 0, dropout: float = 0.0, lora_b_std: float | None = None,
                       bf16: bool = False, gradient_checkpointing: bool = False):
    """The peft model a LoRA run trains: the base model at `model_dir` with the project's LoRA adapter.

    `torch.manual_seed(seed)` comes first, so the adapter's A matrices (and B, when drawn) are the same
    in every test that asks for the same arguments. A fresh adapter has B = 0: the student then equals
    its adapter-disabled teacher. `lora_b_std` draws B from N(0, std) instead, for a student that
    differs from its teacher. `dropout` defaults to 0 so that train mode is deterministic too.
    """
    import torch

    from fewshot_distill.config import LoraConfig
    from fewshot_distill.models.student import add_lora, load_base_model

    torch.manual_seed(seed)
    peft_model = add_lora(load_base_model(str(model_dir), bf16=bf16), LoraConfig(dropout=dropout),
                          gradient_checkpointing=gradient_checkpointing)
    if lora_b_std is not None:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, lora_b_std)
    return peft_model


@pytest.fixture
def lora_student(tiny_model_dir):
    """A fresh student on the tiny model, as training starts (B = 0, no dropout, seed 0), wrapped as
    the training loop runs it. Function scope: tests train and change it."""
    from fewshot_distill.models.student import AnswerWindowLM

    return AnswerWindowLM(build_lora_student(tiny_model_dir))
