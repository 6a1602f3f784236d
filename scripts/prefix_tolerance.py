"""How far the shared-prefix teacher's top-K is from the full-sequence teacher's, measured on real
fixed-shot GSM8K batches with random weights of a bench shape (no timing). The comparison itself is
fewshot_distill/bench/prefix_tolerance.py; the bench's options and batches are fewshot_distill/bench/step_bench.py's.

    python scripts/prefix_tolerance.py --model tiny --dtype bfloat16 --json docs/prefix_tolerance_tiny_bf16.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fewshot_distill.bench.prefix_measure import measure


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True)
    known, rest = parser.parse_known_args(argv)
    report = measure(rest)
    Path(known.json).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("lengths", "args")}))
    return report


if __name__ == "__main__":
    main()
