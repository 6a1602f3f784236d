"""End to end: the distillation losses train under real 2-process DDP on the tiny Qwen3 (gloo on CPU,
launched like tests/training/test_train_e2e.py), 2 optimizer steps each.

One launch per loss that no other DDP launch trains: mse is test_train_e2e.py's online_run (total = CE +
0.5 * MSE checked there too), reverse_kl every launch of test_onpolicy_e2e.py, forward_kl the bucket case
below (renormalized and bucket tails differ only inside the loss function: tests/losses/test_divergences.py)."""

from __future__ import annotations

import math

import pytest
import yaml

from tests.helpers import read_metrics, train

pytestmark = pytest.mark.slow

CASES = {
    "jsd": ["distillation.loss=jsd", "distillation.jsd_beta=0.3"],
    # the tail bucket, with the memory cache so the teacher's tail is all-gathered across ranks too
    "forward_kl_bucket": ["distillation.loss=forward_kl", "distillation.topk_tail=bucket",
                          "distillation.temperature=2.0", "distillation.teacher_cache=memory"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_loss_trains_two_steps_under_ddp(case, tiny_model_dir, tmp_path):
    out = tmp_path / case
    train("online_v1", out, tiny_model_dir, "training.max_steps=2", "training.save_steps=2", *CASES[case])
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert all(math.isfinite(m[key]) for key in ("train/ce_loss", "train/dist_loss", "train/total_loss"))
        assert m["train/dist_loss"] > 0  # LoRA B = 0 at init, but the 2-shot teacher sees another context
        assert m["train/total_loss"] == pytest.approx(m["train/ce_loss"] + 0.5 * m["train/dist_loss"], rel=1e-5)
    saved = yaml.safe_load((out / "run_config.yaml").read_text())["distillation"]
    expected = {"loss": "mse", "topk_tail": "renormalize"}
    expected.update({o.split("=")[0].split(".")[1]: o.split("=")[1] for o in CASES[case]})
    assert saved["loss"] == expected["loss"] and saved["topk_tail"] == expected["topk_tail"]
    assert (out / "final" / "adapter_config.json").is_file()
