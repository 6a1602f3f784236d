"""Figures and a Markdown table from a held-out diagnostics file (scripts/eval_diagnostics.py).

Writes into --out_dir: diagnostics_per_checkpoint.png (NLL, KL to the teacher, ICL gap closed vs step),
icl_gap_closed.png (bars for the last checkpoint of each run and the base rows), diagnostics.md, and with
--runs eval_curves.png (the in-training eval/* scalars of those run folders).

    python scripts/plot_diagnostics.py --results mini_out/diagnostics.json --out_dir mini_out \
        --runs mini_out/experiments/baseline mini_out/experiments/online_v1 --title "SmolLM2-135M, 32 rows"
"""

from __future__ import annotations

import argparse
import sys

from fewshot_distill.results.plots import write_diagnostics_outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="diagnostics JSON")
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--runs", nargs="*", default=[],
                        help="training run folders: eval_curves.png, and the labels of results files written "
                             "before evaluation recorded each run's condition")
    parser.add_argument("--title", default="", help="text on every figure, e.g. model and scale")
    args = parser.parse_args(argv)
    try:
        written = write_diagnostics_outputs(args.results, args.out_dir, args.runs, args.title)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
