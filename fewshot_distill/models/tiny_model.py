"""Tiny random-initialised Qwen3 models and an offline tokenizer for smoke runs and tests.

The smoke run must work with no model hub: :func:`build_tiny_qwen3` writes a folder that
``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained`` both load.
The tokenizer is either a copy of a given one (e.g. the real Qwen3 tokenizer) or a small
byte-level BPE trained here on the project's own smoke problems, with a simplified
Qwen3-style chat template.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    GenerationConfig,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from fewshot_distill.data.synthetic import make_smoke_splits

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"  # end of a chat turn; Qwen3 uses it as eos
THINK_TOKENS = ["<think>", "</think>"]

# vLLM's CPU attention backend only supports some head sizes; 64 is the smallest that works.
HEAD_DIM = 64

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# A simplified Qwen3 chat template (no tools, no reasoning_content). Like the real one, the
# final assistant turn after the last user turn gets an empty think block, earlier assistant
# turns get none, and enable_thinking=false adds the empty think block to the generation
# prompt -- so a rendered conversation equals its generation prompt + answer + "<|im_end|>\n".
CHAT_TEMPLATE = (
    "{%- set ns = namespace(last_user=-1) %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' %}{%- set ns.last_user = loop.index0 %}{%- endif %}"
    "{%- endfor %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' and loop.last and loop.index0 > ns.last_user %}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' + message.content.lstrip('\\n')"
    " + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


def default_tokenizer_texts(seed: int = 0) -> list[str]:
    """Text to train the offline tokenizer on: the smoke problems as they appear in prompts."""
    train, test = make_smoke_splits(seed=seed)
    texts = ["system\nuser\nassistant\n"]
    for row in train + test:
        texts.append(f"Question: {row['question']}")
        texts.append(row["answer"])
    return texts


def train_bpe_tokenizer(texts: list[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it for transformers.

    Any string round-trips (byte-level alphabet). Digits are split one per token, as in Qwen3,
    so numbers are spelled digit by digit. Specials: pad ``<|endoftext|>``, ``<|im_start|>``,
    eos ``<|im_end|>``; ``<think>``/``</think>`` are plain added tokens as in Qwen3.
    ``vocab_size`` is an upper bound: on the smoke problems the merges run out at about 810 tokens.
    """
    if not texts:
        raise ValueError("texts is empty; pass the corpus to train on, e.g. default_tokenizer_texts()")
    if vocab_size < 300:
        raise ValueError(f"vocab_size={vocab_size} is below the 256-byte alphabet plus specials; use >= 300")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    backend.add_tokens([AddedToken(token, special=False, normalized=False) for token in THINK_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    if multiple <= 0:
        raise ValueError(f"multiple must be positive, got {multiple}")
    return -(-value // multiple) * multiple


def tiny_qwen3_config(
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int = 128,
    num_layers: int = 2,
    vocab_multiple: int = 64,
) -> Qwen3Config:
    """A tiny Qwen3 config (head_dim 64) whose vocabulary covers every id of ``tokenizer``."""
    if hidden_size <= 0 or hidden_size % HEAD_DIM != 0:
        raise ValueError(f"hidden_size must be a positive multiple of {HEAD_DIM} (head_dim), got {hidden_size}")
    if num_layers <= 0:
        raise ValueError(f"num_layers must be positive, got {num_layers}")
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer needs both an eos and a pad token; set them before building the model")
    num_heads = hidden_size // HEAD_DIM
    max_id = max(tokenizer.get_vocab().values())
    # Qwen3 has no bos token; its configs use <|endoftext|> (the pad token) as bos_token_id.
    bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id
    return Qwen3Config(
        vocab_size=round_up(max(len(tokenizer), max_id + 1), vocab_multiple),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        head_dim=HEAD_DIM,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=bos_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_qwen3(
    out_dir: str | Path,
    tokenizer: str | Path | PreTrainedTokenizerBase | None = None,
    hidden_size: int = 128,
    num_layers: int = 2,
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """Write a random-initialised tiny Qwen3ForCausalLM plus its tokenizer to ``out_dir``.

    ``tokenizer``: a folder to load with AutoTokenizer (copied as is), a loaded tokenizer,
    or None to train the offline BPE tokenizer on the smoke problems. Returns ``out_dir``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if tokenizer is None:
        tokenizer = train_bpe_tokenizer(default_tokenizer_texts())
    elif isinstance(tokenizer, (str, Path)):
        if not Path(tokenizer).is_dir():
            raise FileNotFoundError(f"tokenizer folder {tokenizer} not found; pass a folder with tokenizer.json")
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
    config = tiny_qwen3_config(tokenizer, hidden_size=hidden_size, num_layers=num_layers)

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(DTYPES[dtype])
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
