"""Batched generation from token ids with the KV cache: greedy, or temperature / top-p sampling.

Used by the evaluation's HF backend (fewshot_distill/eval/backends.py) and meant for training (a student sampling
its own answers). Prompts are left-padded so every row's next token is read at the last column;
position ids count only real tokens, and the first forward lets a pad query see only itself
(`prefill_attention_mask`), so a padded row computes what it would alone whatever the attention kernel
returns for rows that see no key.

Shapes: B = prompts, T = longest prompt, V = vocabulary.

    out = generate_tokens(model, [[1, 2, 3], [4, 5]], max_new_tokens=64, eos_ids={2}, pad_token_id=0)
    out.token_ids[0], out.ended_with_eos[0]   # new ids of row 0 (up to and including EOS), True/False

`model` is any causal LM module (transformers, or peft around one: the adapter is on unless the caller
disables it). Dropout is the caller's business: call it on a model in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


# Tokens between asks of "has every row ended?" on an accelerator, where each ask waits for the device
# (on CPU it is free: every token).
FINISHED_CHECK_EVERY = 16


@dataclass(frozen=True)
class GeneratedTokens:
    token_ids: list[list[int]]   # per row: the new ids, up to and including the first EOS
    ended_with_eos: list[bool]   # per row: False when it stopped at max_new_tokens


def left_pad(prompt_ids: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> (input_ids [B, T], attention_mask [B, T]), padding on the left."""
    if not prompt_ids or any(len(p) == 0 for p in prompt_ids):
        raise ValueError("generate_tokens needs at least one prompt, and no empty prompt")
    width = max(len(p) for p in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for row, ids in enumerate(prompt_ids):
        input_ids[row, width - len(ids):] = torch.tensor(list(ids), dtype=torch.long)
        attention_mask[row, width - len(ids):] = 1
    return input_ids, attention_mask


def prefill_attention_mask(attention_mask: torch.Tensor, attn_implementation: str | None,
                           dtype: torch.dtype) -> torch.Tensor:
    """The mask of the first forward over a left-padded batch: [B, T] padding mask -> [B, 1, T, T].

    Causal over the real tokens, and a pad query sees only itself. With the plain padding mask a pad
    query sees no key at all (the keys before it are pads too), and what a kernel returns for such a
    row is its own choice: PyTorch's math kernel returns 0, cuDNN's SDPA on Hopper is reported to
    return NaN (pytorch #196678), and a NaN there reaches the real rows through 0 x NaN in the next
    layer's value product. Real queries never see a pad key, so their arithmetic is unchanged.

    sdpa takes the boolean mask (True: attend), eager an additive one in the model's dtype; other
    implementations (flash attention unpads the batch, so no row is keyless) get the padding mask back.
    """
    if attn_implementation not in ("sdpa", "eager"):
        return attention_mask
    width = attention_mask.size(1)
    causal = torch.ones(width, width, dtype=torch.bool, device=attention_mask.device).tril()
    itself = torch.eye(width, dtype=torch.bool, device=attention_mask.device)
    visible = (causal & attention_mask.bool()[:, None, :]) | itself  # [B, T, T]: query i sees key j
    if attn_implementation == "sdpa":
        return visible[:, None]
    blocked = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    return blocked.masked_fill_(~visible, torch.finfo(dtype).min)[:, None]


def eos_token_ids(tokenizer, generation_config=None) -> set[int]:
    """Tokens that end generation: the model's generation_config eos ids plus the tokenizer's eos."""
    ids = set()
    configured = getattr(generation_config, "eos_token_id", None)
    if configured is not None:
        ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def next_token(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """One token per row from logits [B, V]: argmax at temperature 0, else a sample from
    softmax(logits / temperature) restricted to the smallest set of ids holding `top_p` of the mass.

    `generator`: one for the batch, or one per row (a row's samples then do not depend on the other
    rows of its batch: training seeds each example's sample on its own)."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
        # Keep an id while the mass before it is below top_p (the most likely id is always kept).
        keep = (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter_(-1, sorted_ids, sorted_probs)
    if isinstance(generator, Sequence):
        if len(generator) != probs.size(0):
            raise ValueError(f"{len(generator)} generators for {probs.size(0)} rows; pass one per row")
        return torch.cat([torch.multinomial(row[None], 1, generator=g)[0] for row, g in zip(probs, generator)])
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_tokens(model, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int, eos_ids: set[int],
                    pad_token_id: int, temperature: float = 0.0, top_p: float = 1.0,
                    generator: torch.Generator | Sequence[torch.Generator] | None = None, device: torch.device | str | None = None,
                    finished_check_every: int | None = None) -> GeneratedTokens:
    """New token ids for each prompt (left-padded batch, KV cache), stopping a row at its first EOS.

    temperature 0: greedy (generator unused); > 0: sampling with `generator` (seed it for
    reproducible samples; it must live on `device`), or with one generator per row. Rows that ended get `pad_token_id` fed in
    and are not extended. `finished_check_every`: tokens between checks that every row ended (default
    every token on CPU, FINISHED_CHECK_EVERY on an accelerator; the result does not depend on it).
    """
    from transformers import DynamicCache

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature} and {top_p}")
    if not eos_ids:
        raise ValueError("eos_ids is empty: generation could only stop at max_new_tokens")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    input_ids, attention_mask = left_pad(prompt_ids, pad_token_id)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    batch = input_ids.size(0)
    eos = torch.tensor(sorted(eos_ids), device=device)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    cache = DynamicCache()
    new_ids = torch.empty(batch, 0, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    step_ids = input_ids
    config = getattr(model, "config", None)
    sliding = "sliding_attention" in (getattr(config, "layer_types", None) or ())
    if sliding and input_ids.size(1) > config.sliding_window:
        # The prefill mask is full causal; a sliding-window layer would then see too far back.
        raise ValueError(f"generate_tokens: a prompt of {input_ids.size(1)} tokens exceeds the model's sliding "
                         f"window ({config.sliding_window}); shorten the prompts or use model.generate")
    step_mask = prefill_attention_mask(attention_mask, getattr(config, "_attn_implementation", None),
                                       next(model.parameters()).dtype)
    check_every = finished_check_every or (1 if device.type == "cpu" else FINISHED_CHECK_EVERY)
    for index in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=step_mask, position_ids=position_ids,
                       past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        token = next_token(logits, temperature, top_p, generator)
        token = torch.where(finished, torch.full_like(token, pad_token_id), token)
        new_ids = torch.cat([new_ids, token[:, None]], dim=1)
        finished |= torch.isin(token, eos)
        # A finished row only appends pads, cut off below: checking less often gives the same result.
        if (index + 1) % check_every == 0 and bool(finished.all()):
            break
        step_ids = token[:, None]
        # Decode steps: every query is a new token and sees itself, so the padding mask is enough.
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=1)
        step_mask = attention_mask
        position_ids = position_ids[:, -1:] + 1

    eos_set = {int(i) for i in eos_ids}
    token_ids, ended = [], []
    for row in new_ids.tolist():
        out = []
        for token in row:
            out.append(token)
            if token in eos_set:
                break
        token_ids.append(out)
        ended.append(bool(out) and out[-1] in eos_set)
    return GeneratedTokens(token_ids, ended)
