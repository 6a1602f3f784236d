"""The method registry (fewshot_distill/methods/) is the one list of methods: config resolution, answer
sources, conditions and run identity read it, and every condition it names has a label and a colour."""

from __future__ import annotations

import warnings

import pytest

from fewshot_distill import methods as M
from fewshot_distill.config import ConfigError, load_config
from fewshot_distill.methods.base import Method
from fewshot_distill.results import figures, labels
from fewshot_distill.run_identity import ICL_PLACEHOLDER, ZERO_SHOT_CONDITION
from tests.conftest import REPO_ROOT

# Run folders named by hand (scripts/mini_onpolicy.sh), not by a method: a label and colour only.
HAND_NAMED = {"onpolicy_mse"}


def declared_conditions() -> dict[str, tuple]:
    return {name: (method.name, context, finetune) for method in M.METHODS.values()
            for (context, finetune), name in method.conditions.items()}


def test_every_entry_holds_real_references():
    for name, method in M.METHODS.items():
        assert isinstance(method, Method) and method.name == name
        assert callable(method.build_loss_step) and (method.check is None or callable(method.check))
        assert method.answer_source in M.ANSWER_SOURCES
    assert M.ANSWER_SOURCES == ("gold", "student", "mixed", "teacher")


def test_every_condition_a_method_declares_has_a_label_and_a_colour_and_nothing_else_is_styled():
    declared = declared_conditions()
    for name, (method, context, finetune) in declared.items():
        assert M.method_condition(method, context, finetune) == name
        style = labels.STYLES_BY_NAME[name]
        assert labels.label_for(name) == style.label
        assert figures.color_for(name, set()) == style.colour
    styled = {s.name for s in labels.CONDITION_STYLES}
    assert styled - set(declared) == {ZERO_SHOT_CONDITION, ICL_PLACEHOLDER} | HAND_NAMED
    assert len({s.colour for s in labels.CONDITION_STYLES}) == len(labels.CONDITION_STYLES)


def test_conditions_of_unlisted_contexts_full_runs_and_unknown_methods():
    assert M.method_condition("online_v1", "new_context") == "online_new_context"
    assert M.method_condition("unknown_method", "fewshot") == "unknown_method"
    assert M.method_condition("online_v1", "shuffled_answers", "full") == "online_shuffled_full"
    assert M.method_condition("baseline", "fewshot") == "baseline"  # no teacher: the context is ignored
    assert M.method_condition("seq_kd", "zeroshot") == "seq_kd_zeroshot"
    assert labels.label_for("icl_4shot") == "Base model (4-shot ICL)"
    assert labels.ordered_conditions(["online_v1", "baseline", "icl_8shot", "base_0shot"]) == [
        "base_0shot", "icl_8shot", "baseline", "online_v1"]


@pytest.mark.parametrize("config, method", [
    ("configs/base.yaml", "baseline"), ("configs/online_v1.yaml", "online_v1"), ("configs/onpolicy.yaml", "onpolicy"),
    ("configs/seq_kd.yaml", "seq_kd"), ("configs/ablations/zeroshot_teacher.yaml", "online_v1"),
    ("configs/mini/online_v1.yaml", "online_v1"), ("configs/mini_full/online_v1.yaml", "online_v1"),
    ("configs/ablations/gemma270m_full_distill.yaml", "online_v1"), ("configs/tasks/jsonl_example.yaml", "online_v1"),
])
def test_each_config_names_its_method(config, method):
    assert M.resolve_method(load_config(REPO_ROOT / config)).name == method


def test_the_deprecated_answer_source_and_entry_scripts_still_pick_the_old_methods():
    online = REPO_ROOT / "configs" / "online_v1.yaml"
    with pytest.warns(FutureWarning, match="set method: onpolicy"):
        assert M.resolve_method(load_config(online, ["distillation.answer_source=student"])).name == "onpolicy"
    with pytest.warns(FutureWarning):
        assert M.resolve_method(load_config(online, ["distillation.answer_source=mixed"])).name == "onpolicy_mixed"
    base = REPO_ROOT / "configs" / "base.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # train_baseline.py trained SFT whatever the config; train_online_v1.py the paper's method
        assert M.resolve_method(load_config(online), legacy_script="baseline").name == "baseline"
        assert M.resolve_method(load_config(base, ["distillation.n_top_logits=4", "distillation.lambda_distill=1"]),
                                legacy_script="online_v1").name == "online_v1"


@pytest.mark.parametrize("overrides, message", [
    (["method=dpo"], "method must be one of"),
    (["method=seq_kd", "distillation.answer_source=student"], "contradict each other"),
    (["distillation.answer_source=teacher_copy"], "distillation.answer_source must be one of"),
    (["method=online_v1", "distillation.n_top_logits=0"], "needs distillation.n_top_logits > 0"),
    (["method=onpolicy", "distillation.teacher_cache=memory"], "needs gold answers"),
])
def test_impossible_methods_are_one_line_config_errors(overrides, message):
    cfg = load_config(REPO_ROOT / "configs" / "online_v1.yaml", overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(ConfigError, match=message) as error:
            M.resolve_method(cfg)
    assert "\n" not in str(error.value)
