"""`make bench-gpu`: the step benchmark at the Qwen3-1.7B shape on a GPU (fewshot_distill/bench/bench_gpu.py).

    make bench-gpu                                                   # GPU, writes docs/bench_gpu.json
    python scripts/bench_gpu.py --data ../shared/data/gsm8k --tokenizer ../shared/tokenizers/qwen3
    python scripts/bench_gpu.py --dry-run --json /tmp/bench_gpu_dry.json   # CPU, tiny shape
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fewshot_distill.bench.bench_gpu import main  # noqa: E402  (after the repo root is importable)

if __name__ == "__main__":
    main()
