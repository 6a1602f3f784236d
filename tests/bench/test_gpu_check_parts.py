"""The pure parts of `make gpu-check` (fewshot_distill/bench/gpu_check.py, fewshot_distill/bench/gpu_check_stages.py) on hand-made
inputs: stage selection, budget accounting, statuses, the report table, the loss criterion. The whole
check runs in tests/scripts/test_gpu_check.py (slow)."""

from __future__ import annotations

import pytest

from fewshot_distill.bench import gpu_check as G
from fewshot_distill.bench import gpu_check_stages as S
from fewshot_distill.utils.gpu_env import machine_info, visible_gpus


def test_the_gpu_budgets_sum_to_eight_minutes_install_included():
    """On one GPU DDP is skipped and its budget is not counted; with 2 it adds its own."""
    assert G.STAGE_NAMES[0] == "install"
    assert G.total_budget(False, gpus=1) == G.TOTAL_BUDGET_S == 480
    assert G.total_budget(False, gpus=2) == 480 + G.BY_NAME["ddp"].budget_s
    assert G.total_budget(True, gpus=0) == sum(stage.dry_budget_s for stage in G.STAGES)
    assert all(stage.budget_s > 0 and stage.dry_budget_s > 0 for stage in G.STAGES)


def test_every_stage_has_exactly_one_function_and_its_prerequisites_come_first():
    assert set(S.STAGE_FUNCTIONS) == set(G.STAGE_NAMES)
    for index, stage in enumerate(G.STAGES):
        assert all(G.STAGE_NAMES.index(need) < index for need in stage.needs), stage.name


def test_select_stages_keeps_table_order_and_refuses_unknown_names_in_one_line():
    assert G.select_stages(None) == list(G.STAGE_NAMES)
    assert G.select_stages("eval,sft") == ["sft", "eval"]
    with pytest.raises(G.CheckError, match="unknown stage.*nope.*choose from install"):
        G.select_stages("sft,nope")
    with pytest.raises(G.CheckError, match="none named"):
        G.select_stages(" , ")


def test_a_stage_runs_only_after_its_prerequisites_passed():
    rows = {"install": {"status": "passed"}, "model": {"status": "passed"}, "sft": {"status": "timed out"}}
    assert G.unmet_needs("distillation", rows) == []
    assert G.unmet_needs("eval", rows) == ["sft"]
    assert G.unmet_needs("model", {}) == ["install"]


def test_status_from_exit_timeout_and_result_file():
    assert G.status_of(0, False, {"passed": True}) == "passed"
    assert G.status_of(0, False, {"passed": False}) == "failed"
    assert G.status_of(1, False, {"passed": True}) == "failed"
    assert G.status_of(0, False, None) == "failed"
    assert G.status_of(None, True, None) == "timed out"
    assert G.status_of(0, False, {"skipped": "1 GPU visible"}) == "skipped"


def test_skipped_is_recorded_but_not_a_pass_and_does_not_fail_the_run():
    rows = {"sft": {"status": "passed"}, "ddp": {"status": "skipped"}}
    assert G.overall(rows) is True
    assert G.overall({**rows, "fsdp": {"status": "timed out"}}) is False
    assert G.overall({}) is False


def test_visible_gpus_follows_cuda_visible_devices():
    assert visible_gpus(2, None) == 2
    assert visible_gpus(2, "0") == 1
    assert visible_gpus(2, "") == 0
    assert visible_gpus(1, "0,1") == 1
    assert visible_gpus(4, "-1") == 0


def test_machine_info_is_one_record_for_every_report_and_creates_no_cuda_context():
    import torch

    info = machine_info()
    assert {"platform", "python", "torch", "cpu_count", "visible_gpus", "gpu", "driver"} <= set(info)
    assert not (torch.cuda.is_available() and torch.cuda.is_initialized())


