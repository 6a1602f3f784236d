"""Deprecated path, kept for one release so the paper's command still runs:

    accelerate launch src/training/train_baseline.py --config ... [key=value ...]

The package is now `fewshot_distill`; this file only forwards to it.
"""

import sys
import warnings

from fewshot_distill.training.train_baseline import main
from fewshot_distill.training.loop import exit_on_user_error

if __name__ == "__main__":
    warnings.warn("src/training/train_baseline.py is deprecated and goes away in the next release: "
                  "use fewshot_distill/training/train_baseline.py", FutureWarning, stacklevel=1)
    print("note: src/training/train_baseline.py is deprecated; use fewshot_distill/training/train_baseline.py", file=sys.stderr)
    exit_on_user_error(main)
