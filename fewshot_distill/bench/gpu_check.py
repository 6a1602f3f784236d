"""`make gpu-check GPU_BUNDLE=gpu_bundle`: the first run on a GPU node, offline, 8 minutes at most (enforced).

The budgets below come from the first run on one H200 (docs/gpu_check/, docs/performance.md#the-first-
run-on-an-h200); the check has not run on a GPU with them yet. They are enforced: a stage past its budget
is killed and fails. Everything comes from a bundle (fewshot_distill/bench/gpu_bundle.py, `make gpu-bundle`
on a machine with PyPI): its wheels are installed with `pip install --no-index --no-deps --target`
into the work folder and put on PYTHONPATH, the model is random weights at its Qwen3-1.7B shape (or
--model, a local folder), the tokenizer and GSM8K rows are its own. No stage reaches the hub
(HF_HUB_OFFLINE=1).

Each stage (STAGES) is its own process (`python -m fewshot_distill.bench.gpu_check_stages STAGE CONTEXT`) with its
own time budget; the runner kills its process group when it overruns. Results: one JSON and one
markdown table (stage, passed, seconds, budget, measured values), both rewritten after every stage,
so a run cut short keeps what it did. The exit status is non-zero when any stage failed. A stage is
"skipped" (with its reason) when it cannot run here, e.g. DDP with fewer than 2 GPUs: that is not a
pass. `--only STAGE,...` runs the listed stages: in a fresh --out when the list holds their prerequisites
(e.g. install,model,onpolicy,fsdp,bench), else in the --out of an earlier run where those passed; it
updates their rows.

--dry-run: the same stages on the CPU, a tiny model built with the bundle's tokenizer, tiny budgets.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fewshot_distill.utils.gpu_env import machine_info

REPO_ROOT = Path(__file__).resolve().parents[2]
TOTAL_BUDGET_S = 480  # 8 minutes on one GPU, the install included


@dataclass(frozen=True)
class Stage:
    name: str
    budget_s: int       # on one GPU: from the first H200 run (the table's comment says how)
    dry_budget_s: int   # the CPU dry run's: tiny model, 2 shared cores
    needs: tuple[str, ...]
    checks: str         # what passing means


# One-GPU budgets, from the first run on one H200 (docs/gpu_check/gpu_check.json, logs/) and a second,
# partial one of the same check code on a fresh H200 (docs/gpu_check/second_run/: install, model, prefix,
# onpolicy, fsdp), which was up to 1.7x slower: about 1.5x the measured stage time where the stage
# finished, less where the 480 s total for one GPU leaves no more.
#   install   3.1 / 5.1 s measured; 10                      model  19.3 / 25.9 s; 35
#   sft      21.3 s; 35                                     distillation 28.4 s; 45
#   prefix   14.8 s / killed at 25 s after writing its result; 40       full 34.6 s; 50
#   eval     26.8 s with 128 new tokens; 35 (now 64 new tokens)
#   onpolicy killed at 55 s (both runs) just as its 10 steps ended (startup ~11 s + 40.3 s of steps at 32
#            new tokens); now 16 new tokens per sample and the greedy check on 4 rows x 16 tokens
#            (not yet timed); 70
#   fsdp     killed at 60 s (both runs): train launch ~37 s (15 s launch overhead, 2 steps, saves; 21.9 s
#            of run in the second), resume ~30 s was writing its final save; now 1 step, save, resume 1
#            step; 75 (~1.1x)
#   bench    killed at 90 s in the on-policy variant after sft, reference, ours (~15-18 s each); now 1 batch
#            x 2 timed steps per variant and 32 sampled tokens for on-policy; 85 (< the killed run: a guess)
#   ddp      not measured (1 GPU); 40, counted only when >= 2 GPUs are visible: then the total is 520 s.
STAGES = (
    Stage("install", 10, 120, (),
          "the bundle's wheels install (pip --no-index --no-deps --target) and import from there"),
    Stage("model", 35, 90, ("install",),
          "random weights at the bundle's Qwen3-1.7B shape and a 2-layer copy for FSDP (dry run: tiny), saved "
          "with the bundle's tokenizer"),
    Stage("sft", 35, 150, ("model",),
          "20 LoRA SFT steps in bf16 (dry run: 6, float32); loss lower at the end than at the start"),
    Stage("distillation", 45, 150, ("model",),
          "20 steps of SFT + 8-shot distillation in bf16 (dry run: 6, 2 shots, float32); loss lower at the end"),
    Stage("prefix", 40, 120, ("install",),
          "fixed shots at the Qwen3-1.7B shape (dry run: tiny): the shared-prefix teacher's top-K equals "
          "the full teacher's within tolerance; top-1 agrees wherever the full teacher's top-1/top-2 margin "
          "exceeds twice the largest value difference"),
    Stage("onpolicy", 70, 150, ("model",),
          "10 on-policy steps, 16 new tokens (dry run: 3, 8); batched greedy generation equals one-at-a-time "
          "on the same 4 prompts"),
    Stage("full", 50, 150, ("model",),
          "10 steps of full fine-tuning with the frozen teacher copy (dry run: 3); final/ saved"),
    Stage("fsdp", 75, 240, ("model",),
          "accelerate launch --config_file configs/accelerate/fsdp.yaml (2 processes on 2 GPUs), full "
          "fine-tuning at Qwen3-1.7B's width with 2 layers: 1 step, save, resume 1 step"),
    Stage("ddp", 40, 180, ("model",),
          "accelerate launch --multi_gpu, 2 processes, 3 LoRA SFT steps (>= 2 GPUs; dry run: 2 CPU processes)"),
    Stage("eval", 35, 150, ("sft",),
          "the SFT adapter on 32 GSM8K problems, 64 new tokens (dry run: 4, 8): vLLM when installed, else "
          "transformers"),
    Stage("bench", 85, 300, ("install",),
          "bench-gpu at the Qwen3-1.7B shape: step time and peak memory of ours, SFT, paper-style, on-policy "
          "(32 sampled tokens)"),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)
BY_NAME = {stage.name: stage for stage in STAGES}


class CheckError(SystemExit):
    """Bad arguments or an unusable work folder: one line that names the fix."""


def budget(stage: Stage, dry_run: bool) -> int:
    return stage.dry_budget_s if dry_run else stage.budget_s


def total_budget(dry_run: bool, gpus: int) -> int:
    """The whole check's budget: every stage's, DDP's only where it runs (>= 2 GPUs, or the dry run)."""
    return sum(budget(stage, dry_run) for stage in STAGES if stage.name != "ddp" or dry_run or gpus >= 2)


