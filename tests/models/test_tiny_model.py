"""Tiny random Qwen3 + offline tokenizer: loading, shapes, tokenizer, and the chat-template property.

Fixtures from conftest: tiny_model_dir (offline tokenizer), tiny_qwen3_real_tokenizer_dir and
qwen3_tokenizer (both skip only when ../shared is absent).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from fewshot_distill.models.tiny_model import (
    HEAD_DIM,
    build_tiny_qwen3,
    default_tokenizer_texts,
    round_up,
    train_bpe_tokenizer,
)
from tests.conftest import REPO_ROOT

QWEN3_VOCAB = 151_669

ANSWER = "She has 3*4 = <<3*4=12>>12 apples.\nThen 12+5 = <<12+5=17>>17.\n#### 17"
CONVERSATIONS = {
    "one turn": [
        {"role": "user", "content": "Question: How many apples?"},
        {"role": "assistant", "content": ANSWER},
    ],
    "with system": [
        {"role": "system", "content": "Solve the problem."},
        {"role": "user", "content": "Question: How many apples?"},
        {"role": "assistant", "content": ANSWER},
    ],
    "few-shot turns": [
        {"role": "user", "content": "Question: 2+2?"},
        {"role": "assistant", "content": "2+2 = <<2+2=4>>4\n#### 4"},
        {"role": "user", "content": "Question: 3*3?"},
        {"role": "assistant", "content": "3*3 = <<3*3=9>>9\n#### 9"},
        {"role": "user", "content": "Question: How many apples?"},
        {"role": "assistant", "content": ANSWER},
    ],
}


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir) -> Path:
    """The session's tiny model with the offline tokenizer (built by build_tiny_qwen3 in conftest)."""
    return Path(tiny_model_dir)


def assert_answer_turn_appends_to_generation_prompt(tokenizer, messages):
    """Rendering [.., assistant C] == generation prompt of [..] + C + '<|im_end|>\\n'."""
    full = tokenizer.apply_chat_template(messages, tokenize=False, enable_thinking=False)
    prompt = tokenizer.apply_chat_template(
        messages[:-1], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert full == prompt + messages[-1]["content"] + "<|im_end|>\n"
    return full


def test_tiny_model_loads_with_head_dim_64_and_gives_vocab_sized_logits(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    config = model.config
    assert config.model_type == "qwen3"
    assert config.head_dim == HEAD_DIM == 64
    assert config.num_attention_heads * config.head_dim == config.hidden_size == 128
    assert config.num_hidden_layers == 2 and config.tie_word_embeddings
    assert config.vocab_size % 64 == 0 and config.vocab_size >= len(tokenizer)
    ids = tokenizer("Question: How many apples?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], config.vocab_size)
    assert torch.isfinite(logits).all()


def test_special_token_ids_agree_across_tokenizer_config_and_generation_config(tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    generation = GenerationConfig.from_pretrained(tiny_dir)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert model.config.eos_token_id == generation.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.bos_token_id is not None


def test_same_seed_gives_same_weights(tmp_path, tiny_dir):
    again = build_tiny_qwen3(tmp_path / "again", seed=0)
    assert (again / "model.safetensors").read_bytes() == (tiny_dir / "model.safetensors").read_bytes()


def test_offline_tokenizer_round_trips_text_and_has_its_special_tokens(tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    text = "Question: Mira pays $125 for 4 kites.\n125/5 = <<125/5=25>>25 ünïcödé 😀\n#### 25"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    for token in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    # digits are spelled one per token, as in Qwen3
    assert tokenizer.tokenize("2024") == ["2", "0", "2", "4"]
    assert 300 < len(tokenizer) <= 2048


def test_offline_tokenizer_training_is_deterministic():
    texts = default_tokenizer_texts()
    assert train_bpe_tokenizer(texts).get_vocab() == train_bpe_tokenizer(texts).get_vocab()


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_offline_chat_template_answer_turn_appends_to_generation_prompt(tiny_dir, name):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    full = assert_answer_turn_appends_to_generation_prompt(tokenizer, CONVERSATIONS[name])
    # only the final answer turn carries the (empty) think block
    assert full.count("<think>\n\n</think>\n\n") == 1


def test_offline_chat_template_generation_prompt_follows_enable_thinking(tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    messages = [{"role": "user", "content": "Question: hi"}]
    base = "<|im_start|>user\nQuestion: hi<|im_end|>\n<|im_start|>assistant\n"
    render = lambda **kw: tokenizer.apply_chat_template(messages, tokenize=False, **kw)  # noqa: E731
    assert render(add_generation_prompt=True) == base
    assert render(add_generation_prompt=True, enable_thinking=False) == base + "<think>\n\n</think>\n\n"
    assert render() == "<|im_start|>user\nQuestion: hi<|im_end|>\n"


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_real_qwen3_chat_template_has_the_same_property_and_output(qwen3_tokenizer, tiny_dir, name):
    real = qwen3_tokenizer
    offline = AutoTokenizer.from_pretrained(tiny_dir)
    messages = CONVERSATIONS[name]
    full = assert_answer_turn_appends_to_generation_prompt(real, messages)
    # the simplified offline template renders these conversations exactly like the real one
    assert full == offline.apply_chat_template(messages, tokenize=False, enable_thinking=False)


def test_copied_real_tokenizer_is_covered_by_the_model_vocab(tiny_qwen3_real_tokenizer_dir, qwen3_tokenizer):
    # conftest builds it with build_tiny_qwen3(out, tokenizer=<../shared/tokenizers/qwen3>)
    out_dir = Path(tiny_qwen3_real_tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    real = qwen3_tokenizer
    assert len(tokenizer) == QWEN3_VOCAB and tokenizer.get_vocab() == real.get_vocab()
    assert tokenizer.chat_template == real.chat_template
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    assert model.config.vocab_size == round_up(QWEN3_VOCAB, 64) == 151_680
    assert model.config.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    highest_id = max(tokenizer.get_vocab().values())
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[0, highest_id]])).logits
    assert logits.shape == (1, 2, 151_680)


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="multiple of 64"):
        build_tiny_qwen3(tmp_path / "a", hidden_size=100)
    with pytest.raises(ValueError, match="dtype"):
        build_tiny_qwen3(tmp_path / "b", dtype="float8")
    with pytest.raises(FileNotFoundError, match="tokenizer folder"):
        build_tiny_qwen3(tmp_path / "c", tokenizer=tmp_path / "missing")


def test_make_tiny_model_script_writes_a_loadable_bfloat16_model(tmp_path, monkeypatch):
    argv = ["make_tiny_model.py", "--out", str(tmp_path / "m"), "--hidden-size", "192", "--layers", "1",
            "--dtype", "bfloat16"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(REPO_ROOT / "scripts" / "make_tiny_model.py"), run_name="__main__")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert model.config.hidden_size == 192 and model.config.num_attention_heads == 3
    assert model.config.head_dim == 64 and model.config.num_hidden_layers == 1
    assert model.dtype == torch.bfloat16
