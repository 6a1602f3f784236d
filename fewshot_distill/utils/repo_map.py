"""The README's map of the repository, built from the code: every fewshot_distill/ module with its docstring's first sentence.

Pure functions of a repository folder (files read with ast, nothing imported); scripts/write_repo_map.py
writes the result between the README's `<!-- repo-map:start -->` / `<!-- repo-map:end -->` markers and
tests/utils/test_repo_map.py fails when the README's map is stale or lacks a fewshot_distill/ module.

    print(repo_map_markdown(Path(".")))
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

# The folders beside fewshot_distill/: what each holds, and which of its names the map lists (from the filesystem; folders
# or tracked kinds of file only, so that a run's untracked outputs never make the README stale).
OTHER_FOLDERS = (
    ("configs", "YAML presets, each starting with the command that uses it and naming its `method:` (an entry of "
                "fewshot_distill/methods/): `base.yaml` (SFT + shared settings), `online_v1.yaml` (distillation "
                "overrides), `onpolicy.yaml`, `seq_kd.yaml`, `ablations/` (teacher-context controls, the Gemma-3-270M "
                "full fine-tuning control), `accelerate/fsdp.yaml` (sharded full fine-tuning)", ("*/", "*.yaml")),
    ("scripts", "entry points that only wire `fewshot_distill/` together (each docstring has a run example)", ("*.py", "*.sh")),
    ("tests", "CPU test suite on tiny random Qwen3 models (+ the real Qwen3 tokenizer and GSM8K from ../shared when "
              "present), one folder per `fewshot_distill/` package", ("*/",)),
    ("data", "committed data: `smoke/` (the smoke run's problems), `icl/` (the in-context-learning tasks and the "
             "lists they are built from, data/icl/README.md)", ("*/",)),
    ("docs", "reference pages (see Documentation below) and the committed benchmark JSON they cite", ("*.md",)),
    ("assets", "published data (the paper's numbers, its follow-up's controls) as JSON, the figures and tables "
               "generated from them, and the committed outputs of `make mini` and of the transfer evaluation",
     ("*/",)),
)
# The end of a docstring's first sentence: a full stop after a word, before a capital or the end.
SENTENCE_END = re.compile(r"(?<=[\w)`'\"])\.(?=\s+[A-Z]|\s*$)")


def first_sentence(docstring: str) -> str:
    """The first sentence of a docstring's first paragraph, its lines joined."""
    paragraph = " ".join(docstring.strip().split("\n\n", 1)[0].split())
    end = SENTENCE_END.search(paragraph)
    return paragraph[: end.end()] if end else paragraph


def module_summary(path: Path) -> str:
    """The first sentence of a module's docstring; ValueError naming the file when it has none."""
    docstring = ast.get_docstring(ast.parse(path.read_text(), filename=str(path)))
    if not docstring:
        raise ValueError(f"{path} has no module docstring: give it a one-line summary (it becomes the README map)")
    return first_sentence(docstring)


def src_modules(repo: Path) -> list[str]:
    """Every module file under fewshot_distill/ as a repo-relative path, package `__init__.py` files excluded."""
    return sorted(p.relative_to(repo).as_posix() for p in (repo / "fewshot_distill").rglob("*.py") if p.name != "__init__.py")


def repo_map_markdown(repo: Path) -> str:
    """The map: fewshot_distill/'s top-level modules, then each package (its summary, then its modules), then one line per
    folder beside fewshot_distill/ with the names it holds."""
    package_dir = repo / "fewshot_distill"
    lines = [f"- `{path}`: {module_summary(repo / path)}" for path in src_modules(repo) if path.count("/") == 1]
    for package in sorted(p for p in package_dir.iterdir() if (p / "__init__.py").is_file()):
        lines.append(f"- **`fewshot_distill/{package.name}/`**: {module_summary(package / '__init__.py')}")
        lines += [f"  - `{path}`: {module_summary(repo / path)}" for path in src_modules(repo)
                  if path.startswith(f"fewshot_distill/{package.name}/")]
    for folder, what, patterns in OTHER_FOLDERS:
        names = sorted({path.name + ("/" if path.is_dir() else "") for pattern in patterns
                        for path in (repo / folder).glob(pattern.rstrip("/"))
                        if path.is_dir() == pattern.endswith("/") and not path.name.startswith((".", "__"))})
        lines.append(f"- **`{folder}/`**: {what}. Holds: " + ", ".join(f"`{name}`" for name in names) + ".")
    return "\n".join(lines) + "\n"
