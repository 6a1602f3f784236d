"""`make gpu-check GPU_BUNDLE=gpu_bundle`: the first run on a GPU node, offline, in at most 8 minutes
(fewshot_distill/bench/gpu_check.py; run once on an H200: docs/gpu_check/). Needs a bundle from `make gpu-bundle`.

    make gpu-check GPU_BUNDLE=gpu_bundle PYTHON=python3                       # GPU node, no network
    python scripts/gpu_check.py --bundle gpu_bundle --only fsdp               # rerun one stage in --out
    python scripts/gpu_check.py --bundle gpu_bundle --only install,model,fsdp --out /tmp/new   # fresh folder
    python scripts/gpu_check.py --bundle gpu_bundle --dry-run --out /tmp/gc   # CPU: tiny model, same stages
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from fewshot_distill.bench.gpu_check import STAGE_NAMES, check, render_plan  # noqa: E402  (after the repo root is importable)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="gpu_bundle", help="folder written by make gpu-bundle")
    parser.add_argument("--dry-run", action="store_true", help="CPU: tiny model, a few steps, the same stages")
    parser.add_argument("--only", help=f"comma-separated stages to rerun in --out ({', '.join(STAGE_NAMES)})")
    parser.add_argument("--model", help="a local model folder instead of random weights at the bundle's shape")
    parser.add_argument("--out", default="gpu_check_out", help="work folder: install dir, model, runs, logs")
    parser.add_argument("--json", help="report (default <out>/gpu_check.json)")
    parser.add_argument("--table", help="markdown table (default <out>/gpu_check.md)")
    parser.add_argument("--plan", action="store_true", help="print the stages and budgets, run nothing")
    args = parser.parse_args(argv)
    if args.plan:
        print(render_plan(), end="")
        return {}
    out = Path(args.out)
    json_path = Path(args.json) if args.json else out / "gpu_check.json"
    table_path = Path(args.table) if args.table else out / "gpu_check.md"
    command = " ".join(["scripts/gpu_check.py", *(argv if argv is not None else sys.argv[1:])])
    report = check(Path(args.bundle), out, json_path, table_path, dry_run=args.dry_run, only=args.only,
                   model=args.model, command=command)
    print(table_path.read_text(), flush=True)
    print(f"wrote {json_path} and {table_path}", flush=True)
    if not report["passed"]:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
