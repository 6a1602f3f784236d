"""The in-context-learning task data (fewshot_distill/data/icl_tasks.py, data/icl/): split by item, committed files that
regenerate byte for byte from the committed source lists, source lists equal to the pinned packages' output
(where installed), and one config per task that loads both splits as a text task."""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from fewshot_distill.config import load_config
from fewshot_distill.data.examples import load_task_rows
from fewshot_distill.data.icl_tasks import (ICL_TASKS, INPUT_FIELD, README, SOURCES, SOURCES_DIR, TARGET_FIELD, build_sources,
                                icl_data_files, pinned_versions, split_by_item)
from fewshot_distill.tasks import task_of
from tests.conftest import REPO_ROOT

ICL_DIR = REPO_ROOT / "data" / "icl"
MIN_ITEMS = {"capital": 200}   # tasks whose source has fewer than the few hundred items of the others
FEW_HUNDRED = 300


def committed_records(task: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (ICL_DIR / task / f"{split}.jsonl").read_text().splitlines()]


def test_split_by_item_is_seeded_disjoint_and_refuses_repeated_inputs():
    items = [(f"w{i}", f"t{i % 3}") for i in range(10)]
    train, test = split_by_item(items, seed=1, test_fraction=0.4)
    assert len(test) == 4 and len(train) == 6 and sorted(train + test) == sorted(items)
    assert {i for i, _ in train}.isdisjoint(i for i, _ in test)
    assert split_by_item(list(reversed(items)), seed=1, test_fraction=0.4) == (train, test)  # input order is irrelevant
    assert split_by_item(items, seed=2, test_fraction=0.4) != (train, test)
    with pytest.raises(ValueError, match=r"more than once: \['w1'\]"):
        split_by_item(items + [("w1", "other")])


def test_first_letter_and_uppercase_have_the_same_inputs_in_the_same_splits():
    """data/icl/README.md says so, and the icl-demo reading relies on it (label-free runs are the same on both)."""
    for split in ("train", "test"):
        assert ([r[INPUT_FIELD] for r in committed_records("first_letter", split)]
                == [r[INPUT_FIELD] for r in committed_records("uppercase", split)])


@pytest.mark.parametrize("task", list(ICL_TASKS))
def test_committed_task_splits_share_no_input(task):
    train, test = committed_records(task, "train"), committed_records(task, "test")
    for record in train + test:
        assert set(record) == {INPUT_FIELD, TARGET_FIELD}
        assert record[INPUT_FIELD].strip() and record[TARGET_FIELD].strip() and "\n" not in record[TARGET_FIELD]
    train_inputs, test_inputs = [r[INPUT_FIELD] for r in train], [r[INPUT_FIELD] for r in test]
    assert len(set(train_inputs)) == len(train_inputs) and len(set(test_inputs)) == len(test_inputs)
    assert set(train_inputs).isdisjoint(test_inputs)
    assert len(train) + len(test) >= MIN_ITEMS.get(task, FEW_HUNDRED) * 0.99 and len(test) >= 100


@pytest.mark.parametrize("task, rule", [
    ("first_letter", lambda word: word[0]), ("uppercase", str.upper), ("add3", lambda n: str(int(n) + 3))])
def test_generated_targets_follow_the_rule(task, rule):
    for record in committed_records(task, "train") + committed_records(task, "test"):
        assert record[TARGET_FIELD] == rule(record[INPUT_FIELD])


def test_committed_task_files_regenerate_byte_for_byte_from_the_source_lists():
    """What scripts/build_icl_data.py writes from data/icl/sources/ (standard library only, no package needed)."""
    expected = icl_data_files(ICL_DIR, REPO_ROOT)
    assert sorted(expected) == sorted([README] + [f"{t}/{name}" for t in ICL_TASKS
                                                  for name in ("train.jsonl", "test.jsonl", "source.json")])
    for name, text in expected.items():
        assert (ICL_DIR / name).read_text(encoding="utf-8") == text, f"{name}: run python scripts/build_icl_data.py"


def test_build_script_check_names_a_stale_file_and_rewrites_it(tmp_path, capsys):
    """scripts/build_icl_data.py in this process on a copy of data/icl/ with one task file changed."""
    import runpy
    import shutil

    build = runpy.run_path(str(REPO_ROOT / "scripts" / "build_icl_data.py"))["main"]  # its main(argv), not run
    data = tmp_path / "icl"
    shutil.copytree(ICL_DIR, data)
    (data / "capital" / "test.jsonl").write_text('{"input": "France", "target": "Lyon"}\n')
    assert build(["--data_dir", str(data), "--check"]) == 1
    assert f"stale: {data / 'capital' / 'test.jsonl'}" in capsys.readouterr().err
    assert build(["--data_dir", str(data)]) == 0
    assert build(["--data_dir", str(data), "--check"]) == 0
    assert (data / "capital" / "test.jsonl").read_text() == (ICL_DIR / "capital" / "test.jsonl").read_text()


def pinned_packages_installed() -> bool:
    pins = pinned_versions(REPO_ROOT)
    for source in SOURCES.values():
        try:
            if metadata.version(source.package) != pins[source.package]:
                return False
        except metadata.PackageNotFoundError:
            return False
    return True


@pytest.mark.skipif(not pinned_packages_installed(),
                    reason="the pinned packages of requirements-data.txt are not installed (make icl-data installs "
                           "them): the source lists are not compared with their output")
def test_source_lists_are_the_pinned_packages_output():
    for name, text in build_sources(REPO_ROOT).items():
        assert (ICL_DIR / SOURCES_DIR / name).read_text(encoding="utf-8") == text, name
    assert icl_data_files(ICL_DIR, REPO_ROOT, with_sources=True) == {
        **{f"{SOURCES_DIR}/{s.file}": (ICL_DIR / SOURCES_DIR / s.file).read_text(encoding="utf-8")
           for s in SOURCES.values()}, **icl_data_files(ICL_DIR, REPO_ROOT)}


@pytest.mark.parametrize("task", list(ICL_TASKS))
def test_each_task_has_a_config_loading_both_splits_as_text(task):
    cfg = load_config(REPO_ROOT / "configs" / "tasks" / f"icl_{task}.yaml", [f"data.path={ICL_DIR / task}"])
    assert cfg.data.task == "jsonl" and cfg.task.answer_type == "text" and cfg.task.template is None
    assert (cfg.task.question_field, cfg.task.answer_field) == (INPUT_FIELD, TARGET_FIELD)
    plain = load_config(REPO_ROOT / "configs" / "tasks" / f"icl_{task}.yaml")
    assert plain.data.path == f"data/icl/{task}"
    for split in ("train", "test"):
        rows = load_task_rows(cfg.data, split)
        assert len(rows) == len(committed_records(task, split))
    row = rows[0]
    assert task_of(cfg.data).format_question(row["question"]) == committed_records(task, "test")[0][INPUT_FIELD]
