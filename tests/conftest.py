"""Shared fixtures: the real Qwen3 tokenizer and GSM8K from ../shared (skipped when absent) and tiny
random-initialised Qwen3 models saved to disk and loaded through `from_pretrained`."""

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
    from src.utils.tiny_model import build_tiny_qwen3

    out = tmp_path_factory.mktemp("tiny_qwen3")
    build_tiny_qwen3(out)
    return out


@pytest.fixture(scope="session")
def tiny_qwen3_real_tokenizer_dir(tmp_path_factory):
    """Tiny Qwen3 with the real Qwen3 tokenizer (vocab 151,669)."""
    if not QWEN3_TOKENIZER.is_dir():
        pytest.skip("../shared/tokenizers/qwen3 is absent")
    from src.utils.tiny_model import build_tiny_qwen3

    out = tmp_path_factory.mktemp("tiny_qwen3_real_tok")
    build_tiny_qwen3(out, tokenizer=str(QWEN3_TOKENIZER))
    return out


def smoke_data_cfg():
    """Data config over the project's own smoke problems with 2 shots: short sequences, fast tests."""
    from src.config import DataConfig

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

    from src.data.gsm8k_loader import build_examples, collate_examples, load_gsm8k_rows
    from src.data.shots import fixed_shot_indices
    from src.models.prefix_teacher import fixed_shot_prefix_ids
    from src.models.student import load_tokenizer

    seed = FIXED_SHOT_SEED
    data_cfg = dataclasses.replace(smoke_data_cfg(), shot_sampling="fixed")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    rows = load_gsm8k_rows(data_cfg, "train")
    examples, _ = build_examples(rows, tokenizer, data_cfg, seed=seed, with_teacher=True)
    prefix = fixed_shot_prefix_ids(examples, len(rows), data_cfg.num_fewshot_examples, seed)
    shot_row = fixed_shot_indices(len(rows), data_cfg.num_fewshot_examples, seed)[0]
    batches = [collate_examples([examples[i] for i in rows_], tokenizer.pad_token_id)
               for rows_ in ((3, 10, 17), (5, shot_row), (7,))]
    return prefix, batches


@pytest.fixture
def small_data_cfg():
    return smoke_data_cfg()


def saved_vocab_sized_bytes(run, vocab: int) -> list[int]:
    """Bytes of every tensor with a last dimension of `vocab` that autograd saves for backward while
    `run()` builds its graph: the memory test of the fused answer-window losses."""
    import torch

    saved = []

    def pack(tensor):
        if tensor.dim() >= 2 and tensor.size(-1) == vocab:
            saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return saved


def ulps_apart(actual, expected):
    """Per element, |actual - expected| in units in the last place of `expected` (its dtype's spacing there).

    Golden files written on one CPU are compared with this, not bit for bit: another CPU may sum the same
    floats in another order (vector width, threads) and land an ulp or two away.
    """
    import torch

    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (actual.dtype, expected.dtype)
    info = torch.finfo(expected.dtype)
    magnitude = expected.double().abs().clamp_min(info.tiny)
    spacing = info.eps * torch.exp2(torch.floor(torch.log2(magnitude)))
    return (actual.double() - expected.double()).abs() / spacing


def assert_within_ulps(actual, expected, max_ulps: int = 4):
    distance = ulps_apart(actual, expected)
    assert float(distance.max()) <= max_ulps, (
        f"{int((distance > max_ulps).sum())} elements more than {max_ulps} ulps apart (max {float(distance.max()):.1f})")
