"""`make bench-gpu` with --dry-run: the whole GPU check runs end to end on the CPU at a tiny shape,
with no ../shared data (the repo's own problems and offline tokenizer), and writes the JSON that
docs/performance.md cites with every part present."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_make_bench_gpu_dry_run_writes_the_report(tmp_path):
    out = tmp_path / "bench_gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["make", "-s", "bench-gpu", f"PYTHON={sys.executable}",
                             f"BENCH_GPU_ARGS=--dry-run --json {out}"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["data"]["rows_source"].startswith("smoke problems")
    sdpa = report["bench"]["sdpa"]
    for variant in ("sft", "reference", "ours", "ours_cached", "fixed", "fixed_reuse"):
        assert sdpa[variant]["median_step_s"] > 0 and sdpa[variant]["peak_mem_bytes"] > 0, variant
        assert variant in sdpa["summary"]
    assert sdpa["summary"]["sft"]["step_x_sft"] == 1.0
    assert {"fixed", "fixed_reuse", "teacher_fixed_reuse"} <= set(sdpa["ideal_flops"])
    assert "fixed_reuse_cached_over_sft" in sdpa["whole_run_flops"]
    tolerance = sdpa["details"]["fixed_reuse"]["prefix_vs_full_teacher"]
    assert tolerance["positions"] > 0 and tolerance["max_abs_diff_topk_values"] < 1e-4  # float32 on CPU
    assert "skipped" in report["bench"]["flash_attention_2"]
    assert [c["dtype"] for c in report["fused_loss_check"]] == ["float32", "bfloat16"]
    assert all(c["equal_within_tolerance"] for c in report["fused_loss_check"]), report["fused_loss_check"]
