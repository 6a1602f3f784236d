"""Training-curve figure: CE loss of each run vs step (SFT and distillation on one axis), the distillation loss of
the runs that log it, and optionally the accuracy-per-checkpoint table from an eval results file.

Reads run_dir/metrics.jsonl, or the TensorBoard files in run_dir/tb when there is no metrics.jsonl.

Run:
    python scripts/plot_curves.py --runs experiments/baseline experiments/online_v1 \
        --results experiments/eval/results.json --smooth 0.9 --out assets/loss_comparison.png
"""

from __future__ import annotations

import argparse
import sys

from fewshot_distill.results.figures import save_figure
from fewshot_distill.results.plots import training_curves_figure


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN_DIR", help="training output dirs")
    parser.add_argument("--out", required=True, help="output PNG path")
    parser.add_argument("--smooth", type=float, default=0.0,
                        help="EMA weight in [0, 1) for the loss curves, e.g. 0.9 (default 0: raw curves)")
    parser.add_argument("--labels", nargs="+", default=None,
                        help="legend label per run (default: run_config.yaml name or folder name)")
    parser.add_argument("--results", nargs="+", default=None, metavar="R.json",
                        help="eval results file(s): adds the accuracy-per-checkpoint table panel")
    parser.add_argument("--title", default="", help="text written above the panels, e.g. the model and the run's scale")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        fig = training_curves_figure(args.runs, labels=args.labels, smooth=args.smooth, results=args.results,
                                     title=args.title)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    print(f"wrote {save_figure(fig, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