def test_the_table_has_one_row_per_stage_with_status_seconds_budget_and_values():
    report = {"dry_run": False, "passed": False, "seconds": 301.4, "budget_s": 480, "machine_summary": "1 x H200",
              "stages": {
                  "ddp": {"status": "skipped", "seconds": 0.1, "budget_s": 40, "values": {},
                          "reason": "1 GPU visible, DDP needs 2"},
                  "sft": {"status": "passed", "seconds": 31.25, "budget_s": 40,
                          "values": {"first_loss": 11.93251, "loss_lower_at_end": True, "greedy": {"rows": 8}}},
                  "fsdp": {"status": "timed out", "seconds": 60.0, "budget_s": 60, "values": {},
                           "reason": "killed after 60 s"}}}
    table = G.render_table(report).splitlines()
    assert table[0] == "gpu-check: FAILED; stages took 301 s of 480 s; 1 x H200"
    assert table[2] == "| stage | passed | seconds | budget (s) | measured |"
    assert table[4:] == [  # table order, not insertion order
        "| sft | yes | 31.2 | 40 | first_loss 11.93; loss_lower_at_end yes; greedy.rows 8 |",
        "| fsdp | **no** (over budget, killed) | 60.0 | 60 | killed after 60 s |",
        "| ddp | skipped: 1 GPU visible, DDP needs 2 | 0.1 | 40 |  |"]


def test_format_values_escapes_pipes_and_keeps_non_finite_numbers():
    assert G.format_values({"a": float("nan"), "b": "x|y", "c": [1.0, 2]}) == "a nan; b x\\|y; c [1, 2]"


def test_loss_went_down_compares_quarter_means_and_rejects_non_finite():
    assert S.loss_went_down([10.0, 12.0, 9.0, 8.0, 7.0, 9.5, 6.0, 5.0])   # 11 -> 5.5
    assert not S.loss_went_down([5.0, 6.0, 7.0, 8.0])
    assert not S.loss_went_down([10.0, float("nan"), 1.0, 1.0])
    assert not S.loss_went_down([3.0])
    assert S.loss_went_down([3.0, 2.0])


