"""The first run on a GPU machine, in one command (`make gpu-check`): planned for <= 10 minutes on one
GPU (not yet timed on one), after the model is present.

Runs the paths only a GPU exercises, each as its own process, and writes one JSON of what passed and
what it measured (default gpu_check.json; it is rewritten after every stage, so a run cut short
keeps what it did):

  gpu_setup     GPUs NVML lists that this torch cannot use (src/utils/gpu_env.py): one line, then stop
  sft           20 optimizer steps of LoRA SFT in bf16 (configs/base.yaml, global batch 32 = 4 x 8)
  distillation  20 steps of SFT + 8-shot distillation in bf16 (configs/online_v1.yaml)
                each: losses, examples per step, tokens/s, torch.cuda.max_memory_allocated
  eval          the vLLM evaluation of both adapters (their final/) on 32 GSM8K test problems
  bench         scripts/bench_gpu.py with the time left (flash-attention is skipped when short)

Model: --model, else a local Qwen3-1.7B (models/Qwen3-1.7B in or beside the repo), else the hub's
Qwen/Qwen3-1.7B (unless HF_HUB_OFFLINE=1), else a tiny random Qwen3 (then only the plumbing is
checked; the JSON says which). Data: --data, else GSM8K in shared/ in or beside the repo, else the
repo's data/smoke problems.

    make gpu-check                                                   # GPU: writes gpu_check.json
    python scripts/gpu_check.py --model /data/Qwen3-1.7B --json /tmp/gpu_check.json
    python scripts/gpu_check.py --dry-run --json /tmp/gpu_check_dry.json   # CPU: tiny model, 3 steps
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

HUB_MODEL = "Qwen/Qwen3-1.7B"
BUDGET_S = 600
STAGES = ("sft", "distillation", "eval", "bench")


def find_model(explicit: str | None, scratch: Path, tiny: bool) -> tuple[str, str]:
    """(model name or folder, where it came from)."""
    if tiny:
        return build_tiny(scratch), "tiny random Qwen3 (--dry-run)"
    if explicit:
        return explicit, "--model"
    for folder in (REPO_ROOT / "models" / "Qwen3-1.7B", REPO_ROOT.parent / "models" / "Qwen3-1.7B",
                   REPO_ROOT.parent / "shared" / "models" / "Qwen3-1.7B"):
        if (folder / "config.json").is_file():
            return str(folder), "local Qwen3-1.7B"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "yes"):
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(HUB_MODEL), f"hub {HUB_MODEL}"
        except Exception as error:  # no network, no access: fall back to the plumbing check
            print(f"hub {HUB_MODEL} not available ({type(error).__name__}); using a tiny random Qwen3", flush=True)
    return build_tiny(scratch), "tiny random Qwen3 (no local Qwen3-1.7B, hub not available)"


def build_tiny(scratch: Path) -> str:
    from src.utils.tiny_model import build_tiny_qwen3

    return str(build_tiny_qwen3(scratch / "tiny-qwen3"))


def find_data(explicit: str | None) -> tuple[str, str]:
    if explicit:
        return explicit, "--data"
    for folder in (REPO_ROOT / "shared" / "data" / "gsm8k", REPO_ROOT.parent / "shared" / "data" / "gsm8k"):
        if (folder / "train.jsonl").is_file() and (folder / "test.jsonl").is_file():
            return str(folder), "gsm8k"
    return str(REPO_ROOT / "data" / "smoke"), "smoke problems (data/smoke)"


def stage_settings(dry_run: bool) -> dict:
    """Steps and sizes: the GPU check's, or the CPU dry run's (tiny model, a handful of steps)."""
    if dry_run:
        return {"steps": 3, "per_device": 2, "accumulation": 2, "eval_problems": 4, "max_new_tokens": 8,
                "backend": "hf", "extra": ["data.max_train_examples=8", "data.num_fewshot_examples=2"]}
    return {"steps": 20, "per_device": 4, "accumulation": 8, "eval_problems": 32, "max_new_tokens": 512,
            "backend": "vllm", "extra": []}


def run_logged(command: list[str], log: Path) -> tuple[int, float]:
    """Run `command` from the repo root with its output in `log`; (exit status, seconds)."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as handle:
        code = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    return code, time.perf_counter() - started


