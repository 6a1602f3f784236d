"""Write docs/measured.md's "Measured in this repository" and the README's summary of it from the committed
`make mini` outputs (fewshot_distill/results/measured.py), or with --icl_demo only the make icl-demo blocks.

    python scripts/write_measured.py --mini assets/mini --onpolicy assets/mini_onpolicy \
        --mini_full assets/mini_full --doc docs/measured.md --readme README.md
    python scripts/write_measured.py --icl_demo assets/icl_demo --doc docs/measured.md --readme README.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fewshot_distill.results.measured import write_icl_demo, write_measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mini", default="assets/mini", help="folder with the copied make mini outputs")
    parser.add_argument("--onpolicy", default="assets/mini_onpolicy",
                        help="folder with the copied make mini-onpolicy outputs (skipped when absent)")
    parser.add_argument("--mini_full", default="assets/mini_full",
                        help="folder with the copied make mini-full outputs (left out when it has no diagnostics.json)")
    parser.add_argument("--published", default="assets/published_results.json")
    parser.add_argument("--doc", default=None, help="page to update between the measured: markers (full section)")
    parser.add_argument("--readme", default=None,
                        help="README to update between the measured-summary: markers (summary linking to --doc)")
    parser.add_argument("--icl_demo", default=None, metavar="FOLDER",
                        help="only write the icl-demo blocks of --doc (full) and --readme (short) from FOLDER/study.json")
    args = parser.parse_args(argv)
    if args.readme and not args.doc:
        parser.error("--readme needs --doc: the README's block links to the page with the full one")
    if args.icl_demo and not args.readme:
        parser.error("--icl_demo needs --doc and --readme")
    doc, readme = (Path(args.doc) if args.doc else None), (Path(args.readme) if args.readme else None)
    try:
        if args.icl_demo:
            write_icl_demo(Path(args.icl_demo), doc, readme)
            written = [doc, readme]
        else:
            written = write_measured(Path(args.mini), Path(args.published), Path(args.onpolicy),
                                     Path(args.mini_full), doc, readme)
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise SystemExit(f"error: {error}") from None
    print("updated " + ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
