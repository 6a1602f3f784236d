"""The project's own GSM8K-format smoke problems: arithmetic, format, determinism, committed copy."""

from __future__ import annotations

import json
import random
import re
import runpy
import sys
from pathlib import Path

import pytest

from fewshot_distill.data.synthetic import (
    TEMPLATES,
    _calc,
    generate_problem,
    generate_problems,
    make_smoke_splits,
    write_smoke_dataset,
)
from tests.conftest import REPO_ROOT

ANNOTATION = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
FINAL_LINE = re.compile(r"\n#### (\d+)$")


def check_answer(answer: str) -> int:
    """Assert every calculator annotation is right and the answer ends with '#### N'; return N."""
    final = FINAL_LINE.search(answer)
    assert final, f"answer does not end with '#### N': {answer!r}"
    annotations = list(ANNOTATION.finditer(answer))
    assert annotations, f"answer has no <<expr=value>> annotation: {answer!r}"
    for match in annotations:
        expr, value = match.group(1), match.group(2)
        assert re.fullmatch(r"[0-9+\-*/ ]+", expr), f"unexpected characters in {expr!r}"
        assert eval(expr) == float(value), f"{expr} != {value}"  # expr is digits and operators only
        assert answer[match.end():].startswith(value), f"annotation {match.group(0)} not followed by {value}"
    assert float(annotations[-1].group(2)) == int(final.group(1)), "final answer differs from the last step"
    return int(final.group(1))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("template_index", range(len(TEMPLATES)))
def test_every_template_writes_correct_arithmetic(template_index):
    rng = random.Random(template_index)
    for _ in range(200):
        row = generate_problem(rng, template_index)
        assert set(row) == {"question", "answer"}
        assert row["question"].endswith("?")
        assert check_answer(row["answer"]) >= 0


def test_there_are_at_least_a_dozen_templates():
    assert len(TEMPLATES) >= 12


def test_generate_problems_is_deterministic_for_a_seed_and_varies_across_seeds():
    assert generate_problems(40, seed=3) == generate_problems(40, seed=3)
    assert generate_problems(40, seed=3) != generate_problems(40, seed=4)


def test_generate_problems_gives_distinct_questions():
    rows = generate_problems(300, seed=0)
    assert len({row["question"] for row in rows}) == 300


def test_smoke_splits_have_requested_sizes_and_no_shared_question():
    train, test = make_smoke_splits(n_train=30, n_test=10, seed=1)
    assert (len(train), len(test)) == (30, 10)
    assert not {row["question"] for row in train} & {row["question"] for row in test}


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="template_index"):
        generate_problem(random.Random(0), len(TEMPLATES))
    with pytest.raises(ValueError, match="inexact division"):
        _calc(7, "/", 2)
    with pytest.raises(ValueError, match="n must be"):
        generate_problems(-1)


def test_write_smoke_dataset_writes_jsonl_rows(tmp_path):
    paths = write_smoke_dataset(tmp_path, n_train=5, n_test=3, seed=2)
    train, test = read_jsonl(paths["train"]), read_jsonl(paths["test"])
    assert (train, test) == tuple(map(list, make_smoke_splits(5, 3, seed=2)))


def test_committed_smoke_data_equals_a_fresh_regeneration(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["make_smoke_data.py", "--out", str(tmp_path)])
    runpy.run_path(str(REPO_ROOT / "scripts" / "make_smoke_data.py"), run_name="__main__")
    for split, size in (("train", 256), ("test", 64)):
        committed = (REPO_ROOT / "data" / "smoke" / f"{split}.jsonl").read_bytes()
        assert committed == (tmp_path / f"{split}.jsonl").read_bytes(), (
            f"data/smoke/{split}.jsonl is stale; rerun scripts/make_smoke_data.py --out data/smoke"
        )
        rows = read_jsonl(tmp_path / f"{split}.jsonl")
        assert len(rows) == size
        for row in rows:
            check_answer(row["answer"])
