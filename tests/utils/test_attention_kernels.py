"""The attention-kernel policy (fewshot_distill/utils/attention_kernels.py): cuDNN's SDPA is off on CUDA unless
model.cudnn_sdpa=true, the switch reaches torch, and training records the decision in run_info.json."""

from __future__ import annotations

import json

import pytest
import torch

from fewshot_distill.utils.attention_kernels import apply_attention_kernel_policy, attention_kernel_policy
from tests.conftest import REPO_ROOT, SMOKE_DATA


@pytest.mark.parametrize("device, setting, expected", [
    ("cuda", False, {"device": "cuda", "cudnn_sdpa": False, "source": "default"}),
    ("cuda", True, {"device": "cuda", "cudnn_sdpa": True, "source": "config"}),
    ("cpu", False, {"device": "cpu", "cudnn_sdpa": None, "source": "no cuda"}),
    ("cpu", True, {"device": "cpu", "cudnn_sdpa": None, "source": "no cuda"}),
    ("mps", False, {"device": "mps", "cudnn_sdpa": None, "source": "no cuda"}),
])
def test_cudnn_sdpa_is_off_on_cuda_unless_the_config_allows_it(device, setting, expected):
    assert attention_kernel_policy(device, setting).record() == expected


def test_the_decision_reaches_torch_and_is_logged(caplog):
    before = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        with caplog.at_level("INFO", logger="fewshot_distill"):
            assert apply_attention_kernel_policy("cuda", False)["cudnn_sdpa"] is False
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert "cuDNN SDPA disabled" in caplog.text and "model.cudnn_sdpa=true" in caplog.text
        apply_attention_kernel_policy("cuda", True)
        assert torch.backends.cuda.cudnn_sdp_enabled()
        torch.backends.cuda.enable_cudnn_sdp(False)
        apply_attention_kernel_policy("cpu", True)  # no CUDA: torch's switch is left alone
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)


def test_training_records_the_attention_kernels_in_run_info(tiny_model_dir, tmp_path):
    from fewshot_distill.methods import run_identity_fields
    from fewshot_distill.training.loop import parse_training_args, setup_run

    out = tmp_path / "run"
    args, cfg = parse_training_args(
        ["--config", str(REPO_ROOT / "configs" / "base.yaml"), "--output_dir", str(out),
         f"model.name={tiny_model_dir}", f"data.path={SMOKE_DATA}", "training.bf16=false", "data.num_workers=0",
         "data.max_train_examples=4", "training.per_device_train_batch_size=2", "model.cudnn_sdpa=true"], "")
    assert cfg.model.cudnn_sdpa is True
    setup_run(cfg, args, run_identity_fields("baseline", None), with_teacher=False)
    info = json.loads((out / "run_info.json").read_text())
    assert info["attention_kernels"] == {"device": "cpu", "cudnn_sdpa": None, "source": "no cuda"}
