"""Time SFT vs paper-style reference distillation vs our distillation step (also with fixed shots and
the shared-prefix teacher), side by side.

Each variant runs in its own process on the same real-GSM8K batches (real Qwen3 tokenizer) and the
same random-initialised weights of the chosen shape; prints a table and the whole-run projection.

    python scripts/bench_step.py --model tiny --json /tmp/bench_tiny.json                 # CPU, minutes
    python scripts/bench_step.py --model qwen3-1.7b --batch-size 4 --json bench_gpu.json  # GPU
    python scripts/bench_step.py --model tiny --gradient-checkpointing --attn eager --variants sft,ours
    python scripts/bench_step.py --model small --variants sft,fixed,fixed_reuse --json /tmp/fixed.json  # shots
    python scripts/bench_step.py --model qwen3-1.7b --batch-size 4 --n-batches 16 --flops-only   # FLOP model
"""

from fewshot_distill.bench.step_bench import main

if __name__ == "__main__":
    main()