def log_tail(log: Path, lines: int = 6) -> str:
    return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:]) if log.is_file() else ""


def training_stage(name: str, script: str, config: str, model: str, data: str, out: Path, settings: dict) -> dict:
    run_dir = out / name
    command = [sys.executable, f"src/training/{script}", "--config", config, "--output_dir", str(run_dir),
               "--overwrite", f"model.name={model}", f"data.path={data}", "training.bf16=true",
               f"training.max_steps={settings['steps']}", f"training.save_steps={settings['steps']}",
               "training.logging_steps=1", f"training.eval_steps={settings['steps']}",
               f"training.per_device_train_batch_size={settings['per_device']}",
               f"training.gradient_accumulation_steps={settings['accumulation']}", "training.warmup_steps=2",
               "eval.held_out_examples=8", "data.num_workers=0", *settings["extra"]]
    code, seconds = run_logged(command, out / f"{name}.log")
    result = {"command": " ".join(command[1:]), "exit_code": code, "wall_s": seconds}
    metrics_file = run_dir / "metrics.jsonl"
    records = ([json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
               if metrics_file.is_file() else [])
    train = [r for r in records if "train/total_loss" in r]
    if train:
        last = train[-1]
        result.update({"steps": last["step"], "first_total_loss": train[0]["train/total_loss"],
                       "last_total_loss": last["train/total_loss"],
                       "examples_per_step": sorted({r["train/examples_per_step"] for r in train}),
                       "tokens_per_s_last": last["train/tokens_per_s"], "train_s": last["elapsed_s"]})
        memory = [r["train/max_memory_allocated_gib"] for r in train if "train/max_memory_allocated_gib" in r]
        if memory:
            result["max_memory_allocated_gib"] = max(memory)
        if "train/dist_loss" in last:
            result["last_dist_loss"] = last["train/dist_loss"]
    finite = bool(train) and all(math.isfinite(r["train/total_loss"]) for r in train)
    result["passed"] = (code == 0 and (run_dir / "final" / "adapter_config.json").is_file() and finite
                        and result.get("steps") == settings["steps"])
    if not result["passed"]:
        result["log_tail"] = log_tail(out / f"{name}.log")
    return result


def eval_stage(run_dirs: list[Path], model: str, data: str, out: Path, settings: dict) -> dict:
    output = out / "eval.json"
    command = [sys.executable, "scripts/eval_checkpoints.py", "--config", "configs/base.yaml",
               "--conditions", *[str(d) for d in run_dirs], "--checkpoint_steps", "final",
               "--n_samples", str(settings["eval_problems"]), "--backend", settings["backend"],
               "--max_new_tokens", str(settings["max_new_tokens"]), "--output", str(output), "--overwrite",
               f"model.name={model}", f"data.path={data}"]
    code, seconds = run_logged(command, out / "eval.log")
    result = {"command": " ".join(command[1:]), "backend": settings["backend"], "exit_code": code, "wall_s": seconds}
    if output.is_file():
        conditions = json.loads(output.read_text())["conditions"]
        result["accuracy"] = {name: {label: entry["accuracy"] for label, entry in labels.items()}
                              for name, labels in conditions.items()}
    expected = {d.name for d in run_dirs}
    result["passed"] = code == 0 and set(result.get("accuracy", {})) == expected
    if not result["passed"]:
        result["log_tail"] = log_tail(out / "eval.log")
    return result


def bench_stage(out: Path, dry_run: bool, data: str, seconds_left: float) -> dict:
    output = out / "bench_gpu.json"
    command = [sys.executable, "scripts/bench_gpu.py", "--json", str(output),
               "--budget-s", str(max(0, int(seconds_left)))]
    if dry_run:
        command.append("--dry-run")
    elif data.endswith("gsm8k"):
        command += ["--data", data]
    code, seconds = run_logged(command, out / "bench.log")
    result = {"command": " ".join(command[1:]), "exit_code": code, "wall_s": seconds, "json": str(output)}
    if output.is_file():
        report = json.loads(output.read_text())
        result["summary"] = {name: bench.get("summary", bench) for name, bench in report.get("bench", {}).items()}
        result["fused_loss_check_passed"] = all(c["equal_within_tolerance"] for c in report.get("fused_loss_check", []))
    result["passed"] = code == 0 and result.get("fused_loss_check_passed", False)
    if not result["passed"]:
        result["log_tail"] = log_tail(out / "bench.log")
    return result


def machine_info() -> dict:
    """From NVML: this process creates no CUDA context (its memory would be missing for vLLM)."""
    import torch

    from src.utils.gpu_env import probe_nvml

    nvml = probe_nvml()
    return {"python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "nvml_gpus": nvml.gpus, "gpu": nvml.name, "driver": nvml.driver, "driver_cuda": nvml.driver_cuda}


def save(report: dict, path: Path, started: float) -> None:
    report["wall_s"] = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU: tiny model, 3 steps, transformers evaluation of 4 problems, bench-gpu --dry-run")
    parser.add_argument("--model", help=f"model folder or hub id (default: a local Qwen3-1.7B, else {HUB_MODEL})")
    parser.add_argument("--data", help="folder with GSM8K train.jsonl / test.jsonl (default: shared/ if present)")
    parser.add_argument("--json", default=str(REPO_ROOT / "gpu_check.json"))
    parser.add_argument("--out", help="folder for the runs and logs (default: a temporary one, deleted)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    args = parser.parse_args(argv)
    stages = args.stages.split(",")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    if "eval" in stages and not {"sft", "distillation"} <= set(stages):
        parser.error("the eval stage evaluates the sft and distillation adapters: keep those stages")

    from src.utils.gpu_env import check_gpu_setup

    started = time.perf_counter()
    json_path = Path(args.json)
    report = {"command": " ".join(["scripts/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
              "dry_run": args.dry_run, "machine": machine_info(), "stages": {}}
    try:
        check_gpu_setup(fork_safe=False)
        report["gpu_setup"] = "ok"
    except SystemExit as stop:
        report["gpu_setup"] = str(stop.code)
        report["passed"] = False
        save(report, json_path, started)
        raise
    if not args.dry_run and report["machine"]["nvml_gpus"] == 0:
        raise SystemExit("gpu_check.py needs an NVIDIA GPU (NVML lists none); use --dry-run to check the "
                         "script on the CPU")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out) if args.out else Path(scratch) / "gpu_check"
        out.mkdir(parents=True, exist_ok=True)
        model, model_source = find_model(args.model, Path(scratch), tiny=args.dry_run)
        data, data_source = find_data(args.data)
        budget_started = time.perf_counter()  # the 10-minute plan starts once the model is here
        report.update({"model": model, "model_source": model_source, "data": data, "data_source": data_source,
                       "model_fetch_s": budget_started - started})
        settings = stage_settings(args.dry_run)
        runs = {"sft": ("train_baseline.py", "configs/base.yaml"),
                "distillation": ("train_online_v1.py", "configs/online_v1.yaml")}
        for stage in stages:
            print(f"== {stage}", flush=True)
            if stage in runs:
                result = training_stage(stage, *runs[stage], model, data, out, settings)
            elif stage == "eval":
                result = eval_stage([out / "sft", out / "distillation"], model, data, out, settings)
            else:
                left = BUDGET_S - (time.perf_counter() - budget_started)
                result = bench_stage(out, args.dry_run, data, left)
            report["stages"][stage] = result
            print(json.dumps({k: v for k, v in result.items() if k not in ("command", "log_tail", "summary")}),
                  flush=True)
            save(report, json_path, started)
        report["checked_s"] = time.perf_counter() - budget_started
        report["within_10_min"] = report["checked_s"] <= BUDGET_S
        report["passed"] = all(result["passed"] for result in report["stages"].values())
        save(report, json_path, started)
    failed = [stage for stage, result in report["stages"].items() if not result["passed"]]
    print(f"wrote {json_path} in {report['wall_s']:.0f} s: "
          + ("all passed" if not failed else f"FAILED: {', '.join(failed)} (log tails in the JSON)"), flush=True)
    if failed:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