def select_stages(only: str | None) -> list[str]:
    """The stages to run, in table order: all, or the comma-separated `only`."""
    if not only:
        return list(STAGE_NAMES)
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in BY_NAME]
    if unknown or not wanted:
        raise CheckError(f"--only {only!r}: unknown stage(s) {', '.join(unknown) or '(none named)'}; "
                         f"choose from {', '.join(STAGE_NAMES)}")
    return [name for name in STAGE_NAMES if name in wanted]


def unmet_needs(name: str, rows: dict[str, dict]) -> list[str]:
    """The prerequisites of `name` that have not passed in `rows` (this run's and an earlier run's)."""
    return [need for need in BY_NAME[name].needs if rows.get(need, {}).get("status") != "passed"]


def missing_for_rerun(names: list[str], previous: dict[str, dict]) -> dict[str, list[str]]:
    """--only: stage -> its prerequisites that neither run now nor passed in the earlier report."""
    missing = {}
    for name in names:
        unmet = [need for need in unmet_needs(name, previous) if need not in names]
        if unmet:
            missing[name] = unmet
    return missing


def status_of(returncode: int | None, timed_out: bool, result: dict | None) -> str:
    """passed | failed | timed out | skipped, from the stage process's exit and its result file."""
    if timed_out:
        return "timed out"
    if result is not None and "skipped" in result:
        return "skipped"
    if returncode != 0 or result is None:
        return "failed"
    return "passed" if result.get("passed") else "failed"


def stage_seconds(rows: dict[str, dict]) -> float:
    """The check's time as the budget counts it: every stage's, the install included (a rerun with --only
    replaces its stages' times, so the sum stays that of one whole check)."""
    return round(sum(row.get("seconds", 0.0) for row in rows.values()), 2)


def overall(rows: dict[str, dict]) -> bool:
    """Passed when no stage failed or timed out; a skipped stage is recorded, not counted as a pass."""
    return bool(rows) and all(row["status"] in ("passed", "skipped") for row in rows.values())


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def format_values(values: dict) -> str:
    """`key value; ...` for a table cell (nested dicts as `outer.inner`), pipes escaped."""
    def flatten(prefix: str, item) -> list[tuple[str, object]]:
        if isinstance(item, dict):
            return [pair for key, sub in item.items() for pair in flatten(f"{prefix}.{key}" if prefix else key, sub)]
        return [(prefix, item)]
    return "; ".join(f"{key} {_format_value(value)}" for key, value in flatten("", values)).replace("|", "\\|")


