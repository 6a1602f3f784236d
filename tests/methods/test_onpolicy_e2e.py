"""On-policy distillation under real 2-process DDP (gloo on CPU) on a tiny Qwen3: answer_source student and
mixed, teacher_weights base and live, the shared shot prefix on and off. Each launch trains 2 steps with
short samples; together the five launches cover every pair of those settings the config allows (live
never reuses the prefix)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import read_metrics, train

pytestmark = pytest.mark.slow

PREFIX = ("data.shot_sampling=fixed", "distillation.reuse_shot_prefix=true")
COMBINATIONS = {
    "student-base-prefix": ("student", "base", PREFIX),
    "student-base": ("student", "base", ()),
    "mixed-base-prefix": ("mixed", "base", PREFIX),
    "mixed-live": ("mixed", "live", ()),
    "student-live": ("student", "live", ()),
}


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_onpolicy_trains_under_ddp(name, tiny_model_dir, tmp_path):
    answer_source, teacher_weights, extra = COMBINATIONS[name]
    out = tmp_path / "run"
    method = "onpolicy" if answer_source == "student" else "onpolicy_mixed"
    result = train("online_v1", out, tiny_model_dir, "training.max_steps=2", "distillation.loss=reverse_kl",
                   f"method={method}", f"distillation.teacher_weights={teacher_weights}",
                   "generation.max_new_tokens=6", "eval.held_out_examples=0", *extra)
    info = json.loads((out / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["method"] == method and info["condition"] == method
    if extra:
        assert "'shared_shot_prefix': {'prefix_tokens'" in result.stderr  # the end-of-run teacher stats

    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == [1, 2]
    for record in metrics:
        assert 1 <= record["train/sample_len"] <= 6 and 0 <= record["train/sample_eos_frac"] <= 1
        assert record["train/gen_seconds"] > 0 and record["train/empty_samples"] >= 0
        assert record["train/dist_loss"] > 0
        if answer_source == "student":
            assert record["train/ce_loss"] == 0.0
        else:
            assert record["train/ce_loss"] > 0

    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    # micro-batch 2 x accumulation 2 x 2 ranks = 8 rows per step; mixed samples half of them
    per_step = 8 if answer_source == "student" else 4
    assert [s["step"] for s in samples] == [1] * per_step + [2] * per_step
    assert len({s["example_index"] for s in samples if s["step"] == 1}) == per_step  # both ranks' rows
    assert all(1 <= s["length"] <= 6 and isinstance(s["text"], str) and isinstance(s["eos"], bool)
               for s in samples)
    assert (out / "final" / "adapter_model.safetensors").is_file()
