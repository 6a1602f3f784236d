"""Write the project's own GSM8K-format smoke problem set (train.jsonl, test.jsonl).

The committed copy under data/smoke/ is this script's default output, so the smoke run
needs nothing generated; a test checks that the two stay equal.

Example:
    python scripts/make_smoke_data.py --out data/smoke --n-train 256 --n-test 64 --seed 0
"""

from __future__ import annotations

import argparse

from fewshot_distill.data.synthetic import write_smoke_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write train.jsonl and test.jsonl into")
    parser.add_argument("--n-train", type=int, default=256)
    parser.add_argument("--n-test", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = write_smoke_dataset(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    for split, path in paths.items():
        print(f"wrote {split}: {path}")


if __name__ == "__main__":
    main()
