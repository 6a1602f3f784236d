"""Write a random-initialised tiny Qwen3ForCausalLM (head_dim 64) plus a tokenizer to a folder.

Without --tokenizer it trains a small byte-level BPE tokenizer on the project's smoke
problems, fully offline; with --tokenizer it copies that tokenizer (the model's vocabulary
then covers all of its ids). The folder loads with AutoModelForCausalLM / AutoTokenizer
.from_pretrained and with vLLM.

Examples:
    python scripts/make_tiny_model.py --out runs/tiny-qwen3
    python scripts/make_tiny_model.py --out runs/tiny-qwen3-realtok --tokenizer ../shared/tokenizers/qwen3
"""

from __future__ import annotations

import argparse

from fewshot_distill.models.tiny_model import DTYPES, build_tiny_qwen3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the model and tokenizer into")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder to copy (default: train one offline)")
    parser.add_argument("--hidden-size", type=int, default=128, help="a multiple of 64 (head_dim is fixed at 64)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    args = parser.parse_args()
    out_dir = build_tiny_qwen3(
        args.out,
        tokenizer=args.tokenizer,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        seed=args.seed,
        dtype=args.dtype,
    )
    print(f"wrote tiny Qwen3 model and tokenizer to {out_dir}")


if __name__ == "__main__":
    main()
