"""Config help is written once (fewshot_distill/config.py) and value lists come from the registries: the comments
of configs/base.yaml and the tables of docs/method.md are generated, and stale copies fail here."""

from __future__ import annotations

import yaml

from fewshot_distill import config_docs as D
from fewshot_distill.data.teacher_context import TEACHER_CONTEXTS
from tests.conftest import REPO_ROOT


def committed(path):
    return (REPO_ROOT / path).read_text()


def test_base_yaml_and_method_doc_equal_a_fresh_regeneration():
    for path, text in D.regenerated(REPO_ROOT).items():
        assert committed(path) == text, f"{path} is stale: run {D.REGENERATE}"


def test_a_new_registry_entry_makes_the_committed_files_stale(monkeypatch):
    monkeypatch.setitem(TEACHER_CONTEXTS, "two_shot", TEACHER_CONTEXTS["fewshot"])
    fresh = D.regenerated(REPO_ROOT)
    assert "two_shot" in fresh[D.METHOD_DOC] and "two_shot" in fresh[D.BASE_YAML]
    assert fresh[D.METHOD_DOC] != committed(D.METHOD_DOC)


def test_base_yaml_sets_every_key_once_and_each_has_help():
    keys = D.config_keys()
    assert all(k.help.strip() for k in keys)

    def flat(node, prefix=""):
        for name, value in node.items():
            if isinstance(value, dict):
                yield from flat(value, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    current = [k.key for k in keys if not k.help.startswith("deprecated")]  # deprecated keys stay out of presets
    assert sorted(flat(yaml.safe_load(committed(D.BASE_YAML)))) == sorted(current)


def test_comments_are_rewritten_and_values_kept():
    text = "# header\nmethod: baseline   # old\n\nlora:\n  # stale\n  r: 8  # old\n"
    keys = [D.KeyDoc("method", "baseline", ("a", "b"), "the method"), D.KeyDoc("lora.r", "16", None, "rank")]
    out = D.base_yaml_with_help(text, keys)
    assert out.splitlines()[:4] == ["# header", "", "# The method. One of: a | b.", "method: baseline"]
    assert "  # Rank.\n  r: 8\n" in out and "old" not in out and "stale" not in out
    assert D.base_yaml_with_help(out, keys) == out  # idempotent
