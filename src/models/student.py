"""Student = base causal LM + LoRA (peft). Teacher = the same weights with the adapter disabled.

One copy of the base weights serves both: `teacher_logits(...)` runs the model inside
`peft_model.disable_adapter()`, which is exactly the frozen base model.

`AnswerWindowLM` returns logits only at requested positions (the answer tokens the losses use),
so the [B, T, V] full-vocabulary tensor is never built for whole sequences (V = 151,936 for Qwen3).
"""

from __future__ import annotations

import torch
from torch import nn

from src.utils.resources import MODEL_FIX, loading


def load_tokenizer(name: str):
    """The tokenizer of `name` (hub id or folder); ResourceError (one line) when it cannot be found."""
    from transformers import AutoTokenizer

    with loading("tokenizer", name, fix=MODEL_FIX):
        tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token_id is None:
        raise ValueError(
            f"Tokenizer of {name!r} has no pad token. Set one in its tokenizer_config.json "
            "(Qwen3 uses <|endoftext|>) so batches can be padded.")
    return tokenizer


def load_base_model(name: str, bf16: bool, attn_implementation: str = "sdpa"):
    """The causal LM `name` (hub id or folder); ResourceError (one line) when it cannot be found."""
    from transformers import AutoModelForCausalLM

    # Frozen base weights are stored in bf16 when training in bf16 (half the memory); the LoRA
    # weights peft adds stay in float32 and autocast mixes the two.
    with loading("model", name, fix=MODEL_FIX):
        return AutoModelForCausalLM.from_pretrained(
            name, dtype=torch.bfloat16 if bf16 else torch.float32, attn_implementation=attn_implementation)


def load_model_config(name: str):
    """The model's config only (no weights): a cheap check that `name` can be loaded at all."""
    from transformers import AutoConfig

    with loading("model", name, fix=MODEL_FIX):
        return AutoConfig.from_pretrained(name)


def add_lora(base_model, lora_cfg, gradient_checkpointing: bool = False):
    """Wrap `base_model` with a trainable LoRA adapter; base weights are frozen."""
    from peft import LoraConfig, get_peft_model

    if gradient_checkpointing:
        # Non-reentrant checkpointing works with frozen inputs, so no enable_input_require_grads hack.
        base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_config = LoraConfig(
        r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
        target_modules=list(lora_cfg.target_modules), bias=lora_cfg.bias, task_type="CAUSAL_LM")
    return get_peft_model(base_model, peft_config)


class AnswerWindowLM(nn.Module):
    """peft model -> logits at chosen positions only.

    forward(input_ids [B, T], attention_mask [B, T], positions [B, P]) -> logits [B, P, V]
    """

    def __init__(self, peft_model):
        super().__init__()
        self.peft_model = peft_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
                ) -> torch.Tensor:
        causal_lm = self.peft_model.get_base_model()  # LoRA layers are injected in place
        hidden = causal_lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                         use_cache=False).last_hidden_state
        index = positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        return causal_lm.get_output_embeddings()(hidden.gather(1, index))


@torch.no_grad()
def teacher_logits(window_lm: AnswerWindowLM, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   positions: torch.Tensor) -> torch.Tensor:
    """The frozen base model's logits at `positions`: the student with its adapter disabled."""
    with window_lm.peft_model.disable_adapter():
        return window_lm(input_ids, attention_mask, positions)


def vocab_size(window_lm: AnswerWindowLM) -> int:
    return window_lm.peft_model.get_base_model().get_output_embeddings().weight.size(0)
