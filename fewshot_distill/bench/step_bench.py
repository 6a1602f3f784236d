"""Side-by-side step benchmark: SFT vs paper-style reference distillation vs ours (the CLI).

The parts: step_data.py (shapes, batches), step_variants.py (the variants and the worker that times one),
flops.py (the FLOP model), step_report.py (whole-run estimate, tables); this module parses the options and
runs each variant in its own process.

Needs only torch, transformers and peft (GSM8K rows and the tokenizer are local paths), so it runs on
a bare GPU machine. The parent process tokenizes real GSM8K rows once into batches; every variant runs
in its own child process on the same batches and the same random-initialised weights (so the CPU
RSS peaks are separate), times warm-up + repeats, and reports its median step time and peak memory.

Variants: the table in step_variants.py (`--help` lists it).

`--flops-only` skips the timing and prints the FLOP model (per step and whole run) for the shape;
`--in-process` runs the variants in this process (quick checks such as `make bench-gpu --dry-run`;
peak memory is then not per variant).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fewshot_distill.bench.flops import ideal_flops, whole_run_flops
from fewshot_distill.bench.step_data import MODEL_SHAPES, build_batches, qwen3_config
from fewshot_distill.bench.step_report import format_flops, format_table, machine_info, whole_run
from fewshot_distill.bench.step_variants import VARIANTS, PeakMemory, public_args, run_variant, variants_help
from fewshot_distill.utils.resources import ResourceError

REPO_ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, epilog=variants_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    on_gpu = torch.cuda.is_available()
    parser.add_argument("--model", default="tiny", choices=sorted(MODEL_SHAPES))
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "gsm8k"))
    parser.add_argument("--tokenizer", default=str(REPO_ROOT.parent / "shared" / "tokenizers" / "qwen3"))
    parser.add_argument("--device", default="cuda" if on_gpu else "cpu")
    parser.add_argument("--dtype", default="bfloat16" if on_gpu else "float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=4 if on_gpu else 2)
    parser.add_argument("--n-batches", type=int, default=2, help="distinct batches, cycled")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3 if not on_gpu else 5)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--lambda-distill", type=float, default=0.5)
    parser.add_argument("--alignment", default="seed", choices=["seed", "predict"])
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--variants", default="sft,reference,ours,ours_cached,ours_grouped,fixed,fixed_reuse,onpolicy")
    parser.add_argument("--gen-tokens", type=int, default=128,
                        help="onpolicy: new tokens sampled per row (generation.max_new_tokens)")
    parser.add_argument("--length-sample", type=int, default=256,
                        help="examples tokenized for the padding statistics")
    parser.add_argument("--cpu-threads", type=int, default=1, help="torch threads per CPU worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--in-process", action="store_true",
                        help="run every variant in this process (quick checks; peak memory is not per variant)")
    parser.add_argument("--flops-only", action="store_true",
                        help="print the FLOP model for the shape and batches; time nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batches-file", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in args.variants.split(","):
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    if "sft" not in args.variants.split(","):
        parser.error("--variants must include sft (every ratio is to SFT)")
    return args


def main(argv=None, memory: PeakMemory | None = None) -> dict | None:
    """`memory`: a peak counter for --in-process runs (tests inject one); default PeakMemory."""
    args = parse_args(argv)
    if args.worker:
        data = torch.load(args.batches_file, weights_only=False)
        result = run_variant(args, args.worker, data)
        Path(args.result_file).write_text(json.dumps(result))
        return None

    print(f"tokenizing GSM8K ({args.data}) with {args.tokenizer} ...", flush=True)
    try:
        data = build_batches(args)
    except ResourceError as error:
        raise SystemExit(f"error: {error}") from None
    print("lengths:", json.dumps(data["lengths"]), flush=True)
    config = qwen3_config(args.model, args.attn)
    fixed_batches = data.get("fixed_batches") or [None] * len(data["batches"])
    per_batch = [ideal_flops(config, batch, args.gradient_checkpointing, fixed, len(data.get("shot_prefix_ids", ())))
                 for batch, fixed in zip(data["batches"], fixed_batches)]
    flops = {name: statistics.mean(f[name] for f in per_batch) for name in per_batch[0]}
    batch_size = data["batches"][0]["student_input_ids"].size(0)
    flops_whole = whole_run_flops(flops, batch_size, data["n_unique"])
    if args.flops_only:
        print(format_flops(flops, flops_whole))
        report = {"ideal_flops": flops, "whole_run_flops": flops_whole, "lengths": data["lengths"],
                  "machine": machine_info(args.device), "args": public_args(args)}
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return report
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        batches_file = Path(tmp) / "batches.pt"
        torch.save(data, batches_file)
        passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
        for variant in args.variants.split(","):
            result_file = Path(tmp) / f"{variant}.json"
            command = [sys.executable, "-m", "fewshot_distill.bench.step_bench", *passthrough, "--worker", variant,
                       "--batches-file", str(batches_file), "--result-file", str(result_file)]
            started = time.perf_counter()
            if args.in_process:  # quick checks: no per-variant process, so peak RSS is shared
                results[variant] = run_variant(args, variant, data, memory)
            else:
                subprocess.run(command, check=True, cwd=REPO_ROOT)
                results[variant] = json.loads(result_file.read_text())
            # CPU timings on a shared machine depend on other load: keep it beside each result.
            results[variant]["load_average_1min_after"] = os.getloadavg()[0]
            print(f"{variant}: median {results[variant]['median_step_s']:.3f} s/step "
                  f"({time.perf_counter() - started:.0f} s in process)", flush=True)

    whole = whole_run(results, batch_size, data["n_unique"])
    print(format_table(results, flops, whole))
    print(format_flops(flops, flops_whole))
    report = {**{name: {k: r[k] for k in ("median_step_s", "peak_mem_bytes", "tokens_per_s")}
                 for name, r in results.items()},
              "details": results, "ideal_flops": flops, "whole_run": whole, "whole_run_flops": flops_whole,
              "lengths": data["lengths"], "machine": machine_info(args.device), "args": public_args(args)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