def test_stage_env_puts_the_bundle_install_first_and_goes_offline(tmp_path):
    env = G.stage_env(tmp_path / "site", {"PYTHONPATH": "/elsewhere", "HF_HUB_OFFLINE": "0"})
    assert env["PYTHONPATH"].split(":") == [str(tmp_path / "site"), str(G.REPO_ROOT), "/elsewhere"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"


def test_the_dry_run_is_smaller_than_the_gpu_check_in_every_size():
    gpu, dry = S.settings(False), S.settings(True)
    assert gpu["steps"] == 20 and gpu["short_steps"] == 10 and gpu["eval_problems"] == 32
    for key in ("steps", "short_steps", "eval_problems", "max_new_tokens", "shots"):
        assert dry[key] < gpu[key], key


def test_docs_performance_lists_the_stages_and_budgets_of_the_code():
    text = (G.REPO_ROOT / "docs" / "performance.md").read_text()
    assert G.render_plan() in text, "regenerate the table: python scripts/gpu_check.py --plan"


def test_a_rerun_of_one_stage_needs_its_prerequisites_passed_before_or_rerun_with_it():
    previous = {"install": {"status": "passed"}, "model": {"status": "passed"}, "sft": {"status": "failed"}}
    assert G.missing_for_rerun(["fsdp"], previous) == {}
    assert G.missing_for_rerun(["eval"], previous) == {"eval": ["sft"]}
    assert G.missing_for_rerun(["sft", "eval"], previous) == {}
    assert G.missing_for_rerun(["sft"], {}) == {"sft": ["model"]}


def test_only_with_its_prerequisites_listed_runs_in_a_fresh_out_folder():
    """The GPU rerun after the first H200 run: a fresh --out has no earlier report."""
    names = G.select_stages("install,model,onpolicy,fsdp,bench")
    assert names == ["install", "model", "onpolicy", "fsdp", "bench"]
    assert G.missing_for_rerun(names, {}) == {}
    assert G.missing_for_rerun(G.select_stages("onpolicy,fsdp,bench"), {}) == {
        "onpolicy": ["model"], "fsdp": ["model"], "bench": ["install"]}


def _prefix_report(full: list[list[float]], prefix: list[list[float]]) -> dict:
    """compare_with_full_teacher's numbers for hand-made logits (one row per position)."""
    import torch

    from fewshot_distill.bench.prefix_tolerance import bf16_ulp, margin_where_top1_differs

    full_values, full_ids = torch.tensor(full).topk(3)
    prefix_values, prefix_ids = torch.tensor(prefix).topk(3)
    diff = (full_values - prefix_values).abs()
    return {"finite": True, "positions": len(full), "max_abs_diff_topk_values": float(diff.max()),
            "max_diff_in_bf16_ulps": float((diff / bf16_ulp(full_values)).max()),
            "max_margin_where_top1_differs": margin_where_top1_differs(full_values, full_ids, prefix_ids)}


def test_the_prefix_criterion_allows_near_tie_flips_and_refuses_a_real_flip():
    agree = [8.0, 2.0, 1.0, 0.0]
    # Position 2: ids 0 and 1 within 1/64; id 0 rounds down by 1/32 and id 1 up by 1/64, which swaps them
    # and moves the sorted values by 1/64. 1 of 2 top-1s agree, the margin is within 2 x 1/64.
    near_tie = _prefix_report([agree, [4.0, 3.984375, 1.0, 0.0]], [agree, [3.96875, 4.0, 1.0, 0.0]])
    assert near_tie["max_margin_where_top1_differs"] == near_tie["max_abs_diff_topk_values"] == 0.015625
    assert S.prefix_problems(near_tie, "bfloat16") == []
    # The same values, but the top-1 id moved from 0 to 1 where it led by 2.0: not rounding.
    real_flip = _prefix_report([agree, [4.0, 2.0, 1.0, 0.0]], [agree, [2.0, 4.0, 1.0, 0.0]])
    assert real_flip["max_abs_diff_topk_values"] == 0.0
    (problem,) = S.prefix_problems(real_flip, "bfloat16")
    assert "top-1 differs" in problem and "margin is 2" in problem
    # The ulp bound on the values still holds on its own.
    far = _prefix_report([[8.0, 2.0, 1.0, 0.0]], [[10.0, 2.0, 1.0, 0.0]])  # 2 = 32 ulps at 8
    assert "bf16 ulps > 16" in S.prefix_problems(far, "bfloat16")[0]


def test_the_gpu_model_stage_saves_seeded_random_bf16_weights_with_the_tokenizer(tiny_model_dir, tmp_path):
    """The GPU branch of the model stage, on the CPU with the tiny config (the node passes "cuda")."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in ("a", "b"):
        S.save_random_model(tiny_model_dir, str(tiny_model_dir), tmp_path / name, "cpu")
    S.save_random_model(tiny_model_dir, str(tiny_model_dir), tmp_path / "one_layer", "cpu", layers=1)
    first, second = (AutoModelForCausalLM.from_pretrained(tmp_path / name) for name in ("a", "b"))
    assert first.dtype == torch.bfloat16 and first.config.num_hidden_layers == 2
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "one_layer").config.num_hidden_layers == 1
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), key  # same seed, same weights
    assert AutoTokenizer.from_pretrained(tmp_path / "a").eos_token_id == first.generation_config.eos_token_id


def test_the_check_time_is_the_sum_of_its_stages_so_a_rerun_replaces_only_its_own():
    rows = {"install": {"seconds": 5.0}, "sft": {"seconds": 30.5}, "ddp": {"seconds": 0.25}}
    assert G.stage_seconds(rows) == 35.75
    assert G.stage_seconds({**rows, "sft": {"seconds": 10.0}}) == 15.25


def test_a_stage_past_its_budget_gets_sigterm_first_so_launchers_can_stop_their_workers(tmp_path):
    """torch's elastic agent stops its workers (own sessions, out of reach of killpg) only on SIGTERM."""
    import sys

    stopped = tmp_path / "stopped"
    handler = (f"import signal, sys, time, pathlib\n"
               f"signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path({str(stopped)!r}).write_text('yes'), "
               f"sys.exit(1)))\nprint('up', flush=True)\ntime.sleep(30)\n")
    code, seconds, timed_out = G.run_stage_process([sys.executable, "-I", "-c", handler], {}, 1.0, tmp_path / "log",
                                                   grace_s=5)
    assert timed_out and code is None and seconds < 2.0
    assert stopped.read_text() == "yes"
