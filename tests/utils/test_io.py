"""In-place rewrites of src/utils/io.py: a JSONL log cut back to the steps a resumed run keeps."""

from __future__ import annotations

import json

from src.utils.io import jsonl_step, keep_logged_steps


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
