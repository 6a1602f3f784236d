"""Run a study (configs/studies/*.yaml): train every condition x seed with the training scripts under
`accelerate launch`, evaluate every run 0-shot and the base rows, and write study.json, study.md and study.png
(mean accuracy with a t-interval over seeds; paired differences with a bootstrap interval and McNemar tests).
Running it again continues where it stopped. See fewshot_distill/study/runner.py.

    python scripts/study.py --study configs/studies/icl_demo.yaml --out icl_demo_out
    python scripts/study.py --study configs/studies/icl_demo.yaml --seeds 0 1 2 3 4 --tasks first_letter uppercase
"""

from __future__ import annotations

import argparse
import logging
import sys

from fewshot_distill.study.runner import LaunchError, run_study
from fewshot_distill.study.spec import StudyError, load_study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, help="study YAML, e.g. configs/studies/icl_demo.yaml")
    parser.add_argument("--out", required=True, help="output folder (run folders, evaluations, study.*)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="replace the study's seeds")
    parser.add_argument("--tasks", nargs="+", default=None, help="replace the study's default tasks")
    parser.add_argument("--title", default="", help="text above the figure")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    try:
        spec = load_study(args.study, args.seeds, args.tasks)
        study = run_study(spec, args.out, args.title)
    except (StudyError, LaunchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}/study.json, study.md, study.png ({', '.join(study['tasks'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
