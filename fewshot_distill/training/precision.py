"""Mixed precision without float32 logits.

Under `Accelerator(mixed_precision="bf16")`, `prepare` wraps the model's forward in autocast and in
`convert_outputs_to_fp32` (accelerate/accelerator.py, `prepare_model`). For `AnswerWindowLM` the
output is the window logits [B, W, V]: converted to float32 they cost twice the bf16 tensor, and the
fused loss (fewshot_distill/losses/window_kernel.py) then also keeps a float32 gradient buffer of that size. The loop
already runs every forward under `accelerator.autocast()`, so the wrapper only adds the conversion.
`keep_low_precision_outputs` removes it with accelerate's own unwrapping
(`unwrap_model(keep_fp32_wrapper=False)` restores the original forward on the module in place; a
DDP wrapper keeps calling that module).

    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    keep_low_precision_outputs(accelerator, model)
    with accelerator.autocast():
        logits = model(...)   # bf16 under mixed_precision="bf16"
"""

from __future__ import annotations


def keep_low_precision_outputs(accelerator, prepared_model) -> None:
    """Drop the autocast + float32-output wrapper `accelerator.prepare` put on the model's forward.

    Every forward must then run under `accelerator.autocast()` (the training loop, the held-out
    evaluator and the step benchmark do).
    """
    accelerator.unwrap_model(prepared_model, keep_fp32_wrapper=False)
