"""The step benchmark's FLOP model: ideal forward/backward FLOPs per step of each variant and over the paper's
whole run (what the measured times are compared with)."""

from __future__ import annotations

from fewshot_distill.bench.step_data import PAPER_BATCH, PAPER_STEPS


def forward_flops(cfg, batch_size: int, seq_len: int, head_positions: int, past_len: int = 0) -> float:
    """Matmul FLOPs of one forward: projections + MLP + causal attention, LM head at head_positions/row.

    `past_len`: cached keys/values every token also attends to (the shared shot prefix).
    """
    hidden, head_dim = cfg.hidden_size, cfg.head_dim
    projection_params = hidden * head_dim * (2 * cfg.num_attention_heads + 2 * cfg.num_key_value_heads)
    mlp_params = 3 * hidden * cfg.intermediate_size
    tokens = batch_size * seq_len
    # QK^T + AV: 4 * head_dim FLOPs per (query, key) pair; seq_len^2 / 2 causal pairs + seq_len x past_len.
    attention = 2 * batch_size * cfg.num_attention_heads * head_dim * seq_len * (seq_len + 2 * past_len)
    body = cfg.num_hidden_layers * (2 * tokens * (projection_params + mlp_params) + attention)
    return body + 2 * batch_size * head_positions * hidden * cfg.vocab_size


def ideal_flops(cfg, batch: dict, gradient_checkpointing: bool, fixed_batch: dict | None = None,
                prefix_len: int = 0) -> dict[str, float]:
    """Per variant. Backward of frozen weights = input gradients only ~= 1 forward (LoRA ignored).

    `fixed_batch`: the same examples with fixed shots; its teacher reads prefix_len cached tokens plus
    the longest suffix of the batch when the prefix is reused.
    """
    B, Ts = batch["student_input_ids"].shape
    Tt = batch["teacher_input_ids"].size(1)
    A = int((batch["student_labels"] != -100).sum(dim=1).max())
    recompute = 1 if gradient_checkpointing else 0
    student_window = (2 + recompute) * forward_flops(cfg, B, Ts, 0) + 2 * forward_flops(cfg, B, 0, A + 1)
    teacher_answer = forward_flops(cfg, B, Tt, A)
    sft = student_window
    flops = {
        "sft": sft,
        "reference": forward_flops(cfg, B, Tt, Tt) + (2 + recompute) * forward_flops(cfg, B, Ts, 0)
        + 2 * forward_flops(cfg, B, 0, Ts),
        "ours": teacher_answer + student_window,
        "ours_hit": sft,
        "teacher": teacher_answer,
    }
    if fixed_batch is not None:
        fixed_len = fixed_batch["teacher_input_ids"].size(1)
        suffix_len = int(fixed_batch["teacher_attention_mask"].sum(dim=1).max()) - prefix_len
        flops["teacher_fixed"] = forward_flops(cfg, B, fixed_len, A)
        flops["teacher_fixed_reuse"] = forward_flops(cfg, B, suffix_len, A, past_len=prefix_len)
        flops["fixed"] = flops["teacher_fixed"] + student_window
        flops["fixed_reuse"] = flops["teacher_fixed_reuse"] + student_window
        flops["shot_prefix_once"] = forward_flops(cfg, 1, prefix_len, 0)
    return flops


def whole_run_flops(flops: dict, batch_size: int, n_unique: int) -> dict[str, float]:
    """The paper schedule in FLOPs, each as a multiple of the SFT run.

    ours_cached: the teacher runs once per unique example (cache misses), every other step is SFT's
    plus nothing (= the floor in this model). fixed_reuse(_cached): the same with the suffix teacher,
    plus one prefix forward per process.
    """
    total = PAPER_STEPS * PAPER_BATCH
    per_example = {name: value / batch_size for name, value in flops.items()}
    sft_run = total * per_example["sft"]
    runs = {"reference": total * per_example["reference"], "ours_uncached": total * per_example["ours"],
            "ours_cached": n_unique * per_example["ours"] + (total - n_unique) * per_example["sft"]}
    if "fixed" in flops:
        runs["fixed_uncached"] = total * per_example["fixed"]
        runs["fixed_reuse_uncached"] = total * per_example["fixed_reuse"] + flops["shot_prefix_once"]
        runs["fixed_reuse_cached"] = (n_unique * per_example["fixed_reuse"] + (total - n_unique) * per_example["sft"]
                                      + flops["shot_prefix_once"])
    return {f"{name}_over_sft": value / sft_run for name, value in runs.items()}
