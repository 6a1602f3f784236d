"""The computed LoRA vs full fine-tuning memory (fewshot_distill/bench/finetune_memory.py, scripts/finetune_memory.py)."""

from __future__ import annotations

import pytest

from fewshot_distill.bench import finetune_memory as M


def test_counts_from_a_meta_model_equal_the_real_tiny_model_and_its_peft_adapter(tiny_model_dir):
    from transformers import AutoConfig

    from fewshot_distill.config import LoraConfig
    from fewshot_distill.models.student import add_lora, load_base_model

    config = AutoConfig.from_pretrained(tiny_model_dir)
    meta = M.meta_model(config)
    real = load_base_model(str(tiny_model_dir), bf16=False)
    assert M.parameter_count(meta) == sum(p.numel() for p in real.parameters())
    # add_lora itself, not conftest.build_lora_student: the adapter wraps the model just counted, at rank 4
    peft_model = add_lora(real, LoraConfig(r=4))
    assert M.lora_parameter_count(meta, r=4) == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def test_qwen3_1_7b_count_matches_its_architecture_by_hand():
    hidden, inter, layers, vocab, heads, kv_heads, head_dim = 2048, 6144, 28, 151936, 16, 8, 128
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2   # q, o and k, v
    norms = 2 * hidden + 2 * head_dim                                               # layer norms, q/k norms
    expected = vocab * hidden + layers * (attention + 3 * hidden * inter + norms) + hidden
    row = M.memory_row("Qwen3-1.7B", M.qwen3_1_7b_config(), r=16)
    assert row.parameters == expected == 1_720_574_976
    lora_per_layer = 16 * ((hidden + heads * head_dim) * 2 + (hidden + kv_heads * head_dim) * 2 + 3 * (hidden + inter))
    assert row.lora_parameters == layers * lora_per_layer


def test_full_fine_tuning_costs_18_bytes_per_parameter_and_fsdp_divides_it():
    row = M.MemoryRow("m", parameters=1000, lora_parameters=10, r=2)
    assert sum(row.full_bytes().values()) == 18 * 1000
    assert sum(row.full_bytes(ranks=4).values()) == pytest.approx(18 * 1000 / 4)
    assert row.lora_bytes() == {"weights": 2 * 1000 + 4 * 10, "gradients": 40, "adamw": 80, "teacher": 0}


def test_committed_doc_is_what_the_script_writes(tmp_path):
    from scripts.finetune_memory import main
    from tests.conftest import REPO_ROOT

    out = tmp_path / "memory.md"
    assert main(["--out", str(out)]) == 0
    assert out.read_text() == (REPO_ROOT / "docs" / "finetune_memory.md").read_text()


def test_reproducing_doc_table_is_what_the_script_writes(tmp_path):
    """The block in docs/reproducing.md (full fine-tuning and sharded training) equals a fresh regeneration."""
    import shutil

    from scripts.finetune_memory import START, main
    from tests.conftest import REPO_ROOT

    committed = REPO_ROOT / "docs" / "reproducing.md"
    assert START in committed.read_text()
    doc = tmp_path / "reproducing.md"
    shutil.copy(committed, doc)
    assert main(["--doc", str(doc)]) == 0
    assert doc.read_text() == committed.read_text(), (
        "docs/reproducing.md's memory table is stale: run scripts/finetune_memory.py --doc docs/reproducing.md")
