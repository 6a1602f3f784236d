"""Write configs/base.yaml's comments and docs/method.md's key and method tables from the config's field help
and the method registry (fewshot_distill/config_docs.py). Run it after changing a config key's help, a registry
or a method (tests/test_config_docs.py fails until then).

    python scripts/write_config_docs.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fewshot_distill.config_docs import regenerated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=".", help="repository root")
    args = parser.parse_args(argv)
    try:
        files = regenerated(Path(args.repo))
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    for path, text in files.items():
        (Path(args.repo) / path).write_text(text)
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