def render_table(report: dict) -> str:
    """The markdown table of a report: one row per stage run, in table order."""
    lines = [f"gpu-check{' --dry-run' if report.get('dry_run') else ''}: "
             f"{'passed' if report.get('passed') else 'FAILED'}; stages took {report.get('seconds', 0):.0f} s of "
             f"{report.get('budget_s', TOTAL_BUDGET_S)} s; {report.get('machine_summary', '')}".rstrip("; "),
             "", "| stage | passed | seconds | budget (s) | measured |", "| --- | --- | --- | --- | --- |"]
    for name in STAGE_NAMES:
        row = report.get("stages", {}).get(name)
        if row is None:
            continue
        passed = {"passed": "yes", "failed": "**no**", "timed out": "**no** (over budget, killed)",
                  "skipped": f"skipped: {row.get('reason', '')}"}[row["status"]]
        measured = format_values(row.get("values", {}))
        if row["status"] in ("failed", "timed out") and row.get("reason"):
            measured = (measured + "; " if measured else "") + row["reason"].replace("|", "\\|")
        lines.append(f"| {name} | {passed} | {row.get('seconds', 0):.1f} | {row['budget_s']} | {measured} |")
    return "\n".join(lines) + "\n"


def render_plan() -> str:
    """The stages as a markdown table (docs/performance.md holds this text; a test compares them)."""
    lines = ["| stage | budget on one GPU (s) | dry-run budget (s) | passes when |", "| --- | --- | --- | --- |"]
    lines += [f"| {s.name} | {s.budget_s} | {s.dry_budget_s} | {s.checks} |" for s in STAGES]
    lines.append(f"| all | {total_budget(False, 1)} ({total_budget(False, 2)} with >= 2 GPUs) | "
                 f"{total_budget(True, 0)} | no stage failed or ran past its budget (skipped ones are listed as such) |")
    return "\n".join(lines) + "\n"


# A stage past its budget gets SIGTERM, then SIGKILL this much later. torch's elastic agent (inside
# `accelerate launch`) starts its workers in sessions of their own, out of the stage's process group: on
# SIGTERM it stops them; SIGKILLed, it leaves them running without their TCPStore (the first H200 run:
# docs/gpu_check/logs/fsdp_resume.log, "Broken pipe", then the worker finished after the kill).
KILL_GRACE_S = 10


