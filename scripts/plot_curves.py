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

from fewshot_distill.results.figures import curves_figure, save_figure
from fewshot_distill.results.load import load_many
from fewshot_distill.results.metrics import load_run_scalars, run_label


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
    if args.labels is not None and len(args.labels) != len(args.runs):
        raise SystemExit(f"error: got {len(args.labels)} --labels for {len(args.runs)} --runs; give one per run")
    if not 0 <= args.smooth < 1:
        raise SystemExit(f"error: --smooth must be in [0, 1), got {args.smooth}")
    labels = args.labels or [run_label(run_dir) for run_dir in args.runs]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"error: runs share a legend label ({', '.join(labels)}); pass distinct --labels")
    try:
        runs = [(label, load_run_scalars(run_dir)) for label, run_dir in zip(labels, args.runs)]
        conditions = load_many(args.results)["conditions"] if args.results else None
        fig = curves_figure(runs, smooth=args.smooth, conditions=conditions)
        if args.title:
            fig.suptitle(args.title, fontsize=10)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    out = save_figure(fig, args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
