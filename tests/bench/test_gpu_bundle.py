"""The pure parts of `make gpu-bundle` (fewshot_distill/bench/gpu_bundle.py): the wheel list against the imports of
the GPU path, the requirement check of the wheels, the size limit, the pip commands, the manifest check;
and that the check's model never comes from the hub. The builder itself runs in
tests/scripts/test_gpu_check.py (slow: it downloads from PyPI)."""

from __future__ import annotations

import json
import socket
import zipfile

import pytest

from fewshot_distill.bench import gpu_bundle as B


def test_every_third_party_import_of_the_gpu_path_is_preinstalled_bundled_or_optional():
    imports = B.third_party_imports()
    assert B.uncovered_imports(imports) == {}
    # The trace reaches training, evaluation and the check: the bundled modules are really imported.
    assert {"omegaconf", "math_verify", "torch", "transformers", "peft", "accelerate"} <= set(imports)
    assert "fewshot_distill.config" in imports["omegaconf"] and "fewshot_distill.tasks.latex" in imports["math_verify"]
    # datasets only where the hub is read; vllm only in the vLLM backends (evaluation, on-policy sampling).
    assert imports.get("datasets", set()) <= {"fewshot_distill.data.examples"}
    assert imports["vllm"] <= {"fewshot_distill.eval.backends", "fewshot_distill.training.vllm_sampler"}


def test_the_trace_finds_an_import_that_nothing_accounts_for(tmp_path):
    (tmp_path / "fewshot_distill" / "pkg").mkdir(parents=True)
    (tmp_path / "fewshot_distill" / "__init__.py").write_text("")
    (tmp_path / "fewshot_distill" / "pkg" / "__init__.py").write_text("")
    (tmp_path / "fewshot_distill" / "pkg" / "entry.py").write_text("import os\nfrom fewshot_distill.pkg.lower import helper\n")
    (tmp_path / "fewshot_distill" / "pkg" / "lower.py").write_text("def helper():\n    import wandb.sdk\n    import torch\n")
    imports = B.third_party_imports(["fewshot_distill.pkg.entry"], root=tmp_path)
    assert imports == {"wandb": {"fewshot_distill.pkg.lower"}, "torch": {"fewshot_distill.pkg.lower"}}
    assert B.uncovered_imports(imports) == {"wandb": {"fewshot_distill.pkg.lower"}}
    with pytest.raises(ValueError, match="fewshot_distill.pkg.renamed has no file.*ENTRY_MODULES"):
        B.third_party_imports(["fewshot_distill.pkg.renamed"], root=tmp_path)


def test_the_bundled_wheels_and_their_modules_are_one_list():
    assert sorted(B.BUNDLED_MODULES.values()) == sorted(B.BUNDLED_WHEELS)
    assert not set(B.BUNDLED_MODULES) & set(B.NODE_PREINSTALLED)
    assert {"omegaconf", "math-verify"} <= set(B.BUNDLED_WHEELS)
    assert all(version.count(".") >= 1 for version in B.BUNDLED_WHEELS.values())  # pinned


def test_unmet_requirements_reads_markers_for_each_python_and_ignores_extras():
    requires = ["sympy", "antlr4-python3-runtime<=4.13.2,>=4.9.3", "pytest; extra == \"dev\"",
                "tomli>=1; python_version < \"3.11\"", "PyYAML>=5.1.0"]
    available = {"sympy", "antlr4_python3_runtime", "pyyaml"}
    assert B.unmet_requirements(requires, available, "3.12") == []
    assert B.unmet_requirements(requires, available, "3.10") == ["tomli>=1; python_version < \"3.11\""]


def test_wheel_requires_reads_the_metadata_inside_a_wheel(tmp_path):
    wheel = tmp_path / "x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("x-1.0.dist-info/METADATA", "Name: x\nRequires-Dist: sympy\nRequires-Dist: a; extra == 'b'\n")
    assert B.wheel_requires(wheel) == ["sympy", "a; extra == 'b'"]


def test_pip_commands_download_binary_wheels_per_python_and_install_offline_into_a_target(tmp_path):
    download = B.pip_download_command("py", "3.10", tmp_path, {"omegaconf": "2.4.0"})
    for flag in ("--only-binary=:all:", "--no-deps", "--platform", "manylinux2014_x86_64", "--python-version",
                 "3.10", "--implementation", "cp", "omegaconf==2.4.0"):
        assert flag in download
    install = B.pip_install_command("python3", tmp_path, tmp_path / "site", {"omegaconf": "2.4.0"})
    for flag in ("--no-index", "--no-deps", "--target", str(tmp_path / "site"), "--find-links",
                 str(tmp_path / "wheels"), "omegaconf==2.4.0"):
        assert flag in install
    assert B.PYTHON_VERSIONS == ("3.10", "3.11", "3.12", "3.13")


def test_the_size_limit_is_56_mib_and_its_error_is_one_line():
    B.check_size(56 * 2**20)
    with pytest.raises(B.BundleError) as error:
        B.check_size(56 * 2**20 + 1)
    message = str(error.value)
    assert "\n" not in message and "56 MiB limit" in message and "--train-rows" in message


def test_read_manifest_names_the_fix_for_a_missing_or_partial_bundle(tmp_path):
    with pytest.raises(B.BundleError, match="make gpu-bundle"):
        B.read_manifest(tmp_path)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "a.whl").write_bytes(b"x")
    (tmp_path / B.MANIFEST).write_text(json.dumps({"files": {"wheels/a.whl": {}, "tokenizer/tokenizer.json": {}}}))
    with pytest.raises(B.BundleError, match="misses 1 file.*tokenizer/tokenizer.json.*copy the whole folder"):
        B.read_manifest(tmp_path)


def test_write_subset_keeps_the_first_rows(tmp_path):
    source = tmp_path / "train.jsonl"
    source.write_text("".join(json.dumps({"question": str(i), "answer": "#### 1"}) + "\n" for i in range(5)) + "\n")
    assert B.write_subset(source, tmp_path / "out.jsonl", 3) == 3
    assert [json.loads(line)["question"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == \
        ["0", "1", "2"]


def test_the_check_loads_a_local_model_without_the_hub_even_when_not_offline(tiny_model_dir, tmp_path,
                                                                             monkeypatch):
    """gpu-check's model is --model (a local folder) or random weights from the bundle's config; the
    old scripts/gpu_check.py find_model called huggingface_hub.snapshot_download whenever no local
    Qwen3-1.7B was found and HF_HUB_OFFLINE was unset. Here no connection may be opened at all."""
    import huggingface_hub

    from fewshot_distill.bench import gpu_check_stages as S
    from fewshot_distill.models.student import load_base_model, load_tokenizer

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda *a, **k: pytest.fail("snapshot_download called"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"network connection attempted: {args}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    result = S.stage_model({"given_model": str(tiny_model_dir), "model_dir": str(tmp_path / "m"), "dry_run": False})
    assert result["passed"] and result["values"]["source"] == "--model"
    assert load_tokenizer(str(tiny_model_dir)) is not None
    assert load_base_model(str(tiny_model_dir), bf16=False) is not None


def test_docs_performance_names_every_bundled_wheel():
    text = (B.REPO_ROOT / "docs" / "performance.md").read_text()
    assert all(name in text for name in B.BUNDLED_WHEELS), "docs/performance.md: update the bundle's wheel list"
