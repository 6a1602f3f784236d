"""The teacher of a full fine-tuning run (model.finetune=full): a frozen copy of the starting weights.

Once every weight trains, the LoRA teacher (the student with its adapter disabled) would be the trained
model itself. The teacher is therefore a second copy of the model, loaded from `model.name` exactly as
the student was: the starting weights, whatever a `--resume` later loads into the student. It is in
eval mode with `requires_grad=False` and only ever runs under `torch.no_grad()`, so it holds no
gradients, no AdamW states and no activations beyond one forward. Its dtype is the LoRA base weights'
one: bf16 when `training.bf16` (2 bytes per parameter, docs/finetune_memory.md), float32 otherwise (CPU
runs and tests). Under FSDP it is sharded like the student, by accelerate's own `fsdp2_prepare_model`
(one FSDP unit per decoder layer, the plugin's mixed-precision policy; its frozen bf16 weights are not
upcast, accelerate upcasts trainable ones only), and every unit frees its gathered weights after its
forward, so it holds 1/ranks of the copy between forwards.

    frozen_lm = load_frozen_copy(cfg.model, cfg.training.bf16, accelerator)
    teacher = FrozenCopyTeacher(frozen_lm, k=256, alignment="seed")
    values, ids = teacher.top_k(batch, answer_ids, answer_mask)

The shared-prefix teacher takes the copy as its model (`SharedPrefixTeacher(frozen_lm, prefix)`), and
the teacher cache keys its entries by `frozen_weights`, this copy: the starting weights, never the
trained ones.
"""

from __future__ import annotations

from fewshot_distill.config import ConfigError
from fewshot_distill.models.student import AnswerWindowLM, load_base_model
from fewshot_distill.teachers.base import WindowLMTeacher


def load_frozen_copy(model_cfg, bf16: bool, accelerator=None) -> AnswerWindowLM:
    """`model_cfg.name` loaded again as a frozen `AnswerWindowLM`, placed as `accelerator` places models.

    No accelerator: left on the CPU. DDP / one process: moved to the accelerator's device (not wrapped:
    it has no gradients to synchronise). FSDP (version 2): sharded in place by accelerate.
    """
    causal_lm = load_base_model(model_cfg.name, bf16, model_cfg.attn_implementation, trainable=False)
    frozen_lm = AnswerWindowLM(causal_lm.requires_grad_(False)).eval()
    if accelerator is None:
        return frozen_lm
    if accelerator.distributed_type == "FSDP":  # accelerate's DistributedType is a str enum
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model

        if accelerator.state.fsdp_plugin.fsdp_version != 2:
            raise ConfigError("the frozen teacher copy is sharded with FSDP2: set fsdp_version: 2 in the accelerate "
                              "config (configs/accelerate/fsdp.yaml)")
        frozen_lm = fsdp2_prepare_model(accelerator, frozen_lm).eval()
        # Forward only, no backward to wait for: every unit, the root too (FSDP2 keeps the root's weights
        # gathered after forward by default), frees its gathered weights after its forward.
        frozen_lm.set_reshard_after_forward(True)
        return frozen_lm
    return frozen_lm.to(accelerator.device)


class FrozenCopyTeacher(WindowLMTeacher):
    """A frozen copy of the starting weights (`load_frozen_copy`), run as it is: no adapter to disable."""

    def __init__(self, frozen_lm: AnswerWindowLM, k: int, alignment: str = "seed",
                 tail_temperature: float | None = None):
        if any(p.requires_grad for p in frozen_lm.parameters()):
            raise ValueError("FrozenCopyTeacher needs frozen weights (requires_grad=False): use load_frozen_copy")
        super().__init__(frozen_lm, k, alignment, tail_temperature)

    def logits_at(self, input_ids, attention_mask, positions):
        return self.window_lm(input_ids, attention_mask, positions)
