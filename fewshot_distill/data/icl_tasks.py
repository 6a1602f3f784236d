"""In-context-learning tasks: one-line answers a small model gives only when shots show it the task.

Each task maps an input to a target (`apple` -> `a`); the files `data/icl/<task>/{train,test}.jsonl` hold
records `{"input", "target"}` (configs/tasks/icl_<task>.yaml read them as `task.answer_type: text`). They are
built in two steps, both deterministic:

1. Source lists, committed under `data/icl/sources/`, from pinned PyPI packages (requirements-data.txt,
   needed only for this step): common English words (wordfreq), number words (num2words), countries and
   capitals (countryinfo). `build_sources()`; it refuses other versions than the pinned ones.
2. The task files from those lists (standard library only): each task's items, split BY ITEM with a seeded
   shuffle (SPLIT_SEED) into test (TEST_FRACTION) and train, so no input is in both. `build_task_files()`.

So the committed task files regenerate byte for byte from the committed lists on any machine (tested), and
the lists from the pinned packages where they are installed (`make icl-data`).

    files = build_task_files(ICL_TASKS["first_letter"], read_sources(Path("data/icl/sources")))
    files["test.jsonl"].splitlines()[0]      # '{"input": "...", "target": "..."}'
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

SPLIT_SEED = 26
TEST_FRACTION = 0.4
INPUT_FIELD, TARGET_FIELD = "input", "target"
REQUIREMENTS_FILE = "requirements-data.txt"
SOURCES_DIR = "sources"


class SourcePackageError(RuntimeError):
    """A source package is missing or not at its pinned version; the message is one line with the fix."""


@dataclass(frozen=True)
class SourceList:
    """One committed list of (input, target) pairs (or of words), and how it was made."""
    file: str                # under data/icl/sources/
    package: str             # the PyPI package it comes from (pinned in requirements-data.txt)
    licence: str
    description: str
    build: Callable[[], list[tuple[str, ...]]]   # the pairs (or 1-tuples) from the installed package


@dataclass(frozen=True)
class IclTask:
    """A task: the source list it reads and the (input, target) pair of each entry."""
    name: str
    source: str | None       # a SOURCES key; None: generated here (no package, nothing to cite)
    description: str
    example: tuple[str, str]
    items: Callable[[list[tuple[str, ...]]], list[tuple[str, str]]]


# ----------------------------------------------------------------------------- sources (pinned packages)

WORD_LETTERS = (4, 8)       # word lengths kept
N_WORDS = 500
NUMBER_RANGE = range(0, 300)


def common_words() -> list[tuple[str]]:
    """The N_WORDS most frequent English words (wordfreq's list) of 4 to 8 lowercase ASCII letters."""
    from wordfreq import top_n_list

    low, high = WORD_LETTERS
    words = [w for w in top_n_list("en", 5000) if w.isascii() and w.isalpha() and w.islower() and low <= len(w) <= high]
    if len(words) < N_WORDS:
        raise SourcePackageError(f"wordfreq's list has {len(words)} fitting words, fewer than {N_WORDS}")
    return [(w,) for w in words[:N_WORDS]]


def number_words() -> list[tuple[str, str]]:
    """(n, n in English words) for n in NUMBER_RANGE, as num2words writes them (`21` -> `twenty-one`)."""
    from num2words import num2words

    return [(str(n), num2words(n)) for n in NUMBER_RANGE]


def country_capitals() -> list[tuple[str, str]]:
    """(country, capital) for each entry of countryinfo with one capital named, sorted by country."""
    import countryinfo

    pairs = {}
    for country in countryinfo.all_countries():
        capital = country.capital()
        if isinstance(capital, str) and capital.strip():
            pairs[country.name().strip()] = capital.strip()
    return sorted(pairs.items())


SOURCES: dict[str, SourceList] = {
    "words": SourceList("words.txt", "wordfreq", "word list: CC BY-SA 4.0 (wordfreq's data); code: Apache-2.0",
                        f"the {N_WORDS} most frequent English words of {WORD_LETTERS[0]}-{WORD_LETTERS[1]} "
                        "lowercase ASCII letters, most frequent first", common_words),
    "numbers": SourceList("numbers.tsv", "num2words", "LGPL-2.1 (the package); the number words are plain English",
                          f"{NUMBER_RANGE.start}-{NUMBER_RANGE.stop - 1} and their English words", number_words),
    "capitals": SourceList("capitals.tsv", "countryinfo", "MIT",
                           "countries and territories with one capital named, as the package states them",
                           country_capitals),
}


def pinned_versions(repo_root: Path) -> dict[str, str]:
    """{package: version} of requirements-data.txt (lines `name==version`)."""
    pins = {}
    for line in (repo_root / REQUIREMENTS_FILE).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def check_source_packages(repo_root: Path) -> None:
    """SourcePackageError unless every source package is installed at its pinned version."""
    pins = pinned_versions(repo_root)
    for source in SOURCES.values():
        try:
            installed = metadata.version(source.package)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != pins[source.package]:
            raise SourcePackageError(
                f"{source.package}=={pins[source.package]} is needed to build the source lists, found "
                f"{installed or 'none'}: pip install -r {REQUIREMENTS_FILE}")


def source_text(pairs: list[tuple[str, ...]]) -> str:
    """A source list as committed: one entry a line, fields separated by tabs."""
    for pair in pairs:
        if any("\t" in field or "\n" in field for field in pair):
            raise ValueError(f"source entry {pair!r} holds a tab or newline")
    return "".join("\t".join(pair) + "\n" for pair in pairs)


def parse_source(text: str) -> list[tuple[str, ...]]:
    """The entries of a source list's text (`source_text` inverted)."""
    return [tuple(line.split("\t")) for line in text.splitlines() if line]


def read_sources(sources_dir: Path) -> dict[str, str]:
    """{file name: text} of the committed source lists."""
    return {source.file: (sources_dir / source.file).read_text(encoding="utf-8") for source in SOURCES.values()}


def build_sources(repo_root: Path) -> dict[str, str]:
    """{file name: text} of every source list, from the installed (pinned) packages."""
    check_source_packages(repo_root)
    return {source.file: source_text(source.build()) for source in SOURCES.values()}


# ----------------------------------------------------------------------------- tasks (standard library)

ICL_TASKS: dict[str, IclTask] = {task.name: task for task in (
    IclTask("first_letter", "words", "the word's first letter", ("apple", "a"),
            lambda entries: [(w, w[0]) for (w,) in entries]),
    IclTask("uppercase", "words", "the word in capitals", ("river", "RIVER"),
            lambda entries: [(w, w.upper()) for (w,) in entries]),
    IclTask("num2word", "numbers", "the number in English words", ("7", "seven"),
            lambda entries: [(n, words) for n, words in entries]),
    IclTask("capital", "capitals", "the country's capital", ("France", "Paris"),
            lambda entries: [(country, capital) for country, capital in entries]),
    IclTask("add3", None, "the number plus 3", ("5", "8"),
            lambda _: [(str(n), str(n + 3)) for n in NUMBER_RANGE]),
)}


def split_by_item(items: list[tuple[str, str]], seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
                  ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, test): the items in a seeded order, the first round(test_fraction * n) of them test. An input
    that appears twice is an error, so no input can be in both splits."""
    inputs = [item[0] for item in items]
    if len(set(inputs)) != len(inputs):
        repeated = sorted({i for i in inputs if inputs.count(i) > 1})
        raise ValueError(f"inputs appear more than once: {repeated[:5]}")
    order = sorted(items)
    random.Random(seed).shuffle(order)
    n_test = round(test_fraction * len(order))
    return order[n_test:], order[:n_test]


def records_text(items: list[tuple[str, str]]) -> str:
    return "".join(json.dumps({INPUT_FIELD: i, TARGET_FIELD: t}, ensure_ascii=False) + "\n" for i, t in items)


def task_items(task: IclTask, sources: dict[str, str]) -> list[tuple[str, str]]:
    """A task's (input, target) items from the source lists' texts ({file name: text})."""
    return task.items([] if task.source is None else parse_source(sources[SOURCES[task.source].file]))


def build_task_files(task: IclTask, sources: dict[str, str]) -> dict[str, str]:
    """{"train.jsonl": text, "test.jsonl": text} of a task, from the source lists' texts."""
    train, test = split_by_item(task_items(task, sources))
    return {"train.jsonl": records_text(train), "test.jsonl": records_text(test)}


def task_table(sources: dict[str, str]) -> str:
    """The markdown table of data/icl/README.md: each task, its example, source, licence and split sizes."""
    lines = ["| task | input → target | source | licence | train | test |", "|---|---|---|---|---:|---:|"]
    for task in ICL_TASKS.values():
        train, test = split_by_item(task_items(task, sources))
        source = SOURCES.get(task.source)
        origin = f"`{source.package}` → `sources/{source.file}`" if source else "generated (`fewshot_distill/data/icl_tasks.py`)"
        licence = source.licence if source else "none (generated)"
        lines.append(f"| `{task.name}` | `{task.example[0]}` → `{task.example[1]}` ({task.description}) | {origin} "
                     f"| {licence} | {len(train)} | {len(test)} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the committed files

README = "README.md"
TABLE_START, TABLE_END = "<!-- icl-tasks:start -->", "<!-- icl-tasks:end -->"


def task_source_record(task: IclTask, sources: dict[str, str], pins: dict[str, str]) -> dict:
    """data/icl/<task>/source.json: where the task's items come from, under which licence, and how they split."""
    train, test = split_by_item(task_items(task, sources))
    source = SOURCES.get(task.source)
    return {
        "task": task.name, "description": task.description,
        "example": {INPUT_FIELD: task.example[0], TARGET_FIELD: task.example[1]},
        "fields": {"input": INPUT_FIELD, "target": TARGET_FIELD},
        "source": None if source is None else {
            "package": source.package, "version": pins[source.package], "list": f"{SOURCES_DIR}/{source.file}",
            "licence": source.licence, "description": source.description},
        "split": {"by": "item", "seed": SPLIT_SEED, "test_fraction": TEST_FRACTION, "train": len(train),
                  "test": len(test)},
        "built_by": "scripts/build_icl_data.py (fewshot_distill/data/icl_tasks.py)",
    }


def icl_data_files(data_dir: Path, repo_root: Path, with_sources: bool = False) -> dict[str, str]:
    """{path relative to data_dir: text} of everything scripts/build_icl_data.py writes: every task's
    train.jsonl, test.jsonl and source.json and the README table, from the committed source lists; with
    `with_sources`, from the lists built afresh from the pinned packages, which are then part of it too."""
    pins = pinned_versions(repo_root)
    sources = build_sources(repo_root) if with_sources else read_sources(data_dir / SOURCES_DIR)
    files = {f"{SOURCES_DIR}/{name}": text for name, text in sources.items()} if with_sources else {}
    for task in ICL_TASKS.values():
        for name, text in build_task_files(task, sources).items():
            files[f"{task.name}/{name}"] = text
        files[f"{task.name}/source.json"] = json.dumps(task_source_record(task, sources, pins), indent=2,
                                                       ensure_ascii=False) + "\n"
    files[README] = readme_with_table((data_dir / README).read_text(encoding="utf-8"), task_table(sources))
    return files


def readme_with_table(readme: str, table: str) -> str:
    """`readme` with the task table between its TABLE_START / TABLE_END markers; ValueError without them."""
    if TABLE_START not in readme or TABLE_END not in readme:
        raise ValueError(f"{README} lacks the {TABLE_START} / {TABLE_END} markers")
    head, rest = readme.split(TABLE_START, 1)
    return f"{head}{TABLE_START}\n{table}{TABLE_END}{rest.split(TABLE_END, 1)[1]}"


def stale_files(data_dir: Path, expected: dict[str, str]) -> list[str]:
    """The paths under data_dir whose text differs from `expected` (or that are missing)."""
    return sorted(name for name, text in expected.items()
                  if not (data_dir / name).is_file() or (data_dir / name).read_text(encoding="utf-8") != text)

