"""`make gpu-bundle`: the folder an offline GPU node needs for `make gpu-check` (fewshot_distill/bench/gpu_bundle.py):
missing wheels for CPython 3.10-3.13, the Qwen3 tokenizer, a Qwen3-1.7B-shaped config, a GSM8K subset and
a manifest, at most 56 MiB. Needs PyPI access and ../shared (or --tokenizer / --data).

    make gpu-bundle                                           # writes gpu_bundle/
    python scripts/gpu_bundle.py --out /tmp/gpu_bundle --tokenizer ../shared/tokenizers/qwen3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fewshot_distill.bench.gpu_bundle import (GSM8K_TEST_ROWS, GSM8K_TRAIN_ROWS, build_bundle,  # noqa: E402
                                  find_shared)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_bundle")
    parser.add_argument("--tokenizer",
                        help="Qwen3 tokenizer folder (default: shared/tokenizers/qwen3 in or beside the repo)")
    parser.add_argument("--data", help="GSM8K folder with train.jsonl, test.jsonl (default: shared/data/gsm8k)")
    parser.add_argument("--train-rows", type=int, default=GSM8K_TRAIN_ROWS)
    parser.add_argument("--test-rows", type=int, default=GSM8K_TEST_ROWS)
    args = parser.parse_args(argv)
    manifest = build_bundle(Path(args.out), find_shared(args.tokenizer, "tokenizers/qwen3"),
                            find_shared(args.data, "data/gsm8k"), train_rows=args.train_rows,
                            test_rows=args.test_rows)
    print(f"wrote {args.out}: {manifest['total_bytes'] / 2**20:.1f} MiB, wheels "
          + ", ".join(f"{name} {version}" for name, version in manifest["wheels"].items())
          + f"; GSM8K rows {manifest['data']['rows']}", flush=True)
    return manifest


if __name__ == "__main__":
    main()
