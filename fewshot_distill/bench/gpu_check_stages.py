"""The stages of `make gpu-check` (fewshot_distill/bench/gpu_check.py), each run as its own process.

    python -m fewshot_distill.bench.gpu_check_stages STAGE CONTEXT_JSON

Each writes `<out>/results/STAGE.json`: {"passed": bool, "values": {...}} or {"skipped": reason}. A
stage's check failing is `passed: false` with a reason; an exception exits non-zero (the runner keeps
the log's tail). Training runs in this process through the training scripts' own `main`; launches
(accelerate, evaluation with its vLLM workers) are child processes of this one, killed with it.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_VARIANTS = "sft,reference,ours,onpolicy"  # ours vs SFT vs paper-style, and the on-policy split
# Fixed-shot prefix reuse vs the full teacher. float32 (dry run): the same numbers up to summation order.
# bf16 (GPU): the top-K values within 16 bf16 ulps (the first H200 run measured 4). Top-1 ids must agree
# wherever the full teacher's top-1/top-2 margin exceeds `top1_margin_x_max_diff` times the largest value
# difference: two values that each move by at most d can swap only when they were within 2d. A raw
# agreement share is no criterion with random weights, whose near-tied top logits bf16 rounding flips
# (0.95 on the H200, docs/gpu_check/gpu_check.json); it is reported.
PREFIX_TOLERANCE = {"float32_max_abs_diff": 1e-4, "bf16_max_ulps": 16.0, "top1_margin_x_max_diff": 2.0}
# The FSDP stage's model on a GPU: Qwen3-1.7B's width and vocabulary with this many decoder layers.
FSDP_LAYERS = 2


def settings(dry_run: bool) -> dict:
    """Steps and sizes of the GPU check, or of the CPU dry run (tiny model, a handful of steps, float32:
    bf16 matrix products are emulated on most CPUs, ~10x slower with the 151,680-token vocabulary)."""
    if dry_run:
        return {"steps": 6, "short_steps": 3, "per_device": 2, "accumulation": 1, "lr": 5e-3, "shots": 2,
                "bf16": False,
                "max_train_examples": 48, "max_new_tokens": 8, "eval_problems": 4, "eval_new_tokens": 8,
                "generation_prompts": 4, "device": "cpu", "bench_shape": "tiny", "fsdp_steps": 1}
    return {"steps": 20, "short_steps": 10, "per_device": 4, "accumulation": 2, "lr": 1e-3, "shots": 8,
            "bf16": True,
            "max_train_examples": 256, "max_new_tokens": 16, "eval_problems": 32, "eval_new_tokens": 64,
            "generation_prompts": 4, "device": "cuda", "bench_shape": "qwen3-1.7b", "fsdp_steps": 1}


def loss_went_down(losses: list[float]) -> bool:
    """Mean of the last quarter of the steps below the mean of the first quarter (one step is noisy)."""
    if len(losses) < 2 or not all(math.isfinite(x) for x in losses):
        return False
    n = max(1, len(losses) // 4)
    return sum(losses[-n:]) / n < sum(losses[:n]) / n


def read_train_records(run_dir: Path) -> list[dict]:
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return []
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [r for r in records if "train/total_loss" in r]


def training_values(run_dir: Path) -> dict:
    train = read_train_records(run_dir)
    if not train:
        return {"steps": 0}
    losses = [r["train/total_loss"] for r in train]
    values = {"steps": train[-1]["step"], "first_loss": losses[0], "last_loss": losses[-1],
              "loss_lower_at_end": loss_went_down(losses), "finite": all(math.isfinite(x) for x in losses),
              "examples_per_step": train[-1]["train/examples_per_step"],
              "tokens_per_s": train[-1].get("train/tokens_per_s"), "train_s": train[-1].get("elapsed_s")}
    memory = [r["train/max_memory_allocated_gib"] for r in train if "train/max_memory_allocated_gib" in r]
    if memory:
        values["max_memory_gib"] = max(memory)
    return {k: v for k, v in values.items() if v is not None}


def training_args(ctx: dict, config: str, run_dir: Path, steps: int, *extra: str) -> list[str]:
    s = settings(ctx["dry_run"])
    args = ["--config", config, "--output_dir", str(run_dir), "--overwrite", f"model.name={ctx['model']}",
            f"data.path={ctx['data']}", f"training.bf16={str(s['bf16']).lower()}", f"training.max_steps={steps}",
            f"training.save_steps={steps}", "training.logging_steps=1", f"training.eval_steps={steps}",
            f"training.per_device_train_batch_size={s['per_device']}",
            f"training.gradient_accumulation_steps={s['accumulation']}", "training.warmup_steps=1",
            f"training.lr={s['lr']}", "eval.held_out_examples=0", "data.num_workers=0",
            f"data.num_fewshot_examples={s['shots']}"]
    if s["max_train_examples"]:
        args.append(f"data.max_train_examples={s['max_train_examples']}")
    return args + list(extra)


def train_in_process(args: list[str]) -> None:
    """`python -m fewshot_distill.train args` in this process (the config's `method:` picks the method)."""
    from fewshot_distill.train import main

    main(args)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(ctx: dict, launcher: list[str], args: list[str], log_name: str) -> int:
    """`accelerate launch -m fewshot_distill.train` (as `python -m accelerate.commands.launch`: the same
    interpreter); its output goes to the stage's log folder."""
    env = dict(os.environ)
    if ctx["dry_run"]:
        env.update(ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--main_process_port",
               str(free_port()), "-m", "fewshot_distill.train", *args]
    print("$ " + " ".join(command[1:]), flush=True)
    with open(Path(ctx["out"]) / "logs" / f"{log_name}.log", "w") as handle:
        return subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode


# ----------------------------------------------------------------------------- stages

def stage_install(ctx: dict) -> dict:
    from fewshot_distill.bench.gpu_bundle import BUNDLED_MODULES, pip_install_command

    site = Path(ctx["site"])
    command = pip_install_command(sys.executable, Path(ctx["bundle"]), site, ctx["wheels"])
    result = subprocess.run(command, capture_output=True, text=True)
    print(result.stdout + result.stderr, flush=True)
    if result.returncode != 0:
        return {"passed": False, "reason": f"pip install exited with {result.returncode}"}
    # Imported here: this process's PYTHONPATH starts with the install dir.
    import importlib

    importlib.invalidate_caches()
    origins = {name: str(Path(importlib.import_module(name).__file__).resolve()) for name in BUNDLED_MODULES}
    outside = [name for name, path in origins.items() if not path.startswith(str(site.resolve()))]
    values = {"wheels": len(ctx["wheels"]), "imported_from_bundle": not outside}
    return {"passed": not outside, "values": values, "origins": origins,
            "reason": f"{', '.join(outside)} imported from outside {site}" if outside else None}


def save_random_model(config_dir: Path, tokenizer_dir: str, out: Path, device: str, seed: int = 0,
                      layers: int | None = None) -> None:
    """Seeded random bf16 weights for the config in `config_dir` (`layers` decoder layers if given), saved
    with the tokenizer to `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    config = AutoConfig.from_pretrained(str(config_dir))
    if layers is not None:
        config.num_hidden_layers = layers
        config.layer_types = config.layer_types[:layers] if getattr(config, "layer_types", None) else None
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               pad_token_id=config.pad_token_id)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)


def stage_model(ctx: dict) -> dict:
    model_dir = Path(ctx["model_dir"])
    if ctx["given_model"]:
        return {"passed": (Path(ctx["given_model"]) / "config.json").is_file(),
                "values": {"source": "--model", "folder": ctx["given_model"]},
                "reason": f"--model {ctx['given_model']} has no config.json"}
    if ctx["dry_run"]:
        from transformers import AutoTokenizer

        from fewshot_distill.data.prompts import render_prompt
        from fewshot_distill.models.tiny_model import build_tiny_qwen3

        # The project's offline BPE tokenizer (hundreds of ids): the bundle's 151,669 would make the tiny model's
        # output layer most of its CPU time. The bundle's tokenizer is loaded and rendered here, and the
        # prefix and bench stages tokenize with it.
        bundle_tokenizer = AutoTokenizer.from_pretrained(ctx["tokenizer"])
        rendered = render_prompt(bundle_tokenizer, "What is 2 + 3?")
        build_tiny_qwen3(model_dir)
        source = "tiny random Qwen3, offline tokenizer"
        extra = {"bundle_tokenizer_ids": len(bundle_tokenizer), "bundle_prompt_tokens": len(
            bundle_tokenizer(rendered, add_special_tokens=False)["input_ids"])}
    else:
        # Initialised on the GPU: seconds, where 1.7B parameters take about a minute on the CPU.
        save_random_model(Path(ctx["bundle"]) / "model", ctx["tokenizer"], model_dir, "cuda")
        # FSDP's stage saves and resumes AdamW states: ~20 GB at 28 layers, a minute of disk I/O alone.
        save_random_model(Path(ctx["bundle"]) / "model", ctx["tokenizer"], Path(ctx["fsdp_model_dir"]), "cuda",
                          layers=FSDP_LAYERS)
        source = "random weights at the bundle's Qwen3-1.7B shape, bf16"
        extra = {"fsdp_model_layers": FSDP_LAYERS}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_dir))
    return {"passed": True, "values": {"source": source, "layers": config.num_hidden_layers,
                                       "hidden": config.hidden_size, "vocab": config.vocab_size, **extra}}


def _training_stage(ctx: dict, run: str, config: str, steps: int, need_loss_down: bool,
                    *extra: str) -> dict:
    run_dir = Path(ctx["out"]) / run
    train_in_process(training_args(ctx, config, run_dir, steps, *extra))
    values = training_values(run_dir)
    saved = (run_dir / "final").is_dir()
    problems = [text for failed, text in (
        (values["steps"] != steps, f"{values['steps']} of {steps} steps logged"),
        (not values.get("finite", False), "a non-finite loss"),
        (not saved, "no final/ folder"),
        (need_loss_down and not values.get("loss_lower_at_end", False), "the loss did not go down")) if failed]
    return {"passed": not problems, "values": values, "reason": "; ".join(problems) or None}


def stage_sft(ctx: dict) -> dict:
    return _training_stage(ctx, "sft", "configs/base.yaml", settings(ctx["dry_run"])["steps"], True)


def stage_distillation(ctx: dict) -> dict:
    return _training_stage(ctx, "distillation", "configs/online_v1.yaml",
                           settings(ctx["dry_run"])["steps"], True)


def stage_full(ctx: dict) -> dict:
    # No checkpoint (save_steps past the end): AdamW states of 1.7B parameters are ~14 GB to write; final/ only.
    return _training_stage(ctx, "full", "configs/online_v1.yaml", settings(ctx["dry_run"])["short_steps"],
                           False, "model.finetune=full", "training.save_steps=1000000")


def greedy_batched_vs_single(model_dir: str, adapter_dir: Path | None, data_dir: str, n_prompts: int,
                             max_new_tokens: int, device: str) -> dict:
    """Greedy generation of a left-padded batch against each prompt alone, float32 (bf16 rounding
    differs between batch shapes, which would flip near-tied argmaxes of random weights)."""
    import torch

    from fewshot_distill.data.prompts import render_prompt
    from fewshot_distill.eval.prompts import tokenize_prompts
    from fewshot_distill.models.generation import eos_token_ids, generate_tokens
    from fewshot_distill.models.student import load_base_model, load_tokenizer
    from fewshot_distill.utils.io import read_json_records

    tokenizer = load_tokenizer(model_dir)
    rows = read_json_records(Path(data_dir) / "test.jsonl")[:n_prompts]
    prompts = tokenize_prompts(tokenizer, [render_prompt(tokenizer, row["question"]) for row in rows])
    model = load_base_model(model_dir, bf16=False)
    if adapter_dir is not None and (adapter_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model = model.to(device).eval()
    settings_ = dict(max_new_tokens=max_new_tokens, eos_ids=eos_token_ids(tokenizer, model.generation_config),
                     pad_token_id=tokenizer.pad_token_id, temperature=0.0, device=device)
    with torch.no_grad():
        batched = generate_tokens(model, prompts, **settings_).token_ids
        single = [generate_tokens(model, [prompt], **settings_).token_ids[0] for prompt in prompts]
    equal = sum(a == b for a, b in zip(batched, single))
    lengths = [len(p) for p in prompts]
    return {"rows": len(prompts), "equal_rows": equal, "prompt_tokens": [min(lengths), max(lengths)],
            "new_tokens": max(len(t) for t in batched), "dtype": "float32",
            "adapter": adapter_dir is not None and (adapter_dir / "adapter_config.json").is_file()}


def stage_onpolicy(ctx: dict) -> dict:
    s = settings(ctx["dry_run"])
    trained = _training_stage(ctx, "onpolicy", "configs/onpolicy.yaml", s["short_steps"], False,
                              f"generation.max_new_tokens={s['max_new_tokens']}", "lora.dropout=0")
    generation = greedy_batched_vs_single(ctx["model"], Path(ctx["out"]) / "onpolicy" / "final", ctx["data"],
                                          s["generation_prompts"], s["max_new_tokens"], s["device"])
    values = {**trained["values"], "greedy": generation}
    same = generation["equal_rows"] == generation["rows"]
    reasons = [r for r in (trained.get("reason"),
                           None if same else f"{generation['rows'] - generation['equal_rows']} of "
                                             f"{generation['rows']} batched rows differ from one-at-a-time") if r]
    return {"passed": trained["passed"] and same, "values": values, "reason": "; ".join(reasons) or None}


def stage_prefix(ctx: dict) -> dict:
    from fewshot_distill.bench.prefix_measure import measure

    s = settings(ctx["dry_run"])
    dtype = "float32" if ctx["dry_run"] else "bfloat16"
    report = measure(["--model", s["bench_shape"], "--device", s["device"], "--dtype", dtype, "--data", ctx["data"],
                      "--tokenizer", ctx["tokenizer"], "--batch-size", "2" if ctx["dry_run"] else "4",
                      "--n-batches", "1", "--shots", str(s["shots"]), "--k", "16" if ctx["dry_run"] else "256",
                      "--length-sample", "2" if ctx["dry_run"] else "8"])
    values = {k: report[k] for k in ("positions", "k", "dtype", "max_abs_diff_topk_values", "max_diff_in_bf16_ulps",
                                     "top1_id_agreement", "topk_id_set_agreement")}
    values["prefix_tokens"] = report["shot_prefix"]["prefix_tokens"]
    values["max_margin_where_top1_differs"] = report["max_margin_where_top1_differs"]
    problems = prefix_problems(report, dtype)
    return {"passed": not problems, "values": values, "reason": "; ".join(problems) or None}


def prefix_problems(report: dict, dtype: str, tolerance: dict = PREFIX_TOLERANCE) -> list[str]:
    """What puts the prefix teacher's comparison (fewshot_distill/bench/prefix_tolerance.py) outside `tolerance`."""
    problems = [] if report["finite"] and report["positions"] > 0 else ["no finite comparison"]
    max_diff = report["max_abs_diff_topk_values"]
    if dtype == "float32":
        if max_diff > tolerance["float32_max_abs_diff"]:
            problems.append(f"max abs diff {max_diff:.3g} > {tolerance['float32_max_abs_diff']}")
        return problems
    if report["max_diff_in_bf16_ulps"] > tolerance["bf16_max_ulps"]:
        problems.append(f"{report['max_diff_in_bf16_ulps']:g} bf16 ulps > {tolerance['bf16_max_ulps']:g}")
    margin, bound = report["max_margin_where_top1_differs"], tolerance["top1_margin_x_max_diff"] * max_diff
    if margin > bound:
        problems.append(f"top-1 differs where the full teacher's top-1/top-2 margin is {margin:.3g} > "
                        f"{tolerance['top1_margin_x_max_diff']:g} x max abs diff = {bound:.3g}")
    return problems


def stage_fsdp(ctx: dict) -> dict:
    processes = 2 if ctx["gpus"] >= 2 else 1
    run_dir = Path(ctx["out"]) / "fsdp"
    launcher = ["--config_file", "configs/accelerate/fsdp.yaml", "--num_processes", str(processes)]
    model = ctx["model"] if ctx["given_model"] or ctx["dry_run"] else ctx["fsdp_model_dir"]
    steps = settings(ctx["dry_run"])["fsdp_steps"]  # the fewest: train, save, resume one more (launches dominate)
    common = [f"training.save_steps={steps}", "model.finetune=full", f"model.name={model}"]
    first = launch(ctx, launcher, training_args(ctx, "configs/base.yaml", run_dir, steps, *common),
                   "fsdp_train")
    saved = (run_dir / f"checkpoint-{steps}").is_dir()
    args = training_args(ctx, "configs/base.yaml", run_dir, steps + 1, *common)
    args[args.index("--overwrite")] = "--resume"
    resumed = launch(ctx, launcher, args, "fsdp_resume") if first == 0 and saved else None
    run_info = json.loads((run_dir / "run_info.json").read_text()) if (run_dir / "run_info.json").is_file() else {}
    values = {"model": Path(model).name, "world_size": run_info.get("world_size"), "train_exit": first,
              "checkpoint_saved": saved, "resume_exit": resumed,
              "resumed_from": Path(run_info.get("resumed_from") or "").name or None,
              "last_step": (read_train_records(run_dir) or [{"step": 0}])[-1]["step"]}
    passed = first == 0 and saved and resumed == 0 and values["resumed_from"] == f"checkpoint-{steps}" and \
        values["last_step"] == steps + 1
    return {"passed": passed, "values": values,
            "reason": None if passed else "see logs/fsdp_train.log and logs/fsdp_resume.log"}


def stage_ddp(ctx: dict) -> dict:
    if not ctx["dry_run"] and ctx["gpus"] < 2:
        return {"skipped": f"{ctx['gpus']} GPU visible, DDP needs 2"}
    run_dir = Path(ctx["out"]) / "ddp"
    launcher = ["--multi_gpu", "--num_processes", "2"] + ([] if ctx["dry_run"] else ["--mixed_precision", "bf16"])
    code = launch(ctx, launcher, training_args(ctx, "configs/base.yaml", run_dir, 3), "ddp_train")
    values = training_values(run_dir)
    run_info = json.loads((run_dir / "run_info.json").read_text()) if (run_dir / "run_info.json").is_file() else {}
    values.update(world_size=run_info.get("world_size"), exit=code)
    passed = code == 0 and values["steps"] == 3 and values.get("finite", False) and values["world_size"] == 2
    return {"passed": passed, "values": values, "reason": None if passed else "see logs/ddp_train.log"}


def stage_eval(ctx: dict) -> dict:
    import importlib.util

    s = settings(ctx["dry_run"])
    # The dry run always uses transformers: vLLM on 2 CPU cores takes minutes to start.
    backend = "vllm" if importlib.util.find_spec("vllm") is not None and not ctx["dry_run"] else "hf"
    output = Path(ctx["out"]) / "eval.json"
    command = [sys.executable, "scripts/eval_checkpoints.py", "--config", "configs/base.yaml",
               "--conditions", str(Path(ctx["out"]) / "sft"), "--checkpoint_steps", "final",
               "--n_samples", str(s["eval_problems"]), "--backend", backend,
               "--max_new_tokens", str(s["eval_new_tokens"]), "--output", str(output), "--overwrite",
               f"model.name={ctx['model']}", f"data.path={ctx['data']}"]
    print("$ " + " ".join(command[1:]), flush=True)
    code = subprocess.run(command, cwd=REPO_ROOT).returncode
    accuracy = None
    if output.is_file():
        conditions = json.loads(output.read_text())["conditions"]
        accuracy = {label: entry["accuracy"] for labels in conditions.values() for label, entry in labels.items()}
    values = {"backend": backend, "problems": s["eval_problems"], "accuracy": accuracy}
    passed = code == 0 and bool(accuracy)
    return {"passed": passed, "values": values, "reason": None if passed else f"evaluation exited with {code}"}


def stage_bench(ctx: dict) -> dict:
    from fewshot_distill.bench import bench_gpu
    from fewshot_distill.bench.gpu_check import BY_NAME, budget

    output = Path(ctx["out"]) / "bench_gpu.json"
    seconds = budget(BY_NAME["bench"], ctx["dry_run"]) - 20  # flash-attention is skipped past this
    argv = ["--json", str(output), "--budget-s", str(seconds), "--data", ctx["data"], "--tokenizer",
            ctx["tokenizer"], "--variants", BENCH_VARIANTS] + (["--dry-run"] if ctx["dry_run"] else
                                                                 ["--n-batches", "1", "--repeats", "2",
                                                                  "--gen-tokens", "32"])
    report = bench_gpu.main(argv)
    fused = all(c["equal_within_tolerance"] for c in report["fused_loss_check"])
    summary = report["bench"].get("sdpa", {}).get("summary", {})
    values = {"fused_loss_check": fused}
    for name, row in summary.items():
        values[name] = {key: round(value, 3) for key, value in row.items()}
    onpolicy = report["bench"].get("sdpa", {}).get("details", {}).get("onpolicy", {})
    parts = [onpolicy.get(f"{part}_step_s") for part in ("generation", "teacher", "student")]
    if all(parts):  # the share of the on-policy step spent sampling
        values["onpolicy_generation_share"] = round(parts[0] / sum(parts), 3)
    passed = fused and "ours" in summary
    return {"passed": passed, "values": values, "reason": None if passed else "see bench_gpu.json"}


STAGE_FUNCTIONS = {"install": stage_install, "model": stage_model, "sft": stage_sft,
                   "distillation": stage_distillation, "prefix": stage_prefix, "onpolicy": stage_onpolicy,
                   "full": stage_full, "fsdp": stage_fsdp, "ddp": stage_ddp, "eval": stage_eval, "bench": stage_bench}


def main(argv: list[str] | None = None) -> None:
    from fewshot_distill.bench.gpu_check import STAGE_NAMES

    stage, context_path = (argv if argv is not None else sys.argv[1:])
    if stage not in STAGE_NAMES:
        raise SystemExit(f"unknown stage {stage!r}; choose from {', '.join(STAGE_NAMES)}")
    ctx = json.loads(Path(context_path).read_text())
    ctx["model"] = ctx["given_model"] or ctx["model_dir"]
    result = STAGE_FUNCTIONS[stage](ctx)
    result = {k: v for k, v in result.items() if v is not None}
    (Path(ctx["out"]) / "results" / f"{stage}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
