"""Student = base causal LM + LoRA (peft), or (model.finetune=full) the causal LM itself with every
weight trainable. Teacher of a LoRA run = the same weights with the adapter disabled.

One copy of the base weights serves both: `teacher_logits(...)` runs the model inside
`peft_model.disable_adapter()`, which is exactly the frozen base model. A full fine-tuning run has no
adapter to disable: its weights move, so its teacher must be a frozen copy of the starting weights
(`teacher_logits` on it gives the starting model's logits only before the first optimizer step).

`AnswerWindowLM` returns logits only at requested positions (the answer tokens the losses use),
so the [B, T, V] full-vocabulary tensor is never built for whole sequences (V = 151,936 for Qwen3).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from fewshot_distill.utils.resources import MODEL_FIX, loading


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


def load_base_model(name: str, bf16: bool, attn_implementation: str = "sdpa", trainable: bool = False):
    """The causal LM `name` (hub id or folder); ResourceError (one line) when it cannot be found."""
    from transformers import AutoModelForCausalLM

    # Frozen base weights are stored in bf16 when training in bf16 (half the memory); the LoRA
    # weights peft adds stay in float32 and autocast mixes the two. Weights that train themselves
    # (`trainable`, full fine-tuning) stay float32 master copies: bf16 would round small AdamW updates away.
    dtype = torch.bfloat16 if bf16 and not trainable else torch.float32
    with loading("model", name, fix=MODEL_FIX):
        return AutoModelForCausalLM.from_pretrained(name, dtype=dtype, attn_implementation=attn_implementation)


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


def make_fully_trainable(causal_lm, gradient_checkpointing: bool = False):
    """Full fine-tuning: every weight of `causal_lm` trains (returned as is, no wrapper)."""
    causal_lm.requires_grad_(True)
    if gradient_checkpointing:
        causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return causal_lm


def build_student(model_cfg, lora_cfg, bf16: bool, gradient_checkpointing: bool = False):
    """The model that trains: base + LoRA (model.finetune=lora) or the whole causal LM (full)."""
    full = model_cfg.finetune == "full"
    base = load_base_model(model_cfg.name, bf16, model_cfg.attn_implementation, trainable=full)
    if full:
        return make_fully_trainable(base, gradient_checkpointing)
    return add_lora(base, lora_cfg, gradient_checkpointing)


def has_adapter(model) -> bool:
    """True for a peft model (an adapter to disable); False for a plain causal LM."""
    return hasattr(model, "disable_adapter") and hasattr(model, "get_base_model")


class AnswerWindowLM(nn.Module):
    """peft model, or plain causal LM -> logits at chosen positions only.

    forward(input_ids [B, T], attention_mask [B, T], positions [B, P]) -> logits [B, P, V]

    `wrapped_model` holds the model given: the PeftModel of a LoRA run, or the plain causal LM of a full
    fine-tuning run or an evaluation of a full checkpoint; `causal_lm` is the transformer either way.
    """

    def __init__(self, wrapped_model):
        super().__init__()
        self.wrapped_model = wrapped_model

    @property
    def has_adapter(self) -> bool:
        return has_adapter(self.wrapped_model)

    @property
    def _no_split_modules(self):
        # accelerate's FSDP transformer-layer auto-wrap reads the wrapped model's layer classes from here
        # (configs/accelerate/fsdp.yaml names none, so one file serves Qwen3, Gemma 3, Llama, ...).
        return getattr(self.causal_lm, "_no_split_modules", None)

    @property
    def causal_lm(self):
        # LoRA layers are injected in place, so the base model runs them too.
        return self.wrapped_model.get_base_model() if self.has_adapter else self.wrapped_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
                ) -> torch.Tensor:
        causal_lm = self.causal_lm
        hidden = causal_lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                         use_cache=False).last_hidden_state
        index = positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        return causal_lm.get_output_embeddings()(hidden.gather(1, index))


def adapter_disabled(window_lm: AnswerWindowLM):
    """Context in which `window_lm` computes its base model: adapter disabled; a plain model as it is."""
    return window_lm.wrapped_model.disable_adapter() if window_lm.has_adapter else contextlib.nullcontext()


@torch.no_grad()
def teacher_logits(window_lm: AnswerWindowLM, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   positions: torch.Tensor) -> torch.Tensor:
    """The frozen base model's logits at `positions`: the student with its adapter disabled.

    A plain model (no adapter) is used as it is: right for an evaluation's base model, and for a full
    fine-tuning run only before its first step (its teacher is a frozen copy, not this model).
    """
    with adapter_disabled(window_lm):
        return window_lm(input_ids, attention_mask, positions)


def vocab_size(window_lm: AnswerWindowLM) -> int:
    return window_lm.causal_lm.get_output_embeddings().weight.size(0)
