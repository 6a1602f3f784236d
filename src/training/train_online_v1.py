"""Deprecated entry point, kept for one release so the paper's commands still run:

    accelerate launch src/training/train_online_v1.py --config ... [key=value ...]

It trains what it always trained (method online_v1, or the one distillation.answer_source names) through
the one entry point, `python -m fewshot_distill.train`, which reads the method from the config's `method:` key.
"""

import sys
from functools import partial

from fewshot_distill.train import main
from fewshot_distill.training.loop import exit_on_user_error

if __name__ == "__main__":
    print("note: src/training/train_online_v1.py is deprecated and goes away in the next release: use "
          "python -m fewshot_distill.train (the config's method: key picks the method)", file=sys.stderr)
    exit_on_user_error(partial(main, legacy_script="online_v1"))
