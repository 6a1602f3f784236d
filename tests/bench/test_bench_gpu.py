"""`make bench-gpu` with --dry-run: the whole GPU check runs end to end on the CPU at a tiny shape,
with no ../shared data (the repo's own problems and offline tokenizer), and writes the JSON that
docs/performance.md cites with every part present (slow: ~20 s, in make test-all). Its two report-
building parts, the fused-loss check and the summary, are also checked in-process in make test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT


@pytest.mark.slow
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
    for variant in ("onpolicy_hf_micro", "onpolicy_hf_step"):  # the on-policy optimizer step, both ways
        assert 0 < sdpa["summary"][variant]["generation_share"] < 1, variant
    assert report["bench"]["vllm_rows"] == {"skipped": "dry run"}
    assert [c["dtype"] for c in report["fused_loss_check"]] == ["float32", "bfloat16"]
    assert all(c["equal_within_tolerance"] for c in report["fused_loss_check"]), report["fused_loss_check"]


class RecordingPeak:
    """A peak-memory counter that logs its calls; peak() returns the position of its own log entry."""

    def __init__(self):
        self.events: list[str] = []

    def reset(self) -> None:
        self.events.append("reset")

    def peak(self) -> int:
        self.events.append("peak")
        return len(self.events)


def test_bench_reads_each_training_step_peak_before_the_teacher_only_passes(tiny_model_dir):
    """Dry run in this process with an injected counter: each variant's reported peak is read right
    after its own reset, once; the teacher-only timing (a no-grad pass) comes after it. (Before, the
    teacher-only timing reset the counter again and the peak was read last: a no-grad pass's.)"""
    from accelerate.state import AcceleratorState

    from fewshot_distill.bench import step_bench

    counter = RecordingPeak()
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        report = step_bench.main(
            ["--data", str(REPO_ROOT / "data" / "smoke"), "--tokenizer", str(tiny_model_dir), "--model", "tiny",
             "--device", "cpu", "--dtype", "float32", "--batch-size", "1", "--n-batches", "1", "--warmup", "0",
             "--repeats", "1", "--shots", "2", "--k", "16", "--length-sample", "2", "--in-process",
             "--variants", "sft,ours"], memory=counter)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert counter.events == ["reset", "peak"] * 2
    assert [report[v]["peak_mem_bytes"] for v in ("sft", "ours")] == [2, 4]
    assert report["details"]["ours"]["teacher_step_s"] > 0


def test_fused_loss_check_passes_in_both_dtypes_and_the_summary_is_relative_to_sft():
    """The report's `fused_loss_check` entries (float32 and bf16, the dry run's shape made smaller) and
    `bench.<attention>.summary` (ratios to SFT, the cache-miss step and the on-policy split), in-process."""
    from fewshot_distill.bench import bench_gpu

    checks = [bench_gpu.fused_loss_check(torch.device("cpu"), dtype, 1, 8, 256, 16)
              for dtype in (torch.float32, torch.bfloat16)]
    assert [c["dtype"] for c in checks] == ["float32", "bfloat16"]
    assert all(c["equal_within_tolerance"] for c in checks), checks
    assert checks[0]["ce"] == pytest.approx(checks[0]["ce_reference"], rel=1e-5) and checks[0]["mse"] > 0

    report = {"sft": {"median_step_s": 2.0, "peak_mem_bytes": 100},
              "ours": {"median_step_s": 3.0, "peak_mem_bytes": 150},
              "details": {"ours_cached": {"miss_step_s": 4.0},
                          "onpolicy": {"generation_step_s": 1.0, "teacher_step_s": 0.5, "student_step_s": 2.0}}}
    summary = bench_gpu.summarise(report)
    assert summary["sft"] == {"step_x_sft": 1.0, "peak_mem_x_sft": 1.0}
    assert summary["ours"] == {"step_x_sft": 1.5, "peak_mem_x_sft": 1.5}
    assert summary["ours_cached_miss"] == {"step_x_sft": 2.0}
    assert summary["onpolicy_split"] == {"generation_x_sft": 0.5, "teacher_x_sft": 0.25, "student_x_sft": 1.0}
    assert "details" not in summary
