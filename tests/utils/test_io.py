"""fewshot_distill/utils/io.py: a JSONL log cut back to the steps a resumed run keeps; local data files read as records."""

from __future__ import annotations

import json

import pytest

from fewshot_distill.utils.io import jsonl_step, keep_logged_steps


def test_keep_logged_steps_keeps_earlier_steps_and_drops_later_and_unreadable_lines(tmp_path):
    log = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": step, "x": step}) for step in (1, 2, 3, 4)]
    log.write_text("\n".join([lines[0], lines[1], '{"step": 3, "x"', "", "not json", lines[2], lines[3]]) + "\n")
    assert keep_logged_steps(log, 2) == 2  # the line cut short and the garbage; the blank line is not counted
    assert log.read_text() == lines[0] + "\n" + lines[1] + "\n"
    assert keep_logged_steps(log, 0) == 0 and log.read_text() == ""


def test_jsonl_step():
    assert jsonl_step('{"step": 7, "text": "a"}') == 7
    assert jsonl_step('{"text": "no step"}') is None
    assert jsonl_step("") is None and jsonl_step('{"step": "x"}') is None


def test_read_json_records_reads_jsonl_and_json_arrays(tmp_path):
    from fewshot_distill.utils.io import read_json_records

    (tmp_path / "rows.jsonl").write_text('{"a": 1}\n\n{"a": 2.5, "b": null}\n')
    (tmp_path / "rows.json").write_text('[{"a": 1},\n {"a": 2}]')
    assert read_json_records(tmp_path / "rows.jsonl") == [{"a": 1}, {"a": 2.5, "b": None}]
    assert read_json_records(tmp_path / "rows.json") == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("text, where, says", [
    ('{"a": 1}\n{"input": "broken\n', ":2:", "fix or delete that line"),
    ('{"a": 1}\n[1, 2]\n', ":2:", "not an object"),
    ('[{"a": 1},\n {"a": ]', ":2:", "not valid JSON"),
])
def test_read_json_records_names_the_file_line_and_fix(tmp_path, text, where, says):
    from fewshot_distill.utils.io import DataFileError, read_json_records

    path = tmp_path / "train.jsonl"
    path.write_text(text)
    with pytest.raises(DataFileError) as caught:
        read_json_records(path)
    message = str(caught.value)
    assert message.startswith(f"{path}{where}") and says in message and "\n" not in message
