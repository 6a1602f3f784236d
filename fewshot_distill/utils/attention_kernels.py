"""Which SDPA kernels a run may use: cuDNN's is off on CUDA unless `model.cudnn_sdpa=true`.

From torch 2.11 the default SDPA kernel on Hopper (sm90) for a call with a mask is cuDNN's. It is
reported to return NaN for query rows that see no key (pytorch #196678; unsloth #9848 saw NaN logits on
exactly the left-padded rows with torch 2.13 + CUDA 13) and to produce NaN gradients in its backward
for some sequence lengths on H100/H200 (pytorch #196678, trl #7181). Every padded training batch passes
an explicit mask, so it would take that path. With cuDNN off, torch picks flash or memory-efficient
attention (or the math kernel), which return 0 for such rows. Nothing of this has run on a GPU here:
the policy follows the reports, and `model.cudnn_sdpa=true` restores torch's default.

Training (fewshot_distill/training/loop.py) and evaluation (fewshot_distill/eval/evaluate.py) apply it at startup and record
the decision in run_info.json / the results header's run_info:

    record = apply_attention_kernel_policy("cuda", cudnn_sdpa=False)
    # {"device": "cuda", "cudnn_sdpa": False, "source": "default"}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger("fewshot_distill")


@dataclass(frozen=True)
class AttentionKernelPolicy:
    device: str                 # torch device type: "cuda", "cpu", ...
    cudnn_sdpa: bool | None     # allow cuDNN's SDPA kernel; None where there is none (not CUDA)
    source: str                 # "default" | "config" (model.cudnn_sdpa=true) | "no cuda"

    def record(self) -> dict:
        return {"device": self.device, "cudnn_sdpa": self.cudnn_sdpa, "source": self.source}

    def describe(self) -> str:
        if self.cudnn_sdpa is None:
            return f"attention kernels: {self.device}, no cuDNN SDPA to choose"
        if self.cudnn_sdpa:
            return "attention kernels: cuDNN SDPA allowed (model.cudnn_sdpa=true; torch's default choice)"
        return ("attention kernels: cuDNN SDPA disabled (reported NaN on keyless rows and in backward on "
                "Hopper; model.cudnn_sdpa=true allows it)")


def attention_kernel_policy(device_type: str, cudnn_sdpa: bool) -> AttentionKernelPolicy:
    """The decision for a run on `device_type` with `model.cudnn_sdpa` set to `cudnn_sdpa`."""
    if device_type != "cuda":
        return AttentionKernelPolicy(device_type, None, "no cuda")
    return AttentionKernelPolicy(device_type, bool(cudnn_sdpa), "config" if cudnn_sdpa else "default")


def apply_attention_kernel_policy(device_type: str, cudnn_sdpa: bool) -> dict:
    """Decide, set torch's global cuDNN-SDPA switch on CUDA (it does not initialise CUDA), log the
    choice, and return what run_info records."""
    policy = attention_kernel_policy(device_type, cudnn_sdpa)
    if policy.cudnn_sdpa is not None:
        import torch

        torch.backends.cuda.enable_cudnn_sdp(policy.cudnn_sdpa)
    logger.info("%s", policy.describe())
    return policy.record()
