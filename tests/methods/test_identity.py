"""A run's method and condition (fewshot_distill/methods/): what training writes into run_info.json and what
readers take from it, old files included."""

from __future__ import annotations

import json

import pytest

from fewshot_distill import methods as M
from fewshot_distill.config import ConfigError
from fewshot_distill.run_identity import RUN_INFO_FILE


@pytest.mark.parametrize("method, context, condition", [
    ("baseline", None, "baseline"),
    ("baseline", "zeroshot", "baseline"),           # SFT ignores the teacher context
    ("online_v1", "fewshot", "online_v1"),
    ("online_v1", "zeroshot", "online_zeroshot"),
    ("online_v1", "shuffled_answers", "online_shuffled"),
    ("online_v1", "other_context", "online_other_context"),
])
def test_training_writes_and_readers_read_the_condition(method, context, condition, tmp_path):
    fields = M.run_identity_fields(method, context)
    assert fields["method"] == method and fields["condition"] == condition
    assert fields["teacher_context"] == (context if method == "online_v1" else None)
    (tmp_path / RUN_INFO_FILE).write_text(json.dumps({**fields, "git": {}}))
    assert M.read_run_identity(tmp_path) == fields


def test_read_run_identity_of_older_or_missing_run_info(tmp_path):
    assert M.read_run_identity(tmp_path) is None
    (tmp_path / RUN_INFO_FILE).write_text("{not json")
    assert M.read_run_identity(tmp_path) is None
    (tmp_path / RUN_INFO_FILE).write_text(json.dumps({"method": "online_v1"}))  # before `condition` existed
    assert M.read_run_identity(tmp_path)["condition"] == "online_v1"
    (tmp_path / RUN_INFO_FILE).write_text(json.dumps({"method": "my_method"}))
    assert M.read_run_identity(tmp_path)["condition"] == "my_method"
    # Readers never fail on a method this checkout does not know (fewshot_distill/methods/): its name is its condition.
    assert M.method_condition("dpo") == "dpo" and M.method_condition("dpo", "fewshot") == "dpo"
    with pytest.raises(ConfigError, match="method must be one of"):  # but training only writes known ones
        M.run_identity_fields("dpo", None)
