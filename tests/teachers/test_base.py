"""The teacher is the student with its adapter disabled: equal to the base model, base never trained."""

import torch

from fewshot_distill.data.examples import build_examples, collate_examples
from fewshot_distill.models.student import load_base_model, load_tokenizer, teacher_logits
from fewshot_distill.methods.sft import sft_loss_step


def test_adapter_disabled_logits_equal_a_fresh_base_model_after_training(tiny_model_dir, small_data_cfg, lora_student):
    from fewshot_distill.data.examples import load_task_rows

    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    rows = load_task_rows(small_data_cfg, "train")[:16]
    examples, _ = build_examples(rows, tokenizer, small_data_cfg, seed=0, with_teacher=True)
    batch = collate_examples(examples[:4], tokenizer.pad_token_id)

    model = lora_student
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        sft_loss_step(model, batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, lora_before[n])]
    assert len(changed) == len(lora_before), "every LoRA weight should have moved"

    fresh_base = load_base_model(str(tiny_model_dir), bf16=False)
    fresh_params = dict(fresh_base.named_parameters())
    for name, param in model.wrapped_model.get_base_model().named_parameters():
        if "lora_" not in name:
            assert not param.requires_grad
            assert torch.equal(param, fresh_params[name.replace(".base_layer", "")]), name

    positions = torch.arange(batch["teacher_input_ids"].size(1))[None].repeat(4, 1)
    teacher = teacher_logits(model, batch["teacher_input_ids"], batch["teacher_attention_mask"], positions)
    with torch.no_grad():
        base = fresh_base(input_ids=batch["teacher_input_ids"],
                          attention_mask=batch["teacher_attention_mask"]).logits
        student = model(batch["teacher_input_ids"], batch["teacher_attention_mask"], positions)
    real = batch["teacher_attention_mask"].bool()
    torch.testing.assert_close(teacher[real], base[real], rtol=0, atol=1e-5)
    assert (student[real] - base[real]).abs().max() > 1e-3, "the trained adapter must change the student"
    assert not teacher.requires_grad


def test_tokenizer_without_pad_token_is_a_clear_error(tiny_model_dir, tmp_path):
    import json
    import shutil

    import pytest

    folder = tmp_path / "no_pad"
    shutil.copytree(tiny_model_dir, folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["pad_token"] = None
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="has no pad token"):
        load_tokenizer(str(folder))