def run_stage_process(command: list[str], env: dict, budget_s: float, log: Path,
                      grace_s: float = KILL_GRACE_S) -> tuple[int | None, float, bool]:
    """Run `command` in its own process group with its output in `log`: (exit status, seconds, timed out).
    Past `budget_s` the whole group gets SIGTERM (launchers stop their workers), past `grace_s` more SIGKILL."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=budget_s)
            return code, time.perf_counter() - started, False
        except subprocess.TimeoutExpired:
            seconds = time.perf_counter() - started
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):  # what is left of the group
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return None, seconds, True
        except BaseException:  # the check itself stopped (Ctrl-C, SIGTERM): its stage goes with it
            os.killpg(process.pid, signal.SIGKILL)
            raise


def log_tail(log: Path, lines: int = 8) -> str:
    return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:]) if log.is_file() else ""


def stage_env(site: Path, base: dict | None = None) -> dict:
    """The stages' environment: the bundle's install dir first on PYTHONPATH, then the repo; offline."""
    base = dict(os.environ if base is None else base)
    path = [str(site), str(REPO_ROOT)] + [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**base, "PYTHONPATH": os.pathsep.join(path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def run_one(name: str, context_path: Path, out: Path, dry_run: bool, env: dict) -> dict:
    """One stage as its own process; its row of the report."""
    results, logs = out / "results", out / "logs"
    results.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    result_file = results / f"{name}.json"
    result_file.unlink(missing_ok=True)
    limit = budget(BY_NAME[name], dry_run)
    command = [sys.executable, "-m", "fewshot_distill.bench.gpu_check_stages", name, str(context_path)]
    code, seconds, timed_out = run_stage_process(command, env, limit, logs / f"{name}.log")
    result = json.loads(result_file.read_text()) if result_file.is_file() else None
    status = status_of(code, timed_out, result)
    row = {"status": status, "passed": status == "passed", "seconds": round(seconds, 2), "budget_s": limit,
           "values": (result or {}).get("values", {}), "log": str(logs / f"{name}.log")}
    if status == "skipped":
        row["reason"] = result["skipped"]
    elif status == "timed out":
        row["reason"] = f"killed after {limit} s"
    elif status == "failed":
        row["reason"] = (result or {}).get("reason") or f"exit status {code}"
        row["log_tail"] = log_tail(logs / f"{name}.log")
    return row


def write_report(report: dict, json_path: Path, table_path: Path) -> None:
    report["passed"] = overall(report["stages"])
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table_path.write_text(render_table(report))


def check(bundle: Path, out: Path, json_path: Path, table_path: Path, dry_run: bool = False,
          only: str | None = None, model: str | None = None, command: str = "") -> dict:
    """Run the stages and write the report; returns it. Raises CheckError on unusable input."""
    from fewshot_distill.bench.gpu_bundle import read_manifest
    from fewshot_distill.utils.gpu_env import check_gpu_setup

    names = select_stages(only)
    manifest = read_manifest(bundle)
    previous = json.loads(json_path.read_text()) if only and json_path.is_file() else {}
    if only and previous.get("dry_run", dry_run) != dry_run:
        raise CheckError(f"--only: {json_path} is from a {'dry' if previous['dry_run'] else 'GPU'} run; rerun "
                         "the whole check or match --dry-run")
    missing = missing_for_rerun(names, previous.get("stages", {})) if only else {}
    if missing:
        name, needs = next(iter(missing.items()))
        raise CheckError(f"--only {only}: {name} needs {', '.join(needs)}, which did not pass in {json_path}; "
                         f"run the whole check first or add them to --only")
    machine = machine_info()
    check_gpu_setup(fork_safe=False)
    if not dry_run and machine["visible_gpus"] == 0:
        raise CheckError("gpu-check needs an NVIDIA GPU (NVML lists none visible); add GPU_CHECK_ARGS=--dry-run "
                         "to check it on the CPU")
    out.mkdir(parents=True, exist_ok=True)
    context = {"dry_run": dry_run, "bundle": str(bundle.resolve()), "out": str(out.resolve()),
               "site": str((out / "site").resolve()), "model_dir": str((out / "model").resolve()),
               "fsdp_model_dir": str((out / "model_fsdp").resolve()),
               "given_model": model, "tokenizer": str((bundle / "tokenizer").resolve()),
               "data": str((bundle / "data" / "gsm8k").resolve()), "wheels": manifest["wheels"],
               "gpus": machine["visible_gpus"], "python": sys.executable}
    context_path = out / "context.json"
    context_path.write_text(json.dumps(context, indent=2))
    report = {"command": command, "dry_run": dry_run, "bundle": str(bundle), "out": str(out),
              "budget_s": total_budget(dry_run, machine["visible_gpus"]), "machine": machine,
              "machine_summary": (f"{machine['visible_gpus']} x {machine['gpu']}" if machine["visible_gpus"]
                                  else "CPU") + f", torch {machine['torch']}, Python {machine['python']}",
              "bundle_wheels": manifest["wheels"], "stages": dict(previous.get("stages", {}))}
    env = stage_env(out / "site")
    # A stage runs in its own session: SIGTERM to the check becomes an exception that kills it too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.perf_counter()
    for name in names:
        print(f"== {name} (budget {budget(BY_NAME[name], dry_run)} s)", flush=True)
        unmet = unmet_needs(name, report["stages"])
        if unmet:
            row = {"status": "skipped", "passed": False, "seconds": 0.0, "budget_s": budget(BY_NAME[name], dry_run),
                   "values": {}, "reason": f"needs {', '.join(unmet)}, which did not pass"}
        else:
            row = run_one(name, context_path, out, dry_run, env)
        report["stages"][name] = row
        report["seconds"] = stage_seconds(report["stages"])
        report["wall_s"] = time.perf_counter() - started
        print(f"   {row['status']} in {row['seconds']:.1f} s: {format_values(row['values'])}"
              + (f" ({row['reason']})" if row.get("reason") else ""), flush=True)
        write_report(report, json_path, table_path)
    report["within_budget"] = report.get("seconds", 0) <= report["budget_s"]
    write_report(report, json_path, table_path)
    return report
