"""Computed training memory of LoRA vs full fine-tuning (model.finetune), before activations.

Parameter counts come from a model built from its config on the meta device (no weights, no memory):
the parameters as transformers lays them out, tied embeddings counted once. LoRA's are r x (in + out)
per adapted linear layer (`lora.target_modules`), as peft adds them.

Bytes per parameter, per data-parallel rank (DDP: every rank holds all of it):

    LoRA   base weights bf16 (2), frozen, also the teacher (adapter disabled: no copy);
           adapter weights fp32 (4) + their gradients fp32 (4) + AdamW exp_avg and exp_avg_sq fp32 (8)
    full   weights fp32 master copies (4) + gradients fp32 (4) + AdamW states fp32 (8)
           + the teacher of full distillation, a frozen bf16 copy of the starting weights (2;
             fewshot_distill/teachers/frozen_copy.py; float32 (4) with training.bf16=false, none for full SFT)

FSDP FULL_SHARD divides every full-fine-tuning term (the teacher copy too when it is sharded) by the
number of ranks: gradients too, since under FSDP the loop reduce-scatters every accumulation
micro-batch (`sharding_kwargs`, fewshot_distill/training/loop.py) instead of holding a whole unsharded gradient
until the last. Activations, the teacher's forward and the logits come on top: they depend on batch
and sequence length (docs/performance.md measures them).

    rows = [memory_row("Qwen3-1.7B", qwen3_1_7b_config(), r=16)]
    print(memory_markdown(rows, fsdp_ranks=2))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GIB = 2**30
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BF16, FP32, ADAMW_STATES = 2, 4, 8   # bytes per parameter


def qwen3_1_7b_config():
    """Qwen3-1.7B's architecture (its config.json): 28 layers, hidden 2048, MLP 6144, 16 query / 8 key-value
    heads of 128, vocabulary 151,936, tied embeddings."""
    from transformers import Qwen3Config

    return Qwen3Config(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True)


def gemma3_270m_config():
    """Gemma-3-270M's architecture: 18 layers, hidden 640, MLP 2048, 4 query heads / 1 key-value head of
    256, vocabulary 262,144, tied embeddings (from the GGUF metadata of google/gemma-3-270m published on
    ollama.com: block_count 18, embedding_length 640, feed_forward_length 2048, head_count 4 / 1,
    key_length 256, token_embd [640, 262144], no separate output matrix)."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                            num_attention_heads=4, num_key_value_heads=1, head_dim=256, tie_word_embeddings=True)


def meta_model(config) -> torch.nn.Module:
    """The causal LM of `config` with parameters on the meta device (shapes only)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def parameter_count(model: torch.nn.Module) -> int:
    """Parameters of `model`, a tied pair counted once."""
    return sum(p.numel() for p in model.parameters())


def lora_parameter_count(model: torch.nn.Module, r: int, targets=LORA_TARGETS) -> int:
    """Parameters peft adds with rank r on every nn.Linear whose name ends with a target: r (in + out) each."""
    return sum(r * (module.in_features + module.out_features) for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets)


@dataclass(frozen=True)
class MemoryRow:
    model: str
    parameters: int
    lora_parameters: int
    r: int

    def lora_bytes(self) -> dict[str, int]:
        return {"weights": self.parameters * BF16 + self.lora_parameters * FP32,
                "gradients": self.lora_parameters * FP32,
                "adamw": self.lora_parameters * ADAMW_STATES,
                "teacher": 0}

    def full_bytes(self, ranks: int = 1) -> dict[str, float]:
        return {"weights": self.parameters * FP32 / ranks, "gradients": self.parameters * FP32 / ranks,
                "adamw": self.parameters * ADAMW_STATES / ranks, "teacher": self.parameters * BF16 / ranks}


def memory_row(name: str, config, r: int = 16, targets=LORA_TARGETS) -> MemoryRow:
    model = meta_model(config)
    return MemoryRow(name, parameter_count(model), lora_parameter_count(model, r, targets), r)


def _gib(value: float) -> str:
    return f"{value / GIB:.2f}"


def memory_markdown(rows: list[MemoryRow], fsdp_ranks: int = 2) -> str:
    """One table: per model, LoRA vs full fine-tuning (one rank holding everything, and FSDP over `fsdp_ranks`)."""
    lines = ["| Model | Setup | Trainable parameters | Weights (GiB) | Gradients (GiB) | AdamW states (GiB) "
             "| Teacher (GiB) | Total per GPU (GiB) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        setups = [(f"LoRA r={row.r} (teacher = adapter disabled)", row.lora_parameters, row.lora_bytes()),
                  ("full, frozen bf16 teacher copy", row.parameters, row.full_bytes()),
                  (f"full, FSDP FULL_SHARD over {fsdp_ranks} GPUs (teacher sharded)", row.parameters,
                   row.full_bytes(fsdp_ranks))]
        for setup, trainable, parts in setups:
            lines.append(f"| {row.model} ({row.parameters:,} parameters) | {setup} | {trainable:,} | "
                         f"{_gib(parts['weights'])} | {_gib(parts['gradients'])} | {_gib(parts['adamw'])} | "
                         f"{_gib(parts['teacher'])} | {_gib(sum(parts.values()))} |")
    return "\n".join(lines)
